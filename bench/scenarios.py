"""The four measurements (engine overhead, fan-out, live merge, scale) and the profile of one
scale level, each run on the processes a `Bench` started, each returning its part of the JSON."""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.figures import median, pct, rnd, section_refreshes
from bench.loadgen import Chat, Load, chat, close_connections, open_connections, run_load
from bench.params import FAN_BOTS, MERGE_BOTS, SCALE_BOTS
from bench.processes import memory_kb

if TYPE_CHECKING:
    from bench.harness import Bench

# 1. engine overhead


async def overhead(bench: Bench) -> dict[str, Any]:
    """A one-step pipeline vs the passthroughs, same dependency, closed loop at each level."""
    p = bench.p
    servers = {
        "passthrough (docs)": (bench.passthrough_docs, "/passthrough", "bench"),
        "passthrough (shared client)": (bench.passthrough_shared, "/passthrough", "bench"),
        "pipeline": (bench.pipelines, *bench.pipeline("one")),
    }
    await asyncio.gather(*(bench.warm(*server) for server in servers.values()))
    dep_alone = await bench.alone("Dep", 2)
    totals: dict[tuple[str, int], list[Load]] = {}
    for round_ in range(p.overhead_rounds):
        for concurrency, messages in p.overhead_levels:
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                server, path, key = servers[name]
                where = f"overhead {name} x{concurrency}"
                await bench.reset_standin()
                load = await run_load(
                    server, bench.standin, path, key,
                    concurrency=concurrency, messages=messages, p=p,
                )  # fmt: skip
                bench.count(where, load.chats)
                await bench.check_standin(where)
                totals.setdefault((name, concurrency), []).append(load)
    await asyncio.gather(bench.stop(bench.passthrough_docs), bench.stop(bench.passthrough_shared))
    rows = [_overhead_row(*server_level, loads) for server_level, loads in totals.items()]
    return {
        "dependency": {
            "bot": "Dep",
            "tokens": p.dep_tokens,
            "token_gap_s": p.dep_gap,
            "alone_seconds": rnd(dep_alone, 4),
        },
        "rows": rows,
        "ratios": [_overhead_ratios(concurrency, rows) for concurrency, _ in p.overhead_levels],
    }


def _overhead_row(name: str, concurrency: int, loads: list[Load]) -> dict[str, Any]:
    ok = sum(len(ld.ok) for ld in loads)
    seconds = sum(ld.seconds for ld in loads)
    cpu = sum(ld.server_cpu for ld in loads)
    per_round = [len(ld.ok) / ld.seconds for ld in loads if ld.seconds > 0]
    cpu_rounds = [ld.server_cpu / len(ld.ok) for ld in loads if ld.ok]

    def per_second(total: float) -> float | None:
        return rnd(total / seconds if seconds else math.nan, 3)

    return {
        "server": name,
        "concurrency": concurrency,
        "messages": sum(len(ld.chats) for ld in loads),
        "errors": sum(ld.errors for ld in loads),
        "seconds": rnd(seconds, 3),
        "messages_per_s": per_second(ok),
        "messages_per_s_rounds": [rnd(x, 3) for x in per_round],
        "server_cpu_s_per_message": rnd(cpu / ok if ok else math.nan, 5),
        "server_cpu_s_per_message_rounds": [rnd(x, 5) for x in cpu_rounds],
        "server_cpu_utilization": per_second(cpu),
        "standin_cpu_utilization": per_second(sum(ld.standin_cpu for ld in loads)),
        "loadgen_cpu_utilization": per_second(sum(ld.loadgen_cpu for ld in loads)),
        "other_cpu_utilization": per_second(sum(ld.other_cpu for ld in loads)),
        "reply_seconds_p50": rnd(median(c.done for ld in loads for c in ld.ok), 4),
        "events_per_reply": rnd(
            statistics.mean(sum(c.events.values()) for ld in loads for c in ld.ok)
            if ok
            else math.nan,
            1,
        ),
    }


