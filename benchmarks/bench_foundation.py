"""Throughput of the foundation's hot paths on this machine; writes JSON, never part of tests.

    .venv/bin/python benchmarks/bench_foundation.py  # -> benchmarks/results/foundation.json
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dlc.data import shapes
from dlc.data.gaussian_grid import GaussianGrid
from dlc.diffusion.gaussian import GaussianDiffusion
from dlc.metrics.kl import kde_kl, knn_kl
from dlc.models.mlp import MLPDenoiser


def timed(fn, repeat: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def shapes_rate(resolution: int, n: int = 2000) -> float:
    seconds = timed(lambda: shapes.generate(n, resolution, 0, 0.1, []), repeat=1)
    return n / seconds


def toy_step_ms(width: int, batch: int = 2048, threads: int = 1) -> float:
    torch.set_num_threads(threads)
    grid = GaussianGrid(64, 0.05, 1.0)
    model = MLPDenoiser(width=width, num_classes=64)
    process = GaussianDiffusion.from_schedule("cosine", 1000)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    rng = np.random.default_rng(0)

    def step():
        points, labels = grid.sample(batch, rng)
        x0 = torch.from_numpy(points / grid.data_std).float()
        t = torch.randint(0, 1000, (batch,))
        loss = process.training_losses(model, x0, t, y=torch.from_numpy(labels))["loss"].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return 1000 * timed(lambda: [step() for _ in range(20)], repeat=1) / 20


def metric_seconds(n: int = 5000) -> dict:
    grid = GaussianGrid(64, 0.05, 1.0)
    rng = np.random.default_rng(0)
    truth, model = grid.sample(n, rng)[0], grid.sample(n, rng)[0]
    log_p = grid.log_prob(truth)
    return {"kde_kl_s": timed(lambda: kde_kl(log_p, truth, model), 1),
            "knn_kl_s": timed(lambda: knn_kl(truth, model), 1)}


def main() -> None:
    result = {
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor(),
                    "torch": torch.__version__},
        "shapes_images_per_s": {"32px": shapes_rate(32), "64px": shapes_rate(64)},
        "toy_train_step_ms_batch2048_1thread": {f"width{w}": toy_step_ms(w)
                                                for w in (64, 128, 256)},
        "toy_metrics_n5000": metric_seconds(),
    }
    out = Path(__file__).parent / "results" / "foundation.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
