"""Linear probes: multinomial logistic regression on one-hot codes or on continuous features.

On codes the one-hot input has L*V dimensions, so the probe never builds it: position p with
token c selects row p*V + c of a weight table, and an EmbeddingBag sums the L selected rows,
which is exactly W @ onehot(codes) (the paper's Table 3 probe, at any L*V).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class CodeProbe(nn.Module):
    def __init__(self, length: int, vocab: int, classes: int):
        super().__init__()
        self.vocab = vocab
        self.weights = nn.EmbeddingBag(length * vocab, classes, mode="sum")
        nn.init.zeros_(self.weights.weight)
        self.bias = nn.Parameter(torch.zeros(classes))
        self.register_buffer("offsets", torch.arange(length) * vocab, persistent=False)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.weights(codes.long() + self.offsets) + self.bias


class FeatureProbe(nn.Module):
    """Standardised features -> logits (the statistics come from the training set)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(len(mean), classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear((features.float() - self.mean) / self.std)


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
         lr: float, weight_decay: float, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    with torch.no_grad():
        correct = sum((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum().item()
                      for i in range(0, len(x), batch_size))
    return correct / len(x)


def probe_codes(train_codes: np.ndarray, train_y: np.ndarray, test_codes: np.ndarray,
                test_y: np.ndarray, vocab: int, classes: int, **fit) -> float:
    """Top-1 test accuracy of a logistic regression on one-hot codes (N, L)."""
    model = CodeProbe(train_codes.shape[1], vocab, classes)
    x, y = torch.from_numpy(train_codes.astype(np.int64)), torch.from_numpy(train_y)
    _fit(model, x, y, **fit)
    return accuracy(model, torch.from_numpy(test_codes.astype(np.int64)),
                    torch.from_numpy(test_y), fit["batch_size"])


def probe_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, classes: int, **fit) -> float:
    """Top-1 test accuracy of a logistic regression on standardised features (N, F)."""
    x = torch.from_numpy(train_x.astype(np.float32))
    model = FeatureProbe(x.mean(0), x.std(0).clamp_min(1e-6), classes)
    _fit(model, x, torch.from_numpy(train_y), **fit)
    return accuracy(model, torch.from_numpy(test_x.astype(np.float32)),
                    torch.from_numpy(test_y), fit["batch_size"])
