"""How fast can the tiny SEM backbone learn shape at all? The same ViT, trained with the shape
labels (cross-entropy on the CLS token, AdamW, batch and image size of the tiny preset,
horizontal flips): test top-1 on shape along the way. This is the ceiling that
self-distillation is measured against (issue 3: the probe's shape target): a number of steps
below which no self-supervised run of that backbone can be expected to know shape.

Both the preset's patch embedding and the convolutional stem (`sem.backbone.conv_stem: 32`).
Needs the shapes table of `dlc data` (results/tiny/data/images.parquet by default). Writes
benchmarks/results/sem_shape_ceiling.json.

    .venv/bin/python benchmarks/sem_shape_ceiling.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from dlc import config, io
from dlc.data.multicrop import normalize
from dlc.data.shapes import SHAPES, decode_images, read_table
from dlc.stages.train_sem import build_encoder

WARMUP_STEPS = 30


def shape_data(frame) -> tuple[torch.Tensor, torch.Tensor]:
    images = normalize()(torch.from_numpy(decode_images(frame)).permute(0, 3, 1, 2))
    return images, torch.tensor([SHAPES.index(s) for s in frame["shape"]])


def shape_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(batch).argmax(-1) for batch in images.split(500)])
    model.train()
    return (predictions == labels).float().mean().item()


def learning_curve(sem: config.SEMConfig, train, test, evaluate_at: list[int], lr: float,
                   seed: int) -> list[dict]:
    torch.manual_seed(seed)
    backbone = build_encoder(sem, pretrained=False).backbone  # num_classes=0: the CLS token
    model = nn.Sequential(backbone, nn.Linear(backbone.embed_dim, len(SHAPES)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    generator = torch.Generator().manual_seed(seed)
    (images, labels), batch = train, sem.train.batch_size
    curve, start = [], time.perf_counter()
    for step in range(max(evaluate_at) + 1):
        if step in evaluate_at:
            curve.append({"step": step, "shape_top1": round(shape_accuracy(model, *test), 4),
                          "seconds": round(time.perf_counter() - start, 1)})
            print(curve[-1], flush=True)
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / WARMUP_STEPS)
        rows = torch.randint(len(images), (batch,), generator=generator)
        flip = torch.rand(batch, generator=generator) < 0.5
        batch_images = torch.where(flip[:, None, None, None], images[rows].flip(-1),
                                   images[rows])
        loss = F.cross_entropy(model(batch_images), labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="results/tiny/data/images.parquet")
    parser.add_argument("--evaluate-at", default="0,160,320,640,1000,1500")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="benchmarks/results/sem_shape_ceiling.json")
    args = parser.parse_args()
    sem = config.load("params.yaml").presets["tiny"].sem
    frame, _ = read_table(args.images)  # read once, split here
    train, test = (shape_data(frame[frame["split"] == split]) for split in ("train", "test"))
    results = {"images": args.images, "train_images": len(train[1]), "test_images": len(test[1]),
               "batch_size": sem.train.batch_size, "lr": args.lr, "warmup_steps": WARMUP_STEPS,
               "threads": torch.get_num_threads(), "torch": torch.__version__, "backbones": {}}
    for name, stem in (("patch_embedding", None), ("conv_stem_32", 32)):
        variant = dataclasses.replace(sem, backbone=dataclasses.replace(sem.backbone,
                                                                        conv_stem=stem))
        print(name, flush=True)
        results["backbones"][name] = learning_curve(
            variant, train, test, [int(s) for s in args.evaluate_at.split(",")], args.lr,
            seed=sem.train.seed)
    io.write_json(args.out, results)
    print(json.dumps(results["backbones"]))


if __name__ == "__main__":
    main()
