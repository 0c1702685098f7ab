"""`dlc import-dlc`: a hand-made Parquet in the layout of the authors' DLC dataset (`labels`,
the codes; `features`, the VAE latents) becomes a codes table and a latent cache that the DiT's
training reads, with the bytes and the scaling checked; a rerun keeps the imported shards."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlc import io as dio
from dlc.data.codes import read_codes
from dlc.data.latents import LatentCache, LatentCodePairs
from dlc.stages import import_dlc

SHAPE = (4, 2, 2)
SCALE = 0.18215


def release_shard(path, rows: int, length: int, vocab: int, seed: int, nested: bool):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, vocab, (rows, length))
    latents = rng.normal(size=(rows, *SHAPE)).astype(np.float32)
    features = latents.tolist() if nested else latents.reshape(rows, -1).tolist()
    pq.write_table(pa.table({"features": features, "labels": codes.tolist()}), path,
                   row_group_size=3)
    return codes, latents


@pytest.fixture
def release(micro_config, tmp_path):
    sem = micro_config.active.sem
    (tmp_path / "DLC").mkdir()
    made = [release_shard(tmp_path / "DLC" / f"train-{i:05d}-of-00002.parquet", rows, sem.length,
                          sem.vocab, i, nested=i == 0) for i, rows in enumerate((5, 4))]
    vae = tmp_path / "vae"
    dio.write_json(vae / "vae.json", {"location": "/models/sd-vae-ft-ema", "vae_sha256": "abc",
                                      "scaling_factor": SCALE, "resolution": 16,
                                      "latent_shape": list(SHAPE)})
    return micro_config, tmp_path, made


def test_the_release_becomes_codes_and_a_latent_cache(release):
    cfg, tmp_path, made = release
    sem = cfg.active.sem
    manifest = import_dlc.run(cfg, source=tmp_path / "DLC", vae=tmp_path / "vae", split="train",
                              features="unscaled", codes=tmp_path / "codes",
                              latents=tmp_path / "latents")
    assert manifest["rows"] == 9
    codes = read_codes(tmp_path / "codes" / "train", sem.length, sem.vocab)
    assert np.array_equal(codes.codes, np.concatenate([c for c, _ in made]))
    assert codes.image_ids[5] == "train-00001-of-00002/0"
    cache = LatentCache(tmp_path / "latents" / "train")
    cache.check({"vae_sha256": "abc", "scaling_factor": SCALE})      # what train-dit checks
    expected = np.concatenate([latents for _, latents in made]) * SCALE
    np.testing.assert_allclose(cache.latents(np.arange(9)), expected, rtol=1e-3, atol=1e-3)
    pairs = LatentCodePairs(cache, codes)
    latents, batch_codes = pairs.batch([6, 0])
    assert np.array_equal(batch_codes.numpy(), codes.codes[[6, 0]])
    np.testing.assert_allclose(latents.numpy(), expected[[6, 0]], rtol=1e-3, atol=1e-3)

    first = tmp_path / "codes" / "train" / "part-00000.parquet"
    os.utime(first, (1, 1))
    import_dlc.run(cfg, source=tmp_path / "DLC", vae=tmp_path / "vae", split="train",
                   features="unscaled", codes=tmp_path / "codes", latents=tmp_path / "latents")
    assert first.stat().st_mtime == 1                               # kept on rerun


def test_a_release_of_another_shape_is_refused_naming_the_shard(release):
    cfg, tmp_path, _ = release
    sem = cfg.active.sem
    release_shard(tmp_path / "DLC" / "train-00000-of-00002.parquet", 3, sem.length + 1,
                  sem.vocab, 0, nested=False)
    with pytest.raises(ValueError, match=rf"train-00000-of-00002.parquet: codes of shape "
                                         rf"\({sem.length + 1},\), sem.length is {sem.length}"):
        import_dlc.run(cfg, source=tmp_path / "DLC", vae=tmp_path / "vae", split="train",
                       features="scaled", codes=tmp_path / "codes",
                       latents=tmp_path / "latents")
    pq.write_table(pa.table({"labels": [[0] * sem.length]}),
                   tmp_path / "DLC" / "train-00000-of-00002.parquet")
    with pytest.raises(ValueError, match=r"no column \['features'\]"):
        import_dlc.run(cfg, source=tmp_path / "DLC", vae=tmp_path / "vae", split="train",
                       features="scaled", codes=tmp_path / "codes",
                       latents=tmp_path / "latents")
