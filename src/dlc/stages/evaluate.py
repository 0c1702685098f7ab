"""Stage `evaluate`: generated images (an ADM-style samples.npz) against the real reference in
every feature space of evaluate.extractors (Frechet distance, KID, precision/recall, Vendi; with
Inception also sFID and IS), into one results JSON. The work is
`dlc.metrics.evaluation.evaluate`, shared with the eta sweep; its docstring has the schema.
"""

from __future__ import annotations

from pathlib import Path

from dlc.config import Config
from dlc.metrics.evaluation import evaluate


def run(cfg: Config, *, samples: str | Path, name: str, out: str | Path,
        images: str | Path | None = None, judge: str | Path | None = None,
        cache: str | Path | None = None) -> dict:
    """`dlc evaluate`: the samples `name` scored into the JSON `out`; `images` is the images
    table (for evaluate.reference_split), `judge` the train-judge folder, `cache` a folder of
    reference features."""
    return evaluate(cfg.active.evaluate, name, samples, out, images, judge, cache)
