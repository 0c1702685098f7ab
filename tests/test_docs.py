"""Every link and every repository path the README and the docs name exists (a page that points
at a file that moved is caught here, not by a reader)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         ROOT / "benchmarks" / "README.md", ROOT / "research" / "README.md"]
TOP = ("src/", "tests/", "docs/", "workflow/", "benchmarks/", "research/", "envs/")
PACKAGE = ("stages/", "models/", "diffusion/", "data/", "metrics/", "train/", "generation/",
           "launch/", "config/")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CODE = re.compile(r"`([^`\s]+)`")


def named_paths(page: Path) -> list[tuple[str, Path]]:
    """(as written, where it must be) for every relative link and every `path` in code spans
    that starts at a top folder of the repository or of the package; placeholders are skipped."""
    text, found = page.read_text(), []
    for target in LINK.findall(text):
        if not re.match(r"[a-z]+:", target):
            found.append((target, (page.parent / target).resolve()))
    for span in CODE.findall(text):
        if any(mark in span for mark in "<>*{}$|") or "(" in span:
            continue
        if span.startswith(TOP):
            found.append((span, ROOT / span))
        elif span.startswith(PACKAGE) and span.endswith((".py", "/")):
            found.append((span, ROOT / "src" / "dlc" / span))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_path_a_page_names_exists(page):
    missing = [written for written, path in named_paths(page) if not path.exists()]
    assert not missing, f"{page.relative_to(ROOT)} names paths that do not exist: {missing}"
