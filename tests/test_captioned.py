"""Captioned datasets (webdataset tars, Parquet) and `dlc caption-codes`: pairs read with the
incomplete ones counted, codes equal to the encoder's, captions kept, resume and array tasks."""

from __future__ import annotations

import dataclasses
import io
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from dlc.data import captioned
from dlc.data.codes import read_codes
from dlc.data.images import adm_center_crop
from dlc.data.multicrop import NormalizedTensor
from dlc.models.sem import build_encoder, load_encoder
from dlc.stages import caption_codes
from dlc.train.checkpoint import save_weights

from .imagenet_assets import CAPTIONS, _captioned_shards


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_webdataset_shards_give_their_complete_pairs(tmp_path):
    _captioned_shards(tmp_path / "shards", shards=2, per_shard=4)
    assert [p.name for p in captioned.shards(tmp_path / "shards")] == ["00000.tar", "00001.tar"]
    pairs, incomplete = captioned.read_shard(tmp_path / "shards" / "00001.tar")
    assert incomplete == 1                                   # the sample with no .txt
    assert pairs["key"].tolist() == ["000010000", "000010001", "000010002"]
    assert pairs["caption"].tolist() == list(CAPTIONS)
    assert Image.open(io.BytesIO(pairs["image"][0])).size == (40, 40)


def test_parquet_shards_with_raw_or_struct_images(tmp_path):
    raw = pa.table({"key": ["a", "b", "c"], "jpg": [jpeg(0), jpeg(1), None],
                    "txt": ["one", None, "three"]})
    pq.write_table(raw, tmp_path / "raw.parquet")
    pairs, incomplete = captioned.read_shard(tmp_path / "raw.parquet")
    assert pairs["key"].tolist() == ["a"] and pairs["caption"].tolist() == ["one"]
    assert incomplete == 2
    struct = pa.table({"image": [{"bytes": jpeg(2), "path": None}], "caption": [" two "]})
    pq.write_table(struct, tmp_path / "hf.parquet")
    pairs, incomplete = captioned.read_shard(tmp_path / "hf.parquet")
    assert pairs["key"].tolist() == ["000000000"] and pairs["caption"].tolist() == ["two"]
    assert pairs["image"][0] == jpeg(2) and incomplete == 0
    pq.write_table(pa.table({"url": ["x"], "txt": ["y"]}), tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="bad.parquet: needs an image column"):
        captioned.read_shard(tmp_path / "bad.parquet")
    with pytest.raises(FileNotFoundError, match="nowhere: no captioned dataset"):
        captioned.shards(tmp_path / "nowhere")


@pytest.fixture
def setup(micro_config, tmp_path):
    _captioned_shards(tmp_path / "shards", shards=3, per_shard=4)
    preset = micro_config.active
    text = dataclasses.replace(preset.text, captions=str(tmp_path / "shards"),
                               train=dataclasses.replace(preset.text.train, split="captions"))
    cfg = micro_config.with_active(dataclasses.replace(preset, text=text))
    torch.manual_seed(0)
    save_weights(tmp_path / "encoder.safetensors", build_encoder(preset.sem))
    return cfg, tmp_path


def test_caption_codes_are_the_encoders_argmax_with_captions_kept(setup):
    cfg, tmp_path = setup
    sem = cfg.active.sem
    manifest = caption_codes.run(cfg, encoder=tmp_path / "encoder.safetensors",
                                 out=tmp_path / "codes" / "captions")
    assert manifest["rows"] == 9 and manifest["split"] == "captions"
    table = read_codes(tmp_path / "codes" / "captions", sem.length, sem.vocab)
    assert table.frame["caption"].tolist() == list(CAPTIONS) * 3
    assert (table.frame["label"] == -1).all()
    assert table.image_ids[:2].tolist() == ["00000/000000000", "00000/000000001"]
    encoder = load_encoder(sem, tmp_path / "encoder.safetensors")
    pairs, _ = captioned.read_shard(tmp_path / "shards" / "00000.tar")
    to_tensor, size = NormalizedTensor(), sem.backbone.img_size
    batch = torch.stack([to_tensor(np.asarray(adm_center_crop(
        Image.open(io.BytesIO(b)).convert("RGB"), size))) for b in pairs["image"]])
    with torch.no_grad():
        expected = encoder.codes(batch).numpy()
    assert np.array_equal(table.codes[:3], expected)


def test_caption_codes_resume_and_split_over_tasks(setup):
    cfg, tmp_path = setup
    out, encoder = tmp_path / "codes" / "captions", tmp_path / "encoder.safetensors"
    assert caption_codes.run(cfg, encoder=encoder, out=out, task=0, tasks=2) is None
    assert sorted(p.name for p in out.glob("part-*")) == ["part-00000.parquet",
                                                           "part-00002.parquet"]
    first = out / "part-00000.parquet"
    os.utime(first, (1, 1))
    manifest = caption_codes.run(cfg, encoder=encoder, out=out, task=1, tasks=2)
    assert manifest["shards"] == ["part-00000.parquet", "part-00001.parquet",
                                  "part-00002.parquet"]
    caption_codes.run(cfg, encoder=encoder, out=out)        # a rerun keeps finished shards
    assert first.stat().st_mtime == 1


def test_an_unreadable_image_is_skipped_and_counted(setup):
    cfg, tmp_path = setup
    shard = tmp_path / "shards" / "00001.tar"
    members = {}
    with tarfile.open(shard) as archive:
        for member in archive:
            members[member.name] = archive.extractfile(member).read()
    members["000010001.jpg"] = b"not a jpeg"
    with tarfile.open(shard, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    manifest = caption_codes.run(cfg, encoder=tmp_path / "encoder.safetensors",
                                 out=tmp_path / "codes" / "captions")
    assert manifest["rows"] == 8 and manifest["skipped"] == 1
    assert manifest["skipped_images"][0]["image_id"] == "00001/000010001"
