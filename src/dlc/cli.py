"""`dlc <stage>`: parse arguments, load and check params.yaml, call one stage, say where the
outputs went. Snakemake rules and DVC stages call exactly these commands.

The stages are a table: each row names a stage, says what it does and lists its arguments.
`dlc <name> --out x ...` calls `dlc.stages.<name with _>.run(config, out=x, ...)`: every
stage module has one entry point, `run`, taking the loaded params and the arguments by name.
Stage modules load only when their command runs, so `dlc --help` imports no torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlc import config

log = logging.getLogger("dlc")
LAUNCHER_ENV = "DLC_LAUNCHER"   # the Snakemake slurm profile sets it for every rule


@dataclass(frozen=True)
class Arg:
    """One command-line argument: its flag (or positional name) and argparse's options."""
    flag: str
    help: str
    options: dict[str, Any] = field(default_factory=dict)


def arg(flag: str, help: str, **options: Any) -> Arg:
    return Arg(flag, help, options)


def required(flag: str, help: str, **options: Any) -> Arg:
    return Arg(flag, help, {"required": True, **options})


@dataclass(frozen=True)
class Stage:
    """A command `dlc <name>` that runs `dlc.stages.<module>.run(cfg, **arguments)`."""
    name: str
    help: str
    args: tuple[Arg, ...]
    tasks: str | None = None          # what --task k --tasks n split, for stages that split
    params_path: bool = False         # the stage also reads the params file (its hash)

    @property
    def module(self) -> str:
        return "dlc.stages." + self.name.replace("-", "_")


REMASK_ETA = arg("--remask-eta", "replace sedd.sample.remask_eta (the eta sweep; 0 = plain "
                 "sampler)", type=float)
IMAGES = required("--images", "images table written by `dlc data`")
VAE = required("--vae", "VAE folder of train-vae (vae.json)")
DIT = required("--dit", "run folder of train-dit")
TEXT_SECTION = arg("--section", "params section of the text model: text, or text_pretrained "
                   "(the second model beside it)", choices=["text", "text_pretrained"],
                   default="text")
JUDGE_OPTIONAL = arg("--judge", "train-judge folder (the judge feature space)")
CACHE = arg("--cache", "folder for reference features, keyed by content hash")

