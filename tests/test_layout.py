"""The worlds import only downward, and `make lint` says so: the contracts in pyproject.toml
hold for the tree, and fail on a planted upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from standin.serving import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", "pyproject.toml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_tree_keeps_every_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted", "broken"),
    [
        ("bots/run/engine.py", "from bots.tools import graph", "worlds import only downward"),
        ("bots/serve/gate.py", "import bots.evals.judge", "worlds import only downward"),
        ("bots/spec/format.py", "from bots.run import trace", "worlds import only downward"),
        ("bots/spec/budget.py", "import asyncio", "the format does no I/O"),
        ("bots/spec/templates.py", "import httpx", "the format does no I/O"),
    ],
)
def test_a_planted_import_breaks_the_contract(
    tmp_path: Path, module: str, planted: str, broken: str
) -> None:
    shutil.copytree(ROOT / "bots", tmp_path / "bots", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{planted}  # planted\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
