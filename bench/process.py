"""The one way the benchmark starts a server: `python ARGS` as a child process pinned to some
CPUs, its output in a log, stopped by closing its stdin (then SIGTERM, then SIGKILL); and what
/proc says of a process's CPU time and memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from standin.serving import ROOT

PIPE = asyncio.subprocess.PIPE


class Process:
    """A child process: a `bench.child`, which prints {"url": ...} once it serves, or a command
    such as `python -m bots serve --port N` (`start(ready=False)`, then `listening(N)`)."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_dir: Path,
        cpus: list[int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.args, self.cpus, self.env = name, args, cpus, env or {}
        self.log_path = log_dir / f"{name}.log"
        self.url, self.pid, self.started = "", 0, 0.0
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, ready: bool = True) -> Process:
        """Spawns the process; with `ready`, returns once it said its URL (30 s at most)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env |= {"PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", **self.env}
        cpus, self.started = self.cpus, time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *self.args,
                cwd=ROOT,
                env=env,
                stdout=PIPE if ready else log,
                stdin=PIPE if ready else asyncio.subprocess.DEVNULL,
                stderr=log,
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
            )
        self.pid = self.proc.pid
        if ready and self.proc.stdout is not None:
            async with asyncio.timeout(30):
                line = await self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            self.url = json.loads(line)["url"]
        return self

    async def listening(self, port: int) -> float:
        """When the port first accepted a connection (polled every 2 ms, for 30 s at most)."""
        self.url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(OSError):
                    (await asyncio.open_connection("127.0.0.1", port))[1].close()
                    return time.monotonic()
                await asyncio.sleep(0.002)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:  # a `bench.child` stops when its stdin closes
            proc.stdin.close()
        for signal_it in (None if proc.stdin else proc.terminate, proc.terminate, proc.kill):
            if signal_it is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
                    return

    def log_problems(self) -> list[str]:
        """The log's lines that report errors (tracebacks, exceptions)."""
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            words = ("Traceback", "ERROR", "Error", "Exception")
            return [line[:200] for line in lines if any(w in line for w in words)][:20]
        return []


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def raise_fd_limit() -> None:
    """Open files up to the hard limit: hundreds of chats hold two connections each."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard > 0 else 65536, hard))