def _overhead_ratios(concurrency: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    row = {r["server"]: r for r in rows if r["concurrency"] == concurrency}
    eng, docs = row["pipeline"], row["passthrough (docs)"]
    shared = row["passthrough (shared client)"]

    def ratio(figure: str, of: dict[str, Any]) -> float | None:
        a, b = eng[figure], of[figure]
        return rnd(float(a) / float(b), 3) if a is not None and b else None

    return {
        "concurrency": concurrency,
        "cpu_per_message_ratio": ratio("server_cpu_s_per_message", docs),
        "throughput_ratio": ratio("messages_per_s", docs),
        "cpu_per_message_ratio_vs_shared_client": ratio("server_cpu_s_per_message", shared),
        "throughput_ratio_vs_shared_client": ratio("messages_per_s", shared),
    }


# 2. fan-out


async def fanout(bench: Bench) -> dict[str, Any]:
    """Three branches as `sections` and as `stream`, against one-step pipelines calling the
    slowest / fastest branch alone (and those bots called directly), all at once per sample."""
    p = bench.p
    marker = f"{FAN_BOTS[0].lower()}0"
    bot_ids = ("fan_sections", "fan_stream", "fast_alone", "slow_alone")
    direct = (FAN_BOTS[0], FAN_BOTS[-1])
    names = [*bot_ids, *(f"direct {b}" for b in direct)]
    targets = [bench.pipeline(b) for b in bot_ids] + [(f"/bot/{b}", "") for b in direct]
    conns = [
        *await open_connections(bench.pipelines.url, len(bot_ids)),
        *await open_connections(bench.standin.url, len(direct)),
    ]
    runs: dict[str, list[Chat]] = {name: [] for name in names}
    for sample in range(p.fan_samples + 1):  # the first sample only warms up
        results = await asyncio.gather(
            *(
                chat(conn, path, key or None, marker=marker, timeout=p.chat_timeout)
                for conn, (path, key) in zip(conns, targets, strict=True)
            )
        )
        if sample == 0:
            bench.count("fan-out warm-up", results)
            continue
        for name, result in zip(names, results, strict=True):
            runs[name].append(result)
    await close_connections(conns)
    await bench.check_standin("fan-out")
    for name, chats in runs.items():
        bench.count(f"fan-out {name}", chats)
    slow_total = median(c.done for c in runs["slow_alone"])
    fast_first = median(c.first_answer for c in runs["fast_alone"])
    out: dict[str, Any] = {
        "branches_first_token_s": list(p.fan_first),
        "branch_tokens": p.fan_tokens,
        "token_gap_s": p.fan_gap,
        "samples": p.fan_samples,
        "slowest_alone_total_s": rnd(slow_total),
        "fastest_alone_first_text_s": rnd(fast_first),
        "slowest_direct_total_s": rnd(median(c.done for c in runs[f"direct {FAN_BOTS[-1]}"])),
        "fastest_direct_first_token_s": rnd(
            median(c.first_answer for c in runs[f"direct {FAN_BOTS[0]}"])
        ),
    }
    for show in ("sections", "stream"):
        chats = runs[f"fan_{show}"]
        total = median(c.done for c in chats)
        first = median(c.first_answer for c in chats)
        out[show] = {
            "total_s": rnd(total),
            "first_visible_text_s": rnd(first),
            "first_event_s": rnd(median(c.first_event for c in chats)),
            "total_minus_slowest_alone_s": rnd(total - slow_total),
            "first_text_minus_fastest_alone_s": rnd(first - fast_first),
            "replace_responses": rnd(median(c.events["replace_response"] for c in chats), 1),
        }
    return out


# 3. live merge

MERGE_FIGURES = (
    "bytes_ratio",
    "wire_bytes_ratio",
    "final_bytes",
    "payload_bytes",
    "wire_bytes",
    "refreshes_per_s",
    "longest_gap_s",
    "flowing_s",
    "events",
    "text_events",
    "replace_responses",
    "total_s",
    "slowest_section_refreshes_per_s",
    "section_longest_gap_s",
)


async def merge(bench: Bench) -> dict[str, Any]:
    """Three long branches as sections: bytes sent per byte of the final reply, and how often
    the view refreshes while tokens flow."""
    p = bench.p
    path, key = bench.pipeline("merge")
    await bench.reset_standin()
    conns = await open_connections(bench.pipelines.url, p.merge_samples)
    chats = await asyncio.gather(
        *(
            chat(
                conn, path, key, marker="t0", keep_refreshes=True, keep_snapshots=True,
                timeout=p.chat_timeout,
            )
            for conn in conns
        )
    )  # fmt: skip
    await close_connections(conns)
    await bench.check_standin("live merge")
    per: list[dict[str, float]] = []
    for c in chats:
        if c.error is not None:
            bench.errors.append(f"live merge: {c.error}")
            continue
        per.append(_merge_figures(c))

    def mean(key: str) -> float:
        return statistics.mean(x[key] for x in per) if per else math.nan

    return {
        "branches": len(MERGE_BOTS),
        "tokens_per_branch": p.merge_tokens,
        "token_gap_s": p.merge_gap,
        "samples": len(per),
        **{k: rnd(mean(k), 3) for k in MERGE_FIGURES},
    }


def _merge_figures(c: Chat) -> dict[str, float]:
    start = c.first_answer if c.first_answer is not None else c.refreshes[0]
    flowing = [t for t in c.refreshes if t >= start]
    # the last refresh is the final flush after every stream ended: not "while flowing"
    if len(flowing) > 2:
        flowing = flowing[:-1]
    span = flowing[-1] - flowing[0] if len(flowing) > 1 else math.nan
    gaps = [b - a for a, b in zip(flowing, flowing[1:], strict=False)]
    sections = section_refreshes(c.snapshots, [b.lower() for b in MERGE_BOTS]).values()
    return {
        "slowest_section_refreshes_per_s": min(
            (x["per_s"] for x in sections if not math.isnan(x["per_s"])), default=math.nan
        ),
        "section_longest_gap_s": max(
            (x["longest_gap_s"] for x in sections if not math.isnan(x["longest_gap_s"])),
            default=math.nan,
        ),
        "bytes_ratio": c.payload_bytes / c.final_bytes,
        "wire_bytes_ratio": c.wire_bytes / c.final_bytes,
        "final_bytes": c.final_bytes,
        "payload_bytes": c.payload_bytes,
        "wire_bytes": c.wire_bytes,
        "refreshes_per_s": (len(flowing) - 1) / span if span else math.nan,
        "longest_gap_s": max(gaps) if gaps else math.nan,
        "flowing_s": span,
        "events": sum(c.events.values()),
        "text_events": c.events["text"],
        "replace_responses": c.events["replace_response"],
        "total_s": c.done or math.nan,
    }


# 4. scale (and 5. the profile of one level)


async def scale(bench: Bench) -> dict[str, Any]:
    """Concurrent three-way fan-outs at each level (a fresh server per level, unless quick)."""
    p = bench.p
    if p.fresh_scale_servers:
        await bench.stop(bench.pipelines)  # each level gets its own fresh server
    dep_alone = await bench.alone(SCALE_BOTS[0], 3)
    levels = [
        await scale_level(bench, n, each, dep_alone)
        for n, each in zip(p.scale_levels, p.scale_messages_per_chat, strict=True)
    ]
    for below, level in zip([None, *levels], levels, strict=False):
        level["memory_per_chat_kb_marginal"] = (
            None
            if below is None
            else rnd(
                (level["server_peak_rss_mb"] - below["server_peak_rss_mb"]) * 1024
                / (level["chats"] - below["chats"]), 1,
            )
        )  # fmt: skip
    return {
        "dependency": {
            "bots": list(SCALE_BOTS),
            "first_token_s": p.scale_first,
            "tokens": p.scale_tokens,
            "token_gap_s": p.scale_gap,
            "alone_seconds": rnd(dep_alone),
        },
        "show": "sections",
        "levels": levels,
    }


async def profile(bench: Bench) -> dict[str, Any]:
    """cProfile of a fresh server during one more scale level (`profile_level` chats)."""
    path = bench.out.parent / f"profile-{bench.p.profile_level}.txt"
    dep_alone = await bench.alone(SCALE_BOTS[0], 1)
    level = await scale_level(bench, bench.p.profile_level, 1, dep_alone, profile=path)
    return {"path": str(path), "raw": str(path.with_suffix(".prof")), "run": level}


async def scale_level(
    bench: Bench, chats: int, messages_each: int, dep_alone: float, *, profile: Path | None = None
) -> dict[str, Any]:
    p = bench.p
    extra: dict[str, Any] = {}
    if profile is not None:
        extra = {
            "profile": str(profile),
            "profile_title": f"cProfile of the server process during the {chats}-chat run "
            f"(three-way fan-out each, {chats * 3} upstream streams at once)",
        }
    fresh = profile is not None or p.fresh_scale_servers
    if fresh:
        name = f"pipelines-scale-{chats}" + ("-profiled" if profile else "")
        server = await bench.start(name, "server", bench.server_spec("pipelines", **extra))
    else:
        server = bench.pipelines
    path, key = bench.pipeline("scale")
    try:
        if fresh:
            await bench.warm(server, path, key, n=min(5, chats))
            gc.collect()
            await asyncio.sleep(0.3)
        before = memory_kb(server.pid)["VmRSS"]
        await bench.reset_standin()
        await server.command("lag", "lag")  # starts the count over
        if profile is not None:
            await server.command("profile-start", "profiling")
        load = await run_load(
            server, bench.standin, path, key, concurrency=chats,
            messages=chats * messages_each, p=p, sample_rss=True,
        )  # fmt: skip
        lag = await server.command("lag", "lag")
        if profile is not None:
            await server.command("profile-stop", "profiled", timeout=120)
        stats = await bench.check_standin(f"scale x{chats}")
        after = memory_kb(server.pid) if fresh else {}
    finally:
        if fresh:
            await bench.stop(server)
    bench.count(f"scale x{chats}", load.chats)
    upstream: dict[str, float] = {}
    for message_id, _bot, started, ended in stats["timings"]:
        upstream[message_id] = max(upstream.get(message_id, 0.0), ended - started)
    done = {c.message_id: c.done for c in load.ok if c.done is not None}
    added_observed = [t - upstream[m] for m, t in done.items() if m in upstream]
    added_nominal = [t - dep_alone for t in done.values()]
    peak = max(load.peak_rss_kb, after.get("VmHWM", 0))
    return {
        "chats": chats,
        "messages": len(load.chats),
        "upstream_streams_peak": stats["max_open_streams"],
        "upstream_closed_early": stats["closed_early"],
        "errors": load.errors,
        "seconds": rnd(load.seconds, 3),
        "reply_s_p50": rnd(pct(list(done.values()), 50)),
        "reply_s_p99": rnd(pct(list(done.values()), 99)),
        "added_latency_s_p50": rnd(pct(added_observed, 50)),
        "added_latency_s_p99": rnd(pct(added_observed, 99)),
        "added_vs_unloaded_dependency_s_p50": rnd(pct(added_nominal, 50)),
        "added_vs_unloaded_dependency_s_p99": rnd(pct(added_nominal, 99)),
        "upstream_stream_s_p50": rnd(pct(list(upstream.values()), 50)),
        "upstream_stream_s_p99": rnd(pct(list(upstream.values()), 99)),
        "server_rss_before_mb": rnd(before / 1024, 1),
        "server_peak_rss_mb": rnd(peak / 1024, 1),
        "memory_per_chat_kb": rnd((peak - before) / chats, 1),
        "server_cpu_s": rnd(load.server_cpu, 3),
        "server_cpu_utilization": rnd(load.server_cpu / load.seconds, 3),
        "standin_cpu_utilization": rnd(load.standin_cpu / load.seconds, 3),
        "loadgen_cpu_utilization": rnd(load.loadgen_cpu / load.seconds, 3),
        "other_cpu_utilization": rnd(load.other_cpu / load.seconds, 3),
        "server_runqueue_wait_fraction": rnd(load.server_runqueue_wait / load.seconds, 3),
        "server_loop_lag_s_p50": rnd(lag["p50"]),
        "server_loop_lag_s_p99": rnd(lag["p99"]),
        "server_loop_lag_s_max": rnd(lag["max"]),
    }
