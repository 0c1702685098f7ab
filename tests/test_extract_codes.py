import os

import numpy as np
import pandas as pd
import pytest
import torch

from dlc import io as dio
from dlc.data.codes import read_codes
from dlc.data.multicrop import normalize
from dlc.data.sources import ImageTable
from dlc.models.sem import build_encoder, load_encoder
from dlc.stages import data, extract_codes, probe
from dlc.train.checkpoint import save_weights


@pytest.fixture
def setup(micro_config, tmp_path):
    """A micro images table with one corrupt PNG in train, and a random-weight encoder."""
    preset = micro_config.active
    data.write_table(preset.data, tmp_path / "images.parquet", tmp_path / "report.json")
    frame, metadata = dio.read_parquet(tmp_path / "images.parquet")
    bad = frame.index[frame["split"] == "train"][7]
    frame.loc[bad, "image"] = b"\x89PNG truncated"
    dio.write_parquet(frame, tmp_path / "images.parquet", metadata)
    save_weights(tmp_path / "encoder.safetensors", build_encoder(preset.sem))
    return preset, tmp_path, frame, frame.loc[bad, "image_id"]


def test_every_split_is_encoded_in_table_order(setup):
    preset, folder, frame, bad_id = setup
    manifests = extract_codes.extract(preset.sem, folder / "images.parquet",
                                      folder / "encoder.safetensors", folder / "codes")
    assert set(manifests) == set(preset.sem.extract.splits)
    for split, manifest in manifests.items():
        expected = frame[frame["split"] == split]
        codes = read_codes(folder / "codes" / split, preset.sem.length, preset.sem.vocab,
                           features=True)
        skipped = [bad_id] if split == "train" else []
        assert manifest["skipped"] == len(skipped)
        assert [s["image_id"] for s in manifest["skipped_images"]] == skipped
        assert list(codes.image_ids) == [i for i in expected["image_id"] if i not in skipped]
        assert manifest["rows"] == len(codes) and codes.codes.dtype == np.uint8
        assert codes.codes.max() < preset.sem.vocab
        assert codes.features.shape == (len(codes), 2 * preset.sem.backbone.embed_dim)
        assert codes.metadata["split"] == split and codes.metadata["dataset"] == "shapes"
        assert {"shape", "colour", "caption"} <= set(codes.frame.columns)
    train = pd.read_parquet(folder / "codes" / "train" / "part-00000.parquet")
    assert list(train.columns[:4]) == ["image_id", "label", "codes", "source"]
    assert len(manifests["train"]["shards"]) > 1  # shard_size 100 in the micro params


def test_codes_match_the_encoder(setup):
    preset, folder, frame, _ = setup
    extract_codes.extract(preset.sem, folder / "images.parquet", folder / "encoder.safetensors",
                          folder / "codes")
    encoder = load_encoder(preset.sem, folder / "encoder.safetensors")
    table = ImageTable(folder / "images.parquet", "test")
    images = torch.stack([normalize()(torch.from_numpy(table.centred(i, 32).copy())
                                      .permute(2, 0, 1)) for i in range(5)])
    codes = read_codes(folder / "codes" / "test")
    assert np.array_equal(encoder.codes(images).numpy(), codes.codes[:5])


def test_rerun_keeps_finished_shards_and_redoes_foreign_ones(setup):
    preset, folder, _, _ = setup
    args = (preset.sem, folder / "images.parquet", folder / "encoder.safetensors",
            folder / "codes")
    extract_codes.extract(*args)
    shard = folder / "codes" / "train" / "part-00001.parquet"
    before = read_codes(folder / "codes" / "train").codes
    os.utime(shard, (1, 1))
    (folder / "codes" / "train" / "manifest.json").unlink()  # as after a crash
    extract_codes.extract(*args)
    assert shard.stat().st_mtime == 1  # kept, not recomputed
    assert np.array_equal(read_codes(folder / "codes" / "train").codes, before)
    # another encoder: every shard is rewritten
    torch.manual_seed(1)
    save_weights(folder / "encoder.safetensors", build_encoder(preset.sem))
    extract_codes.extract(*args)
    assert shard.stat().st_mtime != 1


def test_array_tasks_write_their_shards_and_the_last_writes_the_manifest(setup):
    """Two tasks, the second first: it writes the odd shards and no manifest; then the first
    writes the even ones and the manifest, and the codes equal a single task's."""
    preset, folder, _, _ = setup
    args = (preset.sem, folder / "images.parquet", folder / "encoder.safetensors")
    single = extract_codes.extract(*args, folder / "single")
    assert extract_codes.extract(*args, folder / "split", 1, 2)["train"] is None
    train = folder / "split" / "train"
    shards = single["train"]["shards"]
    assert sorted(p.name for p in train.glob("part-*")) == shards[1::2]
    assert not (train / "manifest.json").exists()
    manifests = extract_codes.extract(*args, folder / "split", 0, 2)
    for split in preset.sem.extract.splits:
        ours, theirs = (dict(m[split]) for m in (manifests, single))
        # the reasons quote an object address; the skipped images themselves must agree
        assert ([s["image_id"] for s in ours.pop("skipped_images")]
                == [s["image_id"] for s in theirs.pop("skipped_images")])
        assert ours == theirs
        assert np.array_equal(read_codes(folder / "split" / split).codes,
                              read_codes(folder / "single" / split).codes)
    with pytest.raises(ValueError, match="task 2 is not in"):
        extract_codes.extract(*args, folder / "x", 2, 2)


def test_probe_reports_every_target(setup):
    preset, folder, _, _ = setup
    extract_codes.extract(preset.sem, folder / "images.parquet", folder / "encoder.safetensors",
                          folder / "codes")
    report = probe.fit_probes(preset.probe, preset.sem, folder / "codes", folder / "probe.json")
    assert set(report["top1"]) == set(preset.probe.targets)
    for row in report["top1"].values():
        assert 0 <= row["codes"] <= 1 and 0 <= row["features"] <= 1
    assert dio.read_json(folder / "probe.json")["n_test"] == report["n_test"]
