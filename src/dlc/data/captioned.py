"""Image-caption pairs in the formats people already have, read shard by shard:

    webdataset   .tar shards (img2dataset's default): members <key>.jpg (or .jpeg, .png, .webp)
                 and <key>.txt, the caption; other members (<key>.json, ...) are ignored
    parquet      .parquet files with the image bytes in a column jpg, png, webp or image (raw
                 bytes, or Hugging Face's {"bytes": ...} struct) and the caption in txt,
                 caption or text; the sample key from a `key` column, else the row number

A dataset is one such file or a folder of them (sorted by name); a sample lacking its image or
its caption is dropped and counted.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "image")
CAPTION_KEYS = ("txt", "caption", "text")
SUFFIXES = (".tar", ".parquet")


def shards(path: str | Path) -> list[Path]:
    """The dataset's shard files: the file itself, or the folder's .tar/.parquet files."""
    path = Path(path)
    if path.is_file() and path.suffix in SUFFIXES:
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no captioned dataset (a .tar or .parquet file, or a "
                                "folder of them)")
    found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES)
    if not found:
        raise ValueError(f"{path}: no .tar or .parquet shards in the folder")
    return found


def read_shard(path: str | Path) -> tuple[pd.DataFrame, int]:
    """(rows key, image (bytes), caption; the number of incomplete samples dropped)."""
    path = Path(path)
    return _read_tar(path) if path.suffix == ".tar" else _read_parquet(path)


def _read_tar(path: Path) -> tuple[pd.DataFrame, int]:
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                if not member.isfile():
                    continue
                folder, _, name = member.name.rpartition("/")
                stem, _, extension = name.partition(".")   # webdataset: key = up to the dot
                key, extension = f"{folder}/{stem}" if folder else stem, extension.lower()
                if extension in IMAGE_KEYS[:-1] or extension == "txt":
                    data = archive.extractfile(member).read()
                    field = "caption" if extension == "txt" else "image"
                    samples.setdefault(key, {})[field] = data
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{path}: not a readable tar shard ({error})") from None
    complete = [(key, s["image"], s["caption"].decode("utf-8", "replace").strip())
                for key, s in samples.items() if "image" in s and "caption" in s]
    frame = pd.DataFrame(complete, columns=["key", "image", "caption"])
    return frame, len(samples) - len(complete)


def _read_parquet(path: Path) -> tuple[pd.DataFrame, int]:
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable Parquet shard ({error})") from None
    names = table.column_names
    image = next((name for name in IMAGE_KEYS if name in names), None)
    caption = next((name for name in CAPTION_KEYS if name in names), None)
    if image is None or caption is None:
        raise ValueError(f"{path}: needs an image column ({', '.join(IMAGE_KEYS)}) and a "
                         f"caption column ({', '.join(CAPTION_KEYS)}); it has {names}")
    images = [value["bytes"] if isinstance(value, dict) else value
              for value in table.column(image).to_pylist()]
    keys = (table.column("key").to_pylist() if "key" in names
            else [f"{i:09d}" for i in range(len(images))])
    frame = pd.DataFrame({"key": [str(k) for k in keys], "image": images,
                          "caption": table.column(caption).to_pylist()})
    complete = frame["image"].notna() & frame["caption"].notna()
    frame = frame[complete].reset_index(drop=True)
    frame["caption"] = frame["caption"].astype(str).str.strip()
    return frame, int((~complete).sum())