STAGES = (
    Stage("data", "the preset's images as one Parquet table: the built-in shapes dataset "
          "(generated) or class-folder trees (indexed, unreadable files reported)", (
              required("--out", "Parquet table to write"),
              required("--report", "JSON summary (counts, skipped files)"),
              arg("--preview", "PNG grid of 64 training images to write"))),
    Stage("toy-train", "Section 3: train one MLP denoiser on a K-mode Gaussian grid (toy.* "
          "params)", (
              required("--modes", "number of mixture components K", type=int),
              required("--variant", "no condition, the true component, or a fitted GMM's "
                       "component", choices=["unconditional", "oracle", "gmm"]),
              required("--out", "run folder: model.safetensors, meta.json, loss.csv, "
                       "checkpoints/"))),
    Stage("toy-eval", "Section 3: sample a trained denoiser and measure KL(true || model) "
          "with floors", (
              required("--model", "run folder written by toy-train"),
              required("--out", "folder for metrics.json and samples.npy"))),
    Stage("toy-report", "Section 3: gather every run into kld.json and PNG figures", (
        required("--runs", "folder holding K<K>/<variant>/ runs"),
        required("--out", "folder for kld.json and the PNGs"))),
    Stage("train-sem", "train the SEM encoder by DINOv2 self-distillation on the train split "
          "(sem.* params; resumes from <out>/checkpoints)", (
              IMAGES,
              required("--out", "run folder: encoder.safetensors, meta.json, loss.csv, "
                       "loss.png"))),
    Stage("extract-codes", "encode every split of sem.extract.splits into "
          "<out>/<split>/part-*.parquet (resumes shard by shard; manifest.json written last)", (
              IMAGES,
              required("--encoder", "encoder.safetensors from train-sem"),
              required("--out", "codes folder, one sub-folder per split")),
          tasks="the shards (whichever task finds them all written writes the manifests)"),
    Stage("caption-codes", "the codes of the captioned dataset text.captions (webdataset "
          "or Parquet shards), caption column kept, for text -> code training", (
              required("--encoder", "encoder.safetensors of train-sem"),
              required("--out", "codes folder (results/<preset>/codes/<text.train.split>)")),
          tasks="the input shards i with i mod n = k"),
    Stage("import-dlc", "the authors' released DLC dataset (a local download of "
          "lavoies/DLC_512x256: Parquet shards of `labels`, the codes, and `features`, the "
          "SD-VAE latents) as a codes table and a latent cache", (
              required("--source", "folder of the dataset's Parquet shards (or one shard)"),
              required("--vae", "train-vae folder of the VAE the latents came from (vae.json)"),
              required("--split", "the split to write (train for their ImageNet train set)"),
              required("--features", "scaled: latents already multiplied by the VAE's scaling "
                       "factor; unscaled: multiply them here", choices=["scaled", "unscaled"]),
              required("--codes", "codes folder (results/<preset>/codes)"),
              required("--latents", "latent cache folder (results/<preset>/latents)"))),
    Stage("convert-authors", "a DiT (DLC-conditioned), SEDD or SEM teacher checkpoint "
          "written by the authors' code as a run folder of ours (model.safetensors or "
          "encoder.safetensors, meta.json), every tensor mapped", (
              required("--model", "which network", choices=["dit", "sedd", "sem"]),
              required("--checkpoint", "their file: DiT model.safetensors or "
                       "custom_checkpoint_0.pkl (EMA); SEDD checkpoint.pth; SEM "
                       "teacher_checkpoint.pth"),
              required("--weights", "the EMA or the online weights", choices=["ema", "model"]),
              required("--out", "run folder to write (results/<preset>/dit, sedd or sem)"))),
    Stage("probe", "linear probes on one-hot codes and on continuous features (probe.* "
          "params)", (
              required("--codes", "codes folder of extract-codes (probe.train_split, "
                       "probe.test_split)"),
              required("--out", "probe.json to write"))),
    Stage("train-sedd", "train SEDD-absorb on the codes of sedd.train_split (sedd.* params; "
          "resumes from <out>/checkpoints)", (
              required("--codes", "codes folder of extract-codes"),
              required("--out", "run folder: model.safetensors (EMA), meta.json, loss.csv, "
                       "loss.png"))),
    Stage("sample-codes", "generate sedd.sample.samples codes into a codes folder (resumes "
          "batch by batch), and compare them with real codes", (
              required("--model", "run folder of train-sedd"),
              required("--out", "codes folder to write (part-*.parquet)"),
              arg("--codes", "real codes folder (sedd.train_split and sedd.reference_split), "
                  "for --report"),
              arg("--report", "JSON comparison with the real codes"),
              arg("--figure", "PNG of per-position token frequencies, real vs generated"),
              REMASK_ETA),
          tasks="the code shards"),
    Stage("generate", "images from nothing: SEDD codes (sedd.sample.*, <out>/codes) -> DiT "
          "(dit.sample.*) -> VAE decode; writes what sample-dit writes. For array jobs run "
          "every task's sample-codes, then every task's sample-dit", (
              required("--sedd", "run folder of train-sedd"), DIT, VAE,
              required("--out", "folder: codes/, samples.npz, images/, samples.json, "
                       "grid.png, shards/"),
              REMASK_ETA),
          tasks="the code shards and image batches"),
    Stage("evaluate", "generated images against the real reference in every "
          "evaluate.extractors feature space (FD/FID, KID, sFID, IS, precision/recall, Vendi) "
          "-> one JSON", (
              required("--samples", "samples.npz (arr_0: N x H x W x 3 uint8)"),
              required("--name", "what is evaluated (dlc, encode_decode, ...)"),
              required("--out", "results JSON to write"),
              arg("--images", "images table (when evaluate.reference_split is set)"),
              JUDGE_OPTIONAL, CACHE)),
    Stage("compose", "hybrid codes from two or more source images' codes (compose.method: "
          "token, average or attribute), decoded by the DiT; grid.png shows the sources, then "
          "the samples", (
              required("--sources", "image_ids of the sources in the --codes table (two or "
                       "more)", nargs="+"),
              required("--codes", "codes folder holding the sources' codes"), DIT, VAE,
              required("--out", "folder: codes/, samples.npz, images/, grid.png, "
                       "compose.json"),
              arg("--samples", "how many (default: compose.samples)", type=int),
              arg("--images", "images table: the sources in the grid (and, with --encoder, "
                  "their SEM distributions)"),
              arg("--encoder", "encoder.safetensors of train-sem (method: average)"),
              arg("--judge", "train-judge folder: Vendi score of the samples"))),
    Stage("composition-study", "the built-in data's composition measurement: source pairs "
          "around every held-out (shape, colour), token-mixed and attribute-transplanted codes "
          "vs reconstructions vs random codes, scored by the judge (inheritance, mixing, "
          "novel combinations with Wilson intervals, Vendi), and where each attribute lives "
          "in the code", (
              required("--codes", "extract-codes folder (its compose.source_split sub-folder "
                       "is used)"),
              DIT, VAE,
              required("--images", "images table (the sources in the grid)"),
              required("--judge", "train-judge folder"),
              required("--out", "composition.json to write"),
              required("--grid", "PNG: per pair A, B, then its samples"),
              required("--position-map", "PNG: per attribute and code position, the mutual "
                       "information between token and attribute over H(attribute)"),
              arg("--features-dit", "run folder of `train-dit --condition features`: adds the "
                  "baseline of averaged continuous features (default: without it)"))),
    Stage("train-text2code", "train the text -> code masked diffusion LM (text.* params: the "
          "tiny back end from scratch, or a local transformers model with the code tokens "
          "added) on the (code, caption) pairs of text.train.split; resumes from "
          "<out>/checkpoints", (
              required("--codes", "extract-codes folder (with captions)"),
              required("--out", "run folder: model.safetensors + vocabulary.json (tiny) or "
                       "model/ (transformers), meta.json, loss.csv, loss.png"), TEXT_SECTION)),
    Stage("text2code", "write codes for each prompt with the text model (text.sample.*: "
          "samples per prompt, steps, temperature, remasking) and decode them with the DiT", (
              arg("prompts", 'captions, e.g. "a large green star on a checkered blue '
                  'background"', nargs="+"),
              required("--model", "run folder of train-text2code"), DIT, VAE,
              required("--out", "folder: codes/, samples.npz, images/, grid.png (a row per "
                       "prompt)"), TEXT_SECTION)),
    Stage("text2code-study", "prompts for every held-out (shape, colour), as many seen ones "
          "and text_study.paraphrases; the judge scores the images' attributes against the "
          "prompts'; each image's nearest training image (judge features) and code (Hamming)", (
              required("--model", "run folder of train-text2code"),
              required("--codes", "extract-codes folder (the seen prompts, the training codes)"),
              DIT, VAE, required("--judge", "train-judge folder"), IMAGES,
              required("--out", "JSON to write"),
              required("--grid", "PNG: one row per prompt"),
              required("--novelty-grid", "PNG: samples, each beside its nearest training image "
                       "by judge features and by code"), TEXT_SECTION)),
    Stage("real-samples", "the evaluation's floors: evaluate.samples real images of "
          "evaluate.floor_split (or, with --vae, their VAE reconstructions) as a samples.npz", (
              IMAGES,
              required("--out", "folder: samples.npz, samples.json"),
              arg("--vae", "VAE folder of train-vae: write reconstructions instead"))),
    Stage("eta-sweep", "for every (eta, seed) of evaluate.eta_sweep x evaluate.eta_seeds: "
          "generate with that remask_eta and seed and evaluate (resumes); task k of n makes "
          "the points p with p mod n = k", (
              required("--sedd", "run folder of train-sedd"), DIT, VAE,
              required("--out", "folder: eta<eta>/seed<seed>/ (codes, samples, fid.json), "
                       "points.json"),
              arg("--images", "images table (when evaluate.reference_split is set)"),
              JUDGE_OPTIONAL, CACHE,
              arg("--include", "evaluate JSONs of generated samples that stand for their own "
                  "point", nargs="*", default=[])),
          tasks="the (eta, seed) points"),
    Stage("eta-curve", "the eta sweep's parts gathered: distance vs eta, mean and std over "
          "seeds, as JSON and PNG (the paper's U-curve)", (
              required("--parts", "points.json of every part", nargs="+"),
              required("--summary", "sweep JSON to write"),
              required("--figure", "PNG to write"))),
    Stage("train-vae", "the image autoencoder: train a small AutoencoderKL (vae.source: "
          "train; resumes from <out>/checkpoints) or use the pretrained folder "
          "(vae.pretrained); both measure held-out reconstruction PSNR", (
              IMAGES,
              required("--out", "VAE folder: vae.json, vae_recon.png (and model/, loss.csv, "
                       "loss.png when trained)"))),
    Stage("cache-latents", "encode every split of vae.cache.splits into <out>/<split>/ "
          "latent shards (resumes shard by shard; manifest.json written last)", (
              IMAGES,
              required("--vae", "VAE folder of train-vae (holds vae.json)"),
              required("--out", "latents folder, one sub-folder per split"))),
    Stage("train-dit", "train a DiT on (VAE latent, code) pairs of dit.train_split (dit.* "
          "params; resumes from <out>/checkpoints)", (
              required("--latents", "latents folder of cache-latents"),
              required("--codes", "codes folder of extract-codes"), VAE,
              arg("--condition", "code: the DLC-conditioned DiT; features: the SEM encoder's "
                  "continuous features (the codes table's features column; the composition "
                  "baseline); none: the unconditional baseline with the same network "
                  "(default: code)", choices=["code", "features", "none"]),
              arg("--sem", "folder of train-sem (encoder.safetensors): REPA's targets (needed "
                  "when dit.repa is set)"),
              arg("--images", "images table of `dlc data` (needed when dit.repa is set)"),
              required("--out", "run folder: model.safetensors (EMA), meta.json, loss.csv, "
                       "loss.png, samples.png"))),
    Stage("sample-dit", "decode the first dit.sample.samples codes of a codes folder into "
          "images (resumes batch by batch; samples.npz assembled once every batch exists)", (
              required("--model", "run folder of train-dit"),
              required("--codes", "codes folder (part-*.parquet) to decode, or the "
                       "extract-codes folder (then its dit.sample.split sub-folder)"),
              VAE,
              required("--out", "folder: samples.npz, images/, samples.json, grid.png, "
                       "shards/"),
              arg("--images", "images table, for a grid of the codes' source images"),
              arg("--judge", "train-judge folder: score the attributes of the samples against "
                  "their codes' source attributes")),
          tasks="the image batches"),
    Stage("train-judge", "train the attribute classifier (judge.* params) that scores "
          "generated images of datasets with attribute columns (judge: null writes a "
          "judge.json that says there is none)", (
              IMAGES,
              required("--out", "folder: judge.safetensors, judge.json"))),
    Stage("report", "the run's numbers and figures, read back from its results files and job "
          "logs, as one Markdown report (+ report.json and eta_curve.csv for DVC)", (
              required("--results", "the preset's folder, results/<preset>"),
              required("--logs", "the job logs' folder, results/logs"),
              required("--out", "report.md to write (figures in report/ beside it)")),
          params_path=True),
    Stage("preflight", "before a long study: every path the preset names exists and loads "
          "(data trees, weights, VAE, Inception, reference batch, text model), each training "
          "job's GPUs divide its batch; prints the planned GPU jobs, their resources and "
          "estimated GPU-hours", (
              arg("--out", "JSON of the checks and the plan"),
              arg("--benchmarks", "folder of the H200 measurements (benchmarks/results) for "
                  "the GPU-hour estimates"))),
    Stage("export", "a finished run's trained parts as one shareable folder (pipeline.json, "
          "a model card, per part config.json and model.safetensors; the VAE as a diffusers "
          "folder) that `dlc.Pipeline.from_pretrained` loads with no params.yaml", (
              required("--run", "the preset's folder, results/<preset>"),
              required("--out", "folder to write (replaced whole)"))),
)


