"""The load generator, playing Poe: POST a query, read the SSE reply, on kept-alive HTTP/1.1
connections opened before each measurement; and batches of such chats, with the CPU each
process used over the batch."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import urllib.parse
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from bench.params import Params
from bench.processes import (
    Child,
    cpu_seconds,
    machine_busy_seconds,
    memory_kb,
    runqueue_wait_seconds,
)

STATUS_PREFIX = "_Waiting for"  # the reply's progress line, not an answer


@dataclass
class Chat:
    """One reply as Poe saw it (times in seconds from the POST)."""

    message_id: str
    started: float  # monotonic
    error: str | None = None
    first_event: float | None = None
    first_visible: float | None = None  # first non-empty text that is not the progress line
    first_answer: float | None = None  # first time `marker` is on screen
    done: float | None = None
    events: Counter[str] = field(default_factory=Counter)
    payload_bytes: int = 0  # the text of text / replace_response events
    wire_bytes: int = 0  # the whole response body
    final_bytes: int = 0
    refreshes: list[float] = field(default_factory=list)  # times of text / replace events
    snapshots: list[tuple[float, str]] = field(default_factory=list)  # (time, what is shown)


class SSEConnection:
    """One kept-alive HTTP/1.1 connection that plays Poe: POST a query, read the SSE reply.

    Hand-rolled on asyncio streams rather than httpx: with hundreds of chats at once, httpx's
    pool bookkeeping and per-read timeouts made this process (not the server under test) the
    bottleneck, and its send delay was counted as the server's latency. Connections are opened
    before a measurement starts, as Poe keeps its connections to a bot server alive."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.bytes_read = 0
        self._headers: dict[str, str] = {}

    async def open(self) -> SSEConnection:
        if self.writer is None or self.writer.is_closing() or self._reader().at_eof():
            await self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _reader(self) -> asyncio.StreamReader:
        assert self.reader is not None
        return self.reader

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bool]:
        """Sends the request; returns the status and whether the body is an event stream."""
        await self.open()
        assert self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            + "\r\n"
        )
        self.writer.write(head.encode("latin-1") + body)
        await self.writer.drain()
        raw = await self._reader().readuntil(b"\r\n\r\n")
        self.bytes_read += len(raw)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        self._headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        return status, "text/event-stream" in self._headers.get("content-type", "")

    async def chunks(self) -> AsyncIterator[bytes]:
        """The response body, as it arrives (chunked, sized, or up to the connection's end)."""
        reader, headers = self._reader(), self._headers
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        if chunked:
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    self.bytes_read += len(line) + len(await reader.readuntil(b"\r\n"))
                    break
                data = await reader.readexactly(size + 2)
                self.bytes_read += len(line) + len(data)
                yield data[:-2]
        elif "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
            self.bytes_read += len(data)
            yield data
        else:
            while data := await reader.read(65536):
                self.bytes_read += len(data)
                yield data
        sized = chunked or "content-length" in headers
        if headers.get("connection", "").lower() == "close" or not sized:
            await self.close()


class SSEParser:
    """Server-sent events from body chunks (either line ending)."""

    def __init__(self) -> None:
        self.buffer = b""
        self.carry = b""

    def feed(self, data: bytes) -> list[tuple[str, str]]:
        data, self.carry = self.carry + data, b""
        if data.endswith(b"\r"):  # a \r\n split across chunks
            data, self.carry = data[:-1], b"\r"
        self.buffer += data.replace(b"\r\n", b"\n")
        events = []
        while (end := self.buffer.find(b"\n\n")) >= 0:
            block, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            name, lines = "message", []
            for line in block.split(b"\n"):
                if not line or line.startswith(b":"):
                    continue
                key, _, value = line.partition(b":")
                value = value[1:] if value.startswith(b" ") else value
                if key == b"event":
                    name = value.decode()
                elif key == b"data":
                    lines.append(value)
            if lines or name != "message":
                events.append((name, b"\n".join(lines).decode()))
        return events


async def post_query(
    conn: SSEConnection, path: str, payload: bytes, headers: dict[str, str]
) -> str | None:
    """Sends one query. None when the reply is an event stream (to be read next), else what
    came instead (its body read, so that the connection stays usable)."""
    status, is_stream = await conn.post(path, payload, headers)
    if status == 200 and is_stream:
        return None
    raw = b"".join([chunk async for chunk in conn.chunks()])
    return f"HTTP {status}: {raw[:200].decode(errors='replace')}"


