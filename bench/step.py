"""One step of steady load, measured: what the processes did during its window (`watch`) and
its row of figures (`figures`): chats and upstream streams in flight, the server's CPU, event-
loop lag and memory, and how much later than its own dependencies each reply reached the user.
A step holds when no measured chat failed, p99 added latency is under 100 ms and the server's
loop lag p99 under 50 ms."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Iterable
from typing import Any

from bench.load import Arrival
from bench.process import Process, cpu_seconds, rss_kb

ADDED_P99_LIMIT_S = 0.100
LAG_P99_LIMIT_S = 0.050


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), NaN without values."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1] if ordered else math.nan


def rnd(x: float | None, digits: int = 4) -> float | None:
    """Rounded for the JSON; NaN (no sample) becomes null."""
    return None if x is None or math.isnan(x) else round(x, digits)


def overlap(intervals: Iterable[tuple[float, float]], w0: float, w1: float) -> float:
    """The mean number of the intervals open during [w0, w1]."""
    return sum(max(0.0, min(b, w1) - max(a, w0)) for a, b in intervals) / (w1 - w0)


async def watch(
    server: Process, standin: Process, http: Any, w0: float, w1: float
) -> dict[str, Any]:
    """CPU seconds of the server, the stand-in and this process, the upstream events relayed,
    the server's loop lag and its memory (every 0.25 s) over [w0, w1]."""

    async def events() -> int:
        return int((await http.get(f"{standin.url}/_bench/count")).json()["events_sent"])

    def cpu() -> list[float]:
        return [cpu_seconds(server.pid), cpu_seconds(standin.pid), time.process_time()]

    await asyncio.sleep(max(0.0, w0 - time.monotonic()))
    await http.get(f"{server.url}/_bench/lag")  # starts its count over
    cpu0, events0, t0, rss = cpu(), await events(), time.monotonic(), []
    while time.monotonic() < w1:
        rss.append(rss_kb(server.pid))
        await asyncio.sleep(min(0.25, max(0.0, w1 - time.monotonic())))
    cpu1, events1, t1 = cpu(), await events(), time.monotonic()
    return {
        "seconds": t1 - t0,
        "cpu": [b - a for a, b in zip(cpu0, cpu1, strict=True)],
        "events": events1 - events0,
        "lag": (await http.get(f"{server.url}/_bench/lag")).json(),
        "rss_kb": rss,
    }


def figures(
    rate: float,
    chats: list[Arrival],
    streams: list[list[Any]],
    w0: float,
    w1: float,
    seen: dict[str, Any],
    idle_rss_kb: int,
) -> dict[str, Any]:
    """One step's row. `streams` are the stand-in's (message_id, started, first token, ended)."""
    measured = [c for c in chats if c.measured]
    errors = [c for c in measured if c.error is not None]
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for message_id, _, first_token, ended in streams:
        if ended is not None:
            last[message_id] = max(last.get(message_id, 0.0), ended)
        if first_token is not None:
            first[message_id] = min(first.get(message_id, math.inf), first_token)
    ok = [c for c in measured if c.error is None]
    added_first = [
        c.first_text - first[c.message_id] for c in ok if c.first_text and c.message_id in first
    ]
    added_done = [c.done - last[c.message_id] for c in ok if c.done and c.message_id in last]
    in_flight = overlap(((c.started, c.ended or w1) for c in chats), w0, w1)
    rss = statistics.median(seen["rss_kb"]) if seen["rss_kb"] else math.nan
    lag_p99, added_p99 = seen["lag"]["p99"], max(pct(added_first, 99), pct(added_done, 99))
    (server_cpu, standin_cpu, load_cpu), events = seen["cpu"], seen["events"]
    per_s = 1 / seen["seconds"]

    def ms(values: list[float], q: float) -> float | None:
        return rnd(pct(values, q) * 1000, 1)

    return {
        "arrivals_per_s": rnd(rate, 3),
        "chats_measured": len(measured),
        "chats_in_flight": rnd(in_flight, 1),
        "upstream_streams": rnd(overlap(((s[1], s[3]) for s in streams if s[3]), w0, w1), 1),
        "errors": len(errors),
        "error_samples": sorted({str(c.error)[:120] for c in errors})[:3],
        "server_cpu": rnd(server_cpu * per_s, 3),
        "standin_cpu": rnd(standin_cpu * per_s, 3),
        "loadgen_cpu": rnd(load_cpu * per_s, 3),
        "upstream_events_per_s": rnd(events * per_s, 1),
        "cpu_us_per_upstream_event": rnd(server_cpu / events * 1e6 if events else math.nan, 2),
        "loop_lag_ms_p50": rnd(seen["lag"]["p50"] * 1000, 2),
        "loop_lag_ms_p99": rnd(lag_p99 * 1000, 2),
        "added_first_text_ms_p50": ms(added_first, 50),
        "added_first_text_ms_p99": ms(added_first, 99),
        "added_done_ms_p50": ms(added_done, 50),
        "added_done_ms_p99": ms(added_done, 99),
        "server_rss_mb": rnd(rss / 1024, 1),
        "memory_per_chat_kb": rnd((rss - idle_rss_kb) / in_flight if in_flight else math.nan, 1),
        "held": not errors
        and bool(added_first)
        and added_p99 < ADDED_P99_LIMIT_S
        and lag_p99 < LAG_P99_LIMIT_S,
    }
