"""Stage `sample-dit`: a codes folder decoded into images by a DiT run and the VAE.

Batch b of the first dit.sample.samples codes is sampled with a generator seeded by (seed, b);
task k of n takes the batches b with b mod n = k; a rerun keeps every finished batch; the
outputs (samples.npz, images/, samples.json with the judge's agreement, grid.png) are assembled
once every batch exists. The work is `dlc.generation.images.generate`, shared with the stages
that decode codes they made.
"""

from __future__ import annotations

from pathlib import Path

from dlc.config import Config
from dlc.generation.images import generate


def run(cfg: Config, *, model: str | Path, codes: str | Path, vae: str | Path,
        out: str | Path, images: str | Path | None = None, judge: str | Path | None = None,
        task: int = 0, tasks: int = 1) -> dict | None:
    """`dlc sample-dit`: decode `codes` (a codes folder, or the extract-codes folder: then its
    dit.sample.split) with the train-dit run `model` into `out`; `images` adds the sources to
    the grid, `judge` scores the samples' attributes against their sources'."""
    preset = cfg.active
    codes = Path(codes)
    if not any(codes.glob("part-*.parquet")):
        codes = codes / preset.dit.sample.split
    return generate(preset.dit, preset.vae, model, codes, vae, preset.sem.length,
                    preset.sem.vocab, out, images, task, tasks, judge)