async def chat(
    conn: SSEConnection,
    path: str,
    key: str | None,
    *,
    marker: str | None = None,
    keep_refreshes: bool = False,
    keep_snapshots: bool = False,
    timeout: float = 60,  # noqa: ASYNC109
) -> Chat:
    """Plays Poe for one message on `conn`: POST the query to `path`, read the SSE reply to its
    `done`. Times count from just before the request is written."""
    from standin.user import query_body

    body = query_body("Tell me something.")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    payload = json.dumps(body).encode()
    result = Chat(message_id=body["message_id"], started=time.monotonic())
    shown = ""
    read_before = conn.bytes_read
    try:
        async with asyncio.timeout(timeout):
            result.error = await post_query(conn, path, payload, headers)
            if result.error is not None:
                return result
            parser = SSEParser()
            async for chunk in conn.chunks():
                for name, data in parser.feed(chunk):
                    now = time.monotonic() - result.started
                    result.events[name] += 1
                    if result.first_event is None:
                        result.first_event = now
                    if name == "done":
                        result.done = now
                        continue  # the body ends right after; read it to keep the connection
                    if name not in ("text", "replace_response", "error"):
                        continue
                    text = str(json.loads(data).get("text", ""))
                    if name == "error":
                        result.error = f"error event: {text[:200]}"
                        continue
                    result.payload_bytes += len(text.encode())
                    shown = text if name == "replace_response" else shown + text
                    if keep_refreshes:
                        result.refreshes.append(now)
                    if keep_snapshots:
                        result.snapshots.append((now, shown))
                    if not result.first_visible and shown and not shown.startswith(STATUS_PREFIX):
                        result.first_visible = now
                    if marker is not None and result.first_answer is None and marker in shown:
                        result.first_answer = now
    except TimeoutError:
        result.error = f"no done event within {timeout:g} s"
        await conn.close()
    except Exception as e:  # a broken connection is a figure, not a crash of the benchmark
        result.error = f"{type(e).__name__}: {str(e)[:200]}"
        await conn.close()
    result.wire_bytes = conn.bytes_read - read_before
    if result.done is None and result.error is None:
        result.error = "the stream ended without a done event"
    result.final_bytes = len(shown.encode())
    return result


async def open_connections(base_url: str, n: int) -> list[SSEConnection]:
    """`n` connections to a server, opened (in batches, so the accept queue never overflows)."""
    conns = [SSEConnection(base_url) for _ in range(n)]
    for i in range(0, n, 100):
        await asyncio.gather(*(c.open() for c in conns[i : i + 100]))
    return conns


async def close_connections(conns: Iterable[SSEConnection]) -> None:
    await asyncio.gather(*(c.close() for c in conns))


@dataclass
class Load:
    """What one batch of chats did, with the CPU of each process over the batch."""

    chats: list[Chat]
    seconds: float
    server_cpu: float
    standin_cpu: float
    loadgen_cpu: float
    server_runqueue_wait: float = math.nan
    peak_rss_kb: int = 0
    machine_busy: float = math.nan

    @property
    def other_cpu(self) -> float:
        """CPU used by everything else on the machine (other processes, kernel networking);
        counted in 10 ms ticks, so it is rough over short runs (and never below 0)."""
        return max(0.0, self.machine_busy - self.server_cpu - self.standin_cpu - self.loadgen_cpu)

    @property
    def ok(self) -> list[Chat]:
        return [c for c in self.chats if c.error is None]

    @property
    def errors(self) -> int:
        return len(self.chats) - len(self.ok)


async def run_load(
    server: Child,
    standin: Child,
    path: str,
    key: str | None,
    *,
    concurrency: int,
    messages: int,
    p: Params,
    marker: str | None = None,
    keep_refreshes: bool = False,
    sample_rss: bool = False,
) -> Load:
    """`concurrency` chats at once on `server`, each on its own kept-alive connection (opened
    first) and sending its next message when its reply is done, until `messages` are sent (or
    `p.phase_seconds` passed)."""
    remaining = messages
    chats: list[Chat] = []
    stop_issuing = time.monotonic() + p.phase_seconds
    peak = 0
    sampling = True

    async def sampler() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, memory_kb(server.pid).get("VmRSS", 0))
            await asyncio.sleep(0.01)

    async def worker(conn: SSEConnection) -> None:
        nonlocal remaining
        while remaining > 0 and time.monotonic() < stop_issuing:
            remaining -= 1
            chats.append(
                await chat(
                    conn, path, key, marker=marker, keep_refreshes=keep_refreshes,
                    timeout=p.chat_timeout,
                )
            )  # fmt: skip

    conns = await open_connections(server.url, concurrency)
    try:
        watcher = asyncio.create_task(sampler()) if sample_rss else None
        cpu0 = (cpu_seconds(server.pid), cpu_seconds(standin.pid), time.process_time())
        wait0 = runqueue_wait_seconds(server.pid)
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        await asyncio.gather(*(worker(conn) for conn in conns))
        seconds = time.monotonic() - t0
        cpu1 = (cpu_seconds(server.pid), cpu_seconds(standin.pid), time.process_time())
        wait1 = runqueue_wait_seconds(server.pid)
        busy1 = machine_busy_seconds()
        sampling = False
        if watcher is not None:
            await watcher
    finally:
        await close_connections(conns)
    return Load(
        chats, seconds, cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], cpu1[2] - cpu0[2],
        wait1 - wait0, peak, busy1 - busy0,
    )  # fmt: skip
