"""Stage `train-vae`: the preset's image autoencoder, and how well it reconstructs.

- `vae.source: train` (tiny): a small diffusers AutoencoderKL is trained on the train split with
  loss = reconstruction (L1 or MSE per pixel) + kl_weight * KL(q(z|x) || N(0, I)) per latent
  element, then its scaling factor is set to 1 / std of the training latents (what Stable
  Diffusion did to give the diffusion model unit-variance latents) and it is saved with
  `save_pretrained` into <out>/model/, so every later stage loads it exactly like SD's VAE.
  The images are held in memory: this path is for small datasets.
- `vae.source: pretrained` (imagenet): nothing is trained; the folder named in params is used.

Both write <out>/vae.json (where the VAE is, its weights hash, scaling factor, latent shape, and
the PSNR of held-out reconstructions) and <out>/vae_recon.png (originals above their
reconstructions).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, VAEConfig, to_dict
from dlc.data.sources import ImageTable
from dlc.models.vae import (
    MODEL,
    REPORT,
    build_vae,
    encode,
    latent_shape,
    load_vae,
    psnr,
    reconstruct,
    scaling_factor,
    to_model_range,
    vae_location,
    weights_sha256,
)
from dlc.train import checkpoint, distributed
from dlc.train.batches import EpochOrder, StepBatches
from dlc.train.guard import NonFiniteGuard
from dlc.train.schedules import lr_factor
from dlc.viz import image_grid, loss_curve, save_image

log = logging.getLogger(__name__)
SCALE_IMAGES = 2048      # training images whose latents set the scaling factor


def run(cfg: Config, *, images: str | Path, out: str | Path) -> dict:
    """`dlc train-vae`: train the VAE (vae.source: train) or take the pretrained one, then
    measure it; returns vae.json's content."""
    vae = cfg.active.vae
    if vae.source == "train":
        train(vae, images, out)
    return evaluate(vae, images, out)


def _loss(vae, images: torch.Tensor, cfg: VAEConfig, autocast) -> tuple[torch.Tensor, dict]:
    with autocast:  # the network; the losses in float32
        posterior = vae.encode(images).latent_dist
        latents = posterior.sample()
        reconstruction = vae.decode(latents).sample.float()
    error = reconstruction - images
    rec = error.abs().mean() if cfg.train.reconstruction == "l1" else error.pow(2).mean()
    kl = posterior.kl().mean() / latents[0].numel()   # per latent element
    loss = rec + cfg.train.kl_weight * kl
    return loss, {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}


def train(cfg: VAEConfig, images_path: str | Path, out_dir: str | Path) -> Path:
    """Train the small VAE on the train split (resumes from <out>/checkpoints)."""
    out_dir = Path(out_dir)
    t = cfg.train
    torch.set_num_threads(t.threads)
    images, _ = ImageTable(images_path, "train").centred_stack(cfg.resolution)
    params_sha = dio.sha256_json({"vae": to_dict(cfg), "images": dio.sha256_file(images_path)})
    torch.manual_seed(t.seed)
    vae = build_vae(cfg.model, cfg.resolution)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=t.lr, weight_decay=0.0)
    history, start = checkpoint.resume(out_dir / "checkpoints", vae, None, optimizer,
                                       params_sha, t.steps)
    guard = NonFiniteGuard(optimizer, t.nonfinite_patience, out_dir / "checkpoints", history)

    order = EpochOrder(len(images), t.seed)
    log_every = max(1, t.steps // 200)
    autocast = distributed.autocast(torch.device("cpu"), t.precision)
    vae.train()
    progress = tqdm(StepBatches(start, t.steps, t.batch_size), desc="train-vae",
                    initial=start, total=t.steps, mininterval=5)
    for step, numbers in enumerate(progress, start=start):
        batch = to_model_range(images[[order(k) for k in numbers]])
        for group in optimizer.param_groups:
            group["lr"] = t.lr * lr_factor(step, "cosine", t.warmup_steps, t.steps)
        loss, terms = _loss(vae, batch, cfg, autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.get_total_norm([p.grad for p in vae.parameters()
                                             if p.grad is not None])
        done = step + 1
        guard.step(done, loss, grad_norm)   # no update from a non-finite step
        if done % log_every == 0 or done == t.steps:
            history.append({"step": done, **terms, "grad_norm": grad_norm.item(),
                            **guard.skipped(done)})
            progress.set_postfix(rec=f"{terms['reconstruction']:.4f}", refresh=False)
        if done % t.checkpoint_every == 0 and done < t.steps:
            guard.check()
            checkpoint.save(out_dir / "checkpoints", done, vae, None,
                            {"optimizer": optimizer.state_dict(), "history": history},
                            params_sha)
    guard.check()
    vae.eval()
    _set_scaling_factor(vae, images[:SCALE_IMAGES], cfg.cache.seed)
    _save_pretrained(vae, out_dir / MODEL)
    dio.write_csv(out_dir / "loss.csv", history)
    loss_curve(history, "reconstruction", f"{t.reconstruction} reconstruction",
               "VAE training", out_dir / "loss.png")
    return out_dir


@torch.no_grad()
def _set_scaling_factor(vae, images: np.ndarray, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.cat([encode(vae, to_model_range(images[i:i + 256]), "sample", generator)
                         for i in range(0, len(images), 256)])
    # encode() already multiplied by the current factor: divide it out before measuring.
    std = (latents / scaling_factor(vae)).std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    log.info("VAE latent std %.4f -> scaling factor %.4f", std, 1.0 / std)


def _save_pretrained(vae, folder: Path) -> None:
    """save_pretrained into a temporary folder, then swap it in (never half a model)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        vae.save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@torch.no_grad()
def evaluate(cfg: VAEConfig, images_path: str | Path, out_dir: str | Path) -> dict:
    """PSNR of held-out reconstructions (posterior mean and posterior sample), the grid, and
    vae.json, which later stages read to find the VAE and check their caches against."""
    out_dir = Path(out_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    location = vae_location(cfg, out_dir)
    vae = load_vae(location).to(device)
    table = ImageTable(images_path, cfg.eval_split)
    images, _ = table.centred_stack(cfg.resolution, cfg.eval_images)
    generator = torch.Generator(device).manual_seed(cfg.cache.seed)
    scores, grid_pairs = {}, None
    for posterior in ("mean", "sample"):
        reconstructions = reconstruct(vae, images, 64, posterior, generator)
        values = psnr(images, reconstructions)
        scores[posterior] = {"psnr_mean": float(values.mean()),
                             "psnr_median": float(np.median(values)),
                             "psnr_p05": float(np.percentile(values, 5))}
        if posterior == "mean":
            grid_pairs = np.concatenate([images[:16], reconstructions[:16]])
    scale = max(1, 128 // cfg.resolution)
    save_image(image_grid(grid_pairs, columns=16, scale=scale), out_dir / "vae_recon.png")
    report = {
        "location": location, "source": cfg.source, "vae_sha256": weights_sha256(location),
        "scaling_factor": scaling_factor(vae), "resolution": cfg.resolution,
        "latent_shape": latent_shape(vae, cfg.resolution), "eval_split": cfg.eval_split,
        "n": len(images), "reconstruction": scores,
        "parameters": sum(p.numel() for p in vae.parameters()),
        **dio.run_metadata({"vae": to_dict(cfg)})}
    dio.write_json(out_dir / REPORT, report)
    log.info("VAE %s: PSNR %.2f dB (posterior mean) on %d %s images -> %s", location,
             scores["mean"]["psnr_mean"], len(images), cfg.eval_split, out_dir / REPORT)
    return report
