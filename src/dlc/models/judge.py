"""The attribute judge: a small strided CNN with one linear head per attribute of the built-in
data (shape, colour, size, background, texture). It scores generated images (does the shape of
a decoded image match its source's?) and, in the evaluation, gives a feature space trained on
the same data (its pooled features) for Frechet distances on the tiny preset. `load_judge`
reads a train-judge folder, `predict` gives the attribute classes it sees in images, and
`agreement` how often they equal the attributes of reference rows (the source images of the
codes an image was generated from).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from dlc import io as dio
from dlc.models.vae import to_model_range
from dlc.train import checkpoint

WEIGHTS, REPORT = "judge.safetensors", "judge.json"   # a train-judge folder's files


def _block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class AttributeJudge(nn.Module):
    """(B, 3, H, W) images in [-1, 1] -> {attribute: (B, classes) logits}; `features` gives the
    pooled (B, 8 * width) vector the heads read."""

    def __init__(self, classes: dict[str, int], width: int = 32):
        super().__init__()
        self.attributes = list(classes)
        widths = [width, 2 * width, 4 * width, 4 * width, 8 * width]
        strides = [1, 2, 2, 2, 2]
        blocks, previous = [], 3
        for channels, stride in zip(widths, strides):
            blocks.append(_block(previous, channels, stride))
            previous = channels
        self.trunk = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(previous, count)
                                    for name, count in classes.items()})

    @property
    def feature_dim(self) -> int:
        return next(iter(self.heads.values())).in_features

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.features(images)
        return {name: head(features) for name, head in self.heads.items()}


def load_judge(run: str | Path) -> tuple[AttributeJudge | None, dict]:
    """(judge in eval mode, its report); (None, report) when the preset has none."""
    run = Path(run)
    report = dio.read_json(run / REPORT)
    if report["classes"] is None:
        return None, report
    judge = AttributeJudge({k: len(v) for k, v in report["classes"].items()}, report["width"])
    return checkpoint.load_weights(judge, run / WEIGHTS, "its judge.json"), report


@torch.no_grad()
def predict(judge: AttributeJudge, images: np.ndarray, classes: dict[str, list[str]],
            batch_size: int = 512) -> pd.DataFrame:
    """(N, H, W, 3) uint8 -> one column of predicted class names per attribute."""
    judge.eval()
    device = next(judge.parameters()).device
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in classes}
    for first in range(0, len(images), batch_size):
        logits = judge(to_model_range(images[first:first + batch_size]).to(device))
        for name in classes:
            outputs[name].append(logits[name].argmax(dim=1).cpu().numpy())
    return pd.DataFrame({name: np.asarray(classes[name])[np.concatenate(parts)]
                         for name, parts in outputs.items()})


def agreement(predicted: pd.DataFrame, reference: pd.DataFrame) -> dict[str, float]:
    """Fraction of rows whose predicted attribute equals the reference's, per attribute, and
    for all attributes at once."""
    matches = {name: (predicted[name].to_numpy() == reference[name].astype(str).to_numpy())
               for name in predicted.columns}
    result = {name: float(match.mean()) for name, match in matches.items()}
    result["all"] = float(np.logical_and.reduce(list(matches.values())).mean())
    return result
