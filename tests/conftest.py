"""Shared fixtures: the repository's params, shrunk to micro sizes for fast tests."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import yaml

from dlc import config

ROOT = Path(__file__).resolve().parents[1]
# Commands of this environment (dlc, snakemake, dvc) first on PATH, for subprocess tests.
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def micro_params() -> dict:
    """params.yaml with every size cut down so a stage runs in seconds on one core."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    toy = params["toy"]
    toy.update(modes=[1, 4], scatter_modes=[4])
    toy["model"].update(width=32)
    toy["train"].update(steps=40, batch_size=256, warmup_steps=5)
    toy["gmm"].update(fit_samples=20)
    toy["eval"].update(samples=400, sampling_steps=20)
    params["presets"]["tiny"]["data"]["shapes"].update(n_images=300)
    return params


@pytest.fixture
def micro() -> dict:
    return copy.deepcopy(micro_params())


@pytest.fixture
def micro_config(micro) -> config.Config:
    return config.parse(micro, "micro params")
