"""Class-folder reader: ADM centre crop and skip-and-report for unreadable files."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dlc.data import images


def test_adm_crop_box_halves_then_bicubic_then_centre():
    source = Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 1000, 3),
                                                               dtype=np.uint8))
    out = images.adm_center_crop(source, 256)
    assert out.size == (256, 256)
    # Re-derived by hand: 600 >= 512 -> one box halving to 500x300; 300 < 512 -> bicubic to
    # 427x256 (500 * 256/300 = 426.7); centre crop from x = (427 - 256) // 2 = 85.
    step = source.resize((500, 300), resample=Image.BOX)
    step = step.resize((427, 256), resample=Image.BICUBIC)
    expected = step.crop((85, 0, 341, 256))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))


def test_adm_crop_keeps_a_constant_image_constant():
    out = images.adm_center_crop(Image.new("RGB", (300, 200), (10, 120, 250)), 64)
    assert np.all(np.asarray(out) == [10, 120, 250])


def make_tree(root):
    for name, colour in (("b_dogs", (0, 255, 0)), ("a_cats", (255, 0, 0))):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), colour).save(root / name / f"{i}.png")
    (root / "a_cats" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "a_cats" / "notes.txt").write_text("ignored")


def test_index_folder_labels_sorted_classes_and_reports_bad_files(tmp_path):
    make_tree(tmp_path)
    index, report = images.index_folder(tmp_path)
    assert list(index["class_name"].unique()) == ["a_cats", "b_dogs"]
    assert list(index["label"].unique()) == [0, 1]
    assert len(index) == 6 and index["image_id"].iloc[0] == "a_cats/0"
    assert report.to_json()["skipped"] == 1
    assert report.to_json()["files"][0]["path"].endswith("broken.jpg")


def test_dataset_skips_and_counts_files_that_fail_later(tmp_path):
    make_tree(tmp_path)
    index, _ = images.index_folder(tmp_path)
    (tmp_path / "b_dogs" / "1.png").write_bytes(b"corrupted after indexing")
    dataset = images.ImageFolderDataset(index, 16)
    batch = [dataset[i] for i in range(len(dataset))]
    pixels, labels, ids, skipped = images.collate_skipping(batch)
    assert pixels.shape == (5, 16, 16, 3) and len(ids) == 5
    assert [image_id for image_id, _ in skipped] == ["b_dogs/1"]
    assert "unreadable image" in skipped[0][1]
    assert tuple(pixels[0, 0, 0]) == (255, 0, 0) and labels[0] == 0


def test_every_split_takes_the_training_trees_labels(tmp_path):
    """Labels are the training tree's class numbers wherever a class sits in another tree's
    sorted order; a class the training tree lacks, or one it has and the split lacks, is an
    error naming the folder."""
    classes = ["a_cats", "b_dogs", "c_owls"]
    for name in ("a_cats", "c_owls"):   # a val tree without b_dogs: c_owls would become 1
        (tmp_path / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "val" / name / "0.png")
    with pytest.raises(ValueError, match=r"val/b_dogs: no such folder.*training tree"):
        images.index_folder(tmp_path / "val", classes)
    (tmp_path / "val" / "b_dogs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "b_dogs" / "0.png")
    index, _ = images.index_folder(tmp_path / "val", classes)
    assert dict(zip(index["class_name"], index["label"])) == {"a_cats": 0, "b_dogs": 1,
                                                               "c_owls": 2}
    (tmp_path / "val" / "d_bats").mkdir()
    with pytest.raises(ValueError, match=r"val/d_bats: class 'd_bats' is not among the 3"):
        images.index_folder(tmp_path / "val", classes)


def test_a_table_whose_labels_drifted_is_refused(tmp_path):
    frame = pd.DataFrame({"image_id": ["a/0", "b/0"], "label": [0, 1],
                          "class_name": ["a", "c"]})
    images.check_labels("t.parquet", frame.iloc[:1], ["a", "b"])
    with pytest.raises(ValueError, match="t.parquet: b/0 has label 1, which is class 'b'"):
        images.check_labels("t.parquet", frame, ["a", "b"])
    with pytest.raises(ValueError, match="label 1 is not one of the 1 classes"):
        images.check_labels("t.parquet", frame, ["a"])


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: image folder not found"):
        images.index_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no class sub-folders"):
        images.index_folder(tmp_path)
