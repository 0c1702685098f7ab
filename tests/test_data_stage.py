"""`dlc data` for both kinds: shapes (generated) and folder (indexed, bad files reported)."""

import dataclasses

import pandas as pd
import pytest
from PIL import Image

from dlc.config import ImageFolderConfig
from dlc.data.sources import ImageTable
from dlc.io import read_json, read_parquet, write_parquet
from dlc.stages import data


def test_shapes_kind(micro_config, tmp_path):
    data.write_table(micro_config.active.data, tmp_path / "images.parquet",
                     tmp_path / "report.json", tmp_path / "preview.png")
    table = pd.read_parquet(tmp_path / "images.parquet")
    assert len(table) == 300
    report = read_json(tmp_path / "report.json")
    assert sum(report["splits"].values()) == 300
    assert Image.open(tmp_path / "preview.png").size[0] > 128


def test_folder_kind_indexes_train_and_val_and_reports_bad_files(micro_config, tmp_path):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (50, 40), (i * 100, 50, 0)).save(folder / f"{i}.jpg")
    (tmp_path / "train" / "dog" / "bad.jpg").write_bytes(b"nope")
    folder_cfg = ImageFolderConfig(str(tmp_path / "train"), str(tmp_path / "val"), 32)
    cfg = dataclasses.replace(micro_config.active.data, kind="folder", folder=folder_cfg)
    out = tmp_path / "out"
    data.write_table(cfg, out / "images.parquet", out / "report.json", out / "preview.png")
    table = pd.read_parquet(out / "images.parquet")
    assert table.groupby("split").size().to_dict() == {"train": 4, "val": 4}
    assert set(table.columns) >= {"image_id", "path", "label", "split"}
    report = read_json(out / "report.json")
    assert report["train"]["skipped"] == 1 and report["val"]["skipped"] == 0
    # 4 training images, 8 columns of 32 px + 1 px padding, enlarged 4x.
    assert Image.open(out / "preview.png").size == ((8 * 33 + 1) * 4, (33 + 1) * 4)
    assert ImageTable(out / "images.parquet", "val").metadata["classes"] == ["cat", "dog"]

    # a table whose labels no longer match its class list is refused by its readers
    frame, metadata = read_parquet(out / "images.parquet")
    frame.loc[frame["split"] == "val", "label"] = 1 - frame.loc[frame["split"] == "val", "label"]
    write_parquet(frame, out / "drifted.parquet", metadata)
    with pytest.raises(ValueError, match=r"drifted.parquet: cat/0 has label 1, which is class"):
        ImageTable(out / "drifted.parquet", "val")
