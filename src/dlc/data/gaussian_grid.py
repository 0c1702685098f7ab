"""Section 3 data: an equal-weight mixture of K isotropic Gaussians on a square grid."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import logsumexp


@dataclass(frozen=True)
class GaussianGrid:
    """K = side^2 components N(centre_k, std^2 I) with neighbouring centres `spacing` apart,
    the grid centred on the origin."""

    modes: int
    std: float
    spacing: float

    @property
    def side(self) -> int:
        side = round(self.modes ** 0.5)
        if side * side != self.modes:
            raise ValueError(f"modes={self.modes} is not a perfect square")
        return side

    @cached_property
    def centres(self) -> np.ndarray:
        axis = (np.arange(self.side) - (self.side - 1) / 2) * self.spacing
        xs, ys = np.meshgrid(axis, axis, indexing="xy")
        return np.stack([xs.ravel(), ys.ravel()], axis=1)

    @property
    def data_std(self) -> float:
        """Per-axis std of the mixture (closed form): uniform grid variance + component variance."""
        return float(np.sqrt(self.spacing ** 2 * (self.side ** 2 - 1) / 12 + self.std ** 2))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points (n, 2) and the index of the component each came from (n,)."""
        component = rng.integers(0, self.modes, size=n)
        points = self.centres[component] + self.std * rng.standard_normal((n, 2))
        return points, component

    def log_prob(self, points: np.ndarray) -> np.ndarray:
        """Exact log density: log (1/K) sum_k N(x; centre_k, std^2 I)."""
        squared = ((points[:, None, :] - self.centres[None]) ** 2).sum(-1)
        log_normal = -squared / (2 * self.std ** 2) - np.log(2 * np.pi * self.std ** 2)
        return logsumexp(log_normal, axis=1) - np.log(self.modes)
