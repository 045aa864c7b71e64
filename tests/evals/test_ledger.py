"""An eval's results and report never overwrite a file the eval did not write, and a foreign
file is never read as results: checked through `python -m bots eval` as a creator runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bots.errors import UsageError
from bots.evals.ledger import REPORT_MARK, Ledger, results_and_report
from bots.spec.writing import write_beside
from standin.serving import ROOT

PIPELINES = "version: 1\nbots:\n  solo: {steps: [{bot: Some-Model}]}\n"


def eval_command(tmp_path: Path, out: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pipelines.yaml").write_text(PIPELINES)
    (tmp_path / "items.yaml").write_text("- What is 2 + 2?\n")
    args = ["solo", "--baseline", "GPT-5", "--dry-run", "--out", out]
    args += [
        "--config",
        str(tmp_path / "pipelines.yaml"),
        "--dataset",
        str(tmp_path / "items.yaml"),
    ]
    return subprocess.run(
        [sys.executable, "-m", "bots", "eval", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_results_and_report_are_two_files_and_a_rerun_keeps_both(tmp_path: Path) -> None:
    out = tmp_path / "r1.json"
    first = eval_command(tmp_path, str(out))
    assert first.returncode == 0, first.stderr
    report = tmp_path / "r1.html"
    assert json.loads(out.read_text())["version"] == 1 and REPORT_MARK in report.read_text()
    again = eval_command(tmp_path, str(out))  # resumes: nothing to answer, both rewritten
    assert again.returncode == 0, again.stderr
    assert "0 answers" in again.stdout and REPORT_MARK in report.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "items.yaml",
        "pipelines.yaml",
        "r1.html",
        "r1.json",
    ]  # no temporary file left behind


def test_an_out_naming_a_report_is_refused_with_the_name_to_use(tmp_path: Path) -> None:
    result = eval_command(tmp_path, str(tmp_path / "r1.html"))
    assert result.returncode == 2
    assert f"use --out {tmp_path / 'r1.json'}" in result.stderr
    assert not (tmp_path / "r1.html").exists()


def test_a_report_name_held_by_another_file_is_never_overwritten(tmp_path: Path) -> None:
    """`--out bots/scorecard.json` once wrote the report over the project's own template."""
    template = tmp_path / "scorecard.html"
    template.write_text("<!doctype html><title>{{ names }}</title>")
    result = eval_command(tmp_path, str(tmp_path / "scorecard.json"))
    assert result.returncode == 2
    assert "is not an eval's report, so it is not overwritten" in result.stderr
    assert template.read_text() == "<!doctype html><title>{{ names }}</title>"
    assert not (tmp_path / "scorecard.json").exists()  # nothing paid for, nothing written


@pytest.mark.parametrize(
    "foreign",
    [
        '{"version": true}',
        '{"version": 1.0}',
        '{"version": 1, "answers": []}',
        '{"version": "1"}',
        "[1, 2, 3]",
        "[" * 100_000,
        '{"version": 1, "n": NaN}',
    ],
)
def test_a_foreign_file_is_never_taken_for_results(tmp_path: Path, foreign: str) -> None:
    path = tmp_path / "out.json"
    path.write_text(foreign)
    with pytest.raises(UsageError, match="left as it is"):
        Ledger(path)
    assert path.read_text() == foreign


def test_results_read_back_as_they_were_saved(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "out.json")
    ledger.answers["live|a|1"] = {"text": "x", "calls": 1, "error": None}
    ledger.points["a"] = 12
    ledger.save()
    again = Ledger(tmp_path / "out.json")
    assert again.answers == ledger.answers and again.points == {"a": 12}


def test_a_folder_as_out_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a folder"):
        Ledger(tmp_path)
    with pytest.raises(UsageError, match="use --out"):
        results_and_report(str(tmp_path / "x.HTM"))


def test_writing_beside_touches_no_other_file(tmp_path: Path) -> None:
    neighbour = tmp_path / "out.json.tmp"  # once the fixed name of the temporary file
    neighbour.write_text("someone's file")
    write_beside(tmp_path / "out.json", "{}")
    assert neighbour.read_text() == "someone's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.json.tmp"]
