"""How a parameter is declared: a dataclass field with its doc and its allowed range, which
the parser checks and the schema and the reference print."""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A parameter file that cannot be used; the message names the file and the key."""


def positive(**extra: Any) -> dict:
    """The range of a value that must be greater than 0."""
    return {"minimum_exclusive": 0, **extra}


def param(text: str, **constraints: Any) -> Any:
    """A parameter: its doc (the schema's description, the reference's meaning) and its range
    (minimum, maximum, minimum_exclusive)."""
    return field(metadata={"doc": text, **constraints})


PRECISION_DOC = ("autocast dtype (GPU or CPU) of the stage's network; auto: bf16 where the "
                 "device multiplies it natively (a GPU, a CPU with AVX512-BF16 or AMX), else "
                 "fp32")
NONFINITE_DOC = ("steps in a row with a non-finite loss or gradient norm (each skipped: no "
                 "update) before the run stops with exit 2, keeping its last checkpoint")
