"""Stage `cache-latents`: VAE latents of every split in vae.cache.splits, computed once.

Each image is ADM-centre-cropped to vae.resolution and mirrored or not by a flip drawn once per
image from a seeded RNG (or stored both ways with `both_flips`), encoded, and stored as
scaling_factor * (posterior sample or mean) in float16 shards (data/latents.py). Shard k's
posterior noise comes from a generator seeded by (seed, k), so a shard redone after a crash is
the shard that would have been written. Finished shards are kept on rerun; the index and
manifest.json are written last. Unreadable images are skipped, named in the manifest.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config, VAEConfig, to_dict
from dlc.data import latents as cache_io
from dlc.data.images import collate_skipping, readable_batches
from dlc.data.sources import CentredImages, ImageTable
from dlc.models.vae import REPORT, encode, load_vae, to_model_range, vae_location
from dlc.train import distributed

log = logging.getLogger(__name__)


def run(cfg: Config, *, images: str | Path, vae: str | Path, out: str | Path) -> dict:
    """`dlc cache-latents`: every vae.cache split's latents into `out`."""
    return cache(cfg.active.vae, images, vae, out)


def entries(rows: int, both_flips: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(table row, flip) of every latent to store: one per image with a seeded random flip,
    or two per image (unflipped, then flipped)."""
    if both_flips:
        return np.repeat(np.arange(rows), 2), np.tile([0, 1], rows).astype(np.int8)
    flips = np.random.default_rng(seed).integers(0, 2, rows).astype(np.int8)
    return np.arange(rows), flips


def cache(cfg: VAEConfig, images: str | Path, vae_dir: str | Path, out_dir: str | Path) -> dict:
    """Every split of vae.cache.splits into out_dir/<split>/; returns the manifests."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.train is not None:
        torch.set_num_threads(cfg.train.threads)
    report = dio.read_json(Path(vae_dir) / REPORT)
    vae = load_vae(vae_location(cfg, vae_dir)).to(device)
    metadata = {key: report[key] for key in ("vae_sha256", "scaling_factor", "resolution",
                                             "latent_shape")}
    metadata.update(location=report["location"], images_sha256=dio.sha256_file(images),
                    **{k: v for k, v in to_dict(cfg.cache).items()
                       if k in ("posterior", "both_flips", "seed")})
    return {split: cache_split(cfg, vae, ImageTable(images, split), metadata,
                               Path(out_dir) / split, device)
            for split in cfg.cache.splits}


def cache_split(cfg: VAEConfig, vae, table: ImageTable, metadata: dict, out_dir: Path,
                device: torch.device) -> dict:
    c = cfg.cache
    metadata = {**metadata, "split": table.split, "dtype": "float16",
                "dataset": table.metadata.get("dataset", "unknown")}
    fingerprint = {**metadata, "shard_size": c.shard_size}
    rows, flips = entries(len(table), c.both_flips, c.seed)
    index_parts, skipped = [], []
    shards = range(0, len(rows), c.shard_size)
    for number, first in enumerate(tqdm(shards, desc=f"cache {table.split}", mininterval=5)):
        part = slice(first, min(first + c.shard_size, len(rows)))
        sidecar = (out_dir / cache_io.shard_name(number)).with_suffix(".json")
        if not cache_io.shard_done(out_dir, number, fingerprint):
            _encode_shard(cfg, vae, table, rows[part], flips[part], out_dir, number,
                          fingerprint, device)
        done = dio.read_json(sidecar)
        kept = np.asarray(done["kept"], dtype=np.int64)   # positions within the shard
        skipped += done["skipped"]
        index_parts.append(pd.DataFrame({
            "image_id": table.frame["image_id"].to_numpy()[rows[part][kept]],
            "shard": np.full(len(kept), number, np.int32),
            "offset": np.arange(len(kept), dtype=np.int64),
            "flip": flips[part][kept].astype(bool)}))
    for stale in out_dir.glob("shard-*"):
        if int(stale.stem.split("-")[1]) >= len(shards):
            stale.unlink()
    index = pd.concat(index_parts, ignore_index=True)
    dio.write_parquet(index, out_dir / cache_io.INDEX, metadata)
    manifest = {**metadata, "rows": len(index), "shards": len(shards), "skipped": len(skipped),
                "skipped_images": skipped, **dio.run_metadata({"vae": to_dict(cfg)})}
    dio.write_json(out_dir / cache_io.MANIFEST, manifest)
    log.info("%s: %d latents %s in %d shards -> %s; %d unreadable images skipped",
             table.split, len(index), tuple(metadata["latent_shape"]), len(shards), out_dir,
             len(skipped))
    return manifest


def _encode_shard(cfg: VAEConfig, vae, table: ImageTable, rows: np.ndarray, flips: np.ndarray,
                  out_dir: Path, number: int, fingerprint: dict, device: torch.device) -> None:
    seed = np.random.SeedSequence([cfg.cache.seed, number]).generate_state(1)[0]
    generator = torch.Generator(device).manual_seed(int(seed))
    loader = torch.utils.data.DataLoader(
        CentredImages(table, rows, cfg.resolution, flips=flips),
        batch_size=cfg.cache.batch_size, num_workers=cfg.cache.workers,
        collate_fn=collate_skipping)
    kept, latents, skipped = [], [], []
    autocast = distributed.autocast(device)
    for images, positions in readable_batches(loader, skipped):
        with autocast:
            batch = to_model_range(images).to(device)
            latents.append(encode(vae, batch, cfg.cache.posterior, generator).cpu())
        kept += positions.tolist()
    shape = tuple(fingerprint["latent_shape"])
    array = torch.cat(latents).numpy() if latents else np.zeros((0, *shape), np.float32)
    cache_io.write_shard(out_dir, number, array,
                         {"fingerprint": fingerprint, "kept": kept, "skipped": skipped})
