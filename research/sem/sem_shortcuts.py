"""Which attributes keep self-distillation from learning shape? (the probe's shape
target). The shapes table is re-rendered with some attributes held fixed (the same shapes,
sizes and positions, drawn white, or on plain black), so that only the others can tell two
images apart; then the tiny preset's train-sem, extract-codes and probe run on each variant
(`sem_probe_sweep.sweep_one`, same settings and steps as the preset). The probe predicts the
attributes that vary. One JSON row per variant. Every variant, `full` included, is drawn by
`rerender` from the table's columns (positions stored as float32: 12 of the first 3,000 images
of `dlc data` differ from theirs, by one level in some pixel), so all come from one pipeline.

    .venv/bin/python research/sem/sem_shortcuts.py                     # every variant
    .venv/bin/python research/sem/sem_shortcuts.py --variants plain full --set sem.train.threads=1

Needs the shapes table of `dlc data` (results/tiny/data/images.parquet by default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sem_probe_sweep import add_common_arguments, append_row, sweep_one

from dlc import io
from dlc.data import shapes

# variant -> attributes held fixed (everything not listed varies as in `dlc data`)
VARIANTS = {
    "full": {},
    "colour_only": {"background": "black", "texture": "plain"},
    "background_only": {"colour": "white"},
    "plain": {"colour": "white", "background": "black", "texture": "plain"},
}
ATTRIBUTES = ("shape", "colour", "size", "background", "texture")


def rerender(frame: pd.DataFrame, fixed: dict[str, str], resolution: int) -> pd.DataFrame:
    """The table with `fixed` attributes set and every image drawn again from its columns."""
    frame = frame.assign(**fixed)
    radius = np.array([shapes.SIZES[s] for s in frame["size"]]) * resolution
    centre = frame[["x", "y"]].to_numpy(np.float64) * resolution
    images = shapes.render_pngs(frame["shape"].to_numpy(), frame["colour"].to_numpy(), radius,
                                centre, frame["background"].to_numpy(),
                                frame["texture"].to_numpy(), resolution)
    return frame.assign(image=images)


def write_variant(images: Path, fixed: dict[str, str], out: Path) -> Path:
    frame, metadata = shapes.read_table(images)
    resolution = metadata["params"]["shapes"]["resolution"]
    io.write_parquet(rerender(frame, fixed, resolution), out, {**metadata, "fixed": fixed})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the preset, as in sem_probe_sweep.py")
    add_common_arguments(parser, "sem_shortcuts")
    args = parser.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    work = Path(args.work)
    for name in args.variants:
        fixed = VARIANTS[name]
        table = write_variant(Path(args.images), fixed, work / name / "images.parquet")
        varying = [a for a in ATTRIBUTES if a not in fixed]
        overrides = [f"probe.targets=[{','.join(varying)}]", *args.set]
        row = {"variant": name, "fixed": fixed,
               **sweep_one(name, overrides, params, args.preset, table, work)}
        append_row(Path(args.out), row, overrides)


if __name__ == "__main__":
    main()
