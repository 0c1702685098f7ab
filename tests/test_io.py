import json
import os

import pandas as pd
import pytest

from dlc import io as dio


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with pytest.raises(RuntimeError):
        with dio.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists()
    assert list((tmp_path / "sub").iterdir()) == []


def test_atomic_write_replaces_and_keeps_usual_permissions(tmp_path):
    target = tmp_path / "out.json"
    dio.write_json(target, {"a": 1})
    dio.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.json: missing"):
        dio.read_json(tmp_path / "gone.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        dio.read_json(tmp_path / "bad.json")


def test_parquet_keeps_metadata_and_checks_columns(tmp_path):
    path = tmp_path / "t.parquet"
    dio.write_parquet(pd.DataFrame({"image_id": ["a"], "label": [1]}), path, {"L": 512})
    frame, metadata = dio.read_parquet(path, ("image_id", "label"))
    assert metadata == {"L": 512} and frame["label"].tolist() == [1]
    with pytest.raises(ValueError, match="t.parquet: not a codes table: missing columns"):
        dio.read_parquet(path, ("codes",), what="codes table")


def test_hashes_are_stable():
    assert dio.sha256_json({"b": 1, "a": 2}) == dio.sha256_json({"a": 2, "b": 1})
