"""Cold start: from a server process's start to the first event of its first reply, the way a
Modal container may start on a user's message (interpreter, imports, the app's build, the first
connection). The server is `python -m bots serve`, calling the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bench.figures import median, rnd
from bench.loadgen import SSEConnection
from bench.params import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _listening(port: int, deadline: float) -> float:
    """When the port first accepted a connection."""
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.002)
            continue
        writer.close()
        return time.monotonic()
    raise TimeoutError(f"nothing listened on port {port}")


async def cold_start(
    config: Path, bot: str, standin_url: str, cpus: list[int] | None, timeout: float = 30  # noqa: ASYNC109
) -> dict[str, float]:
    """One cold start: seconds from spawning the server to its port accepting, and to the
    first event of a first reply."""
    from standin.user import query_body

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POE_BASE_URL": standin_url + "/bot/"}
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]  # as deployed without a collector
    argv = [sys.executable, "-m", "bots", "serve", "--config", str(config), "--port", str(port)]
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
    )  # fmt: skip
    try:
        listening = await _listening(port, started + timeout)
        conn = SSEConnection(f"http://127.0.0.1:{port}")
        body = json.dumps(query_body("Tell me something.")).encode()
        status, _ = await conn.post(f"/{bot}", body, {})
        first = None
        async for chunk in conn.chunks():
            if first is None and b"event:" in chunk:
                first = time.monotonic()
            if b"event: done" in chunk:
                break
        await conn.close()
        if status != 200 or first is None:
            raise RuntimeError(f"the first reply failed (HTTP {status})")
        return {"listening_s": listening - started, "first_event_s": first - started}
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def cold_starts(
    config: Path, bot: str, standin_url: str, runs: int, cpus: list[int] | None
) -> dict[str, Any]:
    """`runs` cold starts one after the other; medians and the worst."""
    times = [await cold_start(config, bot, standin_url, cpus) for _ in range(runs)]
    return {
        "runs": runs,
        "listening_s_median": rnd(median(t["listening_s"] for t in times), 3),
        "first_event_s_median": rnd(median(t["first_event_s"] for t in times), 3),
        "first_event_s_max": rnd(max(t["first_event_s"] for t in times), 3),
    }
