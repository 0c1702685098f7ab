"""Shared fixtures: the repository's params, shrunk to micro sizes for fast tests."""

from __future__ import annotations

import contextlib
import copy
import importlib
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
    tiny = params["presets"]["tiny"]
    tiny["data"]["shapes"].update(n_images=300)
    for stage in ("sem", "sedd", "vae", "dit", "text"):  # the same arithmetic on every CPU
        tiny[stage]["train"].update(precision="fp32")
    for stage in ("sedd", "dit"):
        tiny[stage]["sample"].update(precision="fp32")
    sem = tiny["sem"]
    sem.update(length=8, vocab=16)
    sem["backbone"].update(embed_dim=32, depth=1, num_heads=2, patch_size=8)
    sem["head"].update(prototypes=64, hidden=32, bottleneck=16, teacher_temp_warmup_steps=2)
    sem["crops"].update(local_crops=2)
    sem["train"].update(steps=4, batch_size=16, warmup_steps=1, threads=1, workers=0,
                        checkpoint_every=2)
    sem["extract"].update(batch_size=64, shard_size=100)
    tiny["probe"].update(epochs=2, batch_size=64)
    sedd = tiny["sedd"]
    sedd["train"].update(steps=4, batch_size=16, warmup_steps=1, threads=1, checkpoint_every=2)
    sedd["sample"].update(samples=24, batch_size=10, steps=8)
    vae = tiny["vae"]
    vae.update(eval_images=16)
    vae["model"].update(block_out_channels=[8, 16], norm_num_groups=8)
    vae["train"].update(steps=4, batch_size=8, warmup_steps=1, threads=1, checkpoint_every=2)
    vae["cache"].update(batch_size=32, shard_size=50)
    dit = tiny["dit"]
    dit["repa"] = None  # tests/test_repa.py and the micro DAG (test_workflow.py) turn it on
    dit["train"].update(steps=4, batch_size=8, warmup_steps=1, threads=1, checkpoint_every=2)
    dit["sample"].update(samples=10, batch_size=4, steps=4)
    tiny["judge"].update(width=8, epochs=1, batch_size=64, threads=1)
    text = tiny["text"]
    text.update(width=16, depth=1, heads=2)
    text["train"].update(steps=4, batch_size=16, warmup_steps=1, threads=1, checkpoint_every=2)
    text["sample"].update(steps=4, samples=2)
    tiny["compose"].update(samples=6, source_split="train", pairs_per_combination=2,
                           samples_per_pair=2)
    tiny["evaluate"].update(samples=10, reference_images=16, batch_size=8, kid_subsets=10,
                            kid_subset_size=10, eta_sweep=[0.0, 0.5], eta_seeds=[0, 1],
                            eta_samples=10, threads=1,
                            effnet_resolution=32)
    return params


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


def import_benchmark(name: str):
    """A module of benchmarks/, imported with that folder on sys.path, as the scripts run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        return importlib.import_module(name)
