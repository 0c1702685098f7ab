"""Time of the ADM evaluation per 1,000 images: Inception features (pool, sFID spatial map,
logits in one pass) of 1,000 generated and 1,000 reference 256-px images, then FID, sFID, IS,
precision/recall (k = 3), KID and Vendi. The Inception weights are random (the real file is not
on every machine): the time does not depend on them. Writes $OUT/metrics_<device>.json (or
benchmarks/results/).

    PYTHONPATH=src python benchmarks/metrics.py [--images 1000] [--batch 250]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dlc.config import EvaluateConfig
from dlc.metrics.evaluation import compare
from dlc.metrics.features import FeatureSpace
from dlc.metrics.inception import build_inception, save_random_weights


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rng = np.random.default_rng(0)
    generated = rng.integers(0, 256, (args.images, 256, 256, 3), dtype=np.uint8)
    reference = rng.integers(0, 256, (args.images, 256, 256, 3), dtype=np.uint8)
    cfg = EvaluateConfig(samples=args.images, reference_split=None, reference_batch="none",
                         reference_images=args.images, extractors=["inception"],
                         inception_weights="random", effnet_resolution=224,
                         batch_size=args.batch, prc_neighborhood=3, isc_splits=10,
                         kid_subsets=100, kid_subset_size=1000, vendi_q=1.0, eta_sweep=[0.0],
                         threads=os.cpu_count() or 1)
    torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory() as folder:
        weights = save_random_weights(Path(folder) / "random_inception.pth")
        space = FeatureSpace("inception", build_inception(weights, device), "random",
                             str(weights), device)
        space.extract(generated[: args.batch], args.batch)          # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        features = [space.extract(images, args.batch) for images in (generated, reference)]
        if device.type == "cuda":
            torch.cuda.synchronize()
        extraction = time.perf_counter() - start
        start = time.perf_counter()
        metrics = compare("inception", *features, cfg)
        scoring = time.perf_counter() - start
    per_1000 = 1000 / args.images
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(), "images": args.images, "batch": args.batch,
        "resolution": 256,
        "inception_images_per_s": 2 * args.images / extraction,
        "features_s_per_1000_samples_and_1000_reference": extraction * per_1000,
        "metrics_s_at_this_n": scoring,
        "metrics_computed": sorted(metrics),
        "note": "random Inception weights: times only, the metric values mean nothing",
    }
    out = Path(os.environ.get("OUT", Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"metrics_{device.type}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
