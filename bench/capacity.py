"""The capacity benchmark: how many live chats one server process holds under steady load.

    .venv/bin/python -m bench.capacity              # full run (about 10 minutes)
    .venv/bin/python -m bench.capacity --quick      # smoke run (a few seconds), same figures
    .venv/bin/python -m bench.capacity --profile    # also profile ours at one step
    .venv/bin/python -m bench.capacity --out PATH   # JSON (default bench-results/latest/)

Each chat is a three-way fan-out. Its dependencies stream like real models (`bench.models`:
first token after 0.5-2 s, then 40 tokens a second, 360-440 tokens, one token an event).
Chats arrive at random at a steady rate, and the rate steps up until a step breaks. A step
holds when:
- no chat fails;
- p99 added latency (first text, and done) is under 100 ms;
- the server's event-loop lag p99 is under 50 ms.

Added latency is how much later the user saw a reply's first token (or its `done`) than the
first of its dependencies sent one (or the last of them ended). The stand-in times each stream
on the shared monotonic clock.

Capacity is the most chats in flight that a held step carried. It is measured for ours (a
pipeline of `parallel` with `show: sections`) and for the references of `bench.references`:
- Poe's two-bot merge pattern, extended to three bots;
- a hand-written fan-out;
- the floor (a bare relay).
Each runs in a fresh process. The floor gives the least CPU a relayed upstream event can cost.

The server under test is pinned to the first CPU, and the stand-in and this process (the load)
to the others, so that the server has one core to itself, as a container's share. Nothing here
asserts on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.coldstart import cold_starts
from bench.figures import rnd
from bench.harness import code_fingerprint, new_client
from bench.loadgen import SSEConnection, close_connections
from bench.models import Model
from bench.processes import Child, memory_kb, raise_fd_limit
from bench.references import PATH
from bench.report import columns, conclude
from bench.steady import drive, new_arrival, steady_chat, step_figures, watch

DEFAULT_OUT = "bench-results/latest/capacity.json"
MODELS = ("ModelA", "ModelB", "ModelC")
SERVERS = ("ours", "handwritten", "poe_pattern", "floor")
BOT = "fanout3"
KEY = "bench"  # what Poe would send as the bearer; ours serves without keys, as `serve` does


@dataclass(frozen=True)
class Sizes:
    """What sizes a run; `QUICK` is the same run shrunk to seconds."""

    quick: bool = False
    model: Model = field(default_factory=Model)
    first_level: int = 10  # chats in flight, planned; doubled until a step breaks
    most: int = 640
    bisect: int = 2  # then this many steps between the last that held and the first broken
    warm_s: float = 12.0  # before the window: the load reaches its steady state
    window_s: float = 12.0
    chat_timeout: float = 60.0
    cold_starts: int = 5
    profile_level: int = 30
    run_seconds: float = 1800.0


FULL = Sizes()
QUICK = Sizes(
    quick=True,
    model=Model(first_token_s=(0.05, 0.2), tokens=(15, 20), tokens_per_s=100.0),
    first_level=3,
    most=6,
    bisect=0,
    warm_s=0.4,
    window_s=0.8,
    chat_timeout=20.0,
    cold_starts=1,
    profile_level=3,
    run_seconds=120.0,
)


def pipelines_yaml() -> str:
    """Ours: one bot, a three-way `parallel` shown as sections (JSON is YAML)."""
    fan = [{"id": name.lower(), "bot": name} for name in MODELS]
    steps = [{"parallel": fan, "show": "sections"}]
    return json.dumps({"version": 1, "bots": {BOT: {"steps": steps}}})


class Capacity:
    """The whole run: the stand-in, each server in turn, cold starts."""

    def __init__(
        self,
        s: Sizes,
        out: Path,
        profile: bool,
        servers: Sequence[str],
        levels: Sequence[float] = (),
    ) -> None:
        self.s, self.out, self.profile, self.servers = s, out, profile, servers
        self.levels = levels  # run exactly these (no stepping until a step breaks)
        self.log_dir = out.parent / "logs"
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpus = cpus[:1] if len(cpus) > 1 else None
        self.other_cpus = cpus[1:] if len(cpus) > 1 else None
        self.errors: list[str] = []
        self.http: Any = None
        self.standin: Child

    async def start(self, name: str, role: str, spec: dict[str, Any]) -> Child:
        return await Child(name, role, spec, self.log_dir).start()

    async def stop(self, child: Child) -> None:
        await child.stop()
        self.errors += [f"{child.name} log: {line}" for line in child.log_problems()]

    def spec(self, kind: str, **extra: Any) -> dict[str, Any]:
        base_url = self.standin.url + "/bot/"
        common = {"kind": kind, "base_url": base_url, "cpus": self.server_cpus, **extra}
        if kind == "ours":
            return {**common, "kind": "pipelines", "yaml": pipelines_yaml(), "env": {}}
        return {**common, "bots": list(MODELS)}

    async def settle(self) -> None:
        """Until the stand-in has no stream open (cut chats end theirs), 15 s at most."""
        for _ in range(150):
            count = (await self.http.get(f"{self.standin.url}/_bench/count")).json()
            if count["open_streams"] == 0:
                return
            await asyncio.sleep(0.1)
        self.errors.append("the stand-in still had streams open 15 s after a step")

    @staticmethod
    def path(server: Child) -> str:
        return f"/{BOT}" if server.spec["kind"] == "pipelines" else PATH

    async def warm(self, server: Child, n: int = 3) -> None:
        """A few chats at once: the first connections, imports and caches."""
        conns = [SSEConnection(server.url) for _ in range(n)]
        chats = [new_arrival() for _ in range(n)]
        await asyncio.gather(*(
            steady_chat(conn, self.path(server), KEY, self.s.chat_timeout, arrival, body)
            for conn, (arrival, body) in zip(conns, chats, strict=True)
        ))  # fmt: skip
        await close_connections(conns)
        self.errors += [f"{server.name} warm-up: {a.error}" for a, _ in chats if a.error]
        await self.settle()

    async def step(self, server: Child, level: float, idle_rss: int) -> dict[str, Any]:
        s = self.s
        rate = level / s.model.fan_out_seconds(len(MODELS))
        path = self.path(server)
        await self.http.post(f"{self.standin.url}/_bench/reset")
        free = [SSEConnection(server.url) for _ in range(int(level * 1.3) + 5)]
        for i in range(0, len(free), 100):
            await asyncio.gather(*(c.open() for c in free[i : i + 100]))

        async def measure(w0: float, w1: float) -> Any:
            return await watch(server, self.standin, self.http, w0, w1)

        chats, w0, w1, seen = await drive(
            server.url, path, KEY, rate=rate, warm=s.warm_s, window=s.window_s,
            timeout=s.chat_timeout, seed=int(level * 1000), free=free, measure=measure,
        )  # fmt: skip
        await close_connections(free)
        await self.settle()
        stats = (await self.http.get(f"{self.standin.url}/_bench/stats")).json()
        row = step_figures(rate, chats, stats["model_streams"], w0, w1, seen, idle_rss)
        print(f"[capacity] {server.name}: {level} planned -> {row['chats_in_flight']} in flight,"
              f" added p99 {row['added_first_text_ms_p99']}/{row['added_done_ms_p99']} ms,"
              f" lag p99 {row['loop_lag_ms_p99']} ms, CPU {row['server_cpu']},"
              f" errors {row['errors']}: {'held' if row['held'] else 'broke'}",
              file=sys.stderr, flush=True)  # fmt: skip
        return {"planned_in_flight": level, **row}

    async def server_run(self, kind: str) -> dict[str, Any]:
        """A fresh server of `kind`, warmed, then stepped up (doubling the chats in flight)
        until a step breaks, then `bisect` steps between the last that held and the first
        that broke."""
        server = await self.start(kind, "server", self.spec(kind))
        steps: list[dict[str, Any]] = []
        try:
            await self.warm(server)
            gc.collect()
            idle_rss = memory_kb(server.pid)["VmRSS"]
            for level in self.levels:
                steps.append(await self.step(server, level, idle_rss))
            held, broke, level = 0.0, 0.0, float(self.s.first_level)
            while not self.levels and not broke and level <= self.s.most:
                steps.append(await self.step(server, level, idle_rss))
                held, broke = (level, broke) if steps[-1]["held"] else (held, level)
                level *= 2
            for _ in range(self.s.bisect if broke else 0):
                level = round((held + broke) / 2)
                if level in (held, broke):
                    break
                steps.append(await self.step(server, level, idle_rss))
                held, broke = (level, broke) if steps[-1]["held"] else (held, level)
        finally:
            await server.stop()
            problems = server.log_problems()
            if kind == "ours":  # the references' own faults are figures, ours are errors
                self.errors += [f"{server.name} log: {line}" for line in problems]
        kept = [r for r in steps if r["held"]]
        return {
            "capacity_chats": max((r["chats_in_flight"] for r in kept), default=0),
            "capacity_upstream_streams": max((r["upstream_streams"] for r in kept), default=0),
            "idle_rss_mb": rnd(idle_rss / 1024, 1),
            "log_problems": problems[:5],
            "steps": sorted(steps, key=lambda r: r["planned_in_flight"]),
        }

    async def profiled(self) -> dict[str, Any]:
        path = self.out.parent / f"profile-capacity-{self.s.profile_level}.txt"
        title = f"cProfile of ours at {self.s.profile_level} chats in flight (steady load)"
        server = await self.start(
            "ours-profiled", "server", self.spec("ours", profile=str(path), profile_title=title)
        )
        try:
            await self.warm(server)
            await server.command("profile-start", "profiling")
            row = await self.step(server, self.s.profile_level, memory_kb(server.pid)["VmRSS"])
            await server.command("profile-stop", "profiled", timeout=120)
        finally:
            await self.stop(server)
        return {"path": str(path), "step": row}

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        if self.other_cpus:
            os.sched_setaffinity(0, self.other_cpus)
        models = {name: asdict(self.s.model) for name in MODELS}
        results: dict[str, Any] = {"servers": {}}
        code_at_start = code_fingerprint()
        async with new_client() as self.http:
            spec = {"behaviors": {}, "models": models, "cpus": self.other_cpus}
            self.standin = await self.start("standin", "standin", spec)
            try:
                for kind in self.servers:
                    results["servers"][kind] = await self.server_run(kind)
                if self.profile:
                    results["profile"] = await self.profiled()
                with tempfile.TemporaryDirectory() as tmp:
                    config = Path(tmp) / "pipelines.yaml"
                    config.write_text(pipelines_yaml())
                    results["cold_start"] = await cold_starts(
                        config, BOT, self.standin.url, self.s.cold_starts, self.server_cpus
                    )
            finally:
                await self.stop(self.standin)
        results["summary"] = summary(results["servers"])
        results["meta"] = {
            "mode": "quick" if self.s.quick else "full",
            "seconds": round(time.monotonic() - started, 1),
            "cpus": os.cpu_count(),
            "server_cpus": self.server_cpus,
            "load_cpus": self.other_cpus,
            "sizes": asdict(self.s),
            "fan_out_seconds": rnd(self.s.model.fan_out_seconds(len(MODELS)), 3),
            "code": {"at_start": code_at_start, "at_end": code_fingerprint()},
            "logs": str(self.log_dir),
        }
        results["errors"] = len(self.errors)
        results["error_samples"] = self.errors[:20]
        return results


def summary(servers: dict[str, Any]) -> dict[str, Any]:
    """Capacity ratios, and CPU per relayed event against the floor at the levels both held."""

    def ratio(a: str, b: str) -> float | None:
        if a not in servers or b not in servers or not servers[b]["capacity_chats"]:
            return None
        return rnd(servers[a]["capacity_chats"] / servers[b]["capacity_chats"], 2)

    out: dict[str, Any] = {
        "capacity_chats": {k: v["capacity_chats"] for k, v in servers.items()},
        "ours_vs_poe_pattern": ratio("ours", "poe_pattern"),
        "ours_vs_handwritten": ratio("ours", "handwritten"),
        "ours_vs_floor": ratio("ours", "floor"),
    }
    if "ours" in servers and "floor" in servers:
        def per_event(kind: str) -> dict[float, float]:
            steps = servers[kind]["steps"]
            return {
                r["planned_in_flight"]: r["cpu_us_per_upstream_event"]
                for r in steps
                if r["held"] and r["cpu_us_per_upstream_event"]
            }

        ours, floor = per_event("ours"), per_event("floor")
        pairs = [(ours[level], floor[level]) for level in ours if level in floor]
        if pairs:
            out["cpu_per_event_us_ours"] = rnd(statistics.median(a for a, _ in pairs), 2)
            out["cpu_per_event_us_floor"] = rnd(statistics.median(b for _, b in pairs), 2)
            out["cpu_per_event_vs_floor"] = rnd(statistics.median(a / b for a, b in pairs), 3)
    return out


STEP_COLUMNS = (
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


def report(r: dict[str, Any]) -> str:
    meta, summ = r["meta"], r["summary"]
    parts = [
        f"poe-pipelines capacity ({meta['mode']}, {meta['cpus']} CPUs, server on CPU "
        f"{meta['server_cpus']}, load on {meta['load_cpus']}, {meta['seconds']} s); a chat "
        f"is a three-way fan-out lasting {meta['fan_out_seconds']} s on average"
    ]
    for kind, run in r["servers"].items():
        parts.append(
            f"\n{kind}: capacity {run['capacity_chats']} chats in flight "
            f"({run['capacity_upstream_streams']} upstream streams); idle RSS "
            f"{run['idle_rss_mb']} MB\n" + columns(run["steps"], STEP_COLUMNS)
        )
    parts.append("\nsummary: " + json.dumps(summ))
    cold = r["cold_start"]
    parts.append(f"cold start (process start -> first event, {cold['runs']} runs): median "
                 f"{cold['first_event_s_median']} s, worst {cold['first_event_s_max']} s; "
                 f"listening after {cold['listening_s_median']} s")  # fmt: skip
    if "profile" in r:
        parts.append(f"profile: {r['profile']['path']}")
    parts.append(f"\nerrors: {r['errors']}")
    parts += [f"  {e}" for e in r["error_samples"]]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (seconds)")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"the JSON (default {DEFAULT_OUT})")
    parser.add_argument("--profile", action="store_true", help="also profile ours at one step")
    parser.add_argument("--servers", default=",".join(SERVERS), help="which servers, in order")
    parser.add_argument("--levels", default="", help="only these chats in flight (e.g. 30,40)")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    out = Path(args.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    servers = [k for k in args.servers.split(",") if k]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; choose from {', '.join(SERVERS)}")
    raise_fd_limit()
    levels = [float(x) for x in args.levels.split(",") if x]
    capacity = Capacity(s, out, args.profile, servers, levels)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(s.run_seconds):
            return await capacity.run()

    results = asyncio.run(bounded())
    return conclude(results, out, report(results))


if __name__ == "__main__":
    sys.exit(main())
