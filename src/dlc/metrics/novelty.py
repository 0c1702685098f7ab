"""Is a generated sample new, or a copy of the training set? Its nearest training example, two
ways (the paper's Appendix D check):

    by code:  argmin_j  #{l : c_l != c^train_{j,l}}     (Hamming distance over positions)
    by image: argmin_j  || f(x) - f(x^train_j) ||_2      (in a feature space: the judge's)

Each next to the same distance for real held-out examples (the floor: how close a new real
image of the same data comes to the training set), and shown as a grid: sample, its nearest
training image by features, its nearest training image by code.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ELEMENTS = 2 ** 26  # comparisons held at once: about 64 MB of booleans or 256 MB of floats


def nearest_hamming(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, L) and (P, L) codes -> (Q,) index of the pool code differing in the fewest
    positions, and that number of positions."""
    index, distance = np.empty(len(queries), np.int64), np.empty(len(queries), np.int64)
    chunk = max(1, CHUNK_ELEMENTS // pool.size)
    for i in range(0, len(queries), chunk):
        distances = (queries[i:i + chunk, None, :] != pool[None, :, :]).sum(-1)  # (q, P)
        index[i:i + chunk] = distances.argmin(1)
        distance[i:i + chunk] = distances.min(1)
    return index, distance


def nearest_features(queries: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Q, D) and (P, D) features -> (Q,) index of the nearest pool row (Euclidean) and its
    distance."""
    pool_t = torch.as_tensor(pool, dtype=torch.float64)
    index, distance = np.empty(len(queries), np.int64), np.empty(len(queries))
    chunk = max(1, CHUNK_ELEMENTS // (4 * len(pool)))
    for i in range(0, len(queries), chunk):
        block = torch.as_tensor(queries[i:i + chunk], dtype=torch.float64)
        nearest = torch.cdist(block, pool_t).min(1)                               # (q,)
        index[i:i + chunk], distance[i:i + chunk] = nearest.indices, nearest.values
    return index, distance
