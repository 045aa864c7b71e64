"""What runs in the child processes: the stand-in for Poe and the servers under test, each on its
own uvicorn and free port. A child says what it does as JSON lines on stdout, takes commands on
stdin (one a line), and stops when stdin closes."""

from __future__ import annotations

import asyncio
import io
import json
import math
import os
import pstats
import socket
import sys
import threading
import time
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import Any

from bench.figures import pct
from bench.params import ROOT
from bench.references import APPS


def say(**message: Any) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _watch_stdin(
    loop: asyncio.AbstractEventLoop,
    commands: dict[str, Callable[[], None]],
    on_eof: Callable[[], None],
) -> None:
    """Runs commands the parent writes to stdin (one per line); on EOF (the parent closed the
    pipe, or died) calls `on_eof`. The thread is a daemon: it never holds the process up."""

    def watch() -> None:
        for line in sys.stdin:
            command = commands.get(line.strip())
            if command is not None:
                loop.call_soon_threadsafe(command)
        loop.call_soon_threadsafe(on_eof)

    threading.Thread(target=watch, daemon=True).start()


class LagProbe:
    """How late the event loop runs a 10 ms timer: the loop's lag, as a reply's task sees it."""

    def __init__(self, period: float = 0.01) -> None:
        self.period = period
        self.samples: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.period)
            self.samples.append(time.monotonic() - started - self.period)

    def report(self) -> None:
        """Says the lag since the last report, and starts over."""
        samples, self.samples = self.samples, []
        worst = max(samples, default=math.nan)
        say(event="lag", p50=pct(samples, 50), p99=pct(samples, 99), max=worst)


async def _serve(
    app: Any,
    *,
    lifespan: str,
    commands: dict[str, Callable[[], None]] | None = None,
    probe: LagProbe | None = None,
) -> None:
    """Serves `app` with uvicorn on a free 127.0.0.1 port until stdin closes; says the URL."""
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto is TCP, and
    # accepted sockets inherit the listening socket's proto. With proto 0, Nagle's algorithm
    # and delayed ACKs hold every response body back ~40 ms on a kept-alive connection.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan=lifespan,  # type: ignore[arg-type]
        timeout_graceful_shutdown=2, timeout_keep_alive=120, backlog=4096,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(2000):  # 20 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        if task.done():
            task.result()
        raise TimeoutError("uvicorn did not start in 20 s")

    def stop() -> None:
        server.should_exit = True

    if probe is not None:
        lag_task = asyncio.create_task(probe.run())
        commands = {**(commands or {}), "lag": probe.report}

    _watch_stdin(asyncio.get_running_loop(), commands or {}, stop)
    say(event="ready", url=f"http://127.0.0.1:{port}", pid=os.getpid())
    await task
    if probe is not None:
        lag_task.cancel()
    sock.close()


