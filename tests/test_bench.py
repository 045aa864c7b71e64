"""The benchmark's smoke test: `python -m bench.run --quick` completes with zero errors and
writes every figure to its JSON. Timings are never asserted: machines are shared and noisy."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

OVERHEAD_ROW = ["messages", "errors", "messages_per_s", "server_cpu_s_per_message"]
OVERHEAD_RATIOS = [
    "cpu_per_message_ratio",
    "throughput_ratio",
    "cpu_per_message_ratio_vs_shared_client",
    "throughput_ratio_vs_shared_client",
]
FANOUT = ["slowest_alone_total_s", "fastest_alone_first_text_s"]
FANOUT_SHOW = [
    "total_s",
    "first_visible_text_s",
    "total_minus_slowest_alone_s",
    "first_text_minus_fastest_alone_s",
    "replace_responses",
]
MERGE = [
    "bytes_ratio",
    "wire_bytes_ratio",
    "final_bytes",
    "refreshes_per_s",
    "replace_responses",
    "slowest_section_refreshes_per_s",
]
SCALE_LEVEL = [
    "errors",
    "upstream_streams_peak",
    "added_latency_s_p50",
    "added_latency_s_p99",
    "server_peak_rss_mb",
    "memory_per_chat_kb",
    "server_cpu_utilization",
    "server_loop_lag_s_p99",
]


def is_figure(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def missing(where: str, data: dict[str, Any], keys: list[str]) -> list[str]:
    return [f"{where}.{key}" for key in keys if not is_figure(data.get(key))]


def test_quick_benchmark_completes_without_errors_and_reports_every_figure(
    tmp_path: Path,
) -> None:
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == 0, results["error_samples"]
    assert results["meta"]["mode"] == "quick"

    gaps: list[str] = []
    overhead = results["overhead"]
    servers = {(row["server"], row["concurrency"]) for row in overhead["rows"]}
    levels = {concurrency for _, concurrency in servers}
    assert len(levels) == 2
    assert servers == {
        (name, c)
        for name in ("pipeline", "passthrough (docs)", "passthrough (shared client)")
        for c in levels
    }
    for row in overhead["rows"]:
        gaps += missing(f"overhead[{row['server']} x{row['concurrency']}]", row, OVERHEAD_ROW)
        assert row["errors"] == 0 and row["messages"] > 0
    assert {r["concurrency"] for r in overhead["ratios"]} == levels
    for ratio in overhead["ratios"]:
        gaps += missing(f"overhead.ratios[{ratio['concurrency']}]", ratio, OVERHEAD_RATIOS)

    fanout = results["fanout"]
    gaps += missing("fanout", fanout, FANOUT)
    for show in ("sections", "stream"):
        gaps += missing(f"fanout.{show}", fanout[show], FANOUT_SHOW)

    gaps += missing("merge", results["merge"], MERGE)

    scale = results["scale"]["levels"]
    assert len(scale) == 3
    for level in scale:
        gaps += missing(f"scale[{level['chats']}]", level, SCALE_LEVEL)
        assert level["errors"] == 0
        assert level["upstream_streams_peak"] > 0

    assert gaps == []
    targets = results["targets"]
    assert {t["section"] for t in targets} == {"overhead", "fan-out", "live merge", "scale"}
    assert all(is_figure(t["value"]) and isinstance(t["met"], bool) for t in targets), targets


def test_the_conversation_benchmark_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "conversation.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.conversation", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    for script in json.loads(out.read_text()):
        for turn in script["per_turn"]:
            assert not missing("per_turn", turn, ["metadata_chars", "metadata_bytes_in_request"])
        conversation = script["conversation"]
        assert conversation["messages"] == 1_000 and is_figure(conversation["request_bytes"])
        for length in ("short", "long"):
            assert conversation[length]["statuses"] == [200], (script["script"], length)
            assert not missing(length, conversation[length], ["first_event_s", "done_s"])
    assert "a 1,000-message conversation" in result.stdout


def test_the_tracing_benchmark_reports_every_mode(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.tracing", "--rounds", "1", "--chats", "2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {line.split("  ")[0].strip(): line.split() for line in result.stdout.splitlines()}
    for mode in ("off", "live collector", "dead collector"):
        figures = rows[mode][-5:]
        assert all(is_figure(float(figure)) for figure in figures), (mode, figures)
    assert "spans the live collector received: 30" in result.stdout  # 10 spans x 3 messages


CAPACITY_LOAD = [
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
CAPACITY_LATENCY = [  # there when some measured chat was answered
    "added_first_text_ms_p50",
    "added_first_text_ms_p99",
    "added_done_ms_p50",
    "added_done_ms_p99",
]


def test_the_capacity_benchmark_reports_every_figure_for_ours_and_each_reference(
    tmp_path: Path,
) -> None:
    out = tmp_path / "capacity.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.capacity", "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=170, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["errors"] == 0, results["error_samples"]
    servers = results["servers"]
    assert list(servers) == ["ours", "handwritten", "poe_pattern", "floor"]
    gaps: list[str] = []
    for name, server in servers.items():
        assert is_figure(server["capacity_chats"]), name
        assert server["steps"], name
        for step in server["steps"]:
            where = f"{name}[{step['planned_in_flight']}]"
            gaps += missing(where, step, CAPACITY_LOAD)
            if step["chats_measured"] > step["errors"]:
                gaps += missing(where, step, CAPACITY_LATENCY)
            if step["upstream_events_per_s"]:
                gaps += missing(where, step, ["cpu_us_per_upstream_event"])
            assert isinstance(step["held"], bool)
    # the reference of the goals: ours and the floor relay every chat of every step
    for name in ("ours", "floor"):
        for step in servers[name]["steps"]:
            assert step["chats_measured"] > 0 and step["errors"] == 0, (name, step)
            assert step["upstream_streams"] > 0, (name, step)
    summary = results["summary"]
    assert set(summary["capacity_chats"]) == set(servers)
    if "cpu_per_event_vs_floor" in summary:  # when a step of both held
        gaps += missing("summary", summary, ["cpu_per_event_us_ours", "cpu_per_event_us_floor"])
    gaps += missing("cold_start", results["cold_start"], [
        "listening_s_median", "first_event_s_median", "first_event_s_max",
    ])  # fmt: skip
    assert gaps == []


def test_the_benchmarks_write_their_results_where_git_ignores_them() -> None:
    from bench import capacity, conversation, run

    for path in (run.DEFAULT_OUT, capacity.DEFAULT_OUT, conversation.DEFAULT_OUT):
        check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert check.returncode == 0, f"{path} would dirty the working tree"
