"""Image autoencoders: diffusers' AutoencoderKL, built small for the built-in data or loaded from
a local folder (Stable Diffusion's `sd-vae-ft-ema` for ImageNet), and the two conversions the
pipeline needs: images -> scaled latents, and scaled latents -> uint8 images.

Latents are always stored *scaled*: z = scaling_factor * (posterior sample or mean), so the DiT
sees roughly unit variance; `decode` divides by the same factor exactly once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import VAEConfig, VAEModelConfig

MODEL = "model"        # <train-vae folder>/model/: the trained VAE as a diffusers folder
REPORT = "vae.json"    # <train-vae folder>/vae.json: where the VAE is, its hash and PSNR


def vae_location(cfg: VAEConfig, vae_dir: str | Path) -> str:
    """Where later stages load the VAE from: the trained folder, or the pretrained one."""
    return str(Path(vae_dir) / MODEL) if cfg.source == "train" else str(cfg.pretrained)


def weights_sha256(location: str) -> str | None:
    """Hash of a diffusers folder's weight files (None for a hub id)."""
    folder = Path(location)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return dio.sha256_json([dio.sha256_file(f) for f in files]) if files else None


def build_vae(cfg: VAEModelConfig, resolution: int, scaling_factor: float = 1.0):
    """A randomly initialised AutoencoderKL: n blocks of `block_out_channels`, so the latent
    grid is resolution / 2^(n-1)."""
    from diffusers import AutoencoderKL

    blocks = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=cfg.latent_channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(cfg.block_out_channels), layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups, sample_size=resolution,
        scaling_factor=scaling_factor, mid_block_add_attention=cfg.mid_block_attention)


def load_vae(location: str | Path):
    """AutoencoderKL from a diffusers folder (config.json + weights), in eval mode. A hub id
    only works online; offline, a missing folder fails here naming the path."""
    from diffusers import AutoencoderKL

    location = str(location)
    local = Path(location)
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{location}: not a diffusers VAE folder (no config.json)")
    looks_like_hub_id = location.count("/") == 1 and not local.is_absolute()
    if not local.exists() and not looks_like_hub_id:
        raise FileNotFoundError(f"{location}: VAE folder not found")
    try:
        vae = AutoencoderKL.from_pretrained(location)
    except (OSError, ValueError) as error:
        raise ValueError(f"{location}: cannot load an AutoencoderKL "
                         f"({str(error).splitlines()[0]})") from None
    return vae.eval().requires_grad_(False)


def to_model_range(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1] (the range diffusers VAEs use)."""
    images = torch.as_tensor(images)
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8, rounded as ADM's samplers do."""
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def scaling_factor(vae) -> float:
    return float(vae.config.scaling_factor)


@torch.no_grad()
def encode(vae, images: torch.Tensor, posterior: str = "sample",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """images in [-1, 1] (N, 3, H, W) -> scaled latents (N, C, h, w), float32."""
    parameters = vae.encode(images).latent_dist
    if posterior == "mean":
        latents = parameters.mean
    else:  # z = mean + std * noise, the noise from our generator (reproducible caching)
        noise = torch.randn(parameters.mean.shape, generator=generator,
                            device=parameters.mean.device)
        latents = parameters.mean + parameters.std * noise
    return latents.float() * scaling_factor(vae)


@torch.no_grad()
def decode(vae, latents: torch.Tensor | np.ndarray, batch_size: int = 64,
           device: torch.device | str | None = None) -> np.ndarray:
    """Scaled latents (N, C, h, w) -> (N, H, W, 3) uint8 images, `batch_size` at a time."""
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    latents = torch.as_tensor(latents)
    out = [to_uint8(vae.decode((latents[i:i + batch_size].to(device, torch.float32)
                                / scaling_factor(vae)).to(dtype)).sample)
           for i in range(0, len(latents), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0, 0, 3), np.uint8)


def reconstruct(vae, images: np.ndarray, batch_size: int = 64, posterior: str = "mean",
                generator: torch.Generator | None = None) -> np.ndarray:
    """(N, H, W, 3) uint8 -> their reconstructions through the posterior mean (or a sample of
    the posterior, drawn with `generator`), uint8."""
    device = next(vae.parameters()).device
    latents = torch.cat([encode(vae, to_model_range(images[i:i + batch_size]).to(device),
                                posterior, generator)
                         for i in range(0, len(images), batch_size)])
    return decode(vae, latents, batch_size)


def latent_shape(vae, resolution: int) -> list[int]:
    """(C, h, w) of the latents of a resolution x resolution image: each down block but the
    last halves the side."""
    side = resolution // 2 ** (len(vae.config.block_out_channels) - 1)
    return [vae.config.latent_channels, side, side]


def psnr(reference: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of uint8 images (peak 255)."""
    error = (reference.astype(np.float64) - reconstruction.astype(np.float64)) ** 2
    mse = error.reshape(len(reference), -1).mean(axis=1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))
