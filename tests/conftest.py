"""Shared fixtures: a pipelines server under test, in front of the Poe stand-in, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from bots import loader
from bots.reply import Pacing
from bots.server import build_app
from tests.standin import Behavior, Reply, StandIn, poe_query, serve_app

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Served:
    """A pipelines server (at `url`) whose dependency calls go to `standin`."""

    url: str
    standin: StandIn
    config: loader.Config
    keys: dict[str, str]
    http: httpx.AsyncClient
    app: FastAPI

    async def ask(
        self, bot: str, text: Any = "hello", *, key: str | None = "own", **options: Any
    ) -> Reply:
        access_key = self.keys[bot] if key == "own" else key
        return await poe_query(self.http, f"{self.url}/{bot}", access_key, text, **options)

    def requests_to(self, bot: str) -> list[dict[str, Any]]:
        return [r for r in self.standin.requests if r["bot"] == bot]


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
        sys.executable, *args, "--port", str(port), cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=output, stderr=output,
    )  # fmt: skip
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


def key_for(bot_id: str) -> str:
    return f"{bot_id}-access-key".ljust(32, "k")[:32]


@contextlib.asynccontextmanager
async def serve_pipelines(
    yaml_text: str,
    behaviors: Mapping[str, Behavior],
    *,
    keys: bool = True,
    pacing: Pacing | None = None,
    environ: Mapping[str, str] | None = None,
    deployed_with: str | None = None,
) -> AsyncIterator[Served]:
    """Serves the bots of `yaml_text` with dependencies answering as `behaviors` say; each
    bot's declared dependencies are registered with the stand-in from its settings endpoint,
    as Poe does."""
    config = loader.parse(textwrap.dedent(yaml_text), "test.yaml")
    key_map = {bot_id: key_for(bot_id) for bot_id in config.bots} if keys else {}
    env = {config.bots[b].access_key_env: k for b, k in key_map.items()}
    env.update(environ or {})
    async with StandIn(behaviors) as standin:
        app = build_app(
            config, environ=env, base_url=standin.base_url, pacing=pacing,
            deployed_with=deployed_with,
        )  # fmt: skip
        async with serve_app(app) as url, httpx.AsyncClient(timeout=30) as http:
            for bot_id in config.bots:
                key = key_map.get(bot_id, "<missing>")
                await standin.register_caller(f"{url}/{bot_id}", key, caller=bot_id)
            keys_or_missing = {b: key_map.get(b, "<missing>") for b in config.bots}
            yield Served(url, standin, config, keys_or_missing, http, app)
