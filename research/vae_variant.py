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

import yaml

from dlc import io
from dlc.stages import cache_latents, train_vae

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from sem_probe_sweep import overridden  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="results folder of the variant")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE under presets.tiny")
    parser.add_argument("--preset-results", type=Path, default=Path("results/tiny"))
    args = parser.parse_args()
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
    cache_latents.run(cfg.vae, images, args.out / "vae", args.out / "latents")
    io.write_json(args.out / "variant.json", {"overrides": args.overrides,
                                              "train_seconds": round(seconds, 1),
                                              "psnr": report["reconstruction"]})
    print(args.out, seconds, report["reconstruction"]["mean"], flush=True)


if __name__ == "__main__":
    main()
