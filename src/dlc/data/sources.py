"""One split of the images table (`dlc data`), readable image by image, whatever the dataset:
shapes keep PNG bytes in the table, class folders keep paths.

Every reader raises ValueError naming the image when it cannot be decoded; callers skip and
count such images (`images.collate_skipping`), they never crash mid-run on one bad file.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from dlc.data.images import READ_ERRORS, adm_center_crop, check_labels, load_image
from dlc.io import read_parquet

log = logging.getLogger(__name__)


class ImageTable:
    """Rows of one split (`frame`: image_id, label and any attribute/caption columns)."""

    def __init__(self, path: str | Path, split: str, frame: pd.DataFrame | None = None,
                 metadata: dict | None = None):
        """Split `split` of the images table at `path`; or, given `frame` (image_id, label,
        split, image or path columns) and its metadata, that table in memory, `path` naming
        where it came from (a captioned shard, ...)."""
        if frame is None:
            frame, metadata = read_parquet(path, ("image_id", "split", "label"),
                                           what="images table (`dlc data`)")
        self.metadata = metadata or {}
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"{path}: no images in split {split!r}")
        check_labels(path, frame, self.metadata.get("classes"))
        self.path, self.split = Path(path), split
        if "image" in frame:
            self._pngs, self._paths = frame.pop("image").tolist(), None
        elif "path" in frame:
            self._pngs, self._paths = None, frame["path"].tolist()
        else:
            raise ValueError(f"{path}: neither an `image` (PNG) nor a `path` column")
        self.frame = frame

    def __len__(self) -> int:
        return len(self.frame)

    def image_id(self, i: int) -> str:
        return self.frame["image_id"].iat[i]

    def raw(self, i: int) -> Image.Image:
        """The stored image, RGB, uncropped (what random crops are taken from)."""
        try:
            if self._pngs is not None:
                with Image.open(io.BytesIO(self._pngs[i])) as image:
                    return image.convert("RGB")
            with Image.open(self._paths[i]) as image:
                return image.convert("RGB")
        except READ_ERRORS as error:
            raise ValueError(f"{self.image_id(i)}: unreadable image ({error})") from None

    def centred(self, i: int, size: int) -> np.ndarray:
        """(size, size, 3) uint8 with the ADM centre crop (what the encoder sees at extraction)."""
        if self._paths is not None:
            return load_image(self._paths[i], size)
        image = self.raw(i)
        return np.asarray(image if image.size == (size, size) else adm_center_crop(image, size))

    def centred_stack(self, size: int,
                      limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(all (or the first `limit`) images centre-cropped as (N, size, size, 3) uint8, their
        rows); unreadable images are skipped and logged by name. For small datasets."""
        images, rows = [], []
        for row in range(len(self) if limit is None else min(limit, len(self))):
            try:
                images.append(self.centred(row, size))
                rows.append(row)
            except ValueError as error:
                log.warning("skipped: %s", error)
        if not images:
            raise ValueError(f"{self.path}: no readable image in split {self.split!r}")
        return np.stack(images), np.array(rows)


class CentredImages(torch.utils.data.Dataset):
    """Item i -> (transform(image), i, image_id): the image of table row rows[i], ADM centre
    crop of side `size` ((size, size, 3) uint8 when no transform), mirrored when flips[i];
    (None, reason, image_id) when it cannot be read (`images.collate_skipping` counts those)."""

    def __init__(self, table: ImageTable, rows, size: int, transform=None, flips=None):
        self.table, self.rows, self.size = table, rows, size
        self.transform, self.flips = transform, flips

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = self.rows[i]
        try:
            image = self.table.centred(row, self.size)
        except ValueError as error:
            return None, str(error), self.table.image_id(row)
        if self.flips is not None and self.flips[i]:
            image = np.ascontiguousarray(image[:, ::-1])
        return (image if self.transform is None else self.transform(image)), i, \
            self.table.image_id(row)
