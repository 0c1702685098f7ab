"""SEM settings against the linear probe: for each named set of overrides of the
tiny preset's `sem` params, train the encoder, extract the train and test codes and probe
them; one JSON row per run (training seconds, top-1 on codes and on features per target).

    .venv/bin/python research/sem/sem_probe_sweep.py --run baseline \\
        --run sinkhorn sem.head.centering=sinkhorn sem.head.prototypes=256

Overrides are dotted keys under the preset (`sem.train.steps=640`), values in YAML, checked
by the typed config like any params file. Needs the shapes table of `dlc data`. Runs go to
<work>/<name>/ and resume like the stages themselves; rows are appended to --out.

`--trace EVERY` keeps the checkpoint of every EVERY steps and probes, besides the exported
encoder, the student and the EMA teacher of each one (row key `trace`): how far the teacher
the later stages use lags the student it averages.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import yaml

from dlc import config, io
from dlc.stages import extract_codes, probe, train_sem


def overridden(params: dict, preset: str, overrides: list[str]) -> config.PresetConfig:
    """The preset with `key=value` overrides applied, validated."""
    params = json.loads(json.dumps(params))  # a deep copy
    params["preset"] = preset
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"override {item!r}: expected key=value")
        node = params["presets"][preset]
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        if leaf not in node:
            raise SystemExit(f"override {item!r}: no key {key!r} in presets.{preset}")
        node[leaf] = yaml.safe_load(value)
    return config.parse(params, "params.yaml with overrides").active


def probe_encoder(cfg: config.PresetConfig, sem: config.SEMConfig, images: Path,
                  weights: Path, folder: Path) -> dict:
    """Top-1 on codes and features per probe target of one encoder file, through the stages."""
    extract_codes.extract(sem, images, weights, folder / "codes")
    report = probe.fit_probes(cfg.probe, sem, folder / "codes", folder / "probe.json")
    return {target: {"codes": round(row["codes"], 4),
                     "features": round(row.get("features", float("nan")), 4)}
            for target, row in report["top1"].items()}


def sweep_one(name: str, overrides: list[str], params: dict, preset: str, images: Path,
              work: Path, trace_every: int | None = None) -> dict:
    if trace_every:
        overrides = overrides + [f"sem.train.checkpoint_every={trace_every}",
                                 "sem.train.keep_checkpoints=0"]
    cfg = overridden(params, preset, overrides)
    splits = [cfg.probe.train_split, cfg.probe.test_split]  # only what the probe reads
    sem = dataclasses.replace(cfg.sem, extract=dataclasses.replace(cfg.sem.extract,
                                                                   splits=splits))
    start = time.perf_counter()
    train_sem.train(sem, images, work / name / "sem")
    trained = time.perf_counter()
    row = {"name": name, "overrides": overrides, "train_seconds": round(trained - start, 1),
           "top1": probe_encoder(cfg, sem, images, work / name / "sem" / "encoder.safetensors",
                                 work / name)}
    row["total_seconds"] = round(time.perf_counter() - start, 1)
    if trace_every:
        row["trace"] = [
            {"step": int(folder.name.removeprefix("step-")),
             **{role: probe_encoder(cfg, sem, images, folder / f"{file}.safetensors",
                                    work / name / "trace" / folder.name / role)
                for role, file in (("student", "model"), ("teacher", "ema"))}}
            for folder in sorted((work / name / "sem" / "checkpoints").glob("step-*"))]
    return row


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--params, --preset, --images, and --work / --out named after the benchmark."""
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--images", default="results/tiny/data/images.parquet")
    parser.add_argument("--work", default=f"results/{name}")
    parser.add_argument("--out", default=f"research/results/{name}.json")


def append_row(out: Path, row: dict, overrides: list[str]) -> None:
    """The row with the run's metadata, printed and appended to the JSON list in `out`."""
    row.update(io.run_metadata({"overrides": overrides}))
    print(json.dumps(row), flush=True)
    rows = json.loads(out.read_text()) if out.is_file() else []
    io.write_json(out, rows + [row])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", nargs="+", action="append", required=True,
                        metavar=("NAME", "KEY=VALUE"), help="a run: its name and overrides")
    parser.add_argument("--trace", type=int, metavar="EVERY",
                        help="also probe the student and the teacher every EVERY steps")
    add_common_arguments(parser, "sem_probe_sweep")
    args = parser.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    for name, *overrides in args.run:
        row = sweep_one(name, overrides, params, args.preset, Path(args.images),
                        Path(args.work), args.trace)
        append_row(Path(args.out), row, overrides)


if __name__ == "__main__":
    main()
