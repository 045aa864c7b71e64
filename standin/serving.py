"""Serving on loopback: an ASGI app on a free 127.0.0.1 port, a project command as its own
process, and a pipelines server in front of the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from starlette.types import ASGIApp


class _TestServer(uvicorn.Server):
    """A uvicorn server that leaves Ctrl-C and SIGTERM to pytest and says when it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


Lifespan = Literal["on", "off", "auto"]


@contextlib.asynccontextmanager
async def serve_app(
    app: ASGIApp, *, lifespan: Lifespan = "on", stop_timeout: float = 5
) -> AsyncIterator[str]:
    """Serves an ASGI app with uvicorn on a free 127.0.0.1 port; yields "http://127.0.0.1:PORT"."""
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto
    # says TCP, and with Nagle on every keep-alive response waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan=lifespan,
        timeout_graceful_shutdown=max(1, int(stop_timeout / 2)),
    )
    server = _TestServer(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as e:  # uvicorn exits when startup fails; keep it from the loop
            raise RuntimeError(f"the test server on port {port} failed to start") from e

    task = asyncio.create_task(run())
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait({task, listening}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            if task.done():
                task.result()  # raises why it stopped
            raise TimeoutError(f"the test server on port {port} did not start in 10 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        listening.cancel()
        server.should_exit = True
        try:
            async with asyncio.timeout(stop_timeout):
                await asyncio.shield(task)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()


ROOT = Path(__file__).resolve().parent.parent
"""The repository's root: where project commands run."""


@contextlib.asynccontextmanager
async def serving_process(
    *args: str, env: Mapping[str, str] | None = None, output: Any = asyncio.subprocess.DEVNULL
) -> AsyncIterator[tuple[str, int]]:
    """Runs `python ARGS --port PORT` from the repository root as its own process and yields
    (its URL, its pid) once `GET /` answers; stops it on exit. `output` takes its stdout and
    stderr: a file or DEVNULL, never a pipe nobody reads (it would fill and stall the server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        "--port",
        str(port),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=output,
        stderr=output,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):  # up to 10 s to start
                try:
                    await http.get(url + "/")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise RuntimeError(f"python {' '.join(args)} did not start serving")
        yield url, process.pid
    finally:
        process.terminate()
        async with asyncio.timeout(10):
            await process.wait()


@contextlib.contextmanager
def studio_process(
    log: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, str]]:
    """Runs `python -m bots studio ARGS --port 0 --no-browser` from the repository root as its
    own process, its output in `log`; yields (its base URL, its token) as it printed them."""
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bots", "studio", *args, "--port", "0", "--no-browser"],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while (found := re.search(r"open (http://[^/]+)/\?token=(\S+)", log.read_text())) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the studio did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield found.group(1), found.group(2)
    finally:
        process.terminate()
        process.wait(10)


@contextlib.contextmanager
def served_in_thread(app: ASGIApp, *, lifespan: Lifespan = "on") -> Iterator[str]:
    """Serves an ASGI app on a free 127.0.0.1 port from a thread of its own, with its own
    event loop (for code that is not async: a browser test, the benchmark); yields its URL."""
    ready: queue.Queue[tuple[str, asyncio.AbstractEventLoop, asyncio.Event]] = queue.Queue()

    async def serve() -> None:
        stop = asyncio.Event()
        async with serve_app(app, lifespan=lifespan) as url:
            ready.put((url, asyncio.get_running_loop(), stop))
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    url, loop, stop = ready.get(timeout=30)
    try:
        yield url
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def closed_port() -> str:
    """The address of a server that is not there: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"
