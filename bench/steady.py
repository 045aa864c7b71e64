"""Steady load, as Poe brings it: chats arrive at random (a Poisson process) at a set rate, each
read by a lean client that only notes when the first token and `done` reached it; and the
figures of one step: chats and upstream streams in flight, the server's CPU, event-loop lag
and memory, and how much later than its own dependencies each reply reached the user."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from bench.figures import pct, rnd
from bench.loadgen import SSEConnection, post_query
from bench.models import MARKER
from bench.processes import Child, cpu_seconds, memory_kb

TOKEN = MARKER.encode()
DONE = b"event: done"
ERROR = b"event: error"

# what a step must keep to count towards capacity
ADDED_P99_LIMIT_S = 0.100
LAG_P99_LIMIT_S = 0.050


@dataclass
class Arrival:
    """One chat as Poe saw it (monotonic times, the clock the stand-in's streams use)."""

    message_id: str
    started: float
    first_text: float | None = None  # the first token of any dependency on the user's screen
    done: float | None = None
    ended: float | None = None  # when this chat stopped being in flight
    error: str | None = None
    measured: bool = False  # it arrived during the measured window


def new_arrival() -> tuple[Arrival, bytes]:
    """A chat about to start, and the body of its query."""
    from standin.user import query_body

    body = query_body("Tell me something.")
    return Arrival(body["message_id"], time.monotonic()), json.dumps(body).encode()


async def steady_chat(
    conn: SSEConnection, path: str, key: str | None, timeout: float,  # noqa: ASYNC109
    result: Arrival, body: bytes,
) -> None:
    """One chat, read without parsing: the bytes are searched for a token and for `done`.
    A cancelled chat closes its connection (Poe going away)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    result.started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            result.error = await post_query(conn, path, body, headers)
            if result.error is None:
                tail = b""
                async for chunk in conn.chunks():
                    seen = tail + chunk
                    if result.first_text is None and TOKEN in seen:
                        result.first_text = time.monotonic()
                    if ERROR in seen and result.error is None:
                        result.error = "error event"
                    if result.done is None and DONE in seen:
                        result.done = time.monotonic()
                    tail = seen[-16:]
                if result.done is None and result.error is None:
                    result.error = "the stream ended without a done event"
    except TimeoutError:
        result.error = f"no done event within {timeout:g} s"
        await conn.close()
    except asyncio.CancelledError:
        await conn.close()
        raise
    except Exception as e:  # a broken connection is a figure, not a crash of the benchmark
        result.error = f"{type(e).__name__}: {str(e)[:200]}"
        await conn.close()
    finally:
        result.ended = time.monotonic()


@dataclass
class Window:
    """What the processes did between the start and the end of a step's measured window."""

    seconds: float
    server_cpu: float
    standin_cpu: float
    loadgen_cpu: float
    upstream_events: int
    lag: dict[str, float]
    rss_kb: list[int]


async def drive(
    url: str,
    path: str,
    key: str | None,
    *,
    rate: float,
    warm: float,
    window: float,
    timeout: float,  # noqa: ASYNC109
    seed: int,
    free: list[SSEConnection],
    measure: Callable[[float, float], Any],
) -> tuple[list[Arrival], float, float, Window]:
    """Chats arriving at `rate` a second, on kept-alive connections (from `free`, which gets
    them back), until every chat that started in the window [warm, warm + window] has ended;
    the chats still running then are cut. `measure(start, end)` runs alongside and returns
    the window's `Window`. Returns the chats, the window's bounds and what `measure` saw."""
    rng = random.Random(seed)
    start = time.monotonic()
    w0, w1 = start + warm, start + warm + window
    chats: list[Arrival] = []
    running: set[asyncio.Task[None]] = set()
    pending_measured = 0
    settled = asyncio.Event()

    async def one(measured: bool) -> None:
        nonlocal pending_measured
        arrival, body = new_arrival()
        arrival.measured = measured
        chats.append(arrival)
        conn = free.pop() if free else SSEConnection(url)
        await steady_chat(conn, path, key, timeout, arrival, body)
        if arrival.error is None:
            free.append(conn)
        if measured:
            pending_measured -= 1
            if pending_measured == 0 and time.monotonic() > w1:
                settled.set()

    measuring = asyncio.create_task(measure(w0, w1))
    at = start
    try:
        while not settled.is_set():
            at += rng.expovariate(rate)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, at - time.monotonic())):
                    await settled.wait()
            now = time.monotonic()
            if settled.is_set() or now > w1 + timeout:
                break
            if now > w1 and pending_measured == 0:
                break
            measured = w0 <= now <= w1
            pending_measured += measured
            task = asyncio.create_task(one(measured))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    seen = await measuring
    return chats, w0, w1, seen


