"""Improved precision and recall (Kynkaanniemi et al. 2019), k = 3 as in ADM's evaluator.

Each set's manifold is the union of balls around its points, radius = distance to the k-th
nearest neighbour within the set. Precision: the fraction of generated points inside the real
manifold (fidelity); recall: the fraction of real points inside the generated one (coverage).
torch-fidelity's implementation does the work; we fix its argument order and neighbourhood.
"""

from __future__ import annotations

import numpy as np
import torch


def precision_recall(generated: np.ndarray, real: np.ndarray, neighborhood: int = 3,
                     batch_size: int = 10_000) -> dict[str, float]:
    from torch_fidelity.metric_prc import prc_features_to_metric

    generated, real = np.asarray(generated), np.asarray(real)
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1]:
        raise ValueError(f"features must be (N, D) with one D, got {generated.shape} and "
                         f"{real.shape}")
    if min(len(generated), len(real)) <= neighborhood:
        raise ValueError(f"need more than k = {neighborhood} points in each set")
    result = prc_features_to_metric(
        torch.as_tensor(generated, dtype=torch.float32), torch.as_tensor(real, dtype=torch.float32),
        prc_neighborhood=neighborhood, prc_batch_size=batch_size, save_cpu_ram=False,
        verbose=False)
    return {"precision": result["precision"], "recall": result["recall"]}