def _stage_handler(stage: Stage, dests: list[str]):
    """Import the stage's module and call its run with this command's arguments by name
    (arguments not given are left to the function's defaults)."""
    def handler(args, cfg: config.Config) -> None:
        kwargs = {dest: getattr(args, dest) for dest in dests
                  if getattr(args, dest) is not None}
        if stage.params_path:
            kwargs["params"] = args.params
        importlib.import_module(stage.module).run(cfg, **kwargs)
    return handler


def _schema(args, cfg: None) -> None:
    """The JSON schema and the configuration reference, both generated from dlc.config."""
    paths = config.write_generated(args.out, args.reference, args.check)
    for path in paths:
        print(f"{path} is up to date" if args.check else f"wrote {path}")


def _params(args, cfg: config.Config) -> None:
    import yaml

    print(yaml.safe_dump({"preset": cfg.preset, "toy": config.to_dict(cfg.toy),
                          "active": config.to_dict(cfg.active)}, sort_keys=False))


def _common(p: argparse.ArgumentParser, needs_params: bool) -> None:
    if needs_params:
        p.add_argument("--params", default=str(config.DEFAULT_PARAMS),
                       help="parameter file (default: %(default)s)")
        p.add_argument("--preset", help="override the file's `preset:` (tiny, imagenet)")
        p.add_argument("--launcher", default=os.environ.get(LAUNCHER_ENV, "local"),
                       choices=["local", "slurm", "submitit-local"],
                       help="run here (local), or submit as a SLURM job through submitit and "
                            "wait (slurm; submitit-local: a local subprocess job). Default: "
                            f"${LAUNCHER_ENV} or local")
    p.add_argument("--log", help="also append the log to this file")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlc", description="Discrete Latent Codes: the study's stages, one command each.")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="<stage>")
    for stage in STAGES:
        p = sub.add_parser(stage.name, help=stage.help, description=stage.help)
        dests = [p.add_argument(a.flag, help=a.help, **a.options).dest for a in stage.args]
        if stage.tasks:
            p.add_argument("--task", type=int, default=0, help="this task's number k (default 0)")
            p.add_argument("--tasks", type=int, default=1,
                           help=f"number of tasks n; of {stage.tasks}, task k makes number i "
                                "when i mod n = k")
            dests += ["task", "tasks"]
        p.set_defaults(handler=_stage_handler(stage, dests), needs_params=True)
        _common(p, needs_params=True)

    p = sub.add_parser("schema", help="write (or --check) the JSON schema of params.yaml and "
                       "the configuration reference, both from src/dlc/config/")
    p.add_argument("--out", default=str(config.SCHEMA_PATH), help="default: %(default)s")
    p.add_argument("--reference", default=str(config.REFERENCE_PATH),
                   help="default: %(default)s")
    p.add_argument("--check", action="store_true", help="fail if a file is out of date")
    p.set_defaults(handler=_schema, needs_params=False)
    _common(p, needs_params=False)

    p = sub.add_parser("params", help="check params.yaml and print the active settings")
    p.set_defaults(handler=_params, needs_params=True)
    _common(p, needs_params=True)
    return parser


