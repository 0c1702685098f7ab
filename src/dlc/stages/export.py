"""Stage `export`: a finished run's trained parts (SEM encoder, SEDD, DiT, VAE, text model)
as one folder to share: `dlc.generation.export` says what it holds."""

from __future__ import annotations

from pathlib import Path

from dlc.config import Config
from dlc.generation.pipeline import Pipeline


def run(cfg: Config, *, run: str | Path, out: str | Path) -> Path:
    """`dlc export`: the parts of `run` (results/<preset>) into `out`."""
    folder = Pipeline.from_config(cfg, run).save_pretrained(out, run)
    print(f"{sorted(p.name for p in folder.iterdir() if p.is_dir())} -> {folder} "
          "(pipeline.json, README.md)")
    return folder
