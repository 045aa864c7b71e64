"""Every command in the README's shell blocks runs as written (`make test` is CI itself)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    return commands


def test_the_readme_has_the_two_commands() -> None:
    commands = readme_commands()
    assert commands[:2] == ["make demo", "make test"]


@pytest.mark.parametrize("command", [c for c in readme_commands() if c != "make test"])
def test_readme_command_runs(command: str) -> None:
    args = shlex.split(command)
    if args[0] == ".venv/bin/python":
        args[0] = sys.executable
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