def _run(args, cfg: config.Config | None, argv: list[str]) -> None:
    """The stage here, holding the lock on its output; or, under a submitit launcher, the same
    command as a job (the job takes the lock where it runs)."""
    from dlc import io

    if cfg is None:
        args.handler(args, cfg)
        return
    if args.launcher != "local":
        from dlc.launch import jobs

        log_root = Path(args.log).parent if args.log else Path("results/logs")
        jobs.submit_and_wait(_without_launcher(argv), args.launcher,
                             os.environ.get(jobs.JOB_ENV, args.stage), log_root,
                             cfg.active.slurm, main=main,
                             supports_tasks=hasattr(args, "task"))
        return
    # Every DDP rank and every array task writes its own part: the lock is the main process's
    # of its task (task-split stages lock per task).
    if int(os.environ.get("RANK", "0")) != 0 or not getattr(args, "out", None):
        args.handler(args, cfg)
        return
    out = Path(args.out)
    if getattr(args, "tasks", 1) > 1:
        out = out.with_name(f"{out.name}.task-{args.task}")
    with io.output_lock(out, f"dlc {' '.join(argv)}"):
        args.handler(args, cfg)


def _without_launcher(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--launcher":
            skip = True
        elif not arg.startswith("--launcher="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from dlc.io import setup_logging

    setup_logging(args.log, args.verbose)
    started = time.time()
    try:
        cfg = config.load(args.params, args.preset) if args.needs_params else None
        _run(args, cfg, argv)
    except (config.ConfigError, ValueError, OSError, RuntimeError) as error:
        # OSError: a missing input, a full disk, a permission, each with the path it names
        log.error("dlc %s: error: %s", args.stage, error)
        return 2
    log.info("dlc %s done in %.1f s", args.stage, time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
