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


class NonFiniteError(RuntimeError):
    """A run stopped by `patience` non-finite steps in a row."""


class NonFiniteGuard:
    def __init__(self, optimizer: torch.optim.Optimizer, patience: int, checkpoints: Path):
        self.optimizer, self.patience, self.checkpoints = optimizer, patience, Path(checkpoints)
        self.device = optimizer.param_groups[0]["params"][0].device
        self.on_device = bool(optimizer.defaults.get("fused"))
        # (streak of non-finite steps, all non-finite steps): tensors on the device path
        zero = torch.zeros((), device=self.device)
        self.streak, self.total = (zero, zero.clone()) if self.on_device else (0, 0)
        self.reported = 0

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
            self.total = self.total + bad
            return 1.0 - bad
        if bad.item():
            self.streak, self.total = self.streak + 1, self.total + 1
            log.warning("step %d: loss %s, gradient norm %s: update skipped", step,
                        loss.item(), None if grad_norm is None else grad_norm.item())
            self.check(step)
            return False
        self.optimizer.step()
        self.streak = 0
        return True

    def skipped(self, step: int) -> int:
        """Non-finite steps so far (for loss.csv); stops the run if the last `patience` were."""
        self.check(step)
        total = int(self.total)
        if self.on_device and total > self.reported:
            log.warning("up to step %d: %d steps with a non-finite loss or gradient norm "
                        "skipped", step, total)
        self.reported = total
        return total

    def check(self, step: int) -> None:
        streak = int(self.streak)
        if streak < self.patience:
            return
        latest = self.checkpoints / "latest"
        kept = (f"The last checkpoint, {self.checkpoints / latest.read_text().strip()}, holds "
                "the weights of the last finite step and is kept" if latest.is_file()
                else "No checkpoint was written before them")
        raise NonFiniteError(
            f"{self.checkpoints.parent}: the loss or gradient norm was not finite at steps "
            f"{step - streak + 1} to {step} ({streak} in a row, the patience); the run stopped "
            f"and wrote no final weights. {kept}. Lower the learning rate or clip "
            "the gradients harder, and rerun (a checkpoint made with other params starts over)")
