import numpy as np
import pandas as pd
import pytest

from dlc.data import codes as codes_io


def metadata(length=6, vocab=16, **extra):
    return {"L": length, "V": vocab, "producer": {"stage": "test"}, "dataset": "shapes",
            "split": "train", **extra}


def write(path, n=5, length=6, vocab=16, start=0, **kwargs):
    rng = np.random.default_rng(start)
    codes = rng.integers(0, vocab, (n, length)).astype(codes_io.numpy_dtype(vocab))
    ids = [f"img-{start + i}" for i in range(n)]
    columns = pd.DataFrame({"shape": ["circle"] * n, "caption": ["a"] * n})
    codes_io.write_shard(path, ids, np.arange(n), codes, metadata(length, vocab),
                         columns=columns, **kwargs)
    return ids, codes


def test_round_trip_and_pandas_view(tmp_path):
    ids, codes = write(tmp_path / "part-00000.parquet", features=np.ones((5, 3)))
    frame = pd.read_parquet(tmp_path / "part-00000.parquet")
    assert list(frame.columns[:4]) == ["image_id", "label", "codes", "source"]
    assert {"shape", "caption", "features"} <= set(frame.columns)
    assert list(frame["codes"].iloc[0]) == codes[0].tolist()
    table = codes_io.read_codes(tmp_path, length=6, vocab=16, features=True)
    assert table.codes.dtype == np.uint8 and np.array_equal(table.codes, codes)
    assert table.metadata["L"] == 6 and table.metadata["V"] == 16
    assert table.features.dtype == np.float16 and table.features.shape == (5, 3)
    assert np.array_equal(table.lookup("img-3"), codes[3])
    assert table.frame["source"].eq("extracted").all()
    with pytest.raises(KeyError, match="img-99"):
        table.lookup("img-99")


def test_shards_concatenate_in_order(tmp_path):
    ids0, codes0 = write(tmp_path / "part-00000.parquet", n=4, vocab=1024)
    ids1, codes1 = write(tmp_path / "part-00001.parquet", n=3, vocab=1024, start=10)
    table = codes_io.read_codes(tmp_path, vocab=1024)
    assert table.codes.dtype == np.uint16
    assert list(table.image_ids) == ids0 + ids1
    assert np.array_equal(table.codes, np.concatenate([codes0, codes1]))


def test_schema_errors_name_the_file(tmp_path):
    path = tmp_path / "part-00000.parquet"
    write(path)
    with pytest.raises(ValueError, match="part-00000.parquet: codes have L=6, the params say L=8"):
        codes_io.read_codes(tmp_path, length=8)
    with pytest.raises(ValueError, match="V=16, the params say V=256"):
        codes_io.read_codes(tmp_path, vocab=256)
    with pytest.raises(ValueError, match="no features column"):
        codes_io.read_codes(tmp_path, features=True)
    with pytest.raises(ValueError, match="do not match"):
        codes_io.write_shard(tmp_path / "x.parquet", ["a"], np.zeros(1),
                             np.zeros((1, 6), np.uint16), metadata())
    with pytest.raises(ValueError, match="lacks"):
        codes_io.write_shard(tmp_path / "x.parquet", ["a"], np.zeros(1),
                             np.zeros((1, 6), np.uint8), {"L": 6, "V": 16})
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "part-00000.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="bad/part-00000.parquet: not a readable Parquet"):
        codes_io.read_codes(tmp_path / "bad")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no part"):
        codes_io.read_codes(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nothing: codes not found"):
        codes_io.read_codes(tmp_path / "nothing")


def test_a_codes_file_with_the_wrong_dtype_is_refused(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    values = pa.array(np.zeros(12, np.int64))
    table = pa.table({"image_id": ["a", "b"], "label": pa.array([0, 1], pa.int32()),
                      "codes": pa.FixedSizeListArray.from_arrays(values, 6)})
    table = table.replace_schema_metadata({b"dlc": json.dumps(metadata()).encode()})
    pq.write_table(table, tmp_path / "part-00000.parquet")
    with pytest.raises(ValueError, match="expected uint8 for V=16"):
        codes_io.read_codes(tmp_path)
