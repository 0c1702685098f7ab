"""One split of the images table (`dlc data`), readable image by image, whatever the dataset:
shapes keep PNG bytes in the table, class folders keep paths.

Every reader raises ValueError naming the image when it cannot be decoded; callers skip and
count such images (`images.collate_skipping`), they never crash mid-run on one bad file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from dlc.data.images import READ_ERRORS, adm_center_crop, load_image
from dlc.io import read_parquet


class ImageTable:
    """Rows of one split (`frame`: image_id, label and any attribute/caption columns)."""

    def __init__(self, path: str | Path, split: str):
        frame, self.metadata = read_parquet(path, ("image_id", "split", "label"),
                                            what="images table (`dlc data`)")
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if frame.empty:
            raise ValueError(f"{path}: no images in split {split!r}")
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
