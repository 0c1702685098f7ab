"""Imports point down: cli over launch and stages, stages over generation, generation over the
library layers (models, diffusion, data, metrics, train, io, config, viz). A stage never
imports another stage, nothing below the stages imports a stage, and no module imports itself
back through others (lazy imports inside functions count too)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dlc"
# Higher numbers sit higher; a module may import its own layer or lower ones. The library
# layers share rank 0: they are peers (a model loads its weights with train.checkpoint).
# The package's face (dlc/__init__.py) sits on top: it re-exports dlc.Pipeline.
RANKS = {"dlc": 5, "cli": 4, "launch": 3, "stages": 2, "generation": 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str) -> set[str]:
    """Every dlc module a source imports, at any depth (`from dlc.x import y` gives dlc.x.y when
    that is a module, else dlc.x: the caller resolves against the known modules)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("dlc")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
                and node.module.startswith("dlc"):
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return found


def layer(module: str) -> str:
    """dlc.stages.train_dit -> stages; dlc.cli -> cli; dlc.models.dit -> models."""
    return module.split(".")[1] if module.count(".") else "dlc"


def graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the modules of the package it imports (packages themselves left out: `from
    dlc.stages import train_dit` imports dlc.stages.train_dit)."""
    packages = {name for name in sources if any(m.startswith(name + ".") for m in sources)}
    modules = set(sources) - packages
    return {name: {m for m in imports(source) if m in modules and m != name}
            for name, source in sources.items()}


def violations(sources: dict[str, str]) -> list[str]:
    found = []
    edges = graph(sources)
    for module, targets in edges.items():
        for target in targets:
            here, there = layer(module), layer(target)
            if here == there == "stages":
                found.append(f"{module} imports another stage, {target}")
            elif RANKS.get(there, 0) > RANKS.get(here, 0):
                found.append(f"{module} ({here}) imports {target}, a layer above it ({there})")
    return found + [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(edges)]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules found by depth-first search."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return found


def package_sources() -> dict[str, str]:
    return {module_name(path): path.read_text() for path in PACKAGE.rglob("*.py")}


def test_imports_point_down_with_no_cycle():
    assert violations(package_sources()) == []


def fake_package(**modules: str) -> dict[str, str]:
    sources = {"dlc": "", "dlc.stages": "", "dlc.models": ""}
    return sources | {name.replace("__", "."): body for name, body in modules.items()}


@pytest.mark.parametrize("modules, expected", [
    ({"dlc__stages__sample_dit": "from dlc.stages.train_dit import load_model",
      "dlc__stages__train_dit": "x = 1"},
     "dlc.stages.sample_dit imports another stage, dlc.stages.train_dit"),
    ({"dlc__stages__sample_dit": "def f():\n    from dlc.stages import train_dit",
      "dlc__stages__train_dit": "x = 1"},
     "dlc.stages.sample_dit imports another stage, dlc.stages.train_dit"),
    ({"dlc__models__dit": "import dlc.stages.train_dit",
      "dlc__stages__train_dit": "x = 1"},
     "dlc.models.dit (models) imports dlc.stages.train_dit, a layer above it (stages)"),
    ({"dlc__launch__jobs": "from dlc import cli", "dlc__launch": "", "dlc__cli": "x = 1"},
     "dlc.launch.jobs (launch) imports dlc.cli, a layer above it (cli)"),
])
def test_the_check_finds_a_wrong_import(modules, expected):
    assert expected in violations(fake_package(**modules))


def test_the_check_finds_a_cycle():
    found = violations(fake_package(dlc__models__a="from dlc.models import b",
                                    dlc__models__b="from dlc.models.a import x"))
    assert found == ["import cycle: dlc.models.a -> dlc.models.b -> dlc.models.a"]
