"""The benchmark's smoke test: `python -m bench --quick --cold-start --tracing` completes with
zero errors and writes every figure to its JSON. Timings are never asserted: machines are
shared and noisy (the figures that are the same every run are in test_bench_figures.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from standin.serving import ROOT

LOAD = [
    "arrivals_per_s",
    "chats_measured",
    "chats_in_flight",
    "upstream_streams",
    "errors",
    "server_cpu",
    "upstream_events_per_s",
    "loop_lag_ms_p50",
    "loop_lag_ms_p99",
    "memory_per_chat_kb",
    "server_rss_mb",
]
LATENCY = [  # there when some measured chat was answered
    "added_first_text_ms_p50",
    "added_first_text_ms_p99",
    "added_done_ms_p50",
    "added_done_ms_p99",
]


def is_figure(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def missing(where: str, data: dict[str, Any], keys: list[str]) -> list[str]:
    return [f"{where}.{key}" for key in keys if not is_figure(data.get(key))]


def step_gaps(where: str, step: dict[str, Any]) -> list[str]:
    """The figures a step lacks; a step whose chats all failed has no latency figures (Poe's
    pattern under load)."""
    gaps = missing(where, step, LOAD)
    if step["chats_measured"] > step["errors"]:
        gaps += missing(where, step, LATENCY)
    if step["upstream_events_per_s"]:
        gaps += missing(where, step, ["cpu_us_per_upstream_event"])
    assert isinstance(step["held"], bool), where
    return gaps


@pytest.mark.timeout(150)
def test_the_quick_benchmark_reports_every_figure_for_ours_the_references_traces_and_cold_start(
    tmp_path: Path,
) -> None:
    out = tmp_path / "capacity.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--cold-start", "--tracing", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=140,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == 0, results["error_samples"]
    assert results["meta"]["mode"] == "quick"
    servers = results["servers"]
    assert list(servers) == ["ours", "handwritten", "poe_pattern", "floor"]
    gaps: list[str] = []
    for name, server in servers.items():
        assert is_figure(server["capacity_chats"]), name
        assert server["steps"], name
        for step in server["steps"]:
            gaps += step_gaps(f"{name}[{step['planned_in_flight']}]", step)
    # the reference of the goals: ours and the floor relay every chat of every step
    for name in ("ours", "floor"):
        for step in servers[name]["steps"]:
            assert step["chats_measured"] > 0 and step["errors"] == 0, (name, step)
            assert step["upstream_streams"] > 0, (name, step)
    summary = results["summary"]
    assert set(summary["capacity_chats"]) == set(servers)
    if "cpu_per_event_vs_floor" in summary:  # when a step of both held
        gaps += missing("summary", summary, ["cpu_per_event_us_ours", "cpu_per_event_us_floor"])
    tracing = results["tracing"]
    assert list(tracing["modes"]) == ["off", "live collector", "dead collector"]
    for mode, step in tracing["modes"].items():
        gaps += step_gaps(f"tracing[{mode}]", step)
        assert step["chats_measured"] > 0 and step["errors"] == 0, (mode, step)
    assert tracing["spans_received"] > 0  # the live collector got the live server's spans
    gaps += missing(
        "cold_start",
        results["cold_start"],
        [
            "listening_s_median",
            "first_event_s_median",
            "first_event_s_max",
        ],
    )
    assert gaps == []
    assert "cold start" in run.stdout and "traces at" in run.stdout


def test_the_benchmark_writes_its_results_where_git_ignores_them() -> None:
    from bench.__main__ import DEFAULT_OUT

    for path in (DEFAULT_OUT, str(Path(DEFAULT_OUT).parent / "logs" / "standin.log")):
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert check.returncode == 0, f"{path} would dirty the working tree"
