"""Stage `real-samples`: the evaluation's floors as ADM-style sample sets.

    real   images of evaluate.floor_split (not the reference): what a perfect generator scores
           at this n (FD is biased at small n, so it is not 0)
    vae    the same images through the VAE (encode, posterior mean, decode): the best any
           latent-diffusion sample can score through this autoencoder

Both write <out>/samples.npz (arr_0, the first evaluate.samples images) and samples.json, so
`dlc evaluate` scores them exactly as it scores generated images.
"""

from __future__ import annotations

import io as bytes_io
import logging
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import Config, EvaluateConfig, VAEConfig, to_dict
from dlc.data.sources import ImageTable
from dlc.models.vae import load_vae, reconstruct, vae_location

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, out: str | Path,
        vae: str | Path | None = None) -> dict:
    """`dlc real-samples`: real images (or, with `vae`, their reconstructions) into `out`."""
    return write_samples(cfg.active.evaluate, cfg.active.vae, images, out, vae)


def write_samples(cfg: EvaluateConfig, vae_cfg: VAEConfig, images_table: str | Path,
                  out_dir: str | Path, vae_dir: str | Path | None = None) -> dict:
    out_dir = Path(out_dir)
    torch.set_num_threads(cfg.threads)
    table = ImageTable(images_table, cfg.floor_split)
    images, _ = table.centred_stack(vae_cfg.resolution, limit=cfg.samples)
    if len(images) < cfg.samples:
        raise ValueError(f"{images_table}: split {cfg.floor_split!r} has {len(images)} "
                         f"readable images, fewer than evaluate.samples = {cfg.samples}")
    summary = {"kind": "real", "split": cfg.floor_split, "images": str(images_table),
               "n": len(images)}
    if vae_dir is not None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        location = vae_location(vae_cfg, vae_dir)
        vae = load_vae(location).to(device)
        images = reconstruct(vae, images, cfg.batch_size)
        summary.update(kind="vae", vae=location)
    buffer = bytes_io.BytesIO()
    np.savez(buffer, arr_0=images)
    dio.write_bytes(out_dir / "samples.npz", buffer.getvalue())
    summary.update(dio.run_metadata({"evaluate": to_dict(cfg), "vae": to_dict(vae_cfg)}))
    dio.write_json(out_dir / "samples.json", summary)
    log.info("%d %s images of split %s -> %s", len(images), summary["kind"], cfg.floor_split,
             out_dir / "samples.npz")
    return summary
