"""The child processes seen from the parent: starting them, talking to them, and what /proc says
of their CPU time and memory (and of the whole machine's)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import math
import os
import resource
import sys
from pathlib import Path
from typing import Any

from bench.params import ROOT

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@functools.cache
def _psutil() -> Any:
    """psutil if it is installed (it is optional: /proc works without it), else None."""
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


def cpu_time_source() -> str:
    """Where `cpu_seconds` reads from, for the JSON."""
    return "psutil" if _psutil() is not None else "/proc/<pid>/stat"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    psutil = _psutil()
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def runqueue_wait_seconds(pid: int) -> float:
    """Time the process's main thread (its event loop) spent runnable but waiting for a CPU."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def raise_fd_limit() -> int:
    """Raises this process's open-file limit to the hard limit; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Child:
    """One child process (`python -m bench.run --child ROLE SPEC`), stopped by closing stdin."""

    def __init__(self, name: str, role: str, spec: dict[str, Any], log_dir: Path) -> None:
        self.name, self.role, self.spec = name, role, spec
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.pid = 0
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.other_output: list[str] = []  # stdout lines that are not ours (kept, a few)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Child:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        # stdout is a pipe that `_read_stdout` reads all along; stderr goes to the log file
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.run", "--child", self.role, json.dumps(self.spec),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                cwd=ROOT, env=env,
            )  # fmt: skip
        self._reader = asyncio.create_task(self._read_stdout())
        ready = await self.expect("ready", 30)
        self.url, self.pid = ready["url"], ready["pid"]
        return self

    async def _read_stdout(self) -> None:
        """Reads the child's stdout all along (a full pipe would block it): our JSON lines go
        to `events`, anything else (a library printing) is kept for the report."""
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if isinstance(message, dict) and "event" in message:
                self.events.put_nowait(message)
            elif len(self.other_output) < 50:
                self.other_output.append(line.decode(errors="replace").rstrip()[:200])
        self.events.put_nowait(None)  # the child exited

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while True:
                message = await self.events.get()
                if message is None:
                    self.events.put_nowait(None)
                    raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                if message.get("event") == event:
                    return message

    async def command(self, line: str, then: str, timeout: float = 60) -> dict[str, Any]:  # noqa: ASYNC109
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return await self.expect(then, timeout)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert proc.stdin is not None
            proc.stdin.close()
        for signal_it in (None, proc.terminate, proc.kill):
            if signal_it is not None:
                with contextlib.suppress(ProcessLookupError):
                    signal_it()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
                break
            except TimeoutError:
                continue
        if self._reader is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._reader

    def log_problems(self) -> list[str]:
        """Lines of the child's log that report errors (tracebacks, exceptions)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        lines += self.other_output
        return [
            line[:200]
            for line in lines
            if any(word in line for word in ("Traceback", "ERROR", "Error", "Exception"))
        ][:20]
