"""The Section 3 "learned index": a K-component full-covariance Gaussian mixture fitted by EM
(scikit-learn), and a vectorised assignment (scikit-learn's loops over components in Python,
which dominates a training step at K = 196)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from sklearn.mixture import GaussianMixture


@dataclass(frozen=True)
class FittedGMM:
    weights: np.ndarray      # (K,)
    means: np.ndarray        # (K, d)
    covariances: np.ndarray  # (K, d, d)

    @classmethod
    def fit(cls, points: np.ndarray, components: int, max_iter: int, n_init: int,
            seed: int) -> FittedGMM:
        gmm = GaussianMixture(components, covariance_type="full", max_iter=max_iter,
                              n_init=n_init, random_state=seed).fit(points)
        return cls(gmm.weights_, gmm.means_, gmm.covariances_)

    @cached_property
    def _precision_factor(self) -> np.ndarray:
        """U_k with C_k^-1 = U_k U_k^T (Cholesky factor of the precision)."""
        return np.linalg.cholesky(np.linalg.inv(self.covariances))

    def assign(self, points: np.ndarray) -> np.ndarray:
        """argmax_k log w_k + log N(x; m_k, C_k) for every point (B, d) -> (B,).

        log N(x; m_k, C_k) = -|U_k^T (x - m_k)|^2 / 2 + log det U_k + const."""
        factor = self._precision_factor
        projected = np.einsum("bkd,kde->bke", points[:, None, :] - self.means[None], factor)
        log_det = np.log(np.diagonal(factor, axis1=1, axis2=2)).sum(1)
        score = -0.5 * (projected ** 2).sum(-1) + log_det + np.log(self.weights)
        return score.argmax(1)

    def to_json(self) -> dict:
        return {"weights": self.weights.tolist(), "means": self.means.tolist(),
                "covariances": self.covariances.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> FittedGMM:
        return cls(*(np.asarray(data[k]) for k in ("weights", "means", "covariances")))
