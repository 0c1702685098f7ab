"""The SEM encoder, code extraction and the linear probe (`sem`, `probe`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import NONFINITE_DOC, PRECISION_DOC, ConfigError, param, positive


@dataclass(frozen=True)
class BackboneConfig:
    name: str = param("timm ViT with register tokens (imagenet: vit_large_patch14_reg4_dinov2)")
    weights: str | None = param("local weights file for timm (pretrained_cfg_overlay file=); "
                               "null: random init; the hub is never contacted")
    img_size: int = param("global crop side the backbone is built for", minimum=8)
    patch_size: int | None = param("override the model's patch size (null: the model's)",
                                  minimum=1)
    embed_dim: int | None = param("override the width (null: the model's)", minimum=8)
    depth: int | None = param("override the number of blocks (null: the model's)", minimum=1)
    num_heads: int | None = param("override the attention heads (null: the model's)", minimum=1)
    reg_tokens: int | None = param("override the register tokens (null: the model's)", minimum=1)
    conv_stem: int | None = param("channels of a convolutional stem replacing the patch "
                                 "projection (random init only; null: timm's patch "
                                 "projection)", minimum=1)
    drop_path: float = param("stochastic depth rate of the student", minimum=0, maximum=1)


@dataclass(frozen=True)
class DINOHeadConfig:
    prototypes: int = param("prototypes K of the DINO/iBOT head (paper: 65536)", minimum=2)
    hidden: int = param("hidden width of the head MLP (paper: 2048)", minimum=1)
    bottleneck: int = param("bottleneck before the prototypes (paper: 256)", minimum=1)
    layers: int = param("linear layers of the head MLP (paper: 3)", minimum=1)
    student_temp: float = param("student softmax temperature (paper: 0.1)", **positive())
    teacher_temp: float = param("teacher temperature after warm-up (paper: 0.07)", **positive())
    warmup_teacher_temp: float = param("teacher temperature at step 0 (paper: 0.04)",
                                      **positive())
    teacher_temp_warmup_steps: int = param("linear teacher-temperature warm-up (paper: 30 "
                                          "epochs)", minimum=0)
    centering: Literal["centre", "sinkhorn"] = param(
        "how the teacher's targets avoid collapse: centre (DINO: logits minus an EMA of their "
        "mean) or sinkhorn (DINOv2: Sinkhorn-Knopp equipartition over the batch, 3 iterations)")
    center_momentum: float = param("EMA momentum of the teacher centre (centering: centre)",
                                  minimum=0, maximum=1)


@dataclass(frozen=True)
class SSLLossConfig:
    dino_weight: float = param("DINO loss weight (the DINO head on every crop's SEM embedding; "
                              "paper: 1.0); 0 switches it off, and with iBOT off too the "
                              "teacher is then only the exported EMA of the student", minimum=0)
    koleo_weight: float = param("KoLeo weight on the SEM output (paper: 0.1)", minimum=0)
    ibot_weight: float = param("iBOT masked-patch loss weight; 0 switches it off (paper: 1.0)",
                              minimum=0)
    ibot_mask_prob: float = param("fraction of global crops that get masked (paper: 0.5)",
                                 minimum=0, maximum=1)
    ibot_mask_ratio: list[float] = param("[min, max] fraction of patches masked in a masked "
                                        "crop (paper: [0.1, 0.5])", minimum=0, maximum=1)
    nce_weight: float = param("weight of SimCLR's NT-Xent between the two global crops, through "
                             "an MLP head on the SEM head's input (not in the paper: 0; with "
                             "object paste it teaches the shapes' outline; under DDP its "
                             "negatives and batch norm are each process's own, like KoLeo's "
                             "neighbours)", minimum=0)
    nce_temp: float = param("NT-Xent temperature (SimCLR: 0.1 to 0.5)", **positive())

    def check(self, where: str) -> None:
        low, high = (self.ibot_mask_ratio + [None, None])[:2]
        if len(self.ibot_mask_ratio) != 2 or low > high:
            raise ConfigError(f"{where}.ibot_mask_ratio: expected [min, max] with min <= max")
        if self.dino_weight == self.ibot_weight == self.nce_weight == 0:
            raise ConfigError(f"{where}: dino_weight, ibot_weight and nce_weight are all 0: "
                              "nothing would tie two views of an image together")


@dataclass(frozen=True)
class CropsConfig:
    global_size: int = param("side of the 2 global crops (paper: 224)", minimum=8)
    global_scale: list[float] = param("[min, max] area fraction of a global crop "
                                     "(paper: [0.32, 1])", minimum=0, maximum=1)
    local_crops: int = param("number of local crops (paper: 8)", minimum=0)
    local_size: int = param("side of a local crop (paper: 98)", minimum=8)
    local_scale: list[float] = param("[min, max] area fraction of a local crop "
                                    "(paper: [0.05, 0.32])", minimum=0, maximum=1)
    flip: bool = param("random horizontal flips")
    colour_jitter: float = param("probability of DINO's colour jitter (0.4, 0.4, 0.2, 0.1); "
                                "0 keeps colour in the code (shapes)", minimum=0, maximum=1)
    grayscale: float = param("probability of grayscale (DINO: 0.2)", minimum=0, maximum=1)
    blur: bool = param("DINO's Gaussian blur (p 1.0 / 0.1 on the global crops, 0.5 local)")
    solarize: float = param("probability of solarisation of the second global crop (DINO: 0.2)",
                           minimum=0, maximum=1)
    object_paste: float = param("probability that a crop's object is pasted, recoloured, moved "
                               "and rescaled, on a new background (data/object_paste.py; "
                               "shapes: teaches the outline; 0 = off)", minimum=0, maximum=1)
    paste_foreground: list[float] = param("[background's brightest, object's darkest] channel "
                                         "value (0-255) between which object paste ramps the "
                                         "object's alpha", minimum=0, maximum=255)
    paste_scale: list[float] = param("[min, max] log-uniform size factor of a pasted object",
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
    steps: int = param("optimiser steps (paper: 100 epochs x 1250 = 125000)", minimum=1)
    batch_size: int = param("images per step over all processes (paper: 4 x 64)", minimum=2)
    base_lr: float = param("lr for a batch of lr_reference_batch (paper: 1e-4)", **positive())
    lr_reference_batch: int = param("lr = base_lr * sqrt(batch_size / this) (paper: 1024)",
                                   minimum=1)
    min_lr: float = param("lr at the end of the cosine (paper: 1e-6)", minimum=0)
    warmup_steps: int = param("linear lr warm-up (paper: 10 epochs)", minimum=0)
    weight_decay: float = param("weight decay at step 0 (paper: 0.04)", minimum=0)
    weight_decay_end: float = param("weight decay at the end, cosine (paper: 0.4)", minimum=0)
    layer_decay: float = param("layer-wise lr decay (paper: 0.9; 1 = off)", minimum=0, maximum=1)
    patch_embed_lr_mult: float = param("extra lr factor of the patch embedding (paper: 0.2)",
                                      minimum=0)
    clip_grad: float = param("gradient-norm clip (paper: 3.0)", **positive())
    momentum: float = param("teacher EMA momentum at step 0 (paper: 0.992)", minimum=0,
                           maximum=1)
    momentum_end: float = param("teacher momentum at the end, cosine (paper: 1.0)", minimum=0,
                               maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    seed: int = param("seed of init, crops and batch order", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)
    workers: int = param("data-loading worker processes (0: in the training process)",
                        minimum=0)
    checkpoint_every: int = param("steps between resumable checkpoints", minimum=1)
    nonfinite_patience: int = param(NONFINITE_DOC, minimum=1)
    keep_checkpoints: int = param("newest checkpoints kept on disk; 0 keeps every one (to "
                                 "probe the run along the way: research/sem/sem_probe_sweep.py "
                                 "--trace)", minimum=0)


@dataclass(frozen=True)
class ExtractConfig:
    splits: list[str] = param("splits of the images table to encode (tiny: train, test, "
                             "holdout; imagenet: train, val)")
    batch_size: int = param("images per encoder forward", minimum=1)
    shard_size: int = param("rows per Parquet shard (part-00000.parquet, ...)", minimum=1)
    features: bool = param("also store the continuous backbone features (float16, for the "
                          "probe's comparison)")


@dataclass(frozen=True)
class SEMConfig:
    length: int = param("code length L (paper: 512)", minimum=1)
    vocab: int = param("vocabulary V (paper: 256)", minimum=2)
    tau: float = param("SEM softmax temperature in training (paper: 1)", **positive())
    norm_eps: float = param("epsilon of the SEM head's LayerNorm over the L*V logits (the "
                            "authors' code: 1e-6; a checkpoint of theirs converts exactly "
                            "only at that value)", **positive())
    backbone: BackboneConfig = param("timm ViT")
    head: DINOHeadConfig = param("DINO/iBOT head and temperatures")
    loss: SSLLossConfig = param("loss weights")
    crops: CropsConfig = param("multi-crop augmentation")
    train: SEMTrainConfig = param("optimisation")
    extract: ExtractConfig = param("code extraction")


@dataclass(frozen=True)
class ProbeConfig:
    train_split: str = param("split whose codes the probe is fitted on")
    test_split: str = param("split it is scored on")
    targets: list[str] = param("columns of the codes table to predict (label, shape, ...)")
    epochs: int = param("passes over the training codes", minimum=1)
    batch_size: int = param("rows per step", minimum=1)
    lrs: list[float] = param("AdamW learning rates tried (cosine to 0), one classifier each; "
                            "the one best on the held-out rows is scored", **positive())
    val_fraction: float = param("fraction of the training rows held out to choose the lr",
                               **positive(maximum=0.5))
    weight_decay: float = param("AdamW weight decay", minimum=0)
    seed: int = param("seed of init, held-out rows and batch order", minimum=0)

    def check(self, where: str) -> None:
        if not self.lrs:
            raise ConfigError(f"{where}.lrs: give at least one learning rate")
