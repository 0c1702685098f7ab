"""The latent cache: VAE latents of one split, computed once, read by index while training.

One folder per split:
    shard-00000.npy ...  (n, C, h, w) float16, plain numpy arrays, memory-mapped when read
    shard-00000.json     the settings that wrote the shard (written after it: resume check)
    index.parquet        image_id, shard, offset, flip: one row per stored latent
    manifest.json        written last: VAE hash, scaling factor, resolution, latent shape ...

Why float16 and not bf16: scaled latents have unit variance (|z| < 10 in practice), far inside
float16's range, and float16 keeps 10 mantissa bits against bf16's 7 (a relative error of 5e-4
instead of 4e-3); numpy memory-maps float16 natively, so pandas/numpy users need no bit tricks.
A 4x32x32 ImageNet latent takes 8 KiB (1.28M images: 10.5 GB).

The index joins the codes table on `image_id`; `LatentCodePairs` does that join once and then
serves (latent, code) batches by row, opening only the shards a batch touches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dlc import io as dio

MANIFEST = "manifest.json"
INDEX = "index.parquet"
DTYPE = np.float16


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


def write_shard(folder: Path, index: int, latents: np.ndarray, sidecar: dict) -> None:
    """One shard atomically, then its sidecar (fingerprint, kept positions, skipped images):
    a shard without its sidecar is redone."""
    path = folder / shard_name(index)
    with dio.atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(latents, dtype=DTYPE))
    dio.write_json(path.with_suffix(".json"), {**sidecar, "rows": len(latents)})


def shard_done(folder: Path, index: int, fingerprint: dict) -> bool:
    """True if shard `index` exists and was written with these settings."""
    path = folder / shard_name(index)
    sidecar = path.with_suffix(".json")
    return (path.is_file() and sidecar.is_file()
            and dio.read_json(sidecar).get("fingerprint") == fingerprint)


class LatentCache:
    """A finished cache folder. `latents(rows)` reads only the shards those rows live in."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise FileNotFoundError(f"{self.folder}: no latent cache here (manifest.json "
                                    f"missing: run `dlc cache-latents`, or it did not finish)")
        self.metadata = dio.read_json(self.folder / MANIFEST)
        self.index, _ = dio.read_parquet(self.folder / INDEX,
                                         ("image_id", "shard", "offset", "flip"),
                                         what="latent cache index")
        self.shape = tuple(self.metadata["latent_shape"])
        self._shards: dict[int, np.ndarray] = {}
        self._shard = self.index["shard"].to_numpy()
        self._offset = self.index["offset"].to_numpy()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def opened_shards(self) -> list[int]:
        return sorted(self._shards)

    def shard(self, number: int) -> np.ndarray:
        if number not in self._shards:
            path = self.folder / shard_name(number)
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: unreadable latent shard ({error})") from None
            if array.dtype != DTYPE or tuple(array.shape[1:]) != self.shape:
                raise ValueError(f"{path}: {array.dtype} {array.shape[1:]}, the manifest says "
                                 f"{np.dtype(DTYPE)} {self.shape}")
            self._shards[number] = array
        return self._shards[number]

    def latents(self, rows: np.ndarray | list[int]) -> np.ndarray:
        """(len(rows), C, h, w) float32 in the order of `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape), dtype=np.float32)
        shards = self._shard[rows]
        for number in np.unique(shards):
            where = np.flatnonzero(shards == number)
            out[where] = self.shard(int(number))[self._offset[rows[where]]]
        return out

    def check(self, expected: dict) -> None:
        """Every key of `expected` (scaling_factor, vae_sha256, latent_shape, ...) must match the
        manifest; the error names the folder and the key."""
        for key, value in expected.items():
            if self.metadata.get(key) != value:
                raise ValueError(f"{self.folder}: latent cache has {key}="
                                 f"{self.metadata.get(key)!r}, expected {value!r} (re-run "
                                 f"`dlc cache-latents`)")


class LatentCodePairs:
    """(latent, code) pairs: every cached latent whose image has a code, joined on image_id."""

    def __init__(self, cache: LatentCache, codes):
        self.cache, self.codes = cache, codes
        code_rows = pd.Series(np.arange(len(codes)), index=codes.image_ids)
        matched = cache.index["image_id"].map(code_rows)
        if matched.isna().any():
            missing = cache.index["image_id"][matched.isna()]
            raise ValueError(f"{cache.folder}: {len(missing)} cached images have no code in "
                             f"the codes table (first: {missing.iloc[0]!r}); were latents and "
                             f"codes made from the same images table?")
        self.code_rows = matched.to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.cache)

    def batch(self, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents float32 (B, C, h, w), codes int64 (B, L)) for pair numbers `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        latents = torch.from_numpy(self.cache.latents(rows))
        codes = torch.from_numpy(self.codes.codes[self.code_rows[rows]].astype(np.int64))
        return latents, codes

    def features(self, rows) -> torch.Tensor:
        """The codes table's continuous features (float32 (B, F)) for pair numbers `rows`."""
        if self.codes.features is None:
            raise ValueError("the codes were read without their features column")
        rows = np.asarray(rows, dtype=np.int64)
        return torch.from_numpy(self.codes.features[self.code_rows[rows]].astype(np.float32))
