"""Real image datasets: an ImageNet-style class-folder tree (root/<class>/<image>) read with the
ADM centre crop.

Unreadable images are skipped and reported (path and reason), never fatal mid-run and never
dropped without a count: `index_folder` checks every file once and lists the bad ones; the
dataset returns None for a file that fails later and `collate_skipping` counts those.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
READ_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)


def adm_center_crop(image: Image.Image, size: int) -> Image.Image:
    """ADM's crop: halve with a box filter while the short side is >= 2 * size, resize the
    short side to `size` with bicubic, then take the centre size x size square."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    left = (image.size[0] - size) // 2
    top = (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: str | Path, size: int) -> np.ndarray:
    """(size, size, 3) uint8 RGB; raises ValueError naming the file if it cannot be read."""
    try:
        with Image.open(path) as image:
            return np.asarray(adm_center_crop(image.convert("RGB"), size))
    except READ_ERRORS as error:
        raise ValueError(f"{path}: unreadable image ({error})") from None


@dataclass
class SkipReport:
    """Images that could not be read: kept so a run can say how many and which."""

    skipped: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        log.warning("skipping %s: %s", path, reason)

    def to_json(self) -> dict:
        return {"skipped": len(self.skipped),
                "files": [{"path": p, "reason": r} for p, r in self.skipped]}


def _check_readable(path: Path) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()
        return None
    except READ_ERRORS as error:
        return str(error) or type(error).__name__


def folder_classes(root: str | Path) -> list[str]:
    """The sorted class sub-folder names of a tree (ImageNet's synsets give the usual label
    order); the training tree's are the class list of every split."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise ValueError(f"{root}: no class sub-folders (expected root/<class>/<image>)")
    return classes


def index_folder(root: str | Path, classes: list[str] | None = None,
                 verify: bool = True) -> tuple[pd.DataFrame, SkipReport]:
    """One row per readable image: image_id ('<class>/<file stem>'), path, label, class_name.
    `classes` numbers the labels (default: this tree's own sub-folders) and the tree must hold
    exactly those: a sub-folder that is not one of them, or one of them missing, is an error
    naming the folder, so one split can never shift the labels of another."""
    root = Path(root)
    found = folder_classes(root)
    classes = found if classes is None else classes
    label = {name: number for number, name in enumerate(classes)}
    unknown = [name for name in found if name not in label]
    if unknown:
        raise ValueError(f"{root / unknown[0]}: class {unknown[0]!r} is not among the "
                         f"{len(classes)} classes of the training tree"
                         + (f" (nor are {unknown[1:]})" if len(unknown) > 1 else ""))
    missing = [name for name in classes if name not in set(found)]
    if missing:
        raise ValueError(f"{root / missing[0]}: no such folder, but {missing[0]!r} is a class of "
                         "the training tree (every split holds the same classes)"
                         + (f"; also missing: {missing[1:]}" if len(missing) > 1 else ""))
    report = SkipReport()
    rows = []
    for name in found:
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            reason = _check_readable(path) if verify else None
            if reason is not None:
                report.add(str(path), reason)
                continue
            rows.append((f"{name}/{path.stem}", str(path), label[name], name))
    frame = pd.DataFrame(rows, columns=["image_id", "path", "label", "class_name"])
    frame["label"] = frame["label"].astype(np.int32)
    if frame.empty:
        raise ValueError(f"{root}: no readable images ({len(report.skipped)} skipped)")
    return frame, report


def check_labels(where: str | Path, frame: pd.DataFrame, classes: list[str] | None) -> None:
    """Every label names one of `classes` (a table's metadata), and, where the table has a
    class_name column, the class it names: a table whose labels drifted fails, naming itself."""
    if classes is None:
        return
    labels = frame["label"].to_numpy()
    outside = (labels < 0) | (labels >= len(classes))
    if outside.any():
        raise ValueError(f"{where}: label {labels[outside][0]} is not one of the "
                         f"{len(classes)} classes in its metadata")
    if "class_name" in frame:
        wrong = frame["class_name"].to_numpy() != np.asarray(classes)[labels]
        if wrong.any():
            row = frame[wrong].iloc[0]
            raise ValueError(f"{where}: {row['image_id']} has label {row['label']}, which is "
                             f"class {classes[row['label']]!r}, not its {row['class_name']!r}")


class ImageFolderDataset:
    """Map-style dataset over an index: item -> (uint8 HWC image, label, image_id) or None."""

    def __init__(self, index: pd.DataFrame, size: int):
        self.index, self.size = index.reset_index(drop=True), size

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        row = self.index.iloc[i]
        try:
            return load_image(row["path"], self.size), int(row["label"]), row["image_id"]
        except ValueError as error:
            return None, str(error), row["image_id"]


def collate_skipping(batch: list):
    """Stack the readable items of a batch; return the others as (image_id, reason) so the
    caller counts them (works inside DataLoader workers, where a shared report would not)."""
    good = [item for item in batch if item[0] is not None]
    skipped = [(image_id, reason) for image, reason, image_id in batch if image is None]
    if not good:
        return None, None, [], skipped
    images, labels, ids = zip(*good)
    return np.stack(images), np.array(labels, dtype=np.int64), list(ids), skipped


def readable_batches(loader, skipped: list):
    """(images, labels) of each batch of a `collate_skipping` loader that holds readable
    images; every unreadable image is appended to `skipped` as {image_id, reason}."""
    for images, labels, _, bad in loader:
        skipped.extend({"image_id": image_id, "reason": reason} for image_id, reason in bad)
        if images is not None:
            yield images, labels
