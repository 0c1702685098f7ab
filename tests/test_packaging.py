"""Install files agree: pyproject pins, the lock file, and the conda environment file."""

import tomllib

import yaml

from .conftest import ROOT


def lock_pins() -> list[str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_torch_is_pinned_everywhere():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.14.1" in dependencies and "torchvision==0.29.1" in dependencies
    assert {"torch==2.14.1", "torchvision==0.29.1"} <= set(lock_pins())


def test_lock_file_pins_every_package_exactly():
    for pin in lock_pins():
        assert "==" in pin, pin


def test_conda_environment_equals_the_lock_file():
    env = yaml.safe_load((ROOT / "envs" / "dlc.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = [p for p in pip_section if not p.startswith("-e")]
    assert pins == lock_pins()
    assert "python=3.11" in env["dependencies"]


def test_every_rule_declares_the_conda_environment():
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = rules.read_text()
        assert text.count("rule ") == text.count("conda:"), rules.name
