"""The run: the stand-in for Poe, then each server under test in a fresh process, stepped up
until a step breaks; and, when asked, the cost of traces, a profile and cold starts."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.load import Arrival, Connection, chat, connections, drive
from bench.models import Model
from bench.process import Process, rss_kb
from bench.references import PATH
from bench.step import figures, rnd, watch
from standin.collector import serve_collector
from standin.serving import ROOT, closed_port

MODELS = ("ModelA", "ModelB", "ModelC")
SERVERS = ("ours", "handwritten", "poe_pattern", "floor")
TRACING = ("off", "live collector", "dead collector")


@dataclass(frozen=True)
class Sizes:
    """What sizes a run; `QUICK` is the same run shrunk to seconds."""

    quick: bool = False
    model: Model = Model()
    first_level: int = 10  # chats in flight, planned; doubled until a step breaks
    most: int = 640
    bisect: int = 2  # then this many steps between the last that held and the first broken
    warm_s: float = 12.0  # before the window: the load reaches its steady state
    window_s: float = 12.0
    chat_timeout: float = 60.0
    cold_starts: int = 5
    level: int = 30  # chats planned for --tracing and --profile: main.py's TARGET_CHATS
    run_seconds: float = 2400.0


FULL = Sizes()
QUICK = Sizes(
    True,
    Model((0.05, 0.2), (15, 20), 100.0),
    first_level=3,
    most=6,
    bisect=0,
    warm_s=0.4,
    window_s=0.8,
    chat_timeout=3.0,
    cold_starts=1,
    level=3,
    run_seconds=150.0,
)


def pipelines_yaml() -> str:
    """Ours: a bot at PATH, as the references, of a three-way `parallel` shown as sections."""
    step = {"parallel": [{"id": m.lower(), "bot": m} for m in MODELS], "show": "sections"}
    return json.dumps({"version": 1, "bots": {PATH[1:]: {"steps": [step]}}})


class Capacity:
    """The whole run. The server under test has the first CPU to itself (a container's one
    core); the stand-in and the load run on the others."""

    def __init__(self, s: Sizes, out: Path, servers: list[str]) -> None:
        self.s, self.out, self.servers = s, out, servers
        self.log_dir = out.parent / "logs"
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpus, self.load_cpus = (cpus[:1], cpus[1:]) if len(cpus) > 1 else (None, None)
        self.errors: list[str] = []
        self.http = httpx.AsyncClient(timeout=120)
        self.standin: Process

    async def start(
        self, kind: str, name: str = "", env: dict[str, str] | None = None, **extra: Any
    ) -> Process:
        spec = {"kind": kind, "base_url": self.standin.url + "/bot/", "bots": MODELS, **extra}
        spec |= {"yaml": pipelines_yaml()} if kind == "ours" else {}
        args = ["-m", "bench.child", "server", json.dumps(spec)]
        return await Process(name or kind, args, self.log_dir, self.server_cpus, env).start()

    async def stop(self, process: Process, ours: bool = True) -> list[str]:
        """Stops a process; its log's problems are errors when it is ours (the references'
        own faults are figures)."""
        await process.stop()
        problems = process.log_problems()
        self.errors += [f"{process.name} log: {line}" for line in problems if ours]
        return problems

    async def get(self, process: Process, name: str) -> Any:
        """What a child answers at /_bench/<name>."""
        return (await self.http.get(f"{process.url}/_bench/{name}")).json()

    async def settle(self) -> None:
        """Until the stand-in has no stream open (cut chats end theirs), 15 s at most."""
        for _ in range(150):
            if not (await self.get(self.standin, "count"))["open_streams"]:
                return
            await asyncio.sleep(0.1)
        self.errors.append("the stand-in still had streams open 15 s after a step")

    async def warm(self, server: Process) -> int:
        """Three chats at once (first connections, imports, caches); the server's idle RSS."""
        chats: list[Arrival] = []
        conns = await connections(server.url, 3)
        await asyncio.gather(*(chat(c, PATH, self.s.chat_timeout, chats) for c in conns))
        await asyncio.gather(*(c.close() for c in conns))
        self.errors += [f"{server.name} warm-up: {a.error}" for a in chats if a.error]
        await self.settle()
        gc.collect()
        return rss_kb(server.pid)

    async def step(self, server: Process, level: float, idle_rss: int) -> dict[str, Any]:
        """Chats arriving for `level` chats in flight on average (Little's law)."""
        s, rate = self.s, level / self.s.model.fan_out_seconds(len(MODELS))
        await self.get(self.standin, "reset")
        free = await connections(server.url, int(level * 1.3) + 5)
        chats, w0, w1, seen = await drive(
            server.url,
            PATH,
            rate=rate,
            warm=s.warm_s,
            window=s.window_s,
            limit_s=s.chat_timeout,
            seed=int(level * 1000),
            free=free,
            measure=lambda w0, w1: watch(server, self.standin, self.http, w0, w1),
        )
        await asyncio.gather(*(c.close() for c in free))
        await self.settle()
        stats = await self.get(self.standin, "stats")
        if stats["refused"]:
            self.errors.append(f"{server.name}: the stand-in refused {stats['refused']} calls")
        row = {"planned_in_flight": level}
        row |= figures(rate, chats, stats["streams"], w0, w1, seen, idle_rss)
        keys = ("chats_in_flight", "server_cpu", "added_done_ms_p99", "loop_lag_ms_p99", "held")
        print(f"[bench] {server.name} at {level}: {[row[k] for k in keys]}", file=sys.stderr)
        return row

    async def stepped(self, kind: str) -> dict[str, Any]:
        """A fresh server, stepped up (the chats in flight doubled) until a step breaks, then
        `bisect` steps between the last that held and the first that broke."""
        server, steps = await self.start(kind), []
        try:
            idle = await self.warm(server)
            held, broke, level = 0.0, 0.0, float(self.s.first_level)
            while not broke and level <= self.s.most:
                steps.append(await self.step(server, level, idle))
                held, broke = (level, broke) if steps[-1]["held"] else (held, level)
                level *= 2
            for _ in range(self.s.bisect if broke else 0):
                if (level := round((held + broke) / 2)) in (held, broke):
                    break
                steps.append(await self.step(server, level, idle))
                held, broke = (level, broke) if steps[-1]["held"] else (held, level)
        finally:
            problems = await self.stop(server, ours=kind == "ours")
        kept = [r for r in steps if r["held"]]
        return {
            "capacity_chats": max((r["chats_in_flight"] for r in kept), default=0),
            "capacity_upstream_streams": max((r["upstream_streams"] for r in kept), default=0),
            "idle_rss_mb": rnd(idle / 1024, 1),
            "log_problems": problems[:5],
            "steps": sorted(steps, key=lambda r: r["planned_in_flight"]),
        }

    async def once(self, name: str, env: dict[str, str], profile: str = "") -> Any:
        """Ours, fresh, one step at `level` chats; with `profile`, cProfile's raw stats of the
        step there."""
        server = await self.start("ours", name, env, profile=profile)
        try:
            idle = await self.warm(server)
            if profile:
                await self.get(server, "profile-start")
            row = await self.step(server, self.s.level, idle)
            if profile:
                await self.get(server, "profile-stop")
        finally:
            await self.stop(server)  # a server exporting traces sends its last spans as it stops
        return row

    async def tracing(self) -> dict[str, Any]:
        """Ours at `level` chats, once per mode: traces off, exported to a live OTLP
        receiver (in this process), and exported to a refused port; the exporter's defaults."""
        rows = {}
        async with serve_collector() as (collector, url):
            for mode in TRACING:
                endpoint = {"live collector": url, "dead collector": closed_port()}.get(mode)
                env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if endpoint else {}
                rows[mode] = await self.once(f"ours-traces-{mode[:4]}", env)
            spans = len(collector.spans())
        for row in rows.values():
            off, cost = rows["off"]["cpu_us_per_upstream_event"], row["cpu_us_per_upstream_event"]
            row["cpu_per_event_vs_off"] = rnd(cost / off, 3) if cost and off else None
        return {"level": self.s.level, "modes": rows, "spans_received": spans}

    async def cold_starts(self) -> dict[str, Any]:
        """From spawning `python -m bots serve` (on the server's CPU) to its port accepting,
        and to the first event of a first reply: interpreter, imports, the app's build and the
        first connection, as a Modal container may start on a user's message."""
        times = []
        with tempfile.TemporaryDirectory() as tmp:
            (config := Path(tmp) / "pipelines.yaml").write_text(pipelines_yaml())
            for i in range(self.s.cold_starts):
                port = int(closed_port().rsplit(":", 1)[1])
                args = ["-m", "bots", "serve", "--config", str(config), "--port", str(port)]
                env = {"POE_BASE_URL": self.standin.url + "/bot/"}
                server = Process(f"cold-start-{i}", args, self.log_dir, self.server_cpus, env)
                try:
                    listening = await (await server.start(ready=False)).listening(port)
                    reply = await chat(Connection(server.url), PATH, self.s.chat_timeout, [])
                finally:
                    await self.stop(server)
                if reply.error or reply.first_event is None:
                    raise RuntimeError(f"the first reply of a cold start failed: {reply.error}")
                times.append((listening - server.started, reply.first_event - server.started))
        return {
            "runs": len(times),
            "listening_s_median": rnd(statistics.median(t[0] for t in times), 3),
            "first_event_s_median": rnd(statistics.median(t[1] for t in times), 3),
            "first_event_s_max": rnd(max(t[1] for t in times), 3),
        }

    async def run(self, cold_start: bool, tracing: bool, profile: bool) -> dict[str, Any]:
        started, code = time.monotonic(), git_head()
        if self.load_cpus:
            os.sched_setaffinity(0, self.load_cpus)
        models = json.dumps({"model": asdict(self.s.model), "bots": MODELS})
        args = ["-m", "bench.child", "standin", models]
        self.standin = await Process("standin", args, self.log_dir, self.load_cpus).start()
        results: dict[str, Any] = {"servers": {}}
        try:
            for kind in self.servers:
                results["servers"][kind] = await self.stepped(kind)
            if tracing:
                results["tracing"] = await self.tracing()
            if profile:
                path = str(self.out.parent / f"profile-capacity-{self.s.level}.prof")
                step = await self.once("ours-profiled", {}, path)
                results["profile"] = {"path": path, "step": step}
            if cold_start:
                results["cold_start"] = await self.cold_starts()
        finally:
            await self.stop(self.standin)
            await self.http.aclose()
        s = self.s
        return results | {
            "meta": {
                "mode": "quick" if s.quick else "full",
                "seconds": round(time.monotonic() - started, 1),
                "cpus": os.cpu_count(),
                "server_cpus": self.server_cpus,
                "load_cpus": self.load_cpus,
                "sizes": asdict(s),
                "fan_out_seconds": rnd(s.model.fan_out_seconds(len(MODELS)), 3),
                "code": {"at_start": code, "at_end": git_head()},
                "logs": str(self.log_dir),
            },
            "errors": len(self.errors),
            "error_samples": self.errors[:20],
        }


def git_head() -> str:
    """The commit the servers ran, "+dirty" when bots/ or standin/ had changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    return head + ("+dirty" if git("status", "--porcelain", "bots", "standin").strip() else "")
