"""Stage `data`: the preset's images as one table, results/<preset>/data/images.parquet.

kind=shapes: the built-in dataset is generated, PNG bytes inside the table.
kind=folder: the train and val class-folder trees are indexed (paths, labels), every file
checked once; unreadable ones are listed in the report, never in the table.
Either way: image_id, label, split, and a preview grid of training images.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from dlc import io as dio
from dlc.config import Config, DataConfig, to_dict
from dlc.data import images, shapes
from dlc.viz import image_grid, save_image

log = logging.getLogger(__name__)


def run(cfg: Config, *, out: str | Path, report: str | Path,
        preview: str | Path | None = None) -> None:
    """`dlc data`: the images table at `out`, its JSON summary at `report`, a PNG of 64
    training images at `preview`."""
    write_table(cfg.active.data, out, report, preview)


def _shapes_table(cfg: DataConfig) -> tuple[pd.DataFrame, dict, np.ndarray, list[str]]:
    s = cfg.shapes
    frame = shapes.generate(s.n_images, s.resolution, s.seed, s.test_fraction, s.holdout)
    report = {"images": len(frame), "splits": frame["split"].value_counts().to_dict()}
    preview = shapes.decode_images(frame[frame["split"] == "train"].head(64))
    return frame, report, preview, list(shapes.CLASSES)


def _folder_table(cfg: DataConfig) -> tuple[pd.DataFrame, dict, np.ndarray, list[str]]:
    parts, report = [], {}
    classes = images.folder_classes(cfg.folder.train_dir)   # one class list, every split
    for split in ("train", "val"):
        index, skipped = images.index_folder(getattr(cfg.folder, f"{split}_dir"), classes)
        parts.append(index.assign(split=split))
        report[split] = {"indexed": len(index), **skipped.to_json()}
    frame = pd.concat(parts, ignore_index=True)
    head = frame[frame["split"] == "train"].head(64)
    preview = np.stack([images.load_image(p, cfg.folder.resolution) for p in head["path"]])
    return frame, report, preview, classes


def write_table(cfg: DataConfig, out: str | Path, report_path: str | Path,
                preview_path: str | Path | None = None) -> None:
    frame, report, preview, classes = (_shapes_table if cfg.kind == "shapes"
                                       else _folder_table)(cfg)
    # label i is classes[i] in every split; readers check it (data.sources, data.codes)
    metadata = {"dataset": cfg.kind, "producer": "dlc data", "params": to_dict(cfg),
                "classes": classes, **dio.run_metadata(to_dict(cfg))}
    dio.write_parquet(frame, out, metadata)
    dio.write_json(report_path, report)
    if preview_path:
        scale = max(1, 128 // preview.shape[1])
        save_image(image_grid(preview, columns=8, scale=scale), preview_path)
    log.info("wrote %d rows to %s (%s)", len(frame), out, report)
