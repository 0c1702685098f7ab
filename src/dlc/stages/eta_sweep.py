"""Stage `eta-sweep`: distance against the remasking strength eta (the paper's
Appendix A, where FID vs eta is U-shaped: too little remasking or too much both hurt).

The sweep's points are every (eta, seed) of evaluate.eta_sweep x evaluate.eta_seeds. `eta-sweep
--task k --tasks n` makes the points p with p mod n = k (n jobs share the sweep, on two cores or
as SLURM jobs): evaluate.eta_samples SEDD codes with that eta, sampled with that seed -> DiT
(same seed) -> VAE into <out>/eta<eta>/seed<seed>/, then `evaluate` into its fid.json, and
<out>/points.json listing them. An evaluation passed with `--include` (fid_dlc.json) stands in
for its own (eta, seed) when it has the sweep's n. Each piece resumes (code shards, image
batches), so a rerun after a crash continues. `eta-curve` gathers the parts.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from dlc import io as dio
from dlc.config import Config, PresetConfig
from dlc.generation import codes as code_sampling
from dlc.generation import images as image_sampling
from dlc.metrics import evaluation
from dlc.train.batches import task_share

log = logging.getLogger(__name__)


def run(cfg: Config, *, sedd: str | Path, dit: str | Path, vae: str | Path, out: str | Path,
        images: str | Path | None = None, judge: str | Path | None = None,
        cache: str | Path | None = None, include: list[str] = (), task: int = 0,
        tasks: int = 1) -> Path:
    """`dlc eta-sweep`: this task's points into `out`; returns out/points.json."""
    return sweep(cfg.active, sedd, dit, vae, out, images, judge, cache, include, task, tasks)


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


def sweep(preset: PresetConfig, sedd_dir, dit_dir, vae_dir, out_dir, images=None,
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
        code_sampling.generate(point.sedd, sedd_dir, folder / "codes", preset.sem.length,
                               preset.sem.vocab)
        image_sampling.generate(point.dit, preset.vae, dit_dir, folder / "codes", vae_dir,
                                preset.sem.length, preset.sem.vocab, folder)
        evaluation.evaluate(point.evaluate, point_folder(eta, seed), folder / "samples.npz",
                            folder / "fid.json", images, judge_dir, cache_dir)
        results.append(str(folder / "fid.json"))
    dio.write_json(out_dir / "points.json", {"task": task, "tasks": tasks, "results": results})
    return out_dir / "points.json"
