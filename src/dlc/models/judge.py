"""The attribute judge: a small strided CNN with one linear head per attribute of the built-in
data (shape, colour, size, background, texture). It scores generated images (does the shape of
a decoded image match its source's?) and, in the evaluation, gives a feature space trained on
the same data (its pooled features) for Frechet distances on the tiny preset.
"""

from __future__ import annotations

import torch
from torch import nn


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
