"""Batches addressed by step, so that the data position of a run is just its step.

Sample number k (k = step * batch_size + position in the global batch) is item
perm_e[k mod N] of epoch e = k // N, with perm_e a permutation seeded by (seed, e). Every
process and every worker computes the same mapping, and a resumed run sees exactly the
batches it would have seen.
"""

from __future__ import annotations

import numpy as np
import torch


class EpochOrder:
    """k -> item index, a fresh permutation of the N items every epoch."""

    def __init__(self, items: int, seed: int):
        self.items, self.seed = items, seed
        self._epoch, self._perm = -1, None

    def __call__(self, k: int) -> int:
        epoch, position = divmod(k, self.items)
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.items)
            self._epoch = epoch
        return int(self._perm[position])


class StepBatches(torch.utils.data.Sampler):
    """Sample numbers of each step from `start`: this process's slice of the global batch."""

    def __init__(self, start: int, steps: int, batch_size: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by the {world} "
                             f"processes")
        self.start, self.steps, self.local = start, steps, batch_size // world
        self.batch_size, self.rank = batch_size, rank

    def __len__(self) -> int:
        return self.steps - self.start

    def __iter__(self):
        for step in range(self.start, self.steps):
            first = step * self.batch_size + self.rank * self.local
            yield list(range(first, first + self.local))
