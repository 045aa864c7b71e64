"""Dependency bots that stream like real models (the first token after a random 0.5-2 s, then
one token an event at 40 tokens a second, about 400 tokens), and the stand-in for Poe that
serves them and times every stream. It writes the SSE events straight to the ASGI `send`, not
through fastapi_poe, so that hundreds of streams cost it little: the server under test is what
a run measures. Times are on the monotonic clock, which every process of the machine shares."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

from standin.poe import Behavior, StandIn

MARKER = "tok"  # every token's text starts with it; no heading or progress line contains it


@dataclass(frozen=True)
class Model:
    """How a model-like bot streams (uniform ranges)."""

    first_token_s: tuple[float, float] = (0.5, 2.0)
    tokens: tuple[int, int] = (360, 440)
    tokens_per_s: float = 40.0

    def fan_out_seconds(self, n: int) -> float:
        """The mean duration of the slowest of `n` streams started together: the first
        token's expected maximum, then the tokens."""
        low, high = self.first_token_s
        return low + (high - low) * n / (n + 1) + sum(self.tokens) / 2 / self.tokens_per_s


class ModelStandIn(StandIn):
    """`standin.poe.StandIn` (every caller admitted) whose bots are `models`."""

    def __init__(self, models: dict[str, Model]) -> None:
        super().__init__({name: Behavior() for name in models})
        self.allow_any_caller = True  # the servers under test call with keys it never saw
        self.models = models
        self.streams: list[list[Any]] = []  # [message_id, started, first token, ended]
        self.events_sent = 0  # text events of all streams (the count the parent polls)

    async def _stream(self, scope: Any, receive: Any, send: Any, app: Any = None) -> None:
        request = self.requests[-1]  # appended just before this call, with no await between
        app = self._model_app(request["bot"], str(request.get("message_id")))
        await super()._stream(scope, receive, send, app)

    def _model_app(self, bot: str, message_id: str) -> Any:
        """One reply of `bot`, paced from the stream's start, ended if the caller goes."""
        model = self.models[bot]
        rng = random.Random(f"{message_id}/{bot}")  # the same message streams the same way
        first, count = rng.uniform(*model.first_token_s), rng.randint(*model.tokens)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            stream: list[Any] = [message_id, time.monotonic(), None, None]
            self.streams.append(stream)
            gone = asyncio.Event()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()

            watcher = asyncio.create_task(watch())
            headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
            try:
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                for i in range(count):
                    delay = stream[1] + first + i / model.tokens_per_s - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if gone.is_set():
                        return
                    data = json.dumps({"text": f"{MARKER}{i} "})
                    body = f"event: text\r\ndata: {data}\r\n\r\n".encode()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    stream[2] = stream[2] or time.monotonic()
                    self.events_sent += 1
                done = b"event: done\r\ndata: {}\r\n\r\n"
                await send({"type": "http.response.body", "body": done, "more_body": False})
            finally:
                stream[3] = time.monotonic()
                watcher.cancel()

        return app

    def reset(self) -> dict[str, Any]:
        for kept in (self.streams, self.refused, self.requests, self.calls, self.attempts):
            kept.clear()
        return {}

    def count(self) -> dict[str, Any]:
        """Cheap enough to poll during a measurement."""
        return {"events_sent": self.events_sent, "open_streams": self.open_streams}

    def stats(self) -> dict[str, Any]:
        return {"streams": self.streams, "refused": len(self.refused)}
