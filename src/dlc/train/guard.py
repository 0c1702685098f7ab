"""Steps with a non-finite loss or gradient are skipped, counted, and stop a run that persists.

A divergence must not reach the weights: a step whose loss or gradient norm is NaN or infinite
makes no optimiser update and no EMA update, so the weights, and every checkpoint written after
it, stay those of the last finite step. `patience` such steps in a row stop the run with
NonFiniteError (exit 2), naming the steps and the last checkpoint, which is kept.

The check is one fused test of loss + gradient norm. With a fused optimiser (the GPU path) the
skip happens on the device: the optimiser reads the flag as `found_inf`, as it does for
torch.amp's GradScaler, and the EMA update is weighted by it, so there is no host sync per step;
the host reads the counts when the loop logs or checkpoints (`skipped`). Otherwise (CPU, where
reading a scalar costs nothing) the step is decided on the host. Under DDP the flag is reduced
over processes first, so every process skips the same steps.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)
COLUMN = "nonfinite_steps"   # loss.csv: skipped steps so far


class NonFiniteError(RuntimeError):
    """A run stopped by `patience` non-finite steps in a row."""


class NonFiniteGuard:
    def __init__(self, optimizer: torch.optim.Optimizer, patience: int, checkpoints: Path,
                 history: list[dict]):
        """`history`: the loss rows so far (a resumed run's count goes on from its last row)."""
        self.optimizer, self.patience, self.checkpoints = optimizer, patience, Path(checkpoints)
        self.on_device = bool(optimizer.defaults.get("fused"))
        before = history[-1].get(COLUMN, 0) if history else 0
        # the current streak of non-finite steps, the longest since the last check and the step
        # it ended at, all of them so far: 0-dim tensors on the device path
        device = optimizer.param_groups[0]["params"][0].device
        new = (lambda value: torch.full((), float(value), device=device)) if self.on_device \
            else (lambda value: value)
        self.streak, self.longest, self.longest_end, self.total = new(0), new(0), new(0), \
            new(before)
        self.reported = before

    def step(self, step: int, loss: torch.Tensor,
             grad_norm: torch.Tensor | None = None) -> bool | torch.Tensor:
        """The optimiser's step if loss (and grad_norm) are finite, none otherwise. Returns
        whether it stepped: a bool, or on the device path a 0-dim tensor (1.0 or 0.0) that the
        EMA update takes as its weight. `step` is the 1-based number of this step."""
        value = loss.detach().float() + (0.0 if grad_norm is None else grad_norm.float())
        bad = (~torch.isfinite(value)).float()
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        if self.on_device:
            self.optimizer.found_inf = bad
            self.optimizer.step()
            self.streak = (self.streak + 1) * bad
            longer = self.streak > self.longest
            self.longest = torch.where(longer, self.streak, self.longest)
            self.longest_end = torch.where(longer, step, self.longest_end)
            self.total = self.total + bad
            return 1.0 - bad
        if bad.item():
            self.streak, self.total = self.streak + 1, self.total + 1
            self.longest, self.longest_end = self.streak, step
            log.warning("step %d: loss %s, gradient norm %s: update skipped", step,
                        loss.item(), None if grad_norm is None else grad_norm.item())
            self.check()
            return False
        self.optimizer.step()
        self.streak = 0
        return True

    def skipped(self, step: int) -> dict[str, int]:
        """{COLUMN: non-finite steps so far}, for a loss.csv row; stops the run if the last
        `patience` steps were non-finite."""
        self.check()
        total = int(self.total)
        if self.on_device and total > self.reported:
            log.warning("up to step %d: %d steps with a non-finite loss or gradient norm "
                        "skipped", step, total)
        self.reported = total
        return {COLUMN: total}

    def check(self) -> None:
        """Stop the run if `patience` steps in a row were non-finite (on the device path: at
        any time since the last check)."""
        longest, end = int(self.longest), int(self.longest_end)
        if longest < self.patience:
            if self.on_device:
                self.longest = torch.zeros_like(self.longest)
            return
        latest = self.checkpoints / "latest"
        kept = (f"The last checkpoint, {self.checkpoints / latest.read_text().strip()}, holds "
                "the weights of the last finite step and is kept" if latest.is_file()
                else "No checkpoint was written before them")
        raise NonFiniteError(
            f"{self.checkpoints.parent}: the loss or gradient norm was not finite at steps "
            f"{end - longest + 1} to {end} ({longest} in a row; the patience is "
            f"{self.patience}); the run stopped and wrote no final weights. {kept}. Lower the "
            "learning rate or clip the gradients harder, and rerun (a checkpoint made with "
            "other params starts over)")
