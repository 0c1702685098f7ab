"""Stage `eta-sweep`: distance against the remasking strength eta (the paper's Appendix A,
where FID vs eta is U-shaped: too little remasking or too much both hurt).

For every eta of evaluate.eta_sweep: SEDD codes with that eta -> DiT -> VAE into
<out>/eta<eta>/, then `evaluate` into <out>/eta<eta>/fid.json; an evaluation passed with
`--include` (fid_dlc.json) stands in for its own eta instead of being made again. Each piece
resumes (code shards, image batches), so a rerun after a crash continues. Then one JSON and a
PNG, one panel per feature space, FD (FID) and KID with its error bar against eta.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dlc import io as dio
from dlc.config import PresetConfig
from dlc.stages import evaluate, sample_codes, sample_dit
from dlc.viz import pyplot, save_figure

log = logging.getLogger(__name__)


def eta_folder_name(eta: float) -> str:
    return f"eta{eta:g}"


def run(preset: PresetConfig, sedd_dir, dit_dir, vae_dir, out_dir, summary_path, figure_path,
        images=None, judge_dir=None, cache_dir=None, include=()) -> dict:
    out_dir = Path(out_dir)
    given = {dio.read_json(path)["codes_sampler"]["remask_eta"]: Path(path) for path in include}
    results = []
    for eta in preset.evaluate.eta_sweep:
        if eta in given:
            results.append(given[eta])
            continue
        folder = out_dir / eta_folder_name(eta)
        sedd = sample_codes.with_remask_eta(preset.sedd, eta)
        sample_codes.generate(sedd, sedd_dir, folder / "codes", preset.sem.length,
                              preset.sem.vocab)
        sample_dit.generate(preset.dit, preset.vae, dit_dir, folder / "codes", vae_dir,
                            preset.sem.length, preset.sem.vocab, folder)
        evaluate.evaluate(preset.evaluate, eta_folder_name(eta), folder / "samples.npz",
                          folder / "fid.json", images, judge_dir, cache_dir)
        results.append(folder / "fid.json")
    return gather(results, summary_path, figure_path)


def gather(results: list[str | Path], out: str | Path, figure: str | Path) -> dict:
    """FD (FID) and KID against remask_eta, one panel per feature space; the paper's
    Appendix A shows a U: too little remasking or too much both hurt."""
    points = []
    for path in results:
        result = dio.read_json(path)
        if "codes_sampler" not in result:
            raise ValueError(f"{path}: its samples were not made from SEDD codes (no "
                             "codes_sampler), so it has no remask_eta")
        points.append({"remask_eta": result["codes_sampler"]["remask_eta"], "result": str(path),
                       "n": result["n"], "metrics": result["metrics"]})
    points.sort(key=lambda point: point["remask_eta"])
    if len({point["n"] for point in points}) > 1:
        raise ValueError(f"the sweep mixes sample counts {sorted({p['n'] for p in points})}: "
                         "distances are only comparable at one n")
    spaces = list(points[0]["metrics"])
    best = {}
    for space in spaces:
        fd_name = "fid" if space == "inception" else "fd"
        best[space] = min(points, key=lambda point: point["metrics"][space][fd_name])["remask_eta"]
    summary = {"points": points, "best_remask_eta": best}
    dio.write_json(out, summary)
    _plot_sweep(points, spaces, figure)
    return summary


def _plot_sweep(points: list[dict], spaces: list[str], path: str | Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, len(spaces), figsize=(4.5 * len(spaces), 3.5), squeeze=False)
    etas = [point["remask_eta"] for point in points]
    for axis, space in zip(axes[0], spaces):
        fd_name = "fid" if space == "inception" else "fd"
        axis.plot(etas, [p["metrics"][space][fd_name] for p in points], "o-", label=fd_name)
        axis.set_xlabel("remask eta")
        axis.set_ylabel(f"{fd_name.upper()} ({space} features)")
        kid_axis = axis.twinx()
        kid_axis.errorbar(etas, [p["metrics"][space]["kid"] for p in points],
                          yerr=[p["metrics"][space]["kid_std"] for p in points], fmt="s--",
                          color="tab:orange", label="KID")
        kid_axis.set_ylabel("KID", color="tab:orange")
        axis.set_title(f"{space}, n = {points[0]['n']}")
    figure.tight_layout()
    save_figure(figure, path)
