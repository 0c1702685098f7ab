"""The Section 3 denoiser: an MLP over a point, its timestep and (optionally) a mode index."""

from __future__ import annotations

import torch
from torch import nn

from dlc.models.embeddings import TimestepEmbedder


class ResidualLayer(nn.Module):
    """h + Linear(SiLU(LayerNorm(h) + e)): every layer sees the time/condition embedding e."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return h + self.linear(torch.nn.functional.silu(self.norm(h) + embedding))


class MLPDenoiser(nn.Module):
    """`depth` linear layers on the data path: input, depth-2 hidden layers, output.

    style="plain": the textbook toy denoiser, SiLU(Linear(.)) layers, the time/condition
      embedding concatenated to the input once.
    style="residual": pre-norm residual layers that each see the embedding (DiT-like); a much
      stronger fitter at the same width.
    num_classes = 0 makes the unconditional model; otherwise `y` (B,) long indexes a learned
    embedding added to the timestep embedding. With learn_sigma the output is [eps, v].
    """

    def __init__(self, data_dim: int = 2, width: int = 256, depth: int = 4,
                 num_classes: int = 0, learn_sigma: bool = True, style: str = "residual"):
        super().__init__()
        if depth < 2:
            raise ValueError("depth counts the input and output layers: at least 2")
        if style not in ("plain", "residual"):
            raise ValueError(f"style must be 'plain' or 'residual', got {style!r}")
        self.style = style
        self.time = TimestepEmbedder(width)
        self.label = nn.Embedding(num_classes, width) if num_classes else None
        out_dim = data_dim * (2 if learn_sigma else 1)
        if style == "plain":
            self.input = nn.Linear(data_dim + width, width)
            self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(depth - 2))
        else:
            self.input = nn.Linear(data_dim, width)
            self.layers = nn.ModuleList(ResidualLayer(width) for _ in range(depth - 2))
            self.out_norm = nn.LayerNorm(width)
        self.output = nn.Linear(width, out_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        embedding = self.time(t)
        if self.label is not None:
            if y is None:
                raise ValueError("this denoiser is conditional: pass y (B,) mode indices")
            embedding = embedding + self.label(y)
        silu = torch.nn.functional.silu
        if self.style == "plain":
            h = silu(self.input(torch.cat([x, embedding], dim=-1)))
            for layer in self.layers:
                h = silu(layer(h))
            return self.output(h)
        h = self.input(x)
        for layer in self.layers:
            h = layer(h, embedding)
        return self.output(silu(self.out_norm(h) + embedding))
