"""Stage `eta-curve`: the eta sweep's parts gathered into one JSON (every point, and per eta
the mean and std over seeds) and a PNG, one panel per feature space: FD (FID) and KID against
eta with the seeds' spread as error bars, so a U (the paper's Appendix A) or its absence is told
apart from sampling noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import Config
from dlc.metrics import evaluation
from dlc.viz import pyplot, save_figure


def run(cfg: Config, *, parts: list[str | Path], summary: str | Path,
        figure: str | Path) -> dict:
    """`dlc eta-curve`: the points of every part (their points.json) gathered into one sweep."""
    results = [path for part in parts for path in dio.read_json(part)["results"]]
    return gather(results, summary, figure)


def _spread(values: np.ndarray) -> float:
    """Sample std over seeds (0 for one seed)."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def gather(results: list[str | Path], out: str | Path, figure: str | Path) -> dict:
    """Every (eta, seed) point, and per eta the mean and std over its seeds of FD (FID) and
    KID in each feature space; the paper's Appendix A shows a U."""
    points = []
    for path in results:
        result = dio.read_json(path)
        if "codes_sampler" not in result:
            raise ValueError(f"{path}: its samples were not made from SEDD codes (no "
                             "codes_sampler), so it has no remask_eta")
        sampler = result["codes_sampler"]
        points.append({"remask_eta": sampler["remask_eta"], "seed": sampler["seed"],
                       "result": str(path), "n": result["n"], "metrics": result["metrics"]})
    if len({point["n"] for point in points}) > 1:
        raise ValueError(f"the sweep mixes sample counts {sorted({p['n'] for p in points})}: "
                         "distances are only comparable at one n")
    spaces = list(points[0]["metrics"])
    curve = []
    for eta in sorted({point["remask_eta"] for point in points}):
        mine = [point for point in points if point["remask_eta"] == eta]
        metrics = {}
        for space in spaces:
            fd = np.array([p["metrics"][space][evaluation.fd_name(space)] for p in mine])
            kid = np.array([p["metrics"][space]["kid"] for p in mine])
            metrics[space] = {"fd_mean": float(fd.mean()), "fd_std": _spread(fd),
                              "kid_mean": float(kid.mean()), "kid_std": _spread(kid)}
        curve.append({"remask_eta": eta, "seeds": len(mine), "metrics": metrics})
    best = {space: min(curve, key=lambda c: c["metrics"][space]["fd_mean"])["remask_eta"]
            for space in spaces}
    summary = {"n": points[0]["n"], "points": points, "curve": curve, "best_remask_eta": best}
    dio.write_json(out, summary)
    _plot_sweep(curve, spaces, points[0]["n"], figure)
    return summary


def _plot_sweep(curve: list[dict], spaces: list[str], n: int, path: str | Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(spaces), figsize=(4.5 * len(spaces), 3.5), squeeze=False)
    etas = [point["remask_eta"] for point in curve]
    for axis, space in zip(axes[0], spaces):
        fd_name = evaluation.fd_name(space)
        axis.errorbar(etas, [c["metrics"][space]["fd_mean"] for c in curve],
                      yerr=[c["metrics"][space]["fd_std"] for c in curve], fmt="o-",
                      capsize=3, label=fd_name)
        axis.set_xlabel("remask eta")
        axis.set_ylabel(f"{fd_name.upper()} ({space} features)")
        kid_axis = axis.twinx()
        kid_axis.errorbar(etas, [c["metrics"][space]["kid_mean"] for c in curve],
                          yerr=[c["metrics"][space]["kid_std"] for c in curve], fmt="s--",
                          color="tab:orange", capsize=3, label="KID")
        kid_axis.set_ylabel("KID", color="tab:orange")
        axis.set_title(f"{space}, n = {n}, mean ± std over seeds")
    figure.tight_layout()
    save_figure(figure, path)
