"""The servers ours is held against, each a three-way fan-out of the same dependencies,
served at /fanout:

* `poe_pattern`: Poe's own two-bot merge (`TurboVsClaudeBot` in Poe's server-bot-quick-start),
  extended to three bots: `asyncio.as_completed` over the streams, the whole text again as a
  `replace_response` after every chunk, `stream_request` as the sample calls it;
* `handwritten`: a careful creator's: one shared client, one try, three tasks feeding a queue;
  the bot that speaks first streams live, the others follow whole, in the order they started;
* `floor`: the thinnest relay that still speaks the protocol: bare ASGI, httpx and httpx-sse,
  each upstream event's text forwarded at once. Nothing a server bot does can cost less per
  relayed event, so CPU per event is measured against it.
The last two ignore dependencies' replace_response and files: the model-like bots send neither.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

PATH = "/fanout"


def _shared_client() -> Any:
    import httpx

    return httpx.AsyncClient(
        timeout=httpx.Timeout(600, connect=10),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
    )


def poe_pattern_app(base_url: str, bots: Sequence[str]) -> Any:
    import fastapi_poe as fp

    async def labelled(request: fp.QueryRequest, bot: str) -> AsyncIterator[tuple[str, bool]]:
        """(text, replaces what this bot showed so far)"""
        label = f"**{bot}** says:\n"
        yield label, True
        async for msg in fp.stream_request(request, bot, request.access_key, base_url=base_url):
            if msg.is_replace_response:
                yield label, True
            yield msg.text, False

    async def advance(
        key: int, stream: AsyncIterator[tuple[str, bool]]
    ) -> tuple[int, tuple[str, bool] | None]:
        try:
            return key, await anext(stream)
        except StopAsyncIteration:
            return key, None

    class PoePatternBot(fp.PoeBot):
        async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
            streams = {i: labelled(request, bot) for i, bot in enumerate(bots)}
            texts: dict[int, list[str]] = {}
            while streams:
                for next_ in asyncio.as_completed([advance(*item) for item in streams.items()]):
                    key, got = await next_
                    if got is None:
                        del streams[key]
                        continue
                    text, replaces = got
                    texts[key] = [text] if replaces else [*texts.get(key, []), text]
                    whole = "\n\n".join("".join(chunks) for chunks in texts.values())
                    yield fp.PartialResponse(text=whole, is_replace_response=True)

    return fp.make_app(PoePatternBot(path=PATH, access_key=None), allow_without_key=True)


def handwritten_app(base_url: str, bots: Sequence[str]) -> Any:
    import fastapi_poe as fp

    shared: list[Any] = []

    class HandWrittenFanOut(fp.PoeBot):
        async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
            if not shared:
                shared.append(_shared_client())
            queue: asyncio.Queue[tuple[int, str | None]] = asyncio.Queue()

            async def pump(i: int, bot: str) -> None:
                try:
                    async for msg in fp.stream_request(
                        request,
                        bot,
                        request.access_key,
                        base_url=base_url,
                        session=shared[0],
                        num_tries=1,
                    ):
                        if msg.text:
                            queue.put_nowait((i, msg.text))
                finally:
                    queue.put_nowait((i, None))

            # the bot that speaks first streams live; the others wait their turn, in the
            # order they started, and are sent whole (then live) when the one before ends
            started: list[int] = []
            shown: list[int] = []
            held: dict[int, list[str]] = {i: [] for i in range(len(bots))}
            ended: set[int] = set()
            live = None
            async with asyncio.TaskGroup() as group:
                for i, bot in enumerate(bots):
                    group.create_task(pump(i, bot))
                while len(ended) < len(bots):
                    i, text = await queue.get()
                    if text is None:
                        ended.add(i)
                    elif i == live:
                        yield fp.PartialResponse(text=text)
                        continue
                    else:
                        held[i].append(text)
                        if i not in started:
                            started.append(i)
                    while live is None or live in ended:
                        waiting = [j for j in started if j not in shown]
                        if not waiting:
                            live = None
                            break
                        live = waiting[0]
                        gap = "\n\n" if shown else ""
                        shown.append(live)
                        text = "".join(held[live])
                        yield fp.PartialResponse(text=f"{gap}### {bots[live]}\n\n{text}")

    return fp.make_app(HandWrittenFanOut(path=PATH, access_key=None), allow_without_key=True)


def floor_app(base_url: str, bots: Sequence[str]) -> Any:
    import httpx_sse

    shared: list[Any] = []

    async def respond_json(send: Any, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        request = json.loads(body)
        if request.get("type") != "query":
            await respond_json(send, b"{}")
            return
        if not shared:
            shared.append(_shared_client())
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        auth = {"Authorization": f"Bearer {request.get('access_key') or 'floor'}"}

        async def relay(bot: str) -> None:
            try:
                async with httpx_sse.aconnect_sse(
                    shared[0], "POST", base_url + bot, json=request, headers=auth
                ) as source:
                    async for event in source.aiter_sse():  # to the body's end: reused
                        if event.event == "text":
                            texts.put_nowait(json.loads(event.data)["text"])
            finally:
                texts.put_nowait(None)

        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async with asyncio.TaskGroup() as group:
            for bot in bots:
                group.create_task(relay(bot))
            running = len(bots)
            while running:
                text = await texts.get()
                if text is None:
                    running -= 1
                    continue
                event = f"event: text\r\ndata: {json.dumps({'text': text})}\r\n\r\n".encode()
                await send({"type": "http.response.body", "body": event, "more_body": True})
        done = b"event: done\r\ndata: {}\r\n\r\n"
        await send({"type": "http.response.body", "body": done, "more_body": False})

    return app


APPS = {"poe_pattern": poe_pattern_app, "handwritten": handwritten_app, "floor": floor_app}
