"""A variant of the tiny preset's VAE for the DiT study: train it with overrides of the `vae`
params, measure it, cache its latents, and lay out a results folder that the DiT study
(research/dit_fidelity.py --results) reads: the variant's vae/ and latents/, the preset's
codes, encoder, images and judge linked in.

    .venv/bin/python research/vae_variant.py results/tiny_kl1e-4 vae.train.kl_weight=1e-4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from dlc import io
from dlc.stages import cache_latents, train_vae

sys.path.insert(0, str(Path(__file__).resolve().parent / "sem"))
from sem_probe_sweep import overridden  # noqa: E402


def judge_ceiling(results: Path, vae_folder: Path, n: int = 1000) -> dict:
    """The judge on VAE reconstructions of the first n test images whose codes the DiT study
    decodes: the best agreement any generator on these latents can reach."""
    from dlc.data.codes import read_codes
    from dlc.data.sources import ImageTable
    from dlc.models.judge import agreement, load_judge, predict
    from dlc.models.vae import load_vae, reconstruct

    codes = read_codes(results / "codes" / "test")
    table = ImageTable(results / "data" / "images.parquet", "test")
    rows = {image_id: i for i, image_id in enumerate(table.frame["image_id"])}
    images = np.stack([table.centred(rows[i], 32) for i in codes.image_ids[:n]])
    judge, report = load_judge(results / "judge")
    predicted = predict(judge, reconstruct(load_vae(vae_folder), images), report["classes"])
    return {k: round(v, 4) for k, v in agreement(predicted, codes.frame.iloc[:n]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="results folder of the variant")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE under presets.tiny")
    parser.add_argument("--preset-results", type=Path, default=Path("results/tiny"))
    parser.add_argument("--ceiling-only", action="store_true",
                        help="only score the judge on the variant's reconstructions")
    args = parser.parse_args()
    if args.ceiling_only:
        print(args.out, judge_ceiling(args.preset_results, args.out / "vae" / "model"))
        return
    cfg = overridden(yaml.safe_load(Path("params.yaml").read_text()), "tiny", args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    for shared in ("codes", "sem", "data", "judge"):
        link = args.out / shared
        if not link.exists():
            link.symlink_to((args.preset_results / shared).resolve())
    images = args.out / "data" / "images.parquet"
    start = time.perf_counter()
    train_vae.train(cfg.vae, images, args.out / "vae")
    seconds = time.perf_counter() - start
    report = train_vae.evaluate(cfg.vae, images, args.out / "vae")
    cache_latents.cache(cfg.vae, images, args.out / "vae", args.out / "latents")
    io.write_json(args.out / "variant.json", {
        "overrides": args.overrides, "train_seconds": round(seconds, 1),
        "psnr": report["reconstruction"],
        "judge_on_reconstructions": judge_ceiling(args.preset_results,
                                                  args.out / "vae" / "model")})
    print(args.out, seconds, report["reconstruction"]["mean"], flush=True)


if __name__ == "__main__":
    main()
