"""Frechet distance between Gaussians fitted to two feature sets (FID when the features are
Inception pool_3, sFID on the spatial Mixed_6 features), and KID beside it.

    FD = ||mu_1 - mu_2||^2 + tr(S_1) + tr(S_2) - 2 tr((S_1 S_2)^(1/2))

Statistics are float64 whatever the feature dtype (ADM's protocol). The matrix square root is
scipy's `sqrtm`, as ADM's evaluator takes it; if it is not finite (near-singular covariances,
e.g. fewer samples than dimensions), eps is added to both diagonals first. FD is biased at
small n: compare numbers only at the same n, and report KID (unbiased) beside it.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from scipy import linalg

log = logging.getLogger(__name__)


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of (N, D) features, float64, sigma with the N - 1 normalisation."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N >= 2, D), got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different dimension: {mu1.shape} vs {mu2.shape}")
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        log.warning("sqrtm of the covariance product is singular: adding %g to the diagonals",
                    eps)
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary part "
                             f"({np.abs(covmean.imag).max():.3g}): statistics are not SPD")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_of_features(features1: np.ndarray, features2: np.ndarray) -> float:
    return frechet_distance(*statistics(features1), *statistics(features2))


def kernel_distance(features1: np.ndarray, features2: np.ndarray, subsets: int = 100,
                    subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID: unbiased MMD^2 with the cubic polynomial kernel over random subsets (torch-fidelity's
    implementation); the subset size is cut to the smaller set when needed."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = min(subset_size, len(features1), len(features2))
    result = kid_features_to_metric(
        torch.as_tensor(np.asarray(features1, np.float64)),
        torch.as_tensor(np.asarray(features2, np.float64)),
        kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return {"kid": result["kernel_inception_distance_mean"],
            "kid_std": result["kernel_inception_distance_std"], "kid_subset_size": size}
