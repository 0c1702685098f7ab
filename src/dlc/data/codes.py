"""The codes table: every stage that makes or reads Discrete Latent Codes goes through here.

One folder of shards `part-00000.parquet`, ... (readable with pandas or pyarrow), columns
    image_id  string
    label     int32                        (-1: none)
    codes     fixed_size_list<uint8|uint16|int32>[L]
    source    string                       (extracted, sedd, text, composed)
    ...       attribute / caption columns when the dataset has them
    features  fixed_size_list<float16>[F]  (optional: continuous encoder features)
and JSON metadata under the schema key `dlc`: L, V, producer, dataset, split and the hash of
the model that made them. A folder is complete when its manifest.json exists (written last).
Readers check L, V and the dtype against what the caller expects and name the file if not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dlc.data.images import check_labels
from dlc.io import PARQUET_METADATA_KEY, atomic_path

REQUIRED_METADATA = ("L", "V", "producer", "dataset", "split")
MANIFEST = "manifest.json"


def numpy_dtype(vocab: int) -> np.dtype:
    """The smallest integer type that holds codes in [0, vocab) (same rule as the encoder)."""
    return np.dtype(np.uint8 if vocab <= 256 else np.uint16 if vocab <= 65536 else np.int32)


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _fixed_size_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(matrix).ravel()),
                                             matrix.shape[1])


def write_shard(path: str | Path, image_ids: list[str], labels: np.ndarray, codes: np.ndarray,
                metadata: dict, columns: pd.DataFrame | None = None,
                features: np.ndarray | None = None, source: str = "extracted") -> None:
    """One shard, atomically (a crash never leaves a truncated file under the final name)."""
    missing = [k for k in REQUIRED_METADATA if k not in metadata]
    if missing:
        raise ValueError(f"{path}: codes metadata lacks {missing}")
    length, vocab = metadata["L"], metadata["V"]
    if codes.ndim != 2 or codes.shape[1] != length or codes.dtype != numpy_dtype(vocab):
        raise ValueError(f"{path}: codes {codes.shape} {codes.dtype} do not match L={length}, "
                         f"V={vocab} ({numpy_dtype(vocab)})")
    arrays = {"image_id": pa.array(list(image_ids), pa.string()),
              "label": pa.array(np.asarray(labels, np.int32)),
              "codes": _fixed_size_list(codes),
              "source": pa.array([source] * len(codes), pa.string())}
    if columns is not None:
        for name in columns.columns:
            if name not in arrays:
                arrays[name] = pa.array(columns[name].to_numpy())
    if features is not None:
        arrays["features"] = _fixed_size_list(features.astype(np.float16))
    table = pa.table(arrays).replace_schema_metadata(
        {PARQUET_METADATA_KEY: json.dumps(metadata).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def shard_metadata(path: str | Path) -> dict:
    return json.loads(pq.read_schema(path).metadata.get(PARQUET_METADATA_KEY, b"{}"))


def shard_rows(path: str | Path) -> int:
    return pq.read_metadata(path).num_rows


@dataclass
class Codes:
    """A loaded codes table: `codes` is (N, L), the rest one row per code."""

    codes: np.ndarray
    frame: pd.DataFrame        # image_id, label, source and any attribute columns
    metadata: dict
    features: np.ndarray | None = None
    _rows: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def image_ids(self) -> np.ndarray:
        return self.frame["image_id"].to_numpy()

    def row(self, image_id: str) -> int:
        if self._rows is None:
            self._rows = {key: i for i, key in enumerate(self.frame["image_id"])}
        if image_id not in self._rows:
            raise KeyError(f"no code for image_id {image_id!r}")
        return self._rows[image_id]

    def lookup(self, image_id: str) -> np.ndarray:
        return self.codes[self.row(image_id)]


def _column_matrix(table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name).combine_chunks()
    width = column.type.list_size
    values = column.values.slice(column.offset * width, len(column) * width)
    return values.to_numpy(zero_copy_only=False).reshape(len(column), width)


def _shards(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: codes not found (a file or a folder of part-*.parquet)")
    shards = sorted(path.glob("part-*.parquet"))
    if not shards:
        raise FileNotFoundError(f"{path}: no part-*.parquet shards")
    return shards


def read_codes(path: str | Path, length: int | None = None, vocab: int | None = None,
               features: bool = False) -> Codes:
    """All shards of a codes folder (or one file), memory-mapped, as one (N, L) array.
    `length`/`vocab`: what the caller's params say; a mismatch fails naming the file."""
    matrices, frames, feature_parts, first = [], [], [], None
    for shard in _shards(Path(path)):
        try:
            table = pq.read_table(shard, memory_map=True)
        except (pa.ArrowInvalid, OSError) as error:
            raise ValueError(f"{shard}: not a readable Parquet file ({error})") from None
        metadata = json.loads((table.schema.metadata or {}).get(PARQUET_METADATA_KEY, b"{}"))
        _check(shard, table, metadata, length, vocab)
        if first is None:
            first = metadata
        elif (metadata["L"], metadata["V"]) != (first["L"], first["V"]):
            raise ValueError(f"{shard}: L/V differ from the folder's first shard")
        elif metadata.get("classes") != first.get("classes"):
            raise ValueError(f"{shard}: its class list differs from the folder's first shard")
        matrices.append(_column_matrix(table, "codes"))
        if features:
            if "features" not in table.column_names:
                raise ValueError(f"{shard}: no features column (sem.extract.features: false)")
            feature_parts.append(_column_matrix(table, "features"))
        frames.append(table.drop_columns(
            [c for c in ("codes", "features") if c in table.column_names]).to_pandas())
    codes = matrices[0] if len(matrices) == 1 else np.concatenate(matrices)
    frame = pd.concat(frames, ignore_index=True)
    check_labels(path, frame, first.get("classes"))
    return Codes(codes, frame, first,
                 np.concatenate(feature_parts) if features else None)


def _check(shard: Path, table: pa.Table, metadata: dict, length: int | None,
           vocab: int | None) -> None:
    missing = [c for c in ("image_id", "label", "codes") if c not in table.column_names]
    if missing:
        raise ValueError(f"{shard}: not a codes table: missing columns {missing}")
    absent = [k for k in REQUIRED_METADATA if k not in metadata]
    if absent:
        raise ValueError(f"{shard}: codes metadata lacks {absent}")
    kind = table.schema.field("codes").type
    if not pa.types.is_fixed_size_list(kind):
        raise ValueError(f"{shard}: column codes is {kind}, not a fixed-size list")
    if length is not None and metadata["L"] != length:
        raise ValueError(f"{shard}: codes have L={metadata['L']}, the params say L={length}")
    if vocab is not None and metadata["V"] != vocab:
        raise ValueError(f"{shard}: codes have V={metadata['V']}, the params say V={vocab}")
    if kind.list_size != metadata["L"]:
        raise ValueError(f"{shard}: codes rows have {kind.list_size} tokens, metadata says "
                         f"L={metadata['L']}")
    expected = numpy_dtype(metadata["V"])
    if kind.value_type.to_pandas_dtype() != expected:
        raise ValueError(f"{shard}: codes are {kind.value_type}, expected {expected} for "
                         f"V={metadata['V']}")
