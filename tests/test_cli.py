"""The command line, run as a user runs it: `python -m bots ...` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from standin.serving import ROOT


def bots(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bots", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )


def test_validate_prints_each_bots_worst_case_against_the_budget() -> None:
    result = bots("validate")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "council",
        "GPT-5",
        "x1,",
        "Claude-Sonnet-4.5",
        "x1,",
        "Gemini-2.5-Pro",
        "x2,",
        "Claude-Opus-4.1",
        "x1",
        "total",
        "5/10",
    ]
    assert {line.split()[0] for line in lines} == {
        "council",
        "router",
        "refiner",
        "race",
        "illustrator",
        "animator",
        "critic",
        "research",
        "solver",
    }


def test_validate_notes_a_bot_that_may_pass_the_10_calls_some_poe_guides_state(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(
        "version: 1\ncall_budget: 20\nbots:\n  wide:\n    steps: [{bot: A, retries: 5}, "
        "{bot: B, retries: 5}]\n  narrow:\n    steps: [{bot: A}]\n"
    )
    result = bots("validate", "--config", str(path))
    assert result.returncode == 0, result.stderr
    note = result.stdout.splitlines()[-1]
    assert note.startswith("note: wide (12) may make more than 10 calls for one message")
    assert "narrow" not in note
    assert "note:" not in bots("validate").stdout  # the shipped bots stay within 10


def test_validate_reports_every_mistake_and_exits_1(tmp_path: Path) -> None:
    broken = (
        (ROOT / "pipelines.yaml")
        .read_text()
        .replace("retries: 1, on_error", "retires: 1, on_error")
    )
    broken = broken.replace("max: 3\n", "max: 0\n")  # the refiner's loop
    path = tmp_path / "pipelines.yaml"
    path.write_text(broken)
    result = bots("validate", "--config", str(path))
    assert result.returncode == 1
    errors = result.stderr.splitlines()[:-1]
    assert len(errors) == 2
    assert "did you mean 'retries'?" in errors[0]
    assert "loop.max: got 0" in errors[1]
    assert result.stderr.rstrip().endswith("2 problems found")


def test_schema_is_json_schema_and_the_committed_copy_is_current() -> None:
    result = bots("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "pipelines.yaml"
    assert {"version", "call_budget", "bots"} <= set(schema["properties"])
    assert json.loads((ROOT / "pipelines.schema.json").read_text()) == schema, (
        "pipelines.schema.json is stale: run python -m bots schema > pipelines.schema.json"
    )


def test_graph_prints_a_mermaid_flowchart() -> None:
    result = bots("graph", "council")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert any('"gpt: GPT-5"' in line for line in lines)
    assert any("reply (5 calls at most)" in line for line in lines)
    unknown = bots("graph", "nobody")
    assert unknown.returncode == 2 and "the bots are: council" in unknown.stderr
