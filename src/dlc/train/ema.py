"""Exponential moving average of weights: the weights that sample."""

from __future__ import annotations

import copy

import torch


def make_ema(model: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


def warmed_up_decay(step: int, decay: float) -> float:
    """min(decay, (1 + step) / (10 + step)): early on the average forgets the random
    initialisation quickly (at 0.999 a fixed decay would still give the initial weights 37%
    of the average after 1,000 steps); after a few thousand steps it is `decay`."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float,
               applied: bool | torch.Tensor = True) -> None:
    """ema <- decay * ema + (1 - decay) * model for parameters; buffers are copied.

    `applied` is the guard's verdict on this step (train/guard.py): False, or a 0.0 tensor on
    the device, leaves the EMA as it was, so a skipped step reaches no weights."""
    if applied is False:
        return
    weight = 1.0 - decay if applied is True else (1.0 - decay) * applied
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), weight)
    for ema_buffer, buffer in zip(ema.buffers(), model.buffers()):
        ema_buffer.copy_(buffer if applied is True else torch.where(applied > 0, buffer,
                                                                    ema_buffer))
