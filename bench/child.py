"""What runs in a child process, `python -m bench.child ROLE SPEC` (see `bench.process`): the
stand-in for Poe (`standin`) or a server under test (`server`), served by
`standin.serving.serve_app` on a free 127.0.0.1 port. It prints {"url": ...} once it listens,
answers the parent at /_bench/<name>, and stops when its stdin closes."""

from __future__ import annotations

import asyncio
import cProfile
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.models import Model, ModelStandIn
from bench.process import raise_fd_limit
from bench.references import APPS
from bench.step import pct
from standin.serving import serve_app

Handlers = dict[str, Callable[[], dict[str, Any]]]


def server_app(spec: dict[str, Any]) -> Any:
    """Ours (the pipelines of `spec["yaml"]`, served without access keys as `serve` does) or
    one of `bench.references`."""
    if spec["kind"] != "ours":
        return APPS[spec["kind"]](spec["base_url"], spec["bots"])
    from bots.serve.server import build_app
    from bots.spec import loader

    config = loader.parse(spec["yaml"], "bench.yaml")
    return build_app(config, environ={}, base_url=spec["base_url"])


async def serve(role: str, spec: dict[str, Any]) -> None:
    lag: list[float] = []  # how late the loop ran a 10 ms timer: what a reply's task waits

    async def probe() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            lag.append(time.monotonic() - started - 0.01)

    def report_lag() -> dict[str, Any]:  # since the last report
        s, lag[:] = list(lag), []
        return {"p50": pct(s, 50), "p99": pct(s, 99), "max": max(s, default=math.nan)}

    if role == "standin":
        fields = spec["model"].values()  # in Model's order; JSON made its tuples lists
        model = Model(*(tuple(v) if isinstance(v, list) else v for v in fields))
        app = standin = ModelStandIn({name: model for name in spec["bots"]})
        handlers: Handlers = {"reset": standin.reset, "count": standin.count}
        handlers |= {"stats": standin.stats}
    else:
        app, handlers = server_app(spec), {"lag": report_lag}
        if spec.get("profile"):  # raw stats: `python -m pstats PATH`, or snakeviz
            profiler = cProfile.Profile()
            handlers["profile-start"] = lambda: profiler.enable() or {}
            handlers["profile-stop"] = lambda: (
                profiler.disable() or profiler.dump_stats(spec["profile"]) or {}
            )

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/_bench/"):
            return await app(scope, receive, send)
        body = json.dumps(handlers[path[len("/_bench/") :]]()).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    loop, stop = asyncio.get_running_loop(), asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # until the parent closes it (or dies)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    probing = asyncio.create_task(probe()) if role == "server" else None
    lifespan = "off" if role == "standin" else "on"
    async with serve_app(wrapped, lifespan=lifespan) as url:
        print(json.dumps({"url": url}), flush=True)
        os.dup2(2, 1)  # anything printed later goes to the log, not to a pipe nobody reads
        await stop.wait()
    if probing is not None:
        probing.cancel()


if __name__ == "__main__":
    raise_fd_limit()
    asyncio.run(serve(sys.argv[1], json.loads(sys.argv[2])))
