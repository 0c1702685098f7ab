"""`dlc <stage>`: parse arguments, load and check params.yaml, call one stage, say where the
outputs went. Snakemake rules and DVC stages call exactly these commands."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

from dlc import config

log = logging.getLogger("dlc")
LAUNCHER_ENV = "DLC_LAUNCHER"   # the Snakemake slurm profile sets it for every rule


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

    extract_codes.run(cfg.active.sem, args.images, args.encoder, args.out, args.task,
                      args.tasks)


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
    sedd = sample_codes.with_remask_eta(preset.sedd, args.remask_eta)
    manifest = sample_codes.generate(sedd, args.model, args.out, preset.sem.length,
                                     preset.sem.vocab, args.task, args.tasks)
    if manifest is not None and args.report:
        if not (args.codes and args.figure):
            raise ValueError("--report needs --codes (the real codes) and --figure")
        sample_codes.report(sedd, args.out, args.codes, preset.sem.length,
                            preset.sem.vocab, args.report, args.figure)


def _generate(args, cfg: config.Config) -> None:
    from dlc.stages import sample_codes, sample_dit

    preset = cfg.active
    codes = Path(args.out) / "codes"
    sedd = sample_codes.with_remask_eta(preset.sedd, args.remask_eta)
    manifest = sample_codes.generate(sedd, args.sedd, codes, preset.sem.length,
                                     preset.sem.vocab, args.task, args.tasks)
    if manifest is None:
        raise ValueError(f"{codes}: other tasks' code shards are missing; run every task's "
                         "`dlc sample-codes` first (or rerun this when they are done)")
    sample_dit.generate(preset.dit, preset.vae, args.dit, codes, args.vae, preset.sem.length,
                        preset.sem.vocab, args.out, None, args.task, args.tasks)


def _evaluate(args, cfg: config.Config) -> None:
    from dlc.stages import evaluate

    evaluate.evaluate(cfg.active.evaluate, args.name, args.samples, args.out, args.images,
                      args.judge, args.cache)


def _compose(args, cfg: config.Config) -> None:
    from dlc.stages import compose

    preset = cfg.active
    if args.samples is not None:
        preset = dataclasses.replace(preset, compose=dataclasses.replace(
            preset.compose, samples=args.samples))
    result = compose.run(preset, args.sources, args.codes, args.dit, args.vae, args.out,
                         args.images, args.encoder, args.judge)
    print(f"{result['n']} composed samples -> {args.out} (grid.png, compose.json)")


def _composition_study(args, cfg: config.Config) -> None:
    from dlc.stages import composition_study

    composition_study.run(cfg.active, args.codes, args.dit, args.vae, args.images, args.judge,
                          args.out, args.grid, args.features_dit)


def _train_text2code(args, cfg: config.Config) -> None:
    from dlc.stages import text2code

    preset = cfg.active
    text2code.train(preset.text, args.codes, preset.sem.length, preset.sem.vocab, args.out)


def _text2code(args, cfg: config.Config) -> None:
    from dlc.stages import text2code

    out = text2code.run(cfg.active, args.prompts, args.model, args.dit, args.vae, args.out)
    print(f"codes -> {out / 'codes'}; images -> {out / 'images'}, {out / 'samples.npz'}; "
          f"grid (one row per prompt) -> {out / 'grid.png'}")


def _text2code_study(args, cfg: config.Config) -> None:
    from dlc.stages import text2code

    text2code.study(cfg.active, args.model, args.codes, args.dit, args.vae, args.judge,
                    args.out, args.grid)


def _real_samples(args, cfg: config.Config) -> None:
    from dlc.stages import real_samples

    real_samples.run(cfg.active.evaluate, cfg.active.vae, args.images, args.out, args.vae)


def _eta_sweep(args, cfg: config.Config) -> None:
    from dlc.stages import eta_sweep

    eta_sweep.run(cfg.active, args.sedd, args.dit, args.vae, args.out, args.images, args.judge,
                  args.cache, args.include, args.task, args.tasks)


def _eta_curve(args, cfg: config.Config) -> None:
    from dlc.stages import eta_sweep

    eta_sweep.curve(args.parts, args.summary, args.figure)


def _train_vae(args, cfg: config.Config) -> None:
    from dlc.stages import train_vae

    vae = cfg.active.vae
    if vae.source == "train":
        train_vae.train(vae, args.images, args.out)
    train_vae.evaluate(vae, args.images, args.out)


def _cache_latents(args, cfg: config.Config) -> None:
    from dlc.stages import cache_latents

    cache_latents.run(cfg.active.vae, args.images, args.vae, args.out)


def _train_dit(args, cfg: config.Config) -> None:
    from dlc.stages import train_dit

    preset = cfg.active
    encoder = Path(args.sem) / "encoder.safetensors" if args.sem else None
    train_dit.train(preset.dit, preset.vae, args.latents, args.codes, args.vae,
                    preset.sem.length, preset.sem.vocab, args.out, args.condition,
                    preset.sem, encoder, args.images)


def _sample_dit(args, cfg: config.Config) -> None:
    from dlc.stages import sample_dit

    preset = cfg.active
    codes = Path(args.codes)
    if not any(codes.glob("part-*.parquet")):  # the extract-codes root: take the sample split
        codes = codes / preset.dit.sample.split
    sample_dit.generate(preset.dit, preset.vae, args.model, codes, args.vae,
                        preset.sem.length, preset.sem.vocab, args.out, args.images,
                        args.task, args.tasks, args.judge)


def _train_judge(args, cfg: config.Config) -> None:
    from dlc.stages import train_judge

    preset = cfg.active
    if preset.judge is None:
        train_judge.write_none(args.out, f"presets.{cfg.preset}.judge is null")
    else:
        train_judge.train(preset.judge, args.images, preset.vae.resolution, args.out)


def _schema(args, cfg: config.Config | None) -> None:
    """The JSON schema and the configuration reference, both generated from config.py."""
    outputs = {Path(args.out): config.json_schema_text(),
               Path(args.reference): config.reference_markdown()}
    if args.check:
        stale = [str(path) for path, text in outputs.items()
                 if not path.is_file() or path.read_text() != text]
        if stale:
            raise config.ConfigError(f"{', '.join(stale)}: out of date; run `dlc schema`")
        print(f"{', '.join(map(str, outputs))} are up to date")
        return
    from dlc.io import write_bytes

    for path, text in outputs.items():
        write_bytes(path, text.encode())
        print(f"wrote {path}")


def _report(args, cfg: config.Config) -> None:
    from dlc.stages import report

    report.write(cfg.preset, args.results, args.logs, args.params, args.out)


def _params(args, cfg: config.Config) -> None:
    import yaml

    print(yaml.safe_dump({"preset": cfg.preset, "toy": config.to_dict(cfg.toy),
                          "active": config.to_dict(cfg.active)}, sort_keys=False))


def _tasks(p: argparse.ArgumentParser, what: str) -> None:
    """--task k --tasks n: the work split over n processes or SLURM array tasks."""
    p.add_argument("--task", type=int, default=0, help="this task's number k (default 0)")
    p.add_argument("--tasks", type=int, default=1,
                   help=f"number of tasks n; of {what}, task k makes number i when "
                        "i mod n = k")


def _eta_and_tasks(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--remask-eta", type=float,
                   help="replace sedd.sample.remask_eta (the eta sweep; 0 = plain sampler)")
    _tasks(p, what)


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
            p.add_argument("--launcher", default=os.environ.get(LAUNCHER_ENV, "local"),
                           choices=["local", "slurm", "submitit-local"],
                           help="run here (local), or submit as a SLURM job through submitit "
                                "and wait (slurm; submitit-local: a local subprocess job). "
                                f"Default: ${LAUNCHER_ENV} or local")
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
    _tasks(p, "the shards (whichever task finds them all written writes the manifests)")

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
    p.add_argument("--codes", help="real codes folder (sedd.train_split and "
                                   "sedd.reference_split), for --report")
    p.add_argument("--report", help="JSON comparison with the real codes")
    p.add_argument("--figure", help="PNG of per-position token frequencies, real vs generated")
    _eta_and_tasks(p, "the code shards")

    p = stage("generate", _generate,
              "images from nothing: SEDD codes (sedd.sample.*, <out>/codes) -> DiT "
              "(dit.sample.*) -> VAE decode; writes what sample-dit writes. For array jobs run "
              "every task's sample-codes, then every task's sample-dit")
    p.add_argument("--sedd", required=True, help="run folder of train-sedd")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--out", required=True,
                   help="folder: codes/, samples.npz, images/, samples.json, grid.png, shards/")
    _eta_and_tasks(p, "the code shards and image batches")

    p = stage("evaluate", _evaluate,
              "generated images against the real reference in every evaluate.extractors "
              "feature space (FD/FID, KID, sFID, IS, precision/recall, Vendi) -> one JSON")
    p.add_argument("--samples", required=True, help="samples.npz (arr_0: N x H x W x 3 uint8)")
    p.add_argument("--name", required=True, help="what is evaluated (dlc, encode_decode, ...)")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--images", help="images table (when evaluate.reference_split is set)")
    p.add_argument("--judge", help="train-judge folder (the judge feature space)")
    p.add_argument("--cache", help="folder for reference features, keyed by content hash")

    p = stage("compose", _compose,
              "hybrid codes from two or more source images' codes (compose.method: token or "
              "average), decoded by the DiT; grid.png shows the sources, then the samples")
    p.add_argument("--sources", nargs="+", required=True,
                   help="image_ids of the sources in the --codes table (two or more)")
    p.add_argument("--codes", required=True, help="codes folder holding the sources' codes")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--out", required=True,
                   help="folder: codes/, samples.npz, images/, grid.png, compose.json")
    p.add_argument("--samples", type=int, help="how many (default: compose.samples)")
    p.add_argument("--images", help="images table: the sources in the grid (and, with "
                                    "--encoder, their SEM distributions)")
    p.add_argument("--encoder", help="encoder.safetensors of train-sem (method: average)")
    p.add_argument("--judge", help="train-judge folder: Vendi score of the samples")

    p = stage("composition-study", _composition_study,
              "the built-in data's composition measurement: source pairs around every "
              "held-out (shape, colour), token-mixed codes vs reconstructions vs random codes, "
              "scored by the judge (inheritance, mixing, novel combinations, Vendi)")
    p.add_argument("--codes", required=True,
                   help="extract-codes folder (its compose.source_split sub-folder is used)")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--images", required=True, help="images table (the sources in the grid)")
    p.add_argument("--judge", required=True, help="train-judge folder")
    p.add_argument("--out", required=True, help="composition.json to write")
    p.add_argument("--grid", required=True, help="PNG: per pair A, B, then its samples")
    p.add_argument("--features-dit", default=None,
                   help="run folder of `train-dit --condition features`: adds the baseline of "
                        "averaged continuous features (default: without it)")

    p = stage("train-text2code", _train_text2code,
              "train the text -> code masked diffusion LM (text.* params: the tiny back end "
              "from scratch, or a local transformers model with the code tokens added) on the "
              "(code, caption) pairs of text.train.split; resumes from <out>/checkpoints")
    p.add_argument("--codes", required=True, help="extract-codes folder (with captions)")
    p.add_argument("--out", required=True,
                   help="run folder: model.safetensors + vocabulary.json (tiny) or model/ "
                        "(transformers), meta.json, loss.csv, loss.png")

    p = stage("text2code", _text2code,
              "write codes for each prompt with the text model (text.sample.*: samples per "
              "prompt, steps, temperature, remasking) and decode them with the DiT")
    p.add_argument("prompts", nargs="+", help='captions, e.g. "a large green star on a '
                                              'checkered blue background"')
    p.add_argument("--model", required=True, help="run folder of train-text2code")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--out", required=True,
                   help="folder: codes/, samples.npz, images/, grid.png (a row per prompt)")

    p = stage("text2code-study", _text2code_study,
              "prompts for every held-out (shape, colour) and as many seen ones; the judge "
              "scores the images' attributes against the prompts'")
    p.add_argument("--model", required=True, help="run folder of train-text2code")
    p.add_argument("--codes", required=True, help="extract-codes folder (the seen prompts)")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--judge", required=True, help="train-judge folder")
    p.add_argument("--out", required=True, help="text2code.json to write")
    p.add_argument("--grid", required=True, help="PNG: one row per prompt")

    p = stage("real-samples", _real_samples,
              "the evaluation's floors: evaluate.samples real images of evaluate.floor_split "
              "(or, with --vae, their VAE reconstructions) as a samples.npz")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--out", required=True, help="folder: samples.npz, samples.json")
    p.add_argument("--vae", help="VAE folder of train-vae: write reconstructions instead")

    p = stage("eta-sweep", _eta_sweep,
              "for every (eta, seed) of evaluate.eta_sweep x evaluate.eta_seeds: generate with "
              "that remask_eta and seed and evaluate (resumes); task k of n makes the points p "
              "with p mod n = k")
    p.add_argument("--sedd", required=True, help="run folder of train-sedd")
    p.add_argument("--dit", required=True, help="run folder of train-dit")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--out", required=True,
                   help="folder: eta<eta>/seed<seed>/ (codes, samples, fid.json), points.json")
    p.add_argument("--images", help="images table (when evaluate.reference_split is set)")
    p.add_argument("--judge", help="train-judge folder (the judge feature space)")
    p.add_argument("--cache", help="folder for reference features, keyed by content hash")
    p.add_argument("--include", nargs="*", default=[],
                   help="evaluate JSONs of generated samples that stand for their own point")
    _tasks(p, "the (eta, seed) points")

    p = stage("eta-curve", _eta_curve,
              "the eta sweep's parts gathered: distance vs eta, mean and std over seeds, as "
              "JSON and PNG (the paper's U-curve)")
    p.add_argument("--parts", nargs="+", required=True, help="points.json of every part")
    p.add_argument("--summary", required=True, help="sweep JSON to write")
    p.add_argument("--figure", required=True, help="PNG to write")

    p = stage("train-vae", _train_vae,
              "the image autoencoder: train a small AutoencoderKL (vae.source: train; resumes "
              "from <out>/checkpoints) or use the pretrained folder (vae.pretrained); both "
              "measure held-out reconstruction PSNR")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--out", required=True,
                   help="VAE folder: vae.json, vae_recon.png (and model/, loss.csv, loss.png "
                        "when trained)")

    p = stage("cache-latents", _cache_latents,
              "encode every split of vae.cache.splits into <out>/<split>/ latent shards "
              "(resumes shard by shard; manifest.json written last)")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (holds vae.json)")
    p.add_argument("--out", required=True, help="latents folder, one sub-folder per split")

    p = stage("train-dit", _train_dit,
              "train a DiT on (VAE latent, code) pairs of dit.train_split (dit.* params; "
              "resumes from <out>/checkpoints)")
    p.add_argument("--latents", required=True, help="latents folder of cache-latents")
    p.add_argument("--codes", required=True, help="codes folder of extract-codes")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--condition", default="code", choices=["code", "features", "none"],
                   help="code: the DLC-conditioned DiT; features: the SEM encoder's "
                        "continuous features (the codes table's features column; the "
                        "composition baseline); none: the unconditional baseline with the "
                        "same network (default: %(default)s)")
    p.add_argument("--sem", help="folder of train-sem (encoder.safetensors): REPA's targets "
                                 "(needed when dit.repa is set)")
    p.add_argument("--images", help="images table of `dlc data` (needed when dit.repa is set)")
    p.add_argument("--out", required=True,
                   help="run folder: model.safetensors (EMA), meta.json, loss.csv, loss.png, "
                        "samples.png")

    p = stage("sample-dit", _sample_dit,
              "decode the first dit.sample.samples codes of a codes folder into images "
              "(resumes batch by batch; samples.npz assembled once every batch exists)")
    p.add_argument("--model", required=True, help="run folder of train-dit")
    p.add_argument("--codes", required=True,
                   help="codes folder (part-*.parquet) to decode, or the extract-codes folder "
                        "(then its dit.sample.split sub-folder)")
    p.add_argument("--vae", required=True, help="VAE folder of train-vae (vae.json)")
    p.add_argument("--out", required=True,
                   help="folder: samples.npz, images/, samples.json, grid.png, shards/")
    p.add_argument("--images", help="images table, for a grid of the codes' source images")
    p.add_argument("--judge", help="train-judge folder: score the attributes of the samples "
                                   "against their codes' source attributes")
    _tasks(p, "the image batches")

    p = stage("train-judge", _train_judge,
              "train the attribute classifier (judge.* params) that scores generated images "
              "of datasets with attribute columns (judge: null writes a judge.json that says "
              "there is none)")
    p.add_argument("--images", required=True, help="images table written by `dlc data`")
    p.add_argument("--out", required=True, help="folder: judge.safetensors, judge.json")

    p = stage("schema", _schema, "write (or --check) the JSON schema of params.yaml and the "
              "configuration reference, both from src/dlc/config.py", needs_params=False)
    p.add_argument("--out", default=str(config.SCHEMA_PATH), help="default: %(default)s")
    p.add_argument("--reference", default=str(config.REFERENCE_PATH),
                   help="default: %(default)s")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date")

    p = stage("report", _report,
              "the run's numbers and figures, read back from its results files and job logs, "
              "as one Markdown report (+ report.json and eta_curve.csv for DVC)")
    p.add_argument("--results", required=True, help="the preset's folder, results/<preset>")
    p.add_argument("--logs", required=True, help="the job logs' folder, results/logs")
    p.add_argument("--out", required=True, help="report.md to write (figures in report/ "
                                                "beside it)")

    stage("params", _params, "check params.yaml and print the active settings")
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
