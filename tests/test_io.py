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


def test_a_write_on_a_full_disk_fails_naming_the_output(tmp_path, monkeypatch):
    """The same mechanism tests/test_disk_full.py meets on a real full tmpfs, with the writer
    raising ENOSPC itself (runs wherever mounting is not allowed)."""
    import errno
    import shutil
    from collections import namedtuple

    target = tmp_path / "out.bin"
    with pytest.raises(OSError, match=r"out.bin: cannot write it, no space left") as error:
        with dio.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert error.value.errno == errno.ENOSPC
    assert not target.exists() and not list(tmp_path.iterdir())

    # a library's own error type (torch.save's RuntimeError) counts when the folder is full
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage(1 << 20, 1 << 20, 0))
    with pytest.raises(OSError, match=r"out.bin: cannot write it, no space left"):
        with dio.atomic_path(target):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0")
    with pytest.raises(ValueError, match="not a write failure"):   # anything else passes
        with dio.atomic_path(target):
            raise ValueError("not a write failure")
    assert not list(tmp_path.iterdir())


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
