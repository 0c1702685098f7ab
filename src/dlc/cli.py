"""`dlc <stage>`: parse arguments, load and check params.yaml, call one stage, say where the
outputs went. Snakemake rules and DVC stages call exactly these commands."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from dlc import config

log = logging.getLogger("dlc")


def _data(args, cfg: config.Config) -> None:
    from dlc.stages import data

    data.run(cfg.active.data, args.out, args.report, args.preview)


def _toy_train(args, cfg: config.Config) -> None:
    from dlc.stages import toy

    toy.train(cfg.toy, args.modes, args.variant, args.out)


def _toy_eval(args, cfg: config.Config) -> None:
    from dlc.stages import toy

    toy.evaluate(cfg.toy, args.model, args.out)


def _toy_report(args, cfg: config.Config) -> None:
    from dlc.stages import toy_report

    toy_report.run(cfg.toy, args.runs, args.out)


def _train_sem(args, cfg: config.Config) -> None:
    from dlc.stages import train_sem

    train_sem.train(cfg.active.sem, args.images, args.out)


def _extract_codes(args, cfg: config.Config) -> None:
    from dlc.stages import extract_codes

    extract_codes.run(cfg.active.sem, args.images, args.encoder, args.out)


def _probe(args, cfg: config.Config) -> None:
    from dlc.stages import probe

    probe.run(cfg.active.probe, cfg.active.sem, args.codes, args.out)


def _train_sedd(args, cfg: config.Config) -> None:
    from dlc.stages import train_sedd

    preset = cfg.active
    train_sedd.train(preset.sedd, Path(args.codes) / preset.sedd.train_split, preset.sem.length,
                     preset.sem.vocab, args.out)


def _sample_codes(args, cfg: config.Config) -> None:
    from dlc.stages import sample_codes

    preset = cfg.active
    sample_codes.generate(preset.sedd, args.model, args.out, preset.sem.length,
                          preset.sem.vocab)
    sample_codes.report(preset.sedd, args.out, args.codes, preset.sem.length,
                        preset.sem.vocab, args.report, args.figure)


def _schema(args, cfg: config.Config | None) -> None:
    text = config.json_schema_text()
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
        if current != text:
            raise config.ConfigError(f"{args.out}: out of date; run `dlc schema`")
        print(f"{args.out} is up to date")
        return
    from dlc.io import write_bytes

    write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")


def _params(args, cfg: config.Config) -> None:
    import yaml

    print(yaml.safe_dump({"preset": cfg.preset, "toy": config.to_dict(cfg.toy),
                          "active": config.to_dict(cfg.active)}, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlc", description="Discrete Latent Codes: the study's stages, one command each.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")

    def stage(name: str, handler, help_text: str, needs_params: bool = True):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler, needs_params=needs_params)
        if needs_params:
            p.add_argument("--params", default=str(config.DEFAULT_PARAMS),
                           help="parameter file (default: %(default)s)")
            p.add_argument("--preset", help="override the file's `preset:` (tiny, imagenet)")
        p.add_argument("--log", help="also append the log to this file")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        return p

    p = stage("data", _data,
              "the preset's images as one Parquet table: the built-in shapes dataset "
              "(generated) or class-folder trees (indexed, unreadable files reported)")
    p.add_argument("--out", required=True, help="Parquet table to write")
    p.add_argument("--report", required=True, help="JSON summary (counts, skipped files)")
    p.add_argument("--preview", help="PNG grid of 64 training images to write")

    p = stage("toy-train", _toy_train,
              "Section 3: train one MLP denoiser on a K-mode Gaussian grid (toy.* params)")
    p.add_argument("--modes", type=int, required=True, help="number of mixture components K")
    p.add_argument("--variant", required=True, choices=["unconditional", "oracle", "gmm"],
                   help="no condition, the true component, or a fitted GMM's component")
    p.add_argument("--out", required=True,
                   help="run folder: model.safetensors, meta.json, loss.csv, checkpoints/")

    p = stage("toy-eval", _toy_eval,
              "Section 3: sample a trained denoiser and measure KL(true || model) with floors")
    p.add_argument("--model", required=True, help="run folder written by toy-train")
    p.add_argument("--out", required=True, help="folder for metrics.json and samples.npy")

    p = stage("toy-report", _toy_report,
              "Section 3: gather every run into kld.json and PNG figures")
    p.add_argument("--runs", required=True, help="folder holding K<K>/<variant>/ runs")
    p.add_argument("--out", required=True, help="folder for kld.json and the PNGs")

    p = stage("train-sem", _train_sem,
              "train the SEM encoder by DINOv2 self-distillation on the train split "
              "(sem.* params; resumes from <out>/checkpoints)")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--out", required=True,
                   help="run folder: encoder.safetensors, meta.json, loss.csv, loss.png")

    p = stage("extract-codes", _extract_codes,
              "encode every split of sem.extract.splits into <out>/<split>/part-*.parquet "
              "(resumes shard by shard; manifest.json written last)")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--encoder", required=True, help="encoder.safetensors from train-sem")
    p.add_argument("--out", required=True, help="codes folder, one sub-folder per split")

    p = stage("probe", _probe,
              "linear probes on one-hot codes and on continuous features (probe.* params)")
    p.add_argument("--codes", required=True,
                   help="codes folder of extract-codes (probe.train_split, probe.test_split)")
    p.add_argument("--out", required=True, help="probe.json to write")

    p = stage("train-sedd", _train_sedd,
              "train SEDD-absorb on the codes of sedd.train_split (sedd.* params; resumes "
              "from <out>/checkpoints)")
    p.add_argument("--codes", required=True, help="codes folder of extract-codes")
    p.add_argument("--out", required=True,
                   help="run folder: model.safetensors (EMA), meta.json, loss.csv, loss.png")

    p = stage("sample-codes", _sample_codes,
              "generate sedd.sample.samples codes into a codes folder (resumes batch by "
              "batch), and compare them with real codes")
    p.add_argument("--model", required=True, help="run folder of train-sedd")
    p.add_argument("--out", required=True, help="codes folder to write (part-*.parquet)")
    p.add_argument("--codes", required=True,
                   help="real codes folder (sedd.train_split and sedd.reference_split)")
    p.add_argument("--report", required=True, help="JSON comparison with the real codes")
    p.add_argument("--figure", required=True,
                   help="PNG of per-position token frequencies, real vs generated")

    p = stage("schema", _schema, "write (or --check) the JSON schema of params.yaml",
              needs_params=False)
    p.add_argument("--out", default=str(config.SCHEMA_PATH), help="default: %(default)s")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date")

    stage("params", _params, "check params.yaml and print the active settings")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dlc.io import setup_logging

    setup_logging(args.log, args.verbose)
    started = time.time()
    try:
        cfg = config.load(args.params, args.preset) if args.needs_params else None
        args.handler(args, cfg)
    except (config.ConfigError, FileNotFoundError, ValueError) as error:
        log.error("dlc %s: error: %s", args.stage, error)
        return 2
    log.info("dlc %s done in %.1f s", args.stage, time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
