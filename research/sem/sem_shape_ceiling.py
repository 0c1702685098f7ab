"""How fast can the tiny SEM backbone learn shape at all? The same ViT, trained with the shape
labels (cross-entropy on the CLS token, AdamW, batch and image size of the tiny preset,
horizontal flips): test top-1 on shape along the way. This is the ceiling that
self-distillation is measured against (the probe's shape target): a number of steps
below which no self-supervised run of that backbone can be expected to know shape.

Both timm's patch embedding (the earlier preset's) and the convolutional stem (the preset's,
`sem.backbone.conv_stem: 32`).
Needs the shapes table of `dlc data` (results/tiny/data/images.parquet by default). Writes
research/results/sem_shape_ceiling.json.

`--read` moves the classifier to what self-distillation trains through: `summary` (the CLS and
register tokens, concatenated: the SEM head's input), `sem` (the SEM embedding, where the DINO
head sits) or `sem_norm_off` (the same without the head's LayerNorm over L*V); the whole
encoder is then trained, and the results go to sem_shape_ceiling_<read>.json.

    .venv/bin/python research/sem/sem_shape_ceiling.py
    .venv/bin/python research/sem/sem_shape_ceiling.py --read sem --stems patch_embedding \\
        --evaluate-at 0,160,320,640
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
from dlc.models.sem import SEMEncoder, build_encoder

WARMUP_STEPS = 30
READS = ("cls", "summary", "sem", "sem_norm_off")
STEMS = {"patch_embedding": None, "conv_stem_32": 32}


def sem_head_without_norm(head, summary: torch.Tensor, tau: float):
    """SEMHead.forward with its LayerNorm over L*V left out."""
    logits = head.to_logits(summary).view(-1, head.length, head.vocab)
    probabilities = torch.softmax(logits / tau, dim=-1)
    return probabilities, head.from_simplex(probabilities.flatten(1))


def shape_data(frame) -> tuple[torch.Tensor, torch.Tensor]:
    images = normalize()(torch.from_numpy(decode_images(frame)).permute(0, 3, 1, 2))
    return images, torch.tensor([SHAPES.index(s) for s in frame["shape"]])


def shape_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(batch).argmax(-1) for batch in images.split(500)])
    model.train()
    return (predictions == labels).float().mean().item()


class ReadOut(nn.Module):
    """A linear shape classifier on one of the SEM encoder's outputs (see --read)."""

    def __init__(self, encoder: SEMEncoder, read: str):
        super().__init__()
        self.encoder, self.read = encoder, read
        width = encoder.backbone.embed_dim
        self.classifier = nn.Linear(encoder.num_prefix * width if read == "summary" else width,
                                    len(SHAPES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        encoder = self.encoder
        if self.read == "sem":  # the head as train-sem runs it
            return self.classifier(encoder(images)["embedding"])
        summary = encoder.tokens(images)[:, :encoder.num_prefix].flatten(1)
        if self.read == "summary":
            return self.classifier(summary)
        _, embedding = sem_head_without_norm(encoder.sem, summary, encoder.tau)
        return self.classifier(encoder.backbone.norm(embedding))


def learning_curve(sem: config.SEMConfig, train, test, evaluate_at: list[int], lr: float,
                   seed: int, read: str = "cls") -> list[dict]:
    torch.manual_seed(seed)
    if read == "cls":
        backbone = build_encoder(sem, pretrained=False).backbone  # num_classes=0: the CLS token
        model = nn.Sequential(backbone, nn.Linear(backbone.embed_dim, len(SHAPES)))
    else:
        model = ReadOut(build_encoder(sem, pretrained=False), read)
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
    parser.add_argument("--out", help="default: research/results/sem_shape_ceiling.json, "
                        "or sem_shape_ceiling_<read>.json with --read")
    parser.add_argument("--read", default="cls", choices=READS)
    parser.add_argument("--stems", nargs="+", default=list(STEMS), choices=list(STEMS))
    args = parser.parse_args()
    suffix = "" if args.read == "cls" else f"_{args.read}"
    out = args.out or f"research/results/sem_shape_ceiling{suffix}.json"
    sem = config.load("params.yaml").presets["tiny"].sem
    frame, _ = read_table(args.images)  # read once, split here
    train, test = (shape_data(frame[frame["split"] == split]) for split in ("train", "test"))
    results = {"images": args.images, "train_images": len(train[1]), "test_images": len(test[1]),
               "batch_size": sem.train.batch_size, "lr": args.lr, "warmup_steps": WARMUP_STEPS,
               "threads": torch.get_num_threads(), "torch": torch.__version__,
               "read": args.read, "backbones": {}}
    for name in args.stems:
        stem = STEMS[name]
        variant = dataclasses.replace(sem, backbone=dataclasses.replace(sem.backbone,
                                                                        conv_stem=stem))
        print(name, flush=True)
        results["backbones"][name] = learning_curve(
            variant, train, test, [int(s) for s in args.evaluate_at.split(",")], args.lr,
            seed=sem.train.seed, read=args.read)
    io.write_json(out, results)
    print(json.dumps(results["backbones"]))


if __name__ == "__main__":
    main()
