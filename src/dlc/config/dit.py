"""The DiT conditioned on codes, p(x | c) (`dit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import NONFINITE_DOC, PRECISION_DOC, param, positive


@dataclass(frozen=True)
class GaussianProcessConfig:
    steps: int = param("diffusion steps T (paper: 1000)", minimum=2)
    schedule: Literal["linear", "cosine"] = param("beta schedule (DiT: linear)")
    learn_sigma: bool = param("learned-range variance with the VLB term (DiT: true)")
    vlb_weight: float = param("lambda of L_simple + lambda * T * L_t (DiT: 0.001)", minimum=0)
    prediction: Literal["eps", "v"] = param("what the network predicts: the noise epsilon "
                                           "(DiT) or v = sqrt(abar) eps - sqrt(1 - abar) x_0")
    min_snr_gamma: float | None = param("weight each step's MSE to min(SNR, gamma) times the x_0 "
                                       "error (Min-SNR; 5 in its paper); null: uniform (DiT)",
                                       **positive())


@dataclass(frozen=True)
class DiTTrainConfig:
    steps: int = param("optimiser steps (paper: 800 epochs of ImageNet at batch 256)", minimum=1)
    batch_size: int = param("(latent, code) pairs per step over all processes (paper: 256)",
                           minimum=1)
    lr: float = param("AdamW lr, constant (paper: 1e-4)", **positive())
    warmup_steps: int = param("linear lr warm-up (paper: 0)", minimum=0)
    code_lr_mult: float = param("the code table's lr is lr x this (paper: 1)", **positive())
    ema_decay: float = param("EMA decay (paper: 0.9999), warmed up over the first steps",
                            minimum=0, maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    compile: bool = param("torch.compile the model (GPU runs)")
    grad_checkpointing: bool = param("recompute block activations in backward (saves memory)")
    seed: int = param("seed of init, batch order, noise and null-code dropout", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)
    checkpoint_every: int = param("steps between resumable checkpoints", minimum=1)
    nonfinite_patience: int = param(NONFINITE_DOC, minimum=1)
    keep_checkpoints: int = param("newest checkpoints kept on disk; 0 keeps every one (to "
                                 "score the run along the way)", minimum=0)
    sample_every: int = param("steps between sample grids from fixed codes (0: only at the end)",
                             minimum=0)


@dataclass(frozen=True)
class DiTSampleConfig:
    split: str = param("codes split whose codes are decoded into images")
    samples: int = param("images to generate (the first codes of the split)", minimum=1)
    batch_size: int = param("codes per sampler batch (one shard each)", minimum=1)
    steps: int = param("respaced sampling steps (paper: 250)", minimum=1)
    sampler: Literal["ddpm", "ddim"] = param("ancestral (paper) or DDIM (eta = 0)")
    cfg_scale: float = param("classifier-free guidance scale s: eps_u + s (eps_c - eps_u); "
                            "1 = no guidance (paper: 1.0 / 1.7)", minimum=0)
    cfg_max_t: int | None = param("guide only at t <= this original-scale step (guidance "
                                 "interval); null: every step", minimum=0)
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    seed: int = param("seed of the sampler (batch b uses (seed, b))", minimum=0)


@dataclass(frozen=True)
class RepaConfig:
    weight: float = param("lambda of loss + lambda * alignment loss (REPA: 0.5)", **positive())
    depth: int = param("the block whose output tokens are aligned (REPA: 8 of DiT-XL's 28)",
                      minimum=1)
    width: int = param("hidden width of the projector MLP (REPA: 2048)", minimum=1)
    batch_size: int = param("images per encoder batch when the targets are computed", minimum=1)


@dataclass(frozen=True)
class DiTConfig:
    size: Literal["tiny", "S", "B", "L", "XL"] = param("DiT size (paper: XL)")
    patch: Literal[1, 2, 4, 8] = param("patch side on the latent grid (paper: 2)")
    null_code_prob: float = param("probability that a training sample's whole code becomes the "
                                 "null code (paper: 0.1)", minimum=0, maximum=1)
    code_init_std: float = param("std of each row of the code table at init; their mean over "
                                "L positions starts at std code_init_std / sqrt(L) (DiT's label "
                                "table: 0.02)", **positive())
    train_split: str = param("split whose (latent, code) pairs it trains on")
    diffusion: GaussianProcessConfig = param("Gaussian diffusion process")
    repa: RepaConfig | None = param("align an early block's tokens with the SEM encoder's patch "
                                   "features of the clean image (REPA); null: off (paper)")
    train: DiTTrainConfig = param("optimisation")
    sample: DiTSampleConfig = param("decoding codes into images")
