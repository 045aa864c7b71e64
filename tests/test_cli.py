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
    lines, prices = result.stdout.splitlines()[:-1], result.stdout.splitlines()[-1]
    assert prices.startswith("prices: none in Poe's catalog (the snapshot shipped, of ")
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


def test_validate_says_nothing_of_10_calls_a_message_poe_allows_100(tmp_path: Path) -> None:
    path = tmp_path / "wide.yaml"
    path.write_text(
        "version: 1\ncall_budget: 20\nbots:\n  wide:\n    steps: [{bot: A, retries: 5}, "
        "{bot: B, retries: 5}]\n"
    )
    result = bots("validate", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "wide  A x6, B x6  total 12/20"
    assert "10 calls" not in result.stdout + result.stderr


def test_secrets_prints_the_modal_line_for_the_files_own_bots(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "version: 1\nbots:\n  my-bot: {steps: [{bot: A}]}\n"
        "  other: {access_key_env: SHARED_KEY, steps: [{bot: A}]}\n"
    )
    result = bots("secrets", "--config", str(path))
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    assert line == "modal secret create poe-pipelines MY_BOT_ACCESS_KEY=... SHARED_KEY=..."


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
    close = bots("graph", "councl")
    assert close.returncode == 2 and "did you mean 'council'?" in close.stderr


def test_graph_draws_the_path_around_a_step_that_when_may_skip(tmp_path: Path) -> None:
    path = tmp_path / "when.yaml"
    path.write_text(
        "version: 1\nbots:\n  x:\n    steps:\n      - {id: a, bot: A}\n"
        '      - {bot: B, when: "{{ a }}"}\n      - {bot: C}\n'
    )
    lines = bots("graph", "x", "--config", str(path)).stdout.splitlines()
    assert '    n3["B<br/>when {{ a }}"]' in lines
    assert '    n2 -.->|"skipped"| n4' in lines and "    n3 --> n4" in lines
    assert "    n4 --> n5" in lines  # and on to C either way


def test_a_misspelt_model_comes_out_with_the_files_other_mistakes(tmp_path: Path) -> None:
    """Four independent mistakes, in four bots: one run reports them all, the misspelt model
    as a warning (an error with --strict, as at deploy)."""
    path = tmp_path / "four.yaml"
    path.write_text(
        "version: 1\nbots:\n"
        "  one:\n    steps: [{bot: GPT-5, temprature: 1}]\n"
        "  two:\n    steps: [{bot: GPT-5, repeat: 10, retries: 1}]\n"
        "  three:\n    steps: [{bot: GPT-5, prompt: '{{ params.mood }}'}]\n"
        "  four:\n    steps: [{bot: Gemini-2.5-Prro}]\n"
    )
    result = bots("validate", "--config", str(path))
    assert result.returncode == 1 and result.stdout == ""
    err = result.stderr
    assert "four.yaml:4:26: bots.one.steps[0].temprature: unknown key" in err
    assert "bots.two.steps: worst case is 20 calls per message, over call_budget 10" in err
    assert "bots.three.steps[0].prompt: " in err and "params.mood" in err
    assert "3 problems found" in err
    assert "four.yaml:10:14: warning: bots.four.steps[0].bot: 'Gemini-2.5-Prro' is not in" in err
    assert "did you mean 'Gemini-2.5-Pro'?" in err and "1 warning (--strict" in err
    strict = bots("validate", "--strict", "--config", str(path))
    assert strict.returncode == 1 and "4 problems found" in strict.stderr
    assert "warning" not in strict.stderr
