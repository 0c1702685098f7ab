"""Batches and their random draws addressed by step, so that the data position of a run is
just its step.

Sample number k (k = step * batch_size + position in the global batch) is item
perm_e[k mod N] of epoch e = k // N, with perm_e a permutation seeded by (seed, e). Every
process and every worker computes the same mapping, and a resumed run sees exactly the
batches it would have seen.

The per-sample draws of a step (diffusion times, noise, dropped codes, patch masks) come from
`StepRandom`: a generator seeded by (seed, step) draws them for the whole global batch and
each process keeps its own rows. So g processes draw what one process draws for the same
global batch, and DDP on g processes trains the model one process would (up to the order of
the float sums in the gradient all-reduce).
"""

from __future__ import annotations

import numpy as np
import torch


def check_task(task: int, tasks: int) -> None:
    if not 0 <= task < tasks:
        raise ValueError(f"task {task} is not in [0, {tasks})")


def task_share(count: int, task: int, tasks: int) -> list[int]:
    """The pieces of 0..count-1 that task k of n makes, those i with i mod n = k: n processes
    or SLURM array tasks split the work with no overlap and no gap."""
    check_task(task, tasks)
    return list(range(task, count, tasks))


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


def _seed(*numbers: int) -> int:
    return int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0] >> 1)


class StepRandom:
    """The random draws of one step for the whole global batch (first dimension), of which this
    process gets its rows: rows rank * B / g ... (rank + 1) * B / g, as in StepBatches.

    Creating it also seeds torch's global generator by (seed, step, rank), for what happens
    inside the network (dropout, drop path): those masks differ between processes and a
    resumed run redraws them exactly, but they are per process, so they are the one thing DDP
    does not share with a single process.
    """

    def __init__(self, seed: int, step: int, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu"):
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.generator = torch.Generator(self.device).manual_seed(_seed(seed, step))
        torch.manual_seed(_seed(seed, step, rank, 1))

    def rows(self, whole: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor over the global batch."""
        if len(whole) % self.world:
            raise ValueError(f"global batch {len(whole)} is not divisible by the "
                             f"{self.world} processes")
        return whole.chunk(self.world)[self.rank]

    def rand(self, *shape: int) -> torch.Tensor:
        return self.rows(torch.rand(shape, generator=self.generator, device=self.device))

    def randn(self, *shape: int) -> torch.Tensor:
        return self.rows(torch.randn(shape, generator=self.generator, device=self.device))

    def randint(self, high: int, *shape: int) -> torch.Tensor:
        return self.rows(torch.randint(0, high, shape, generator=self.generator,
                                       device=self.device))
