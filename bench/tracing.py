"""What traces cost a reply: the same messages with traces off, exported to a live collector,
and exported to a dead one (a refused port), measured side by side in one run.

    .venv/bin/python -m bench.tracing                 # 5 rounds of 30 council-like chats
    .venv/bin/python -m bench.tracing --rounds 1 --chats 3

Each round serves a three-way fan-out and a judge (first tokens after 0.2 s, 100 tokens each)
three times, once per mode, in turn, so that the machine's noise falls on every mode alike.
All runs in this process on 127.0.0.1 (the stand-in for Poe, the app, the OTLP receiver and
the chats), so CPU per message is the whole process's: a difference between modes is what
tracing adds. The exporter uses its defaults (a 5 s batch delay, a 10 s export timeout).

Nothing here asserts on timings: it prints medians over rounds and their ratios to "off".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Sequence

from bench.figures import pct
from standin.collector import serve_collector
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import closed_port

PIPELINE = """\
    version: 1
    bots:
      council:
        steps:
          - id: drafts
            show: sections
            parallel: [{bot: A}, {bot: B}, {bot: C}]
          - {bot: Judge, prompt: "{{ drafts }}"}
"""
MODES = ("off", "live collector", "dead collector")


def _behaviors() -> dict[str, Behavior]:
    slow = Behavior(tokens=100, first_token_delay=0.2, token_gap=0.002)
    return {"A": slow, "B": slow, "C": slow, "Judge": slow}


async def _round(mode: str, chats: int, collector_url: str) -> dict[str, float]:
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if mode != "off":
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = (
            collector_url if mode == "live collector" else closed_port()
        )
    async with serve_pipelines(PIPELINE, _behaviors()) as s:
        await s.ask("council", "warm up")
        cpu, seconds = time.process_time(), []

        async def one(n: int) -> None:
            started = time.perf_counter()
            reply = await s.ask("council", f"question {n}")
            assert reply.done and not reply.errors, reply
            seconds.append(time.perf_counter() - started)

        async with asyncio.TaskGroup() as group:
            for n in range(chats):
                group.create_task(one(n))
        cpu = time.process_time() - cpu
    return {"p50": pct(seconds, 50), "p95": pct(seconds, 95), "cpu": cpu / chats}


async def measure(rounds: int, chats: int) -> dict[str, dict[str, float]]:
    found: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    async with serve_collector() as (collector, url):
        for _ in range(rounds):
            for mode in MODES:
                found[mode].append(await _round(mode, chats, url))
        received = len(collector.spans())
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    summary = {
        mode: {k: statistics.median(r[k] for r in runs) for k in ("p50", "p95", "cpu")}
        for mode, runs in found.items()
    }
    summary["live collector"]["spans received"] = received
    return summary


def report(summary: dict[str, dict[str, float]], rounds: int, chats: int) -> str:
    off = summary["off"]
    lines = [
        f"traces: {rounds} rounds x {chats} chats per mode (medians over rounds)",
        f"{'mode':<16} {'reply p50 s':>12} {'reply p95 s':>12} {'CPU ms/msg':>11} "
        f"{'p50 / off':>10} {'CPU / off':>10}",
    ]
    for mode, row in summary.items():
        lines.append(
            f"{mode:<16} {row['p50']:>12.3f} {row['p95']:>12.3f} {row['cpu'] * 1000:>11.2f} "
            f"{row['p50'] / off['p50']:>10.3f} {row['cpu'] / off['cpu']:>10.3f}"
        )
    lines.append(
        f"spans the live collector received: {int(summary['live collector']['spans received'])}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chats", type=int, default=30)
    args = parser.parse_args(argv)
    summary = asyncio.run(measure(args.rounds, args.chats))
    print(report(summary, args.rounds, args.chats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
