"""Every command in the shell blocks of the README and of docs/*.md runs as written
(`make test` is CI itself)."""

from __future__ import annotations

import asyncio
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from standin.poe import Behavior, StandIn
from standin.serving import ROOT, serving_process

DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("docs/*.md"))]


def shell_commands(name: str) -> list[str]:
    text = (ROOT / name).read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    return commands


def test_the_readme_has_the_two_commands() -> None:
    commands = shell_commands("README.md")
    assert commands[:2] == ["make demo", "make test"]


def test_the_docs_are_there() -> None:
    assert len(DOCS) > 1, "no docs/*.md found"


@pytest.mark.parametrize(
    "name, command",
    [
        pytest.param(name, command, id=f"{name}: {command}")
        for name in DOCS
        for command in shell_commands(name)
        if command != "make test"
    ],
)
def test_shell_command_runs(name: str, command: str, tmp_path: Path) -> None:
    args = shlex.split(command)
    if args[0] == ".venv/bin/python":
        args[0] = sys.executable
    if args[2:3] in (["bench"], ["bots"]) and "--out" not in args and writes_results(args):
        args += ["--out", str(tmp_path / "results.json")]  # the tests write only in tmp
    if args[2:4] == ["bots", "models"]:
        args.append("--offline")  # no network in tests; the fetch is tested in test_models.py
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=120, cwd=ROOT, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, f"{name}: {result.stderr}"
    assert result.stdout.strip(), f"{name}: {command} printed nothing"


def writes_results(args: list[str]) -> bool:
    """Whether the command writes results into the checkout by default (an eval, the bench)."""
    return args[2] == "bench" or args[3:4] == ["eval"]


async def test_the_readmes_curl_query_gets_a_streamed_reply() -> None:
    command = re.search(
        r"`(curl -N localhost:8080/council [^`]+)`", (ROOT / "README.md").read_text()
    )
    assert command, "the README's curl example is gone"
    names = ["GPT-5", "Claude-Sonnet-4.5", "Gemini-2.5-Pro", "Claude-Opus-4.1"]
    async with StandIn({name: Behavior(text=f"{name} says hi") for name in names}) as standin:
        standin.allow_any_caller = True
        env = {"POE_BASE_URL": standin.base_url}
        async with serving_process("-m", "bots", "serve", env=env) as (url, _):
            args = shlex.split(command.group(1).replace("localhost:8080", url))
            curl = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
            async with asyncio.timeout(30):
                out, _ = await curl.communicate()
    text = out.decode()
    assert "### gpt" in text and "Claude-Opus-4.1 says hi" in text
    assert text.rstrip().endswith("event: done\r\ndata: {}")