def child_standin(spec: dict[str, Any]) -> None:
    """The stand-in for Poe, noting each upstream stream's start and end (monotonic clock,
    which is the same clock in every process of this machine)."""
    from bench.models import Model, ModelStreams
    from standin.poe import Behavior, StandIn

    models = ModelStreams(
        {name: Model(**{k: tuple(v) if isinstance(v, list) else v for k, v in m.items()})
         for name, m in spec.get("models", {}).items()}
    )  # fmt: skip

    class TimedStandIn(StandIn):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.timings: list[tuple[str, str, float, float]] = []

        async def _stream(self, scope: Any, receive: Any, send: Any, app: Any = None) -> None:
            request = self.requests[-1]  # appended just before this call, with no await between
            if request["bot"] in models.models:  # timed by `models` itself
                app = models.app(request["bot"], str(request.get("message_id")))
                await super()._stream(scope, receive, send, app)
                return
            started = time.monotonic()
            try:
                await super()._stream(scope, receive, send, app)
            finally:
                self.timings.append(
                    (str(request.get("message_id")), request["bot"], started, time.monotonic())
                )

        def reset(self) -> None:
            self.requests.clear()
            self.calls.clear()
            self.attempts.clear()
            self.refused.clear()
            self.reports.clear()
            self.timings.clear()
            models.reset()
            self.closed_early = 0
            self.max_open_streams = self.open_streams
            for bot in self.bots.values():
                bot.served.clear()

        def stats(self) -> dict[str, Any]:
            return {
                "timings": self.timings,
                "model_streams": models.timings(),
                "max_open_streams": self.max_open_streams,
                "closed_early": self.closed_early,
                "refused_count": len(self.refused),
                "reports_count": len(self.reports),
            }

    bots = {name: Behavior(**b) for name, b in spec["behaviors"].items()}
    standin = TimedStandIn({**bots, **{name: Behavior() for name in models.models}})
    standin.allow_any_caller = True  # the servers under test call with keys it never saw

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/_bench/"):
            await standin(scope, receive, send)
            return
        if path == "/_bench/reset":
            standin.reset()
            body = b"{}"
        elif path == "/_bench/count":  # cheap enough to poll during a measurement
            count = {"events_sent": models.events_sent, "open_streams": standin.open_streams}
            body = json.dumps(count).encode()
        else:
            body = json.dumps(standin.stats()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    asyncio.run(_serve(app, lifespan="off"))


def passthrough_app(kind: str, base_url: str, dependency: str) -> Any:
    """Poe's docs passthrough bot (`docs`: a client per call, default retries), or the same
    sharing one client with one try (`shared`)."""
    import fastapi_poe as fp
    import httpx

    shared: list[httpx.AsyncClient] = []

    class PassthroughBot(fp.PoeBot):
        async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
            if kind == "docs":
                async for msg in fp.stream_request(
                    request, dependency, request.access_key, base_url=base_url
                ):
                    yield msg
            else:
                if not shared:
                    shared.append(
                        httpx.AsyncClient(
                            timeout=600,
                            limits=httpx.Limits(
                                max_connections=None, max_keepalive_connections=256
                            ),
                        )
                    )
                async for msg in fp.stream_request(
                    request, dependency, request.access_key,
                    base_url=base_url, session=shared[0], num_tries=1,
                ):  # fmt: skip
                    yield msg

    return fp.make_app(PassthroughBot(path="/passthrough", access_key=None), allow_without_key=True)


def child_server(spec: dict[str, Any]) -> None:
    """A server under test in its own process; with `profile`, cProfile runs between the
    parent's `profile-start` and `profile-stop` commands."""
    import cProfile
    import logging

    logging.getLogger("uvicorn.default").setLevel(logging.ERROR)
    if spec["kind"] == "pipelines":
        from bots.serve.server import build_app
        from bots.spec import loader

        config = loader.parse(spec["yaml"], "bench.yaml")
        app = build_app(config, environ=spec["env"], base_url=spec["base_url"])
    elif spec["kind"] in APPS:
        app = APPS[spec["kind"]](spec["base_url"], spec["bots"])
    else:
        app = passthrough_app(spec["kind"], spec["base_url"], spec["dependency"])
    commands: dict[str, Callable[[], None]] = {}
    profile_path = spec.get("profile")
    if profile_path:
        profiler = cProfile.Profile()

        def start() -> None:
            profiler.enable()
            say(event="profiling")

        def stop() -> None:
            profiler.disable()
            write_profile(profiler, Path(profile_path), spec.get("profile_title", ""))
            say(event="profiled", path=profile_path)

        commands = {"profile-start": start, "profile-stop": stop}
    asyncio.run(_serve(app, lifespan="on", commands=commands, probe=LagProbe()))


ROLES: dict[str, Callable[[dict[str, Any]], None]] = {
    "standin": child_standin,
    "server": child_server,
}


def write_profile(profiler: Any, path: Path, title: str) -> None:
    """The top 25 functions by cumulative and by total time, as text; the raw stats beside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(str(path.with_suffix(".prof")))
    prefixes = sorted({p + "/" for p in sys.path if p and "site-packages" in p}, key=len)
    prefixes = [*reversed(prefixes), str(ROOT) + "/"]
    parts = [f"# {title}\n# raw stats: {path.with_suffix('.prof').name} (pstats / snakeviz)\n"]
    for key, name in (("cumulative", "cumulative time"), ("tottime", "total (own) time")):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(key).print_stats(25)
        text = out.getvalue()
        for prefix in prefixes:
            text = text.replace(prefix, "")
        parts.append(f"\n## top 25 by {name}\n{text}")
    path.write_text("".join(parts), encoding="utf-8")
