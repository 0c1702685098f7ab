"""Stage `import-dlc`: the authors' released DLC dataset (lavoies/DLC_512x256, a local
download) as our codes table and latent cache, so SEDD and the DiT train without SEM training,
code extraction or VAE encoding.

Their layout (the dataset card): Parquet shards whose rows hold `labels`, the L = 512 code
tokens of an ImageNet training image, and `features`, its SD-VAE latent (4 x 32 x 32, flat or
nested). Input shard i becomes codes shard part-i and latent shard i (read in record batches,
one input shard in memory at a time); image_id is `<shard>/<row>`, label -1 (the rows carry
no class). `--features unscaled` multiplies the latents by the VAE's scaling factor
(our cache holds scaled latents, as DiT's training reads them); `scaled` stores them as they
are. A rerun keeps every shard already imported from the same file; the manifests and the
latent index are written last. The VAE (`--vae`, a train-vae folder) must be the one the
latents came from: its hash and scaling factor go into the cache's manifest, which train-dit
checks.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from dlc import io as dio
from dlc.config import Config
from dlc.data import codes as codes_io
from dlc.data import latents as cache_io
from dlc.generation.encoding import finish_split
from dlc.models.vae import REPORT

log = logging.getLogger(__name__)
CODES, LATENTS = "labels", "features"


def run(cfg: Config, *, source: str | Path, vae: str | Path, split: str,
        features: str, codes: str | Path, latents: str | Path) -> dict:
    """`dlc import-dlc`: every shard of `source` into codes/<split> and latents/<split>."""
    if features not in ("scaled", "unscaled"):
        raise ValueError(f"--features {features!r}: scaled or unscaled")
    sem = cfg.active.sem
    shards = sorted(Path(source).glob("*.parquet")) if Path(source).is_dir() else [Path(source)]
    if not shards or not shards[0].is_file():
        raise FileNotFoundError(f"{source}: no Parquet shards of the DLC dataset")
    report = dio.read_json(Path(vae) / REPORT)
    scale = report["scaling_factor"] if features == "unscaled" else 1.0
    codes_dir, latents_dir = Path(codes) / split, Path(latents) / split
    metadata = {"L": sem.length, "V": sem.vocab, "dataset": f"DLC dataset {Path(source).name}",
                "split": split, "classes": None,
                "producer": {"stage": "dlc import-dlc", "source": str(source),
                             "features": features}}
    latent_metadata = {key: report[key] for key in ("vae_sha256", "scaling_factor",
                                                    "resolution", "latent_shape")}
    latent_metadata.update(location=report["location"], split=split, dtype="float16",
                           dataset=metadata["dataset"], posterior="imported",
                           both_flips=False, seed=None)
    fingerprints = [{"source": shard.name, "bytes": shard.stat().st_size, "L": sem.length,
                     "V": sem.vocab, "scale": scale} for shard in shards]
    index = [_import_shard(shard, number, fingerprint, metadata, latent_metadata, scale,
                           codes_dir, latents_dir)
             for number, (shard, fingerprint) in enumerate(tqdm(list(zip(shards, fingerprints)),
                                                                desc="import-dlc"))]
    manifest = finish_split(codes_dir, [codes_dir / codes_io.shard_name(i)
                                        for i in range(len(shards))], fingerprints, metadata,
                            0, 1)
    index = pd.concat(index, ignore_index=True)
    dio.write_parquet(index, latents_dir / cache_io.INDEX, latent_metadata)
    dio.write_json(latents_dir / cache_io.MANIFEST,
                   {**latent_metadata, "rows": len(index), "shards": len(shards), "skipped": 0,
                    "skipped_images": []})
    print(f"{manifest['rows']} codes -> {codes_dir}; {len(index)} latents -> {latents_dir}")
    return manifest


def _import_shard(shard: Path, number: int, fingerprint: dict, metadata: dict,
                  latent_metadata: dict, scale: float, codes_dir: Path,
                  latents_dir: Path) -> pd.DataFrame:
    """Shard `number` of codes and latents (kept when this file already made them); its rows
    of the latent index."""
    path = codes_dir / codes_io.shard_name(number)
    done = (path.is_file() and codes_io.shard_metadata(path).get("fingerprint") == fingerprint
            and cache_io.shard_done(latents_dir, number, fingerprint))
    if not done:
        codes, latents = _read(shard, metadata["L"], metadata["V"],
                               tuple(latent_metadata["latent_shape"]))
        ids = [f"{shard.stem}/{row}" for row in range(len(codes))]
        cache_io.write_shard(latents_dir, number, latents * scale,
                             {"fingerprint": fingerprint, "kept": list(range(len(ids))),
                              "skipped": []})
        codes_io.write_shard(path, ids, np.full(len(ids), -1), codes,
                             {**metadata, "fingerprint": fingerprint, "skipped": []},
                             source="imported")
    ids = pd.read_parquet(path, columns=["image_id"])["image_id"].to_numpy()
    return pd.DataFrame({"image_id": ids, "shard": np.full(len(ids), number, np.int32),
                         "offset": np.arange(len(ids), dtype=np.int64),
                         "flip": np.zeros(len(ids), bool)})


def _read(shard: Path, length: int, vocab: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, L) in our dtype, latents (n, *shape) float32) of one shard, batch by batch;
    fails naming the shard when a column is missing or a row has another shape."""
    try:
        parquet = pq.ParquetFile(shard)
    except (OSError, ValueError) as error:
        raise ValueError(f"{shard}: not a Parquet file ({error})") from None
    missing = [c for c in (CODES, LATENTS) if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"{shard}: no column {missing} (the DLC dataset has `labels`, the "
                         f"codes, and `features`, the VAE latents)")
    codes, latents = [], []
    for batch in parquet.iter_batches(columns=[CODES, LATENTS], batch_size=1024):
        rows = batch.to_pydict()
        part = np.asarray(rows[CODES], dtype=np.int64)
        if part.ndim != 2 or part.shape[1] != length:
            raise ValueError(f"{shard}: codes of shape {part.shape[1:]}, sem.length is {length}")
        if part.min() < 0 or part.max() >= vocab:
            raise ValueError(f"{shard}: code tokens outside [0, {vocab}) (sem.vocab)")
        features = np.asarray(rows[LATENTS], dtype=np.float32).reshape(len(part), -1)
        if features.shape[1] != int(np.prod(shape)):
            raise ValueError(f"{shard}: latents of {features.shape[1]} values, the VAE's are "
                             f"{shape}")
        codes.append(part.astype(codes_io.numpy_dtype(vocab)))
        latents.append(features.reshape(len(part), *shape))
    return np.concatenate(codes), np.concatenate(latents)
