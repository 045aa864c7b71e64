"""A pipelines server under test, on loopback, whose dependency calls go to the stand-in."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from bots.run.delivery import Pacing
from bots.serve.server import build_app
from bots.spec import loader
from standin.poe import Behavior, StandIn
from standin.serving import serve_app
from standin.user import Reply, poe_query


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
            config,
            environ=env,
            base_url=standin.base_url,
            pacing=pacing,
            deployed_with=deployed_with,
        )
        async with serve_app(app) as url, httpx.AsyncClient(timeout=30) as http:
            for bot_id in config.bots:
                key = key_map.get(bot_id, "<missing>")
                await standin.register_caller(f"{url}/{bot_id}", key, caller=bot_id)
            keys_or_missing = {b: key_map.get(b, "<missing>") for b in config.bots}
            yield Served(url, standin, config, keys_or_missing, http, app)
