"""The latent cache: round trip against direct encoding, frozen flips, the join with codes on
image_id, reads that open only the shards they need, resume, and clear errors."""

import dataclasses

import numpy as np
import pytest
import torch

from dlc import io as dio
from dlc.data import codes as codes_io
from dlc.data.latents import LatentCache, LatentCodePairs, shard_name
from dlc.data.sources import ImageTable
from dlc.models import vae as vae_lib
from dlc.stages import cache_latents, data, train_vae


@pytest.fixture
def setup(micro_config, tmp_path):
    """A micro images table with one corrupt test PNG, and a random-weight VAE folder."""
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    frame, metadata = dio.read_parquet(tmp_path / "images.parquet")
    bad = frame.index[frame["split"] == "test"][3]
    frame.loc[bad, "image"] = b"\x89PNG truncated"
    dio.write_parquet(frame, tmp_path / "images.parquet", metadata)
    torch.manual_seed(0)
    vae_lib.build_vae(preset.vae.model, 32, 0.7).save_pretrained(tmp_path / "vae" / "model")
    train_vae.evaluate(preset.vae, tmp_path / "images.parquet", tmp_path / "vae")
    return preset.vae, tmp_path, frame.loc[bad, "image_id"]


def with_cache(cfg, **changes):
    return dataclasses.replace(cfg, cache=dataclasses.replace(cfg.cache, **changes))


def test_round_trip_equals_direct_encoding_within_fp16(setup):
    cfg, folder, bad_id = setup
    cfg = with_cache(cfg, posterior="mean")
    manifests = cache_latents.cache(cfg, folder / "images.parquet", folder / "vae",
                                    folder / "latents")
    assert set(manifests) == {"train", "test"}
    assert [s["image_id"] for s in manifests["test"]["skipped_images"]] == [bad_id]
    cache = LatentCache(folder / "latents" / "train")
    assert cache.metadata["scaling_factor"] == pytest.approx(0.7)
    assert cache.shape == (4, 16, 16) and len(cache) == manifests["train"]["rows"]
    table = ImageTable(folder / "images.parquet", "train")
    vae = vae_lib.load_vae(folder / "vae" / "model")
    rows = [0, 7, len(cache) - 1]
    images = []
    for row in rows:
        image = table.centred(row, 32)
        images.append(image[:, ::-1] if cache.index["flip"].iat[row] else image)
        assert cache.index["image_id"].iat[row] == table.image_id(row)
    expected = vae_lib.encode(vae, vae_lib.to_model_range(np.stack(images)), "mean")
    np.testing.assert_allclose(cache.latents(rows), expected.numpy(), rtol=2e-3, atol=2e-3)
    assert "bad" not in set(LatentCache(folder / "latents" / "test").index["image_id"])


def test_flips_are_drawn_once_and_both_flips_stores_two_rows(setup):
    cfg, folder, _ = setup
    rows, flips = cache_latents.entries(100, False, seed=5)
    assert np.array_equal(flips, cache_latents.entries(100, False, seed=5)[1])
    assert not np.array_equal(flips, cache_latents.entries(100, False, seed=6)[1])
    assert 30 < flips.sum() < 70 and np.array_equal(rows, np.arange(100))
    cfg = with_cache(cfg, both_flips=True, posterior="mean", splits=["test"])
    cache_latents.cache(cfg, folder / "images.parquet", folder / "vae", folder / "both")
    cache = LatentCache(folder / "both" / "test")
    first = cache.index.iloc[:2]
    assert first["image_id"].nunique() == 1 and first["flip"].tolist() == [False, True]
    unflipped, flipped = cache.latents([0, 1])
    assert not np.allclose(unflipped, flipped)


def test_join_with_codes_by_image_id(setup):
    cfg, folder, _ = setup
    cache_latents.cache(cfg, folder / "images.parquet", folder / "vae", folder / "latents")
    cache = LatentCache(folder / "latents" / "train")
    ids = cache.index["image_id"].to_numpy()
    order = np.random.default_rng(0).permutation(len(ids))          # codes in another order
    codes = np.random.default_rng(1).integers(0, 16, (len(ids), 8)).astype(np.uint8)
    meta = {"L": 8, "V": 16, "producer": "test", "dataset": "shapes", "split": "train"}
    codes_io.write_shard(folder / "codes" / "part-00000.parquet", ids[order].tolist(),
                         np.zeros(len(ids)), codes[order], meta)
    pairs = LatentCodePairs(cache, codes_io.read_codes(folder / "codes"))
    latents, batch_codes = pairs.batch([5, 2])
    assert np.array_equal(batch_codes.numpy(), codes[[5, 2]])
    assert np.array_equal(latents.numpy(), cache.latents([5, 2]))
    codes_io.write_shard(folder / "few" / "part-00000.parquet", ids[:10].tolist(),
                         np.zeros(10), codes[:10], meta)
    with pytest.raises(ValueError, match="cached images have no code"):
        LatentCodePairs(cache, codes_io.read_codes(folder / "few"))


def test_a_read_opens_only_its_shard_and_errors_name_the_folder(setup):
    cfg, folder, _ = setup
    cache_latents.cache(cfg, folder / "images.parquet", folder / "vae", folder / "latents")
    cache = LatentCache(folder / "latents" / "train")
    assert cache.index["shard"].nunique() > 2        # shard_size 50 in the micro params
    row = int(np.flatnonzero(cache.index["shard"] == 2)[4])
    cache.latents([row])
    assert cache.opened_shards == [2]
    with pytest.raises(ValueError, match="scaling_factor"):
        cache.check({"scaling_factor": 0.18215})
    with pytest.raises(FileNotFoundError, match="no latent cache"):
        LatentCache(folder / "latents" / "nowhere")
    np.save(folder / "latents" / "train" / shard_name(1), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="shard-00001.npy"):
        LatentCache(folder / "latents" / "train").latents(
            [int(np.flatnonzero(cache.index["shard"] == 1)[0])])


def test_a_rerun_keeps_finished_shards_and_redoes_a_lost_one(setup):
    cfg, folder, _ = setup
    cache_latents.cache(cfg, folder / "images.parquet", folder / "vae", folder / "latents")
    train = folder / "latents" / "train"
    before = LatentCache(train).latents(np.arange(len(LatentCache(train))))
    kept = (train / shard_name(0)).stat().st_mtime_ns
    (train / shard_name(1)).unlink()                  # a crash lost shard 1
    cache_latents.cache(cfg, folder / "images.parquet", folder / "vae", folder / "latents")
    assert (train / shard_name(0)).stat().st_mtime_ns == kept
    after = LatentCache(train)
    assert np.array_equal(after.latents(np.arange(len(after))), before)   # same noise too
    assert not list(train.glob("*.tmp"))
