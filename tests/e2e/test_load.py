"""Load: many concurrent chats with three-way fan-outs, 5% of dependency calls failing at random.

The server runs as `python -m bots serve` in its own process (so its memory can be read); the
stand-in and the chats run here. Bounded in count and time, it stops by itself. CI runs a short
version; the full run is `make load` (500 chats for 60 s), which prints the figures.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from standin.poe import Behavior, StandIn
from standin.served import key_for
from standin.serving import serving_process
from standin.user import poe_query

CHATS = int(os.environ.get("LOAD_CHATS", "40"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "4"))
MAX_MESSAGES_PER_CHAT = 10_000
YAML = """\
    version: 1
    bots:
      fan:
        poe_name: LoadFan
        steps:
          - parallel:
              - {id: a, bot: A, on_error: continue}
              - {id: b, bot: B, retries: 1, on_error: continue}
              - {id: c, bot: C, fallback: [A], on_error: continue}
            show: sections
"""


@dataclass
class Tally:
    sent: int = 0
    done: int = 0
    lost: int = 0
    notes: int = 0
    seconds: list[float] = field(default_factory=list)
    why_lost: Counter[str] = field(default_factory=Counter)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def chat_until(url: str, http: httpx.AsyncClient, deadline: float, tally: Tally) -> None:
    for _ in range(MAX_MESSAGES_PER_CHAT):
        if time.monotonic() >= deadline:
            return
        tally.sent += 1
        started = time.monotonic()
        try:
            reply = await poe_query(http, url + "/fan", key_for("fan"), "go")
        except httpx.HTTPError as e:
            tally.lost += 1
            tally.why_lost[type(e).__name__] += 1
            continue
        if reply.done and reply.status == 200:
            tally.done += 1
            tally.notes += reply.text.count("> ⚠️")
            tally.seconds.append(time.monotonic() - started)
        else:
            tally.lost += 1
            tally.why_lost[f"status {reply.status}, done={reply.done}"] += 1


async def load(url: str, chats: int, seconds: float) -> Tally:
    tally = Tally()
    # A new connection per message: a pooled connection left idle past the server's keep-alive
    # timeout can be closed just as a request goes out on it, which is the load generator's
    # race, not a lost reply.
    limits = httpx.Limits(max_connections=chats + 10, max_keepalive_connections=0)
    # Generous timeouts: an overloaded machine may be slow; what must not happen is a reply
    # that never ends.
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        deadline = time.monotonic() + seconds
        async with asyncio.timeout(seconds + 300):
            async with asyncio.TaskGroup() as group:
                for _ in range(chats):
                    group.create_task(chat_until(url, http, deadline, tally))
    return tally


async def test_concurrent_fan_out_chats_lose_nothing_overrun_nothing_and_leak_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text(textwrap.dedent(YAML))
    token = Behavior(tokens=20, token_gap=0.01, fail_rate=0.05)
    async with StandIn({"A": token, "B": token, "C": token}) as standin:
        env = {"POE_BASE_URL": standin.base_url, "FAN_ACCESS_KEY": key_for("fan")}
        args = ("-m", "bots", "serve", "--config", str(config))
        log = (tmp_path / "server.log").open("wb")
        async with serving_process(*args, env=env, output=log) as (url, pid):
            await standin.register_caller(url + "/fan", key_for("fan"), caller="fan")
            warm = await load(url, chats=CHATS, seconds=min(2.0, SECONDS))
            await standin.wait_until_idle(timeout=30)
            before, cpu_before, own_before = rss_kb(pid), cpu_seconds(pid), time.process_time()
            tally = await load(url, chats=CHATS, seconds=SECONDS)
            await standin.wait_until_idle(timeout=30)
            after, cpu = rss_kb(pid), cpu_seconds(pid) - cpu_before
            own_cpu = time.process_time() - own_before
        log.close()
    declared = {"A": 2, "B": 2, "C": 1}
    overruns = sum(
        1
        for attempts in standin.attempts.values()
        if any(attempts[bot] > declared.get(bot, 0) for bot in attempts)
    )
    seconds = sorted(tally.seconds)
    p50 = seconds[len(seconds) // 2] if seconds else float("nan")
    p99 = seconds[int(len(seconds) * 0.99)] if seconds else float("nan")
    print(
        f"\nload: {CHATS} chats x {SECONDS:g} s: {tally.sent} messages, {tally.done} done, "
        f"{tally.lost} lost {dict(tally.why_lost)}, {overruns} budget overruns, "
        f"{len(standin.refused)} refused by Poe, "
        f"{tally.notes} failure notes shown; reply p50 {p50:.3f} s, p99 {p99:.3f} s; "
        f"server RSS {before} KB after warm-up ({warm.done} replies), {after} KB after "
        f"({after / before:.3f}x); peak upstream streams {standin.max_open_streams}; CPU: server "
        f"{cpu:.1f} s ({1000 * cpu / max(1, tally.done):.1f} ms a message), stand-in and chats "
        f"{own_cpu:.1f} s"
    )
    assert tally.sent > 0 and tally.lost == 0 and tally.done == tally.sent
    assert overruns == 0 and not standin.refused
    assert standin.open_streams == 0
    assert after <= before * 1.10
