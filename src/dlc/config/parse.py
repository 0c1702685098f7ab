"""Parsing: a params mapping -> the dataclasses, with errors that name the file and the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from .fields import ConfigError
from .preset import Config

DEFAULT_PARAMS = Path("params.yaml")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def nullable(tp: Any) -> Any:
    """X for a field typed `X | None`, else None."""
    if typing.get_origin(tp) not in (types.UnionType, typing.Union):
        return None
    (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return inner


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if (inner := nullable(tp)) is not None:
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


def parse_section(cls: type, data: Any, source: str) -> Any:
    """One section (SEMConfig, DiTConfig, ...) from its plain form, checked as `parse` checks
    params.yaml; errors name the source (an exported model's config.json)."""
    try:
        return _build(cls, data, "")
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
