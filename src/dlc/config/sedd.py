"""SEDD over codes, p(c) (`sedd`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import NONFINITE_DOC, PRECISION_DOC, ConfigError, param, positive


@dataclass(frozen=True)
class SEDDTrainConfig:
    steps: int = param("optimiser steps", minimum=1)
    batch_size: int = param("codes per step over all processes (paper: 512)", minimum=1)
    lr: float = param("AdamW lr after warm-up, constant (paper: 3e-4)", **positive())
    warmup_steps: int = param("linear lr warm-up (paper: 2500)", minimum=0)
    clip_grad: float = param("gradient-norm clip (paper: 1.0)", **positive())
    ema_decay: float = param("EMA decay of the sampling weights (paper: 0.9999)", minimum=0,
                            maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    compile: bool = param("torch.compile the score network for training and sampling (GPU "
                         "runs; training 1.8x on an H200)")
    seed: int = param("seed of init, batch order and noise", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)
    checkpoint_every: int = param("steps between resumable checkpoints", minimum=1)
    nonfinite_patience: int = param(NONFINITE_DOC, minimum=1)


@dataclass(frozen=True)
class SEDDSampleConfig:
    samples: int = param("codes to generate", minimum=1)
    batch_size: int = param("codes per sampler batch (one Parquet shard each)", minimum=1)
    steps: int = param("sampler steps from t = 1 to t_end (paper: 1024, or 4096 with "
                      "remasking)", minimum=1)
    method: Literal["analytic", "euler"] = param("Tweedie tau-leaping (paper) or Euler")
    remask_eta: float = param("DLC remasking strength per step (paper: 0.01; 0 = off)",
                             minimum=0, maximum=1)
    remask_window: list[float] = param("[t0, t1]: remask only for t0 < t < t1 "
                                      "(paper: [0.3, 0.55])", minimum=0, maximum=1)
    t_end: float = param("last time before the final denoising step (paper: 1e-5)",
                        **positive(maximum=1))
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    seed: int = param("seed of the sampler (batch b uses (seed, b))", minimum=0)

    def check(self, where: str) -> None:
        if len(self.remask_window) != 2 or self.remask_window[0] > self.remask_window[1]:
            raise ConfigError(f"{where}.remask_window: expected [t0, t1] with t0 <= t1")


@dataclass(frozen=True)
class SEDDConfig:
    size: Literal["tiny", "small", "medium"] = param("score transformer (paper: medium, 322.5M; "
                                                    "small 93.2M)")
    dropout: float = param("dropout in the blocks (paper: 0.1)", minimum=0, maximum=1)
    train_split: str = param("codes split it learns from")
    reference_split: str = param("held-out codes split its samples are compared with")
    train: SEDDTrainConfig = param("optimisation")
    sample: SEDDSampleConfig = param("code generation")
