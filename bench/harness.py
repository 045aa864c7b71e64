"""The whole run: its processes, the phases in order, what the run ran on, and the errors seen
along the way."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.figures import median
from bench.loadgen import Chat, SSEConnection, chat, run_load
from bench.params import ROOT, Params, access_key, behaviors, pipelines_config
from bench.processes import Child, cpu_time_source, raise_fd_limit
from bench.report import targets


def new_client() -> Any:
    """The client for the stand-in's /_bench/ endpoints, one for the whole run."""
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(120, connect=30),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=2000),
    )


class Bench:
    """The whole run: its processes, its figures, and the errors seen along the way."""

    def __init__(self, p: Params, out: Path, profile: bool) -> None:
        self.p, self.out, self.profile = p, out, profile
        self.log_dir = out.parent / "logs"
        self.children: list[Child] = []
        config = pipelines_config()
        self.config_text = json.dumps(config)
        self.keys = {bot_id: access_key(bot_id) for bot_id in config["bots"]}
        self.errors: list[str] = []
        self.http: Any  # an httpx client, for the stand-in's /_bench/ endpoints
        self.standin: Child
        self.pipelines: Child
        self.passthrough_docs: Child
        self.passthrough_shared: Child

    # processes

    async def start(self, name: str, role: str, spec: dict[str, Any]) -> Child:
        child = Child(name, role, spec, self.log_dir)
        self.children.append(child)
        return await child.start()

    async def start_processes(self) -> None:
        """The stand-in, then the three servers under test at once."""
        self.standin = await self.start("standin", "standin", {"behaviors": behaviors(self.p)})
        self.pipelines, self.passthrough_docs, self.passthrough_shared = await asyncio.gather(
            self.start("pipelines", "server", self.server_spec("pipelines")),
            self.start("passthrough-docs", "server", self.server_spec("docs")),
            self.start("passthrough-shared", "server", self.server_spec("shared")),
        )

    def server_spec(self, kind: str, **extra: Any) -> dict[str, Any]:
        base_url = self.standin.url + "/bot/"
        if kind != "pipelines":
            return {"kind": kind, "base_url": base_url, "dependency": "Dep", **extra}
        from bots.spec import loader

        config = loader.parse(self.config_text, "bench.yaml")
        env = {plan.access_key_env: self.keys[bot_id] for bot_id, plan in config.bots.items()}
        return {"kind": kind, "yaml": self.config_text, "env": env, "base_url": base_url, **extra}

    async def stop(self, child: Child) -> None:
        """Stops a child and counts what its log reports (once, however often it is called)."""
        if child not in self.children:
            return
        self.children.remove(child)
        await child.stop()
        for line in child.log_problems():
            self.errors.append(f"{child.name} log: {line}")

    # helpers of the measurements

    def pipeline(self, bot_id: str) -> tuple[str, str]:
        """The path and access key of one of the pipeline bots."""
        return f"/{bot_id}", self.keys[bot_id]

    def count(self, where: str, chats: Iterable[Chat]) -> None:
        for c in chats:
            if c.error is not None:
                self.errors.append(f"{where}: {c.error}")

    async def reset_standin(self) -> None:
        await self.http.post(f"{self.standin.url}/_bench/reset")

    async def check_standin(self, where: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.standin.url}/_bench/stats")
        stats: dict[str, Any] = response.json()
        if stats["refused_count"]:
            self.errors.append(f"{where}: the stand-in refused {stats['refused_count']} calls")
        if stats["reports_count"]:
            self.errors.append(f"{where}: {stats['reports_count']} report_error posts")
        return stats

    async def warm(self, server: Child, path: str, key: str | None, n: int = 3) -> None:
        load = await run_load(server, self.standin, path, key, concurrency=n, messages=n, p=self.p)
        self.count(f"warm-up {server.name}", load.chats)

    async def alone(self, bot: str, samples: int) -> float:
        """The median reply time of a dependency bot called straight at the stand-in."""
        conn = await SSEConnection(self.standin.url).open()
        try:
            chats = [
                await chat(conn, f"/bot/{bot}", None, timeout=self.p.chat_timeout)
                for _ in range(samples)
            ]
        finally:
            await conn.close()
        return median(c.done for c in chats)

    # the whole run

    async def run(self) -> dict[str, Any]:
        p = self.p
        started = time.monotonic()
        fd_limit = raise_fd_limit()
        code_at_start = code_fingerprint()
        load_at_start = [round(x, 2) for x in os.getloadavg()]
        results: dict[str, Any] = {}
        phase_seconds: dict[str, float] = {}

        def progress(name: str) -> None:
            phase_seconds[name] = round(time.monotonic() - started, 2)
            print(f"[bench] {time.monotonic() - started:6.1f}s {name}", file=sys.stderr, flush=True)

        try:
            async with new_client() as self.http:
                progress("start")
                await self.start_processes()
                phases: list[tuple[str, Callable[[Bench], Awaitable[dict[str, Any]]]]] = [
                    ("overhead", scenarios.overhead),
                    ("fanout", scenarios.fanout),
                    ("merge", scenarios.merge),
                    ("scale", scenarios.scale),
                ]
                if self.profile:
                    phases.append(("profile", scenarios.profile))
                for name, phase in phases:
                    progress(name)
                    results[name] = await phase(self)
                progress("done")
        finally:
            await asyncio.gather(*(self.stop(child) for child in list(self.children)))
        results["meta"] = {
            "mode": "quick" if p.quick else "full",
            "seconds": round(time.monotonic() - started, 1),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.machine(),
            "fd_limit": fd_limit,
            "scale_servers": "fresh per level" if p.fresh_scale_servers else "one, reused",
            "cpu_time_source": cpu_time_source(),
            "params": asdict(p),
            "logs": str(self.log_dir),
            "phase_started_at_s": phase_seconds,
            "code": {"at_start": code_at_start, "at_end": (code_at_end := code_fingerprint())},
            "code_changed_during_run": code_at_start != code_at_end,
        }
        results["targets"] = targets(results)
        results["errors"] = len(self.errors)
        results["error_samples"] = self.errors[:20]
        return results


def code_fingerprint() -> dict[str, Any]:
    """What code the servers ran: a hash of bots/, the stand-in and the pins, and git's HEAD
    (read only). The servers import the code when they start, so an edit during a run shows."""
    files = [
        *sorted((ROOT / "bots").glob("*.py")),
        ROOT / "tests" / "standin.py",
        ROOT / "requirements.txt",
    ]
    digest = hashlib.sha256()
    for path in files:
        with contextlib.suppress(OSError):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    head = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        run = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, timeout=5,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        head = run.stdout.strip() or None
    return {"sha256": digest.hexdigest()[:16], "git_head": head}
