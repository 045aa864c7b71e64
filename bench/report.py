"""What a run's figures mean: the targets (met / NOT met), the printed tables and the JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# (header, key) of each table's columns
OVERHEAD_COLUMNS = (
    ("server", "server"),
    ("chats", "concurrency"),
    ("msgs", "messages"),
    ("errors", "errors"),
    ("msgs/s", "messages_per_s"),
    ("CPU s/msg", "server_cpu_s_per_message"),
    ("server CPU", "server_cpu_utilization"),
    ("stand-in CPU", "standin_cpu_utilization"),
    ("loadgen CPU", "loadgen_cpu_utilization"),
    ("other CPU", "other_cpu_utilization"),
    ("reply p50 s", "reply_seconds_p50"),
    ("events/reply", "events_per_reply"),
)
RATIO_COLUMNS = (
    ("chats", "concurrency"),
    ("CPU/msg ratio", "cpu_per_message_ratio"),
    ("msgs/s ratio", "throughput_ratio"),
    ("CPU ratio vs shared", "cpu_per_message_ratio_vs_shared_client"),
    ("msgs/s vs shared", "throughput_ratio_vs_shared_client"),
)
FANOUT_COLUMNS = (
    ("show", "show"),
    ("total s", "total_s"),
    ("- slowest alone", "total_minus_slowest_alone_s"),
    ("first event s", "first_event_s"),
    ("first text s", "first_visible_text_s"),
    ("- fastest alone", "first_text_minus_fastest_alone_s"),
    ("replaces", "replace_responses"),
)
MERGE_COLUMNS = (
    ("final B", "final_bytes"),
    ("text sent B", "payload_bytes"),
    ("ratio", "bytes_ratio"),
    ("wire B", "wire_bytes"),
    ("wire ratio", "wire_bytes_ratio"),
    ("events", "events"),
    ("replaces", "replace_responses"),
    ("refresh/s", "refreshes_per_s"),
    ("longest gap s", "longest_gap_s"),
    ("slowest section refresh/s", "slowest_section_refreshes_per_s"),
    ("its longest gap s", "section_longest_gap_s"),
    ("total s", "total_s"),
)
SCALE_COLUMNS = (
    ("chats", "chats"),
    ("msgs", "messages"),
    ("streams", "upstream_streams_peak"),
    ("errors", "errors"),
    ("reply p50", "reply_s_p50"),
    ("reply p99", "reply_s_p99"),
    ("added p50", "added_latency_s_p50"),
    ("added p99", "added_latency_s_p99"),
    ("vs unloaded p99", "added_vs_unloaded_dependency_s_p99"),
    ("peak MB", "server_peak_rss_mb"),
    ("KB/chat", "memory_per_chat_kb"),
    ("KB/chat marginal", "memory_per_chat_kb_marginal"),
    ("server CPU", "server_cpu_utilization"),
    ("runq wait", "server_runqueue_wait_fraction"),
    ("loop lag p99", "server_loop_lag_s_p99"),
    ("lag max", "server_loop_lag_s_max"),
    ("stand-in CPU", "standin_cpu_utilization"),
    ("loadgen CPU", "loadgen_cpu_utilization"),
    ("other CPU", "other_cpu_utilization"),
)
TARGET_COLUMNS = (
    ("section", "section"),
    ("figure", "figure"),
    ("value", "value"),
    ("target", "target"),
    ("", "verdict"),
)


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each figure that has a target, with its value and whether the target is met."""
    out: list[dict[str, Any]] = []

    def check(
        section: str, figure: str, value: float | None, target: str, ok: Callable[[float], bool]
    ) -> None:
        met = None if value is None else bool(ok(value))
        out.append(
            {"section": section, "figure": figure, "value": value, "target": target, "met": met}
        )

    for ratio in r["overhead"]["ratios"]:
        c = ratio["concurrency"]
        check("overhead", f"CPU/msg, pipeline / passthrough, {c} chats",
              ratio["cpu_per_message_ratio"], "<= 1.05", lambda v: v <= 1.05)  # fmt: skip
        check("overhead", f"msgs/s, pipeline / passthrough, {c} chats",
              ratio["throughput_ratio"], ">= 1.00", lambda v: v >= 1.0)  # fmt: skip
    for show in ("sections", "stream"):
        f = r["fanout"][show]
        check("fan-out", f"{show}: total - slowest branch alone (s)",
              f["total_minus_slowest_alone_s"], "<= 0.050", lambda v: v <= 0.05)  # fmt: skip
        check("fan-out", f"{show}: first text - fastest branch alone (s)",
              f["first_text_minus_fastest_alone_s"], "<= 0.020", lambda v: v <= 0.02)  # fmt: skip
    m = r["merge"]
    check("live merge", "bytes sent / final reply (text payload)",
          m["bytes_ratio"], "<= 3.0", lambda v: v <= 3.0)  # fmt: skip
    check("live merge", "view refreshes per s while tokens flow",
          m["refreshes_per_s"], ">= 5", lambda v: v >= 5)  # fmt: skip
    for level in r["scale"]["levels"]:
        n = level["chats"]
        check("scale", f"{n} chats: errors", level["errors"], "== 0", lambda v: v == 0)
        check("scale", f"{n} chats: p99 added latency (s)",
              level["added_latency_s_p99"], "< 0.100", lambda v: v < 0.1)  # fmt: skip
        check("scale", f"{n} chats: memory per chat in flight (KB)",
              level["memory_per_chat_kb"], "< 100", lambda v: v < 100)  # fmt: skip
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    """The results as indented JSON."""
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def conclude(results: dict[str, Any], path: Path, text: str) -> int:
    """Writes the JSON, prints the report; the exit status says whether errors were seen."""
    write_json(results, path)
    print(text)
    print(f"\nresults: {path}")
    return 1 if results["errors"] else 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        value = value + 0.0  # no "-0"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def columns(rows: Sequence[dict[str, Any]], spec: Sequence[tuple[str, str]]) -> str:
    """A table of `rows` (dicts), one column per (header, key) of `spec`."""
    return table([[row[key] for _, key in spec] for row in rows], [header for header, _ in spec])


