"""Stage `generate`: images from nothing. SEDD samples codes (sedd.sample.*) into <out>/codes,
the DiT decodes them (dit.sample.*) and the VAE turns latents into images; the outputs are
those of `sample-dit`. As array jobs, every task's codes must exist before any task decodes:
run every task's `sample-codes` first, then every task's `sample-dit`.
"""

from __future__ import annotations

from pathlib import Path

from dlc.config import Config
from dlc.generation import codes as code_sampling
from dlc.generation import images as image_sampling


def run(cfg: Config, *, sedd: str | Path, dit: str | Path, vae: str | Path, out: str | Path,
        remask_eta: float | None = None, task: int = 0, tasks: int = 1) -> dict | None:
    """`dlc generate`: codes then images into `out`; returns samples.json's content once every
    batch exists."""
    preset = cfg.active
    codes = Path(out) / "codes"
    sampler = code_sampling.with_remask_eta(preset.sedd, remask_eta)
    manifest = code_sampling.generate(sampler, sedd, codes, preset.sem.length, preset.sem.vocab,
                                      task, tasks)
    if manifest is None:
        raise ValueError(f"{codes}: other tasks' code shards are missing; run every task's "
                         "`dlc sample-codes` first (or rerun this when they are done)")
    return image_sampling.generate(preset.dit, preset.vae, dit, codes, vae, preset.sem.length,
                                   preset.sem.vocab, out, None, task, tasks)
