"""Shared fixtures: the repository's params, shrunk to micro sizes for fast tests."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlc import config

from .micro_dag import micro_params as micro_study_params
from .micro_dag import workspace

ROOT = Path(__file__).resolve().parents[1]
# Commands of this environment (dlc, snakemake, dvc) first on PATH, for subprocess tests.
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def micro_params() -> dict:
    """The micro study's params (tests/micro.yaml) for unit tests: the toy study at K = 1 and 4,
    REPA off (tests/test_repa.py turns it on, as the micro DAG does)."""
    params = micro_study_params()
    params["toy"]["modes"] = [1, 4]
    params["presets"]["tiny"]["dit"]["repa"] = None
    return params


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory) -> Path:
    """The micro DAG (tests/micro.yaml, what `make micro` runs) run once through Snakemake, for
    the tests that read a finished run: its workspace, with results/ and params.yaml."""
    work = workspace(tmp_path_factory.mktemp("micro-run"), micro_study_params())
    result = subprocess.run([str(BIN / "snakemake"), "-c2"], cwd=work, env=ENV,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"the micro DAG failed:\n{result.stdout}\n{result.stderr}"
    return work


@pytest.fixture
def micro() -> dict:
    return copy.deepcopy(micro_params())


@pytest.fixture
def micro_config(micro) -> config.Config:
    return config.parse(micro, "micro params")


@contextlib.contextmanager
def preempted_at(stage_module, call: int):
    """While active, the stage's `update_ema` raises KeyboardInterrupt on its `call`-th call:
    a preemption in the middle of that step, after the checkpoints of the steps before it."""
    real_update = stage_module.update_ema
    calls = {"n": 0}

    def update_or_crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt("simulated preemption")
        real_update(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage_module, "update_ema", update_or_crash)
        yield


def _ddp_process(rank: int, port: int, train, args: tuple) -> None:
    import torch.distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    train(*args)
    torch.distributed.destroy_process_group()


def two_process_ddp(train, *args) -> None:
    """train(*args) in two processes joined by gloo on CPU, as torchrun would start them."""
    import socket

    import torch.multiprocessing

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_process, args=(port, train, args), nprocs=2, join=True)


def assert_close_weights(a_file, b_file, atol: float) -> None:
    """Two safetensors files hold the same tensors, equal within atol."""
    from safetensors.torch import load_file

    a, b = load_file(str(a_file)), load_file(str(b_file))
    assert a.keys() == b.keys()
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst < atol, f"{a_file} and {b_file} differ by {worst}"
