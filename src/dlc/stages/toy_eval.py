"""Stage `toy-eval`: sample a trained Section 3 denoiser and measure KL(true || model) by KDE
and by k-nearest neighbours, and the mass off the modes, each beside its floor (fresh true
samples scored the same way: what a perfect model would get at this n)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from dlc import io as dio
from dlc.config import Config, ToyConfig
from dlc.data.gaussian_grid import GaussianGrid
from dlc.generation.toy import load_trained, sample, seed_stream
from dlc.metrics.kl import kde_kl, knn_kl, mode_coverage

log = logging.getLogger(__name__)


def run(cfg: Config, *, model: str | Path, out: str | Path) -> dict:
    """`dlc toy-eval`: score the toy-train run `model`; metrics.json and samples.npy in `out`."""
    return evaluate(cfg.toy, model, out)


def evaluate(cfg: ToyConfig, model_dir: str | Path, out_dir: str | Path) -> dict:
    """Sample a trained model, score it with every metric and its floor; write
    out_dir/metrics.json and out_dir/samples.npy."""
    torch.set_num_threads(cfg.train.threads)
    model, meta = load_trained(cfg, model_dir)
    modes, variant = meta["modes"], meta["variant"]
    grid = GaussianGrid(modes, cfg.std, cfg.spacing)
    n = cfg.eval.samples
    samples = sample(cfg, model, meta, n, seed_stream(cfg, modes, f"sample-{variant}"))

    # The same fresh true points for every variant of one K, so variants compare on equal terms.
    truth_rng = np.random.default_rng(seed_stream(cfg, modes, "eval"))
    eval_points = grid.sample(n, truth_rng)[0]
    reference = grid.sample(n, truth_rng)[0]      # true samples standing in for a perfect model
    eval_log_prob = grid.log_prob(eval_points)

    kde = kde_kl(eval_log_prob, eval_points, samples)
    kde_floor = kde_kl(eval_log_prob, eval_points, reference)
    knn = knn_kl(eval_points, samples, cfg.eval.knn_k)
    knn_floor = knn_kl(eval_points, reference, cfg.eval.knn_k)
    coverage = mode_coverage(samples, grid.centres, cfg.std, cfg.eval.off_mode_stds)
    coverage_floor = mode_coverage(reference, grid.centres, cfg.std, cfg.eval.off_mode_stds)
    metrics = {
        "modes": modes, "variant": variant,
        "kde_kl": kde, "kde_kl_floor": kde_floor, "kde_kl_excess": kde - kde_floor,
        "knn_kl": knn, "knn_kl_floor": knn_floor, "knn_kl_excess": knn - knn_floor,
        **coverage, **{f"{k}_floor": v for k, v in coverage_floor.items()},
        "n": n, "sampling_steps": cfg.eval.sampling_steps, "knn_k": cfg.eval.knn_k,
        "samples_seen": meta["samples_seen"], "seed": cfg.seed,
        "model_sha256": dio.sha256_file(Path(model_dir) / "model.safetensors"),
    }
    out_dir = Path(out_dir)
    with dio.atomic_path(out_dir / "samples.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, samples.astype(np.float32))
    dio.write_json(out_dir / "metrics.json", metrics)
    log.info("K=%d %s: KDE KL %.3f (floor %.3f), kNN KL %.3f (floor %.3f), off-mode %.1f%%",
             modes, variant, kde, kde_floor, knn, knn_floor, 100 * coverage["off_mode_fraction"])
    return metrics
