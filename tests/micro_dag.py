"""The micro study's workspace: the workflow files and params.yaml merged with tests/micro.yaml,
in a folder of its own (the `dlc` commands read ./params.yaml, so the study cannot run on other
params in the repository root).

    .venv/bin/python tests/micro_dag.py results-micro      # `make micro`: build, then snakemake -c2
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def merged(base: dict, overrides: dict) -> dict:
    """base with overrides applied key by key (nested mappings merged, anything else replaced)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def micro_params() -> dict:
    """params.yaml with tests/micro.yaml applied."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merged(params, yaml.safe_load((ROOT / "tests" / "micro.yaml").read_text()))


def workspace(destination: Path, params: dict) -> Path:
    """Snakefile, dvc.yaml, workflow/ and envs/ copied into destination, with params.yaml."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, destination / name)
    for folder in ("workflow", "envs"):
        shutil.copytree(ROOT / folder, destination / folder, dirs_exist_ok=True)
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return destination


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = workspace(Path(sys.argv[1]), micro_params())
    bin_dir = Path(sys.executable).parent  # this environment's snakemake and dlc
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    sys.exit(subprocess.call([str(bin_dir / "snakemake"), "-c2"], cwd=folder,
                             env={**os.environ, "PATH": path}))
