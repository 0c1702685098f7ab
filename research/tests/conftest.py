"""The research scripts' tests: `pytest research/tests` (not part of `make test`: research is
not the product). They reuse the product tests' micro params."""

import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import micro  # noqa: E402, F401  (the fixture)


def import_research(name: str):
    """A script of research/sem/, imported with that folder on sys.path, as the scripts run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "research" / "sem"))
        return importlib.import_module(name)
