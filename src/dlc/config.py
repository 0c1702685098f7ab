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


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


def _positive(**extra: Any) -> dict:
    return {"minimum_exclusive": 0, **extra}


def _doc(text: str, **constraints: Any) -> Any:
    return field(metadata={"doc": text, **constraints})


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


@dataclass(frozen=True)
class PresetConfig:
    """Everything a preset makes lives in results/<preset>/."""

    data: DataConfig = _doc("image dataset")


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


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not value:
            raise ConfigError(f"{key}: expected a non-empty mapping, got {value!r}")
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
def _schema(tp: Any, meta: dict | None = None) -> dict:
    meta = meta or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    out: dict[str, Any]
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in args if a is not type(None)]
        out = {"anyOf": [_schema(inner), {"type": "null"}]}
    elif origin is Literal:
        out = {"enum": list(args)}
    elif origin is list:
        out = {"type": "array", "items": _schema(args[0], meta)}
        meta = {}
    elif origin is dict:
        out = {"type": "object", "minProperties": 1, "additionalProperties": _schema(args[1])}
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
        out = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[tp]}
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
