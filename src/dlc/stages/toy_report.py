"""Stage `toy-report`: gather the Section 3 runs into results/toy/kld.json and figures."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config, ToyConfig, to_dict
from dlc.data.gaussian_grid import GaussianGrid
from dlc.viz import pyplot, save_figure

log = logging.getLogger(__name__)


# Panels that draw the same estimator on true samples (the KDE panel already subtracts it).
FLOORS = {"knn_kl": "knn_kl_floor", "off_mode_fraction": "off_mode_fraction_floor"}


def run(cfg: Config, *, runs: str | Path, out: str | Path) -> dict:
    """`dlc toy-report`: every run under `runs` gathered into kld.json and figures in `out`."""
    return summarize(cfg.toy, runs, out)


def run_dir(runs: Path, modes: int, variant: str) -> Path:
    """Where one (K, variant) run lives; the workflow files use the same layout."""
    return runs / f"K{modes}" / variant


def collect(cfg: ToyConfig, runs: Path) -> list[dict]:
    return [dio.read_json(run_dir(runs, k, v) / "metrics.json")
            for k in cfg.modes for v in cfg.variants]


def plot_metrics(records: list[dict], cfg: ToyConfig, path: Path) -> None:
    plt = pyplot()

    panels = [("kde_kl_excess", "KDE KL excess over floor (nats)"),
              ("knn_kl", "kNN KL (nats)"),
              ("off_mode_fraction", f"fraction > {cfg.eval.off_mode_stds:g} std off every mode")]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (key, title) in zip(axes, panels):
        for variant in cfg.variants:
            rows = sorted((r for r in records if r["variant"] == variant), key=lambda r: r["modes"])
            axis.plot([r["modes"] for r in rows], [r[key] for r in rows], "o-", label=variant)
        floor_key = FLOORS.get(key)
        if floor_key:
            rows = sorted((r for r in records if r["variant"] == cfg.variants[0]),
                          key=lambda r: r["modes"])
            axis.plot([r["modes"] for r in rows], [r[floor_key] for r in rows], "k--",
                      label="true samples (floor)")
        axis.set_xscale("log")
        axis.set_xlabel("number of modes K")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("Diffusion on a grid of K Gaussians: unconditional vs conditioned")
    save_figure(figure, path)


def plot_samples(cfg: ToyConfig, runs: Path, path: Path) -> None:
    plt = pyplot()

    columns = ["true", *cfg.variants]
    figure, axes = plt.subplots(len(cfg.scatter_modes), len(columns), squeeze=False,
                                figsize=(3 * len(columns), 3 * len(cfg.scatter_modes)))
    for row, modes in enumerate(cfg.scatter_modes):
        grid = GaussianGrid(modes, cfg.std, cfg.spacing)
        reach = (grid.side - 1) / 2 * cfg.spacing + 4 * cfg.std + 0.5 * cfg.spacing
        for col, name in enumerate(columns):
            if name == "true":
                points = grid.sample(cfg.eval.samples, np.random.default_rng(cfg.seed))[0]
            else:
                points = np.load(run_dir(runs, modes, name) / "samples.npy")
            axis = axes[row, col]
            axis.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.5, linewidths=0)
            axis.set_xlim(-reach, reach)
            axis.set_ylim(-reach, reach)
            axis.set_aspect("equal")
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(f"K={modes} {name}", fontsize=9)
    save_figure(figure, path)


def plot_losses(cfg: ToyConfig, runs: Path, path: Path) -> None:
    plt = pyplot()

    figure, axes = plt.subplots(1, len(cfg.variants), figsize=(5 * len(cfg.variants), 3.5),
                                squeeze=False, sharey=True)
    for axis, variant in zip(axes[0], cfg.variants):
        for modes in cfg.modes:
            with open(run_dir(runs, modes, variant) / "loss.csv") as handle:
                rows = list(csv.DictReader(handle))
            axis.plot([int(r["step"]) for r in rows], [float(r["mse"]) for r in rows],
                      label=f"K={modes}")
        axis.set_title(f"{variant}: epsilon MSE")
        axis.set_xlabel("step")
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    save_figure(figure, path)


def summarize(cfg: ToyConfig, runs: str | Path, out_dir: str | Path) -> dict:
    runs, out_dir = Path(runs), Path(out_dir)
    records = collect(cfg, runs)
    summary = {"study": "Section 3: diffusion on a grid of K Gaussians",
               "metric_notes": {
                   "kde_kl": "mean log p(x) - log KDE_silverman(model samples)(x), x fresh true",
                   "knn_kl": "Wang-Kulkarni-Verdu 2009 kNN estimator of KL(true || model)",
                   "*_floor": "the same estimator with true samples in place of the model's",
                   "mode_kl": "KL(uniform || nearest-centre histogram, +0.5 smoothing)"},
               # Nested by K then variant, so `dvc metrics show` lists every number.
               "results": {f"K{k}": {r["variant"]: r for r in records if r["modes"] == k}
                           for k in cfg.modes},
               "params": to_dict(cfg), **dio.run_metadata(to_dict(cfg))}
    dio.write_json(out_dir / "kld.json", summary)
    plot_metrics(records, cfg, out_dir / "kld_vs_modes.png")
    plot_samples(cfg, runs, out_dir / "samples.png")
    plot_losses(cfg, runs, out_dir / "loss.png")
    log.info("wrote %s (%d runs) and figures", out_dir / "kld.json", len(records))
    return summary