def overlap(intervals: Iterable[tuple[float, float]], w0: float, w1: float) -> float:
    """The mean number of the intervals open during [w0, w1]."""
    total = sum(max(0.0, min(b, w1) - max(a, w0)) for a, b in intervals)
    return total / (w1 - w0) if w1 > w0 else math.nan


def step_figures(
    rate: float,
    chats: list[Arrival],
    streams: list[list[Any]],
    w0: float,
    w1: float,
    seen: Window,
    idle_rss_kb: int,
) -> dict[str, Any]:
    """One step's row: load, cost and added latency (see `bench.capacity` for each figure)."""
    measured = [c for c in chats if c.measured]
    errors = [c for c in measured if c.error is not None]
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    intervals = []
    for message_id, _bot, started, first_token, ended, _events in streams:
        if ended is not None:
            intervals.append((started, ended))
            last[message_id] = max(last.get(message_id, 0.0), ended)
        if first_token is not None:
            first[message_id] = min(first.get(message_id, math.inf), first_token)
    ok = [c for c in measured if c.error is None]
    added_first = [
        c.first_text - first[c.message_id]
        for c in ok
        if c.first_text is not None and c.message_id in first
    ]
    added_done = [c.done - last[c.message_id] for c in ok if c.done and c.message_id in last]
    in_flight = overlap(((c.started, c.ended or w1) for c in chats), w0, w1)
    rss = statistics.median(seen.rss_kb) if seen.rss_kb else math.nan
    lag_p99, added_p99 = seen.lag["p99"], max(pct(added_first, 99), pct(added_done, 99))
    held = (
        not errors
        and bool(added_first)
        and added_p99 < ADDED_P99_LIMIT_S
        and lag_p99 < LAG_P99_LIMIT_S
    )
    return {
        "arrivals_per_s": rnd(rate, 3),
        "chats_measured": len(measured),
        "chats_in_flight": rnd(in_flight, 1),
        "upstream_streams": rnd(overlap(intervals, w0, w1), 1),
        "errors": len(errors),
        "error_samples": sorted({str(c.error)[:120] for c in errors})[:3],
        "server_cpu": rnd(seen.server_cpu / seen.seconds, 3),
        "standin_cpu": rnd(seen.standin_cpu / seen.seconds, 3),
        "loadgen_cpu": rnd(seen.loadgen_cpu / seen.seconds, 3),
        "upstream_events_per_s": rnd(seen.upstream_events / seen.seconds, 1),
        "cpu_us_per_upstream_event": rnd(
            seen.server_cpu / seen.upstream_events * 1e6 if seen.upstream_events else math.nan, 2
        ),
        "loop_lag_ms_p50": rnd(seen.lag["p50"] * 1000, 2),
        "loop_lag_ms_p99": rnd(lag_p99 * 1000, 2),
        "added_first_text_ms_p50": rnd(pct(added_first, 50) * 1000, 1),
        "added_first_text_ms_p99": rnd(pct(added_first, 99) * 1000, 1),
        "added_done_ms_p50": rnd(pct(added_done, 50) * 1000, 1),
        "added_done_ms_p99": rnd(pct(added_done, 99) * 1000, 1),
        "server_rss_mb": rnd(rss / 1024, 1),
        "memory_per_chat_kb": rnd((rss - idle_rss_kb) / in_flight if in_flight else math.nan, 1),
        "held": held,
    }


async def watch(
    server: Child, standin: Child, http: Any, w0: float, w1: float
) -> Window:
    """The server's and the stand-in's CPU, the upstream events relayed, the server's loop lag
    and its memory (every 0.25 s) over [w0, w1]."""

    async def upstream_events() -> int:
        response = await http.get(f"{standin.url}/_bench/count")
        return int(response.json()["events_sent"])

    await asyncio.sleep(max(0.0, w0 - time.monotonic()))
    await server.command("lag", "lag")  # starts its count over
    before = (cpu_seconds(server.pid), cpu_seconds(standin.pid), time.process_time())
    events0, t0 = await upstream_events(), time.monotonic()
    rss: list[int] = []
    while time.monotonic() < w1:
        rss.append(memory_kb(server.pid)["VmRSS"])
        await asyncio.sleep(min(0.25, max(0.0, w1 - time.monotonic())))
    after = (cpu_seconds(server.pid), cpu_seconds(standin.pid), time.process_time())
    events1, t1 = await upstream_events(), time.monotonic()
    lag = await server.command("lag", "lag")
    return Window(
        seconds=t1 - t0,
        server_cpu=after[0] - before[0],
        standin_cpu=after[1] - before[1],
        loadgen_cpu=after[2] - before[2],
        upstream_events=events1 - events0,
        lag=lag,
        rss_kb=rss,
    )
