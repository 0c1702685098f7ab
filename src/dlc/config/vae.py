"""The image autoencoder and the latent cache (`vae`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import NONFINITE_DOC, PRECISION_DOC, ConfigError, param, positive


@dataclass(frozen=True)
class VAEModelConfig:
    block_out_channels: list[int] = param("channels of each encoder/decoder block; n blocks "
                                         "downsample 2^(n-1) times", minimum=1)
    layers_per_block: int = param("ResNet layers per encoder block (decoder: one more)",
                                 minimum=1)
    latent_channels: int = param("latent channels (SD: 4)", minimum=1)
    norm_num_groups: int = param("GroupNorm groups (divides every block width)", minimum=1)
    mid_block_attention: bool = param("self-attention in the middle block (SD: true)")

    def check(self, where: str) -> None:
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if not self.block_out_channels or bad:
            raise ConfigError(f"{where}.block_out_channels: every width must be a multiple of "
                              f"norm_num_groups={self.norm_num_groups} (got {bad or 'none'})")


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = param("optimiser steps", minimum=1)
    batch_size: int = param("images per step", minimum=1)
    lr: float = param("AdamW learning rate (warm-up, then cosine to 0)", **positive())
    warmup_steps: int = param("linear lr warm-up", minimum=0)
    kl_weight: float = param("weight of KL(q(z|x) || N(0, I)) per latent element", minimum=0)
    reconstruction: Literal["l1", "mse"] = param("pixel reconstruction loss")
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    seed: int = param("seed of init, batch order and posterior noise", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)
    checkpoint_every: int = param("steps between resumable checkpoints", minimum=1)
    nonfinite_patience: int = param(NONFINITE_DOC, minimum=1)


@dataclass(frozen=True)
class LatentCacheConfig:
    splits: list[str] = param("splits of the images table to cache")
    posterior: Literal["sample", "mean"] = param("store a posterior sample (fast-DiT) or its "
                                                "mean, times the scaling factor")
    both_flips: bool = param("store both horizontal flips of every image (two rows each) "
                            "instead of one flip drawn once per image")
    seed: int = param("seed of the per-image flips and the posterior noise", minimum=0)
    batch_size: int = param("images per VAE forward", minimum=1)
    shard_size: int = param("latents per shard file (shard-00000.npy, ...)", minimum=1)
    workers: int = param("image-decoding worker processes (0: in the caching process)",
                        minimum=0)


@dataclass(frozen=True)
class VAEConfig:
    source: Literal["train", "pretrained"] = param(
        "train: a small AutoencoderKL on the preset's images (tiny); pretrained: a diffusers "
        "folder (imagenet: sd-vae-ft-ema)")
    pretrained: str | None = param("local diffusers folder of the pretrained VAE (or a hub id "
                                  "when online)")
    resolution: int = param("side of the ADM centre crop fed to the VAE (paper: 256)",
                           minimum=8)
    eval_split: str = param("held-out split for the reconstruction PSNR and grid")
    eval_images: int = param("held-out images for the reconstruction PSNR", minimum=1)
    model: VAEModelConfig | None = param("architecture when source is train")
    train: VAETrainConfig | None = param("optimisation when source is train")
    cache: LatentCacheConfig = param("the latent cache the DiT trains on")

    def check(self, where: str) -> None:
        if self.source == "pretrained" and not self.pretrained:
            raise ConfigError(f"{where}.pretrained: required when {where}.source is pretrained")
        if self.source == "train" and (self.model is None or self.train is None):
            raise ConfigError(f"{where}.model and {where}.train: required when {where}.source "
                              f"is train")
