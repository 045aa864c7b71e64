"""What the run's figures say: the summary of the servers against each other, and the run as
text (a table of steps per server, the summary, traces, cold start, errors)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import Any

from bench.step import rnd

STEP_COLUMNS = (  # (header, key)
    ("planned", "planned_in_flight"),
    ("arrivals/s", "arrivals_per_s"),
    ("in flight", "chats_in_flight"),
    ("streams", "upstream_streams"),
    ("errors", "errors"),
    ("server CPU", "server_cpu"),
    ("us/event", "cpu_us_per_upstream_event"),
    ("lag p50 ms", "loop_lag_ms_p50"),
    ("lag p99 ms", "loop_lag_ms_p99"),
    ("first +ms p50", "added_first_text_ms_p50"),
    ("first +ms p99", "added_first_text_ms_p99"),
    ("done +ms p50", "added_done_ms_p50"),
    ("done +ms p99", "added_done_ms_p99"),
    ("KB/chat", "memory_per_chat_kb"),
    ("RSS MB", "server_rss_mb"),
    ("stand-in CPU", "standin_cpu"),
    ("load CPU", "loadgen_cpu"),
    ("held", "held"),
)

TRACING_COLUMNS = ("in flight", "errors", "server CPU", "us/event", "lag p99 ms", "done +ms p99")


def summary(servers: dict[str, Any]) -> dict[str, Any]:
    """Capacity ratios, and CPU per relayed event against the floor at the levels both held."""

    def ratio(a: str, b: str) -> float | None:
        if a not in servers or b not in servers or not servers[b]["capacity_chats"]:
            return None
        return rnd(servers[a]["capacity_chats"] / servers[b]["capacity_chats"], 2)

    def per_event(kind: str) -> dict[float, float]:
        steps = servers.get(kind, {"steps": []})["steps"]
        return {
            r["planned_in_flight"]: r["cpu_us_per_upstream_event"]
            for r in steps
            if r["held"] and r["cpu_us_per_upstream_event"]
        }

    out: dict[str, Any] = {"capacity_chats": {k: v["capacity_chats"] for k, v in servers.items()}}
    out |= {f"ours_vs_{k}": ratio("ours", k) for k in ("poe_pattern", "handwritten", "floor")}
    ours, floor = per_event("ours"), per_event("floor")
    if pairs := [(ours[level], floor[level]) for level in ours if level in floor]:
        out["cpu_per_event_us_ours"] = rnd(statistics.median(a for a, _ in pairs), 2)
        out["cpu_per_event_us_floor"] = rnd(statistics.median(b for _, b in pairs), 2)
        out["cpu_per_event_vs_floor"] = rnd(statistics.median(a / b for a, b in pairs), 3)
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value + 0.0:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], spec: Sequence[tuple[str, str]]) -> str:
    """`rows` (dicts) as a table, one column per (header, key) of `spec`."""
    cells = [[h for h, _ in spec]] + [[_fmt(row.get(key)) for _, key in spec] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(spec))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def report(r: dict[str, Any]) -> str:
    meta = r["meta"]
    parts = [
        f"poe-pipelines capacity ({meta['mode']}, {meta['cpus']} CPUs, server on CPU "
        f"{meta['server_cpus']}, load on {meta['load_cpus']}, {meta['seconds']} s, code "
        f"{meta['code']['at_start']}); a chat is a three-way fan-out lasting "
        f"{meta['fan_out_seconds']} s on average"
    ]
    for kind, run in r["servers"].items():
        parts.append(
            f"\n{kind}: capacity {run['capacity_chats']} chats in flight "
            f"({run['capacity_upstream_streams']} upstream streams); idle RSS "
            f"{run['idle_rss_mb']} MB\n" + table(run["steps"], STEP_COLUMNS)
        )
    parts.append("\nsummary: " + json.dumps(r["summary"]))
    if "tracing" in r:
        t = r["tracing"]
        rows = [{"mode": mode, **row} for mode, row in t["modes"].items()]
        shown = [c for c in STEP_COLUMNS if c[0] in TRACING_COLUMNS]
        spec = [("traces", "mode"), *shown, ("us/event vs off", "cpu_per_event_vs_off")]
        parts.append(
            f"\ntraces at {t['level']} chats planned (spans the live collector received: "
            f"{t['spans_received']})\n" + table(rows, spec)
        )
    if "profile" in r:
        parts.append(f"profile: {r['profile']['path']}")
    if "cold_start" in r:
        c = r["cold_start"]
        parts.append(
            f"cold start (process start -> first event, {c['runs']} runs): median "
            f"{c['first_event_s_median']} s, worst {c['first_event_s_max']} s; "
            f"listening after {c['listening_s_median']} s"
        )
    parts.append(f"\nerrors: {r['errors']}")
    parts += [f"  {e}" for e in r["error_samples"]]
    return "\n".join(parts)
