"""Dependency bots that stream like real models, for the capacity benchmark: the first token
after a random 0.5-2 s, then one token an event at about 40 tokens a second, about 400 tokens.

The stand-in serves them with a lean writer of its own (the SSE events Poe sends, written
straight to the ASGI `send`) rather than through fastapi_poe, so that hundreds of them cost the
stand-in little and the server under test, not the stand-in, is what a run measures. Each
stream's times are kept on the monotonic clock, which every process of the machine shares, so
the parent can tell how much later than its own dependencies a reply reached the user."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import Any

MARKER = "tok"  # every token's text starts with it; no bot name or progress line contains it


@dataclass(frozen=True)
class Model:
    """How one model-like bot streams (the defaults are those the issue asked for)."""

    first_token_s: tuple[float, float] = (0.5, 2.0)  # uniform
    tokens: tuple[int, int] = (360, 440)  # uniform
    tokens_per_s: float = 40.0

    @property
    def mean_seconds(self) -> float:
        """A stream's mean duration."""
        return sum(self.first_token_s) / 2 + sum(self.tokens) / 2 / self.tokens_per_s

    def fan_out_seconds(self, n: int) -> float:
        """The mean duration of the slowest of `n` such streams started together (a fan-out
        lasts as long as its slowest branch): the first token's expected maximum, then the
        tokens."""
        low, high = self.first_token_s
        return low + (high - low) * n / (n + 1) + sum(self.tokens) / 2 / self.tokens_per_s


@dataclass
class Stream:
    """One stream the stand-in served: when it started, sent its first token, and ended."""

    message_id: str
    bot: str
    started: float
    first_token: float | None = None
    ended: float | None = None
    events: int = 0


class ModelStreams:
    """The stand-in's model-like bots, and what each of their streams did."""

    def __init__(self, models: dict[str, Model]) -> None:
        self.models = models
        self.streams: list[Stream] = []
        self.events_sent = 0  # every text event, all streams (the count the parent polls)

    def app(self, bot: str, message_id: str) -> Any:
        """The ASGI app that answers one query to `bot`: the events of a model's reply,
        paced from the stream's start, ended early if the caller goes away."""
        model = self.models[bot]
        rng = random.Random(f"{message_id}/{bot}")  # the same message streams the same way
        first = rng.uniform(*model.first_token_s)
        count = rng.randint(*model.tokens)
        gap = 1 / model.tokens_per_s

        async def app(scope: Any, receive: Any, send: Any) -> None:
            stream = Stream(message_id, bot, time.monotonic())
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
                    delay = stream.started + first + i * gap - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if gone.is_set():
                        return
                    data = json.dumps({"text": f"{MARKER}{i} "})
                    body = f"event: text\r\ndata: {data}\r\n\r\n".encode()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    if stream.first_token is None:
                        stream.first_token = time.monotonic()
                    stream.events += 1
                    self.events_sent += 1
                done = b"event: done\r\ndata: {}\r\n\r\n"
                await send({"type": "http.response.body", "body": done, "more_body": False})
            finally:
                stream.ended = time.monotonic()
                watcher.cancel()

        return app

    def reset(self) -> None:
        self.streams.clear()

    def timings(self) -> list[tuple[str, str, float, float | None, float | None, int]]:
        return [
            (s.message_id, s.bot, s.started, s.first_token, s.ended, s.events)
            for s in self.streams
        ]
