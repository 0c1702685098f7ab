"""Linear probes: multinomial logistic regression on one-hot codes or on continuous features.

On codes the one-hot input has L*V dimensions, so the probe never builds it: position p with
token c selects row p*V + c of a weight table, and an EmbeddingBag sums the L selected rows,
which is exactly W @ onehot(codes) (the paper's Table 3 probe, at any L*V).

The learning rate is chosen as in DINOv2's linear evaluation: one classifier ("head") per lr of
a grid, all trained side by side on the same batches, the one most accurate on training rows
held out for the purpose is scored on the test rows. An untuned probe understates a
representation: continuous features want a larger lr than one-hot codes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from dlc.config import ProbeConfig


class LinearHeads(nn.Module, ABC):
    """`heads` independent linear classifiers of the same input: (B, ...) -> (B, heads, C).
    Their weights are separate parameters (one optimiser group, one lr each), concatenated at
    every call so that the input is read once for all of them."""

    def __init__(self, inputs: int, classes: int, heads: int):
        super().__init__()
        self.classes = classes
        self.weight = nn.ParameterList(torch.zeros(inputs, classes) for _ in range(heads))
        self.bias = nn.ParameterList(torch.zeros(classes) for _ in range(heads))

    def head_parameters(self, head: int) -> list[nn.Parameter]:
        return [self.weight[head], self.bias[head]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = torch.cat(list(self.weight), 1), torch.cat(list(self.bias))
        return (self.apply_weight(x, weight) + bias).view(len(x), -1, self.classes)

    @abstractmethod
    def apply_weight(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """x times the (inputs, heads * C) weight, whatever form x takes."""


class CodeProbe(LinearHeads):
    """Logistic regressions on one-hot codes (B, L)."""

    def __init__(self, length: int, vocab: int, classes: int, heads: int = 1):
        super().__init__(length * vocab, classes, heads)
        self.register_buffer("offsets", torch.arange(length) * vocab, persistent=False)

    def apply_weight(self, codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.embedding_bag(codes.long() + self.offsets, weight, mode="sum")


class FeatureProbe(LinearHeads):
    """Logistic regressions on standardised features (B, F); the statistics are the fitted
    rows'."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int, heads: int = 1):
        super().__init__(len(mean), classes, heads)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def apply_weight(self, features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return ((features.float() - self.mean) / self.std) @ weight


def _fit(model: LinearHeads, lrs: list[float], x: torch.Tensor, y: torch.Tensor, epochs: int,
         batch_size: int, weight_decay: float, seed: int) -> LinearHeads:
    """AdamW, cosine lr to 0, head k at lrs[k]. The heads share no parameter, so the sum of
    their losses trains each one as if it were alone."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([{"params": model.head_parameters(k), "lr": lr}
                                   for k, lr in enumerate(lrs)], weight_decay=weight_decay)
    steps = epochs * -(-len(x) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(batch_size):
            logits = model(x[batch])                                   # (B, heads, C)
            targets = y[batch, None].expand(-1, len(lrs))
            loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            optimizer.zero_grad(set_to_none=True)
            loss.mean(0).sum().backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracies(model: LinearHeads, x: torch.Tensor, y: torch.Tensor,
               batch_size: int) -> torch.Tensor:
    """Top-1 of every head, (heads,)."""
    with torch.no_grad():
        correct = sum((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size, None])
                      .sum(0) for i in range(0, len(x), batch_size))
    return correct.double() / len(x)


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float                     # top-1 on the test rows, of the head chosen
    lr: float                           # its learning rate
    validation: dict[float, float]      # top-1 on the held-out training rows, per lr
    predicted: np.ndarray               # (N_test,) its class for each test row


def _select(model: LinearHeads, x: torch.Tensor, y: torch.Tensor, test_x: torch.Tensor,
            test_y: torch.Tensor, held_out: torch.Tensor, lrs: list[float], epochs: int,
            batch_size: int, weight_decay: float, seed: int) -> ProbeResult:
    """Train the heads on the rows not `held_out`, keep the one most accurate on those that
    are (the first of a tie; with one lr nothing is held out), score it on the test rows."""
    fitted = ~held_out
    _fit(model, lrs, x[fitted], y[fitted], epochs, batch_size, weight_decay, seed)
    if held_out.any():
        validation = accuracies(model, x[held_out], y[held_out], batch_size).tolist()
    else:
        validation = [float("nan")]
    best = int(np.argmax(validation))
    with torch.no_grad():
        predicted = torch.cat([model(test_x[i:i + batch_size])[:, best].argmax(-1)
                               for i in range(0, len(test_x), batch_size)])
    return ProbeResult(accuracies(model, test_x, test_y, batch_size)[best].item(), lrs[best],
                       dict(zip(lrs, validation)), predicted.numpy())


def held_out_rows(n: int, lrs: list[float], val_fraction: float, seed: int) -> torch.Tensor:
    """(n,) bool: a seeded random `val_fraction` of the training rows, none with one lr."""
    held_out = torch.zeros(n, dtype=torch.bool)
    if len(lrs) > 1:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        held_out[order[:max(1, round(val_fraction * n))]] = True
    return held_out


def target_classes(train: pd.Series, test: pd.Series,
                   where: str) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Integer classes of the training and test values, and the sorted values they index
    (class i is categories[i]); a test value never seen in training cannot be predicted and
    counts as wrong (class -1)."""
    categories = pd.Index(sorted(train.unique()))
    if len(categories) < 2:
        raise ValueError(f"{where}: target {train.name!r} has one value in the training codes")
    return (categories.get_indexer(train).astype(np.int64),
            categories.get_indexer(test).astype(np.int64), categories)


def fit_options(cfg: ProbeConfig) -> dict:
    """The keyword arguments of `probe_codes` and `probe_features` that the params set."""
    return {"lrs": cfg.lrs, "val_fraction": cfg.val_fraction, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay, "seed": cfg.seed}


def probe_codes(train_codes: np.ndarray, train_y: np.ndarray, test_codes: np.ndarray,
                test_y: np.ndarray, vocab: int, classes: int, lrs: list[float],
                val_fraction: float, **fit) -> ProbeResult:
    """Logistic regression on one-hot codes (N, L); `fit`: epochs, batch_size, weight_decay,
    seed."""
    x = torch.from_numpy(train_codes.astype(np.int64))
    held_out = held_out_rows(len(x), lrs, val_fraction, fit["seed"])
    model = CodeProbe(x.shape[1], vocab, classes, heads=len(lrs))
    return _select(model, x, torch.from_numpy(train_y),
                   torch.from_numpy(test_codes.astype(np.int64)), torch.from_numpy(test_y),
                   held_out, lrs, **fit)


def probe_features(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                   test_y: np.ndarray, classes: int, lrs: list[float], val_fraction: float,
                   **fit) -> ProbeResult:
    """Logistic regression on standardised features (N, F)."""
    x = torch.from_numpy(train_x.astype(np.float32))
    held_out = held_out_rows(len(x), lrs, val_fraction, fit["seed"])
    fitted = x[~held_out]
    model = FeatureProbe(fitted.mean(0), fitted.std(0).clamp_min(1e-6), classes, len(lrs))
    return _select(model, x, torch.from_numpy(train_y),
                   torch.from_numpy(test_x.astype(np.float32)), torch.from_numpy(test_y),
                   held_out, lrs, **fit)
