"""Stages `eta-sweep` and `eta-curve`: distance against the remasking strength eta (the paper's
Appendix A, where FID vs eta is U-shaped: too little remasking or too much both hurt).

The sweep's points are every (eta, seed) of evaluate.eta_sweep x evaluate.eta_seeds. `eta-sweep
--task k --tasks n` makes the points p with p mod n = k (n jobs share the sweep, on two cores or
as SLURM jobs): evaluate.eta_samples SEDD codes with that eta, sampled with that seed -> DiT
(same seed) -> VAE into <out>/eta<eta>/seed<seed>/, then `evaluate` into its fid.json, and
<out>/points.json listing them. An evaluation passed with `--include` (fid_dlc.json) stands in
for its own (eta, seed) when it has the sweep's n. Each piece resumes (code shards, image
batches), so a rerun after a crash continues. `eta-curve` gathers the parts: one JSON (every
point, and per eta the mean and std over seeds) and a PNG, one panel per feature space: FD
(FID) and KID against eta with the seeds' spread as error bars, so a U (or its absence) is told
apart from sampling noise.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from dlc import io as dio
from dlc.config import PresetConfig
from dlc.generation import codes as sample_codes
from dlc.generation import images as sample_dit
from dlc.metrics import evaluation as evaluate
from dlc.train.batches import task_share
from dlc.viz import pyplot, save_figure

log = logging.getLogger(__name__)


def point_folder(eta: float, seed: int) -> str:
    return f"eta{eta:g}/seed{seed}"


def _seeded(preset: PresetConfig, eta: float, seed: int) -> PresetConfig:
    """The preset sampling eta_samples codes and images with that eta and seed."""
    n = preset.evaluate.eta_samples
    sedd = dataclasses.replace(preset.sedd, sample=dataclasses.replace(
        preset.sedd.sample, remask_eta=eta, seed=seed, samples=n))
    dit = dataclasses.replace(preset.dit, sample=dataclasses.replace(preset.dit.sample,
                                                                     seed=seed, samples=n))
    return dataclasses.replace(preset, sedd=sedd, dit=dit,
                               evaluate=dataclasses.replace(preset.evaluate, samples=n))


def points(preset: PresetConfig) -> list[tuple[float, int]]:
    """Every (eta, seed) of the sweep, in order; task k of n makes the p-th when p mod n = k."""
    return [(eta, seed) for eta in preset.evaluate.eta_sweep
            for seed in preset.evaluate.eta_seeds]


def run(preset: PresetConfig, sedd_dir, dit_dir, vae_dir, out_dir, images=None,
        judge_dir=None, cache_dir=None, include=(), task: int = 0, tasks: int = 1) -> Path:
    """This task's points into out_dir; returns out_dir/points.json (their fid.json paths)."""
    out_dir, e = Path(out_dir), preset.evaluate
    given = {}
    for path in include:
        result = dio.read_json(path)
        if result["n"] == e.eta_samples:
            sampler = result["codes_sampler"]
            given[(sampler["remask_eta"], sampler["seed"])] = str(path)
    results, every = [], points(preset)
    for eta, seed in (every[number] for number in task_share(len(every), task, tasks)):
        if (eta, seed) in given:
            results.append(given[(eta, seed)])
            continue
        folder = out_dir / point_folder(eta, seed)
        point = _seeded(preset, eta, seed)
        sample_codes.generate(point.sedd, sedd_dir, folder / "codes", preset.sem.length,
                              preset.sem.vocab)
        sample_dit.generate(point.dit, preset.vae, dit_dir, folder / "codes", vae_dir,
                            preset.sem.length, preset.sem.vocab, folder)
        evaluate.evaluate(point.evaluate, point_folder(eta, seed), folder / "samples.npz",
                          folder / "fid.json", images, judge_dir, cache_dir)
        results.append(str(folder / "fid.json"))
    dio.write_json(out_dir / "points.json", {"task": task, "tasks": tasks, "results": results})
    return out_dir / "points.json"


def curve(parts: list[str | Path], out: str | Path, figure: str | Path) -> dict:
    """The points of every part (their points.json) gathered into one sweep."""
    results = [path for part in parts for path in dio.read_json(part)["results"]]
    return gather(results, out, figure)


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
            fd = np.array([p["metrics"][space][evaluate.fd_name(space)] for p in mine])
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
        fd_name = evaluate.fd_name(space)
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
