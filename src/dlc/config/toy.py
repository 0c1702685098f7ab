"""The paper's Section 3 study: diffusion on a grid of Gaussians (`toy`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import ConfigError, param, positive


@dataclass(frozen=True)
class MLPConfig:
    width: int = param("hidden width of the MLP denoiser", minimum=1)
    depth: int = param("number of linear layers on the data path (the paper: 4)", minimum=2)
    style: Literal["plain", "residual"] = param(
        "plain: SiLU MLP, embedding concatenated to the input; residual: pre-norm residual "
        "layers that each see the embedding")


@dataclass(frozen=True)
class DiffusionConfig:
    steps: int = param("diffusion steps T of the training process", minimum=2)
    schedule: Literal["linear", "cosine"] = param("beta schedule (improved DDPM: cosine)")
    learn_sigma: bool = param("learn the variance (improved DDPM learned-range) with the VLB term")
    vlb_weight: float = param("lambda of L_simple + lambda * L_vlb (improved DDPM: 0.001)",
                             minimum=0)


@dataclass(frozen=True)
class ToyTrainConfig:
    steps: int = param("optimiser steps per model (the paper: 300M samples / 2048 = 146485)",
                      minimum=1)
    batch_size: int = param("fresh samples drawn per step (the paper: 2048)", minimum=1)
    lr: float = param("AdamW peak learning rate", **positive())
    lr_schedule: Literal["constant", "cosine"] = param("after warm-up: constant, or cosine to 0")
    warmup_steps: int = param("linear warm-up steps", minimum=0)
    ema_decay: float = param("EMA decay of the weights used for sampling", minimum=0, maximum=1)
    threads: int = param("torch CPU threads per job", minimum=1)


@dataclass(frozen=True)
class GMMConfig:
    fit_samples: int = param("samples per mixture component used to fit the GMM", minimum=1)
    max_iter: int = param("EM iterations", minimum=1)
    n_init: int = param("k-means++ restarts; the best likelihood is kept", minimum=1)


@dataclass(frozen=True)
class ToyEvalConfig:
    samples: int = param("model samples (and fresh true samples) per evaluation", minimum=10)
    sampling_steps: int = param("respaced ancestral sampling steps", minimum=1)
    knn_k: int = param("k of the k-nearest-neighbour KL estimator", minimum=1)
    off_mode_stds: float = param("a sample farther than this many std from every centre is "
                                "off-mode", **positive())


@dataclass(frozen=True)
class ToyConfig:
    modes: list[int] = param("numbers of mixture components K (perfect squares: a square grid)")
    variants: list[Literal["unconditional", "oracle", "gmm"]] = param(
        "unconditional; conditioned on the true component; on the component a fitted GMM infers")
    std: float = param("standard deviation of every component", **positive())
    spacing: float = param("distance between neighbouring centres", **positive())
    normalize: bool = param("divide the data by the mixture's std before diffusion (false: the "
                           "paper's raw coordinates, fixed std and spacing for every K)")
    seed: int = param("seed of data, initialisation and sampling", minimum=0)
    scatter_modes: list[int] = param("K values drawn in the scatter figure (subset of modes)")
    model: MLPConfig = param("denoiser")
    diffusion: DiffusionConfig = param("Gaussian diffusion process")
    train: ToyTrainConfig = param("training budget")
    gmm: GMMConfig = param("mixture fitted for the gmm variant")
    eval: ToyEvalConfig = param("metrics")

    def check(self, where: str) -> None:
        for k in self.modes:
            side = round(k ** 0.5)
            if k < 1 or side * side != k:
                raise ConfigError(f"{where}.modes: {k} is not a perfect square (a square grid)")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"{where}.modes: repeated values {self.modes}")
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ConfigError(f"{where}.variants: must be a non-empty list without repeats")
        missing = sorted(set(self.scatter_modes) - set(self.modes))
        if missing:
            raise ConfigError(f"{where}.scatter_modes: {missing} not in {where}.modes")
