"""The load client, playing Poe: chats arriving at random (a Poisson process) at a steady rate,
each a query POSTed on a kept-alive HTTP/1.1 connection, its SSE reply read only to note when
its first event, its first token and its `done` arrived.

Hand-rolled on asyncio streams: with hundreds of chats at once, httpx's pool bookkeeping made
this process, not the server under test, the bottleneck, and its delays counted as latency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bench.models import MARKER
from standin.user import query_body

TOKEN, DONE, ERROR = MARKER.encode(), b"event: done", b"event: error"
IDLE_S = 4.0  # a connection idle longer is opened afresh: uvicorn closes it after 5 s


class Connection:
    """One kept-alive HTTP/1.1 connection to a server."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.used = 0.0
        self.chunked = False
        self.length = 0

    async def open(self) -> Connection:
        r, w = self.streams or (None, None)
        if not r or not w or w.is_closing() or r.at_eof() or time.monotonic() - self.used > IDLE_S:
            await self.close()
            self.streams = await asyncio.open_connection(self.host, self.port)
        self.used = time.monotonic()
        return self

    async def close(self) -> None:
        streams, self.streams = self.streams, None
        if streams is not None:
            streams[1].close()
            with contextlib.suppress(Exception):
                await streams[1].wait_closed()

    async def post(self, path: str, body: bytes) -> str | None:
        """Sends a query. None when the reply is an event stream (read it with `chunks`), else
        what came instead (its body read, so that the connection stays usable)."""
        reader, writer = (await self.open()).streams or ()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: "
            f"application/json\r\nAuthorization: Bearer bench\r\nContent-Length: {len(body)}"
            f"\r\n\r\n".encode()
            + body
        )  # no keys: ours serves without them, as `serve` does
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        self.chunked = "transfer-encoding: chunked" in head
        self.length = int(head.split("content-length:")[1].split()[0]) if "length:" in head else 0
        if head.startswith("http/1.1 200") and "text/event-stream" in head:
            return None
        raw = b"".join([chunk async for chunk in self.chunks()])
        return f"{head.split(chr(13))[0]}: {raw[:200].decode(errors='replace')}"

    async def chunks(self) -> AsyncIterator[bytes]:
        """The response body as it arrives (chunked or sized)."""
        reader = self.streams[0] if self.streams else asyncio.StreamReader()
        if self.chunked:
            while size := int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
                yield (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        else:
            yield await reader.readexactly(self.length)
        self.used = time.monotonic()


@dataclass
class Arrival:
    """One chat as Poe saw it (monotonic times, the clock of the stand-in's streams)."""

    message_id: str
    started: float
    measured: bool = False  # it arrived during the measured window
    first_event: float | None = None
    first_text: float | None = None  # the first token of any dependency on the user's screen
    done: float | None = None
    ended: float | None = None  # when this chat stopped being in flight
    error: str | None = None


async def chat(
    conn: Connection, path: str, limit_s: float, into: list[Arrival], measured: bool = False
) -> Arrival:
    """One chat (added to `into` as it starts), its bytes searched for a token and for `done`,
    never parsed. A cancelled chat closes its connection, as Poe going away does."""
    body = query_body("Tell me something.")
    result = Arrival(body["message_id"], time.monotonic(), measured)
    into.append(result)
    try:
        async with asyncio.timeout(limit_s):
            if (error := await conn.post(path, json.dumps(body).encode())) is not None:
                result.error = error
                return result
            tail = b""
            async for chunk in conn.chunks():
                seen, now = tail + chunk, time.monotonic()
                result.first_event = result.first_event or now
                if result.first_text is None and TOKEN in seen:
                    result.first_text = now
                if ERROR in seen and result.error is None:
                    result.error = "error event"
                if result.done is None and DONE in seen:
                    result.done = now
                tail = seen[-16:]
            if result.done is None and result.error is None:
                result.error = "the stream ended without a done event"
    except (Exception, asyncio.CancelledError) as e:  # a broken connection is a figure
        await conn.close()
        if isinstance(e, asyncio.CancelledError):
            raise
        timed_out = isinstance(e, TimeoutError)
        result.error = f"no done within {limit_s:g} s" if timed_out else f"{e!r}"[:200]
    finally:
        result.ended = time.monotonic()
    return result


async def connections(url: str, n: int) -> list[Connection]:
    """`n` connections, opened in batches so that the accept queue never overflows."""
    conns = [Connection(url) for _ in range(n)]
    for i in range(0, n, 100):
        await asyncio.gather(*(c.open() for c in conns[i : i + 100]))
    return conns


async def drive(
    url: str,
    path: str,
    *,
    rate: float,
    warm: float,
    window: float,
    limit_s: float,
    seed: int,
    free: list[Connection],
    measure: Callable[[float, float], Awaitable[Any]],
) -> tuple[list[Arrival], float, float, Any]:
    """Chats arriving at `rate` a second on kept-alive connections (from `free`, which gets
    them back), until every chat that started in the window [warm, warm + window] has ended;
    the chats still running then are cut. `measure(w0, w1)` runs alongside. Returns the chats,
    the window's bounds and what `measure` returned."""
    rng = random.Random(seed)
    start = at = time.monotonic()
    w0, w1 = start + warm, start + warm + window
    chats: list[Arrival] = []
    running: set[asyncio.Task[None]] = set()
    pending, settled = 0, asyncio.Event()

    async def one(measured: bool) -> None:
        nonlocal pending
        conn = free.pop() if free else Connection(url)
        if (await chat(conn, path, limit_s, chats, measured)).error is None:
            free.append(conn)
        pending -= measured
        if measured and pending == 0 and time.monotonic() > w1:
            settled.set()

    measuring = asyncio.create_task(measure(w0, w1))
    try:
        while not settled.is_set():
            at += rng.expovariate(rate)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, at - time.monotonic())):
                    await settled.wait()
            now = time.monotonic()
            if settled.is_set() or now > w1 + limit_s or (now > w1 and pending == 0):
                break
            measured = w0 <= now <= w1
            pending += measured
            task = asyncio.create_task(one(measured))
            running.add(task)
            task.add_done_callback(running.discard)
    finally:
        for task in list(running):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return chats, w0, w1, await measuring