def report(r: dict[str, Any]) -> str:
    """The run as text: a table per measurement, the targets, warnings and errors."""
    o, f, m, s = r["overhead"], r["fanout"], r["merge"], r["scale"]
    meta = r["meta"]
    parts = [
        f"poe-pipelines benchmark ({meta['mode']}, {meta['cpus']} CPUs, {meta['seconds']} s; "
        f"load average {meta['load_average_at_start'][0]} at start, "
        f"{meta['load_average_at_end'][0]} at end)"
    ]
    parts.append(
        f"\n1. Engine overhead: {o['dependency']['tokens']}-token replies "
        f"(dependency alone {o['dependency']['alone_seconds']} s)\n"
        + columns(o["rows"], OVERHEAD_COLUMNS)
        + "\n"
        + columns(o["ratios"], RATIO_COLUMNS)
    )
    parts.append(
        f"\n2. Fan-out: first tokens at {f['branches_first_token_s']} s; slowest alone "
        f"{f['slowest_alone_total_s']} s total (direct {f['slowest_direct_total_s']}), fastest "
        f"alone first text {f['fastest_alone_first_text_s']} s (direct "
        f"{f['fastest_direct_first_token_s']})\n"
        + columns([{"show": show, **f[show]} for show in ("sections", "stream")], FANOUT_COLUMNS)
    )
    parts.append(
        f"\n3. Live merge: {m['branches']} x {m['tokens_per_branch']} tokens, sections\n"
        + columns([m], MERGE_COLUMNS)
        + "\n(wire bytes include SSE framing and the metadata data event; a section's refresh"
        " counts only the events that changed what that section shows)"
    )
    parts.append(
        f"\n4. Scale: three-way fan-outs (dependency alone {s['dependency']['alone_seconds']} s)\n"
        + columns(s["levels"], SCALE_COLUMNS)
        + "\n(added = reply time - the slowest of its own upstream streams as the stand-in"
        " timed them; 'vs unloaded' subtracts the dependency's time alone instead; CPU columns"
        " are cores in use (other = the rest of the machine, kernel included; 10 ms ticks, so"
        " rough over short runs); runq wait = share of the time the server was runnable but"
        " not running)"
    )
    if "profile" in r:
        parts.append(f"\n5. Profile of the {meta['params']['profile_level']}-chat run: "
                     f"{r['profile']['path']}")  # fmt: skip
    verdicts = [
        {**t, "verdict": "-" if t["met"] is None else ("met" if t["met"] else "NOT met")}
        for t in r["targets"]
    ]
    parts.append("\nTargets\n" + columns(verdicts, TARGET_COLUMNS))
    disturbed = [
        f"overhead {x['server']} x{x['concurrency']}: {x['other_cpu_utilization']}"
        for x in o["rows"]
        if (x["other_cpu_utilization"] or 0) > 0.25
    ] + [
        f"scale x{x['chats']}: {x['other_cpu_utilization']}"
        for x in s["levels"]
        if (x["other_cpu_utilization"] or 0) > 0.25
    ]
    if disturbed:
        parts.append(
            "\nWARNING: the rest of the machine was busy (cores) during: "
            + "; ".join(disturbed)
            + ". Throughput and latency there are unreliable; CPU per message is not affected."
        )
    code = meta["code"]["at_start"]
    parts.append(f"\ncode: git {code['git_head']}, sha256 {code['sha256']} (bots/, stand-in, pins)")
    if meta["code_changed_during_run"]:
        parts.append("WARNING: the code changed during the run; figures mix versions")
    parts.append(f"\nerrors: {r['errors']}")
    parts += [f"  {e}" for e in r["error_samples"]]
    return "\n".join(parts)
