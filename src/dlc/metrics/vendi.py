"""The Vendi score (Friedman & Dieng 2023): the effective number of distinct samples.

With K the n x n similarity matrix (K_ii = 1) and lambda the eigenvalues of K / n (they sum to
1), the Vendi score of order q is the exponential of the Renyi entropy of lambda:
    VS_q = exp(log(sum_i lambda_i^q) / (1 - q))     (q != 1)
    VS_1 = exp(-sum_i lambda_i log lambda_i)          (q = 1, the paper's default)
    VS_inf = 1 / max_i lambda_i
n identical samples give 1; n orthogonal ones give n. With the cosine kernel of features
x_i / |x_i|, K = X X^T has the nonzero eigenvalues of X^T X (D x D), so n >> D is cheap.
"""

from __future__ import annotations

import math

import numpy as np


def renyi_exp_entropy(eigenvalues: np.ndarray, q: float) -> float:
    """exp(Renyi entropy of order q) of a probability vector (zeros allowed)."""
    p = np.clip(np.asarray(eigenvalues, dtype=np.float64), 0.0, None)
    p = p[p > 1e-12] / p.sum()
    if q == 1:
        return float(math.exp(-(p * np.log(p)).sum()))
    if math.isinf(q):
        return float(1.0 / p.max())
    return float(math.exp(math.log((p ** q).sum()) / (1.0 - q)))


def vendi_from_kernel(kernel: np.ndarray, q: float = 1.0) -> float:
    """Vendi score of a symmetric PSD similarity matrix with unit diagonal."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be square, got {kernel.shape}")
    if not np.allclose(np.diagonal(kernel), 1.0, atol=1e-6):
        raise ValueError("kernel must have a unit diagonal (k(x, x) = 1)")
    return renyi_exp_entropy(np.linalg.eigvalsh(kernel / len(kernel)), q)


def vendi_from_features(features: np.ndarray, q: float = 1.0) -> float:
    """Vendi score under the cosine-similarity kernel of (N, D) features."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a feature vector is zero: cosine similarity is undefined")
    x = x / norms
    small = x @ x.T if len(x) <= x.shape[1] else x.T @ x   # same nonzero spectrum
    return renyi_exp_entropy(np.linalg.eigvalsh(small / len(x)), q)
