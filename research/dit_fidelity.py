"""Does the tiny DiT draw what its code says? Train a code-conditioned DiT with overrides of the
tiny preset's `dit` params, keep a checkpoint every EVERY steps, and score the EMA weights of
each: the first N test codes decoded into images, the attribute judge's agreement with their
source images (what `results/tiny/dit/decoded/samples.json` reports for the whole run).

    .venv/bin/python research/dit_fidelity.py --every 1000 --codes 500 \\
        --run baseline --run cos dit.diffusion.schedule=cosine

One JSON row per run in --out (training seconds, agreement per checkpoint). Research, not
product: nothing under src/ or tests/ imports it. Needs the tiny preset's latents, codes, VAE
and judge (`snakemake -c2 results/tiny/latents/train/manifest.json results/tiny/judge/judge.json
results/tiny/codes/test/manifest.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from dlc import config, io
from dlc.data.codes import read_codes
from dlc.diffusion.gaussian import build_process, sample_latents
from dlc.models.dit import build_dit
from dlc.models.judge import agreement, load_judge, predict
from dlc.models.vae import decode, load_vae, vae_location
from dlc.stages import train_dit
from dlc.train import distributed

sys.path.insert(0, str(Path(__file__).resolve().parent / "sem"))
from sem_probe_sweep import append_row, overridden  # noqa: E402


@torch.no_grad()
def decoded_agreement(cfg: config.PresetConfig, weights: Path, meta: dict, codes, n: int,
                      vae, judge, classes: dict) -> dict:
    """Agreement of images decoded from the first n codes with their sources' attributes."""
    model = build_dit(cfg.dit, meta["latent_shape"], meta["L"], meta["V"],
                      meta["condition"])
    state = {key: value for key, value in load_file(weights).items()
             if not key.startswith("projector.")}  # REPA's, in the checkpoints only
    model.load_state_dict(state, strict=True)
    model.eval()
    process = build_process(cfg.dit)
    autocast = distributed.autocast(torch.device("cpu"))
    images = []
    for first in range(0, n, cfg.dit.sample.batch_size):
        rows = np.arange(first, min(first + cfg.dit.sample.batch_size, n))
        condition = {"codes": torch.from_numpy(codes.codes[rows].astype(np.int64))}
        generator = torch.Generator().manual_seed(cfg.dit.sample.seed + first)
        latents = sample_latents(cfg.dit, model, process, condition,
                                 model.null_condition(len(rows)),
                                 (len(rows), *meta["latent_shape"]), generator,
                                 torch.device("cpu"), autocast)
        images.append(decode(vae, latents))
    predicted = predict(judge, np.concatenate(images), classes)
    return {k: round(v, 4) for k, v in agreement(predicted, codes.frame.iloc[:n]).items()}


def run_one(name: str, overrides: list[str], params: dict, work: Path, every: int,
            n: int, results: Path, model_of: str | None, which: str = "ema") -> dict:
    """Train (unless `model_of` names a run whose models to score with these overrides'
    sampler settings), then score every kept checkpoint."""
    overrides = overrides + [f"dit.train.checkpoint_every={every}",
                             "dit.train.keep_checkpoints=0"]
    cfg = overridden(params, "tiny", overrides)
    L, V = cfg.sem.length, cfg.sem.vocab
    out = work / (model_of or name)
    start = time.perf_counter()
    if model_of is None:
        train_dit.train(cfg.dit, cfg.vae, results / "latents", results / "codes",
                        results / "vae", L, V, out, "code", cfg.sem,
                        results / "sem" / "encoder.safetensors",
                        results / "data" / "images.parquet")
    seconds = time.perf_counter() - start
    meta = io.read_json(out / "meta.json")
    codes = read_codes(results / "codes" / cfg.dit.sample.split, L, V)
    vae = load_vae(vae_location(cfg.vae, results / "vae"))
    judge, report = load_judge(results / "judge")
    weights = {int(f.name.removeprefix("step-")): f / f"{which}.safetensors"
               for f in (out / "checkpoints").glob("step-*")}
    if which == "ema":  # the run's own model.safetensors is the EMA of the last step
        weights[cfg.dit.train.steps] = out / "model.safetensors"
    trace = []
    for step in sorted(weights):
        match = decoded_agreement(cfg, weights[step], meta, codes, n, vae, judge,
                                  report["classes"])
        print(name, step, match, flush=True)
        trace.append({"step": step, "match": match})
    return {"name": name, "overrides": overrides, "models_of": model_of or name,
            "train_seconds": round(seconds, 1),
            "codes": n, "final": trace[-1]["match"], "trace": trace,
            "loss_final": meta["final"]}


def plot(rows: list[dict], path: Path) -> None:
    """Agreement against training steps, one line per run, a panel per attribute."""
    from dlc.viz import pyplot, save_figure

    plt = pyplot()
    attributes = ["shape", "colour", "size", "background", "texture"]
    figure, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes), 3.2),
                                sharey=True)
    for row in rows:
        steps = [point["step"] for point in row["trace"]]
        for axis, attribute in zip(axes, attributes):
            axis.plot(steps, [point["match"][attribute] for point in row["trace"]], "o-",
                      markersize=3, label=row["name"])
    for axis, attribute in zip(axes, attributes):
        axis.set_title(attribute)
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("decoded = source (judge)")
    axes[-1].legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs="+", action="append", default=[],
                        metavar=("NAME", "KEY=VALUE"), help="a run: its name and overrides")
    parser.add_argument("--every", type=int, default=1000, help="steps between checkpoints")
    parser.add_argument("--codes", type=int, default=500, help="test codes decoded per score")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema",
                        help="score the checkpoints' EMA (default) or raw weights")
    parser.add_argument("--models-of", help="score this earlier run's models instead of "
                        "training (the runs' overrides then change only the sampler)")
    parser.add_argument("--plot", nargs="+", metavar=("PNG", "NAME"),
                        help="only draw the curves of the named runs of --out into PNG")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", default="results/tiny")
    parser.add_argument("--work", default="results/dit_fidelity")
    parser.add_argument("--out", default="research/results/dit_fidelity.json")
    args = parser.parse_args()
    if args.plot:
        png, *names = args.plot
        rows = [row for row in json.loads(Path(args.out).read_text()) if row["name"] in names]
        return plot(rows, Path(png))
    params = yaml.safe_load(Path(args.params).read_text())
    for name, *overrides in args.run:
        row = run_one(name, overrides, params, Path(args.work), args.every, args.codes,
                      Path(args.results), args.models_of, args.weights)
        append_row(Path(args.out), row, overrides)


if __name__ == "__main__":
    main()
