"""Code extraction throughput (images/s): the tiny preset's SEM encoder at 32 px and the paper's
ViT-L/14 (4 registers) SEM encoder at 224 px with L512 x V256, both from random weights
(throughput does not depend on the weights). On CPU: fp32, all cores given; on a GPU: bf16
autocast, and the hours ImageNet's 1,281,167 training images would take. Writes
benchmarks/results/sem_extract_<device>.json.

    .venv/bin/python benchmarks/sem_extract.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from dlc import config
from dlc.models.sem import build_encoder

IMAGENET_TRAIN = 1_281_167


def images_per_second(encoder, size: int, batch: int, device: torch.device,
                      repeat: int) -> float:
    images = torch.randn(batch, 3, size, size, device=device)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else nullcontext())
    with autocast:
        encoder.codes(images)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeat):
            encoder.codes(images)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * repeat / (time.perf_counter() - start)


def main() -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    params = config.load("params.yaml")
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda"
               else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
               "torch": torch.__version__, "threads": torch.get_num_threads(),
               "precision": "bf16 autocast" if device.type == "cuda" else "fp32"}
    for preset, batch, repeat in (("tiny", 256, 5), ("imagenet", 256 if device.type == "cuda"
                                                     else 4, 5 if device.type == "cuda" else 2)):
        sem = params.presets[preset].sem
        encoder = build_encoder(sem, pretrained=False).to(device).eval()
        rate = images_per_second(encoder, sem.backbone.img_size, batch, device, repeat)
        row = {"backbone": sem.backbone.name, "img_size": sem.backbone.img_size,
               "L": sem.length, "V": sem.vocab, "batch": batch,
               "parameters": sum(p.numel() for p in encoder.parameters()),
               "images_per_s": round(rate, 2)}
        if preset == "imagenet":
            row["imagenet_train_hours"] = round(IMAGENET_TRAIN / rate / 3600, 2)
        results[preset] = row
        print(preset, row, flush=True)
        del encoder
    out = Path("benchmarks/results") / f"sem_extract_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
