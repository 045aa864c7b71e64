"""The gate in front of the bots: each POST to a bot is checked, parsed once, and handed to
the bot.

fastapi_poe's own route answers malformed requests with a 500 (or a traceback in the logs),
accepts any bot's key only through its own dependency, demands an Authorization header even for
a bot served without a key, and parses every body again. The gate, a plain ASGI middleware,
checks each bot's own key first (constant-time), lets a keyless local bot be called without a
header, then has `protocol` read the body as Poe's spec asks (what is to be ignored is left
out, every bad request gets a clear 4xx, or 501 for a request type it does not know) into the
model the bot's handler receives, as fastapi_poe's route would call it. Other requests (the
index, a bot's GET page) go on to the app.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

import fastapi_poe as fp
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bots.errors import Refused
from bots.serve import protocol
from bots.serve.keys import Key

MAX_BODY_BYTES = protocol.BODY.bytes


@dataclass(frozen=True)
class Guarded:
    """A bot behind the gate, and its access key (the key's value None: no key needed; its
    refusal set: every request is refused with it)."""

    bot: fp.PoeBot
    key: Key


class Gate:
    """ASGI middleware: `bots` maps each bot's path to the bot and its key."""

    def __init__(self, app: ASGIApp, bots: Mapping[str, Guarded]) -> None:
        self.app = app
        self.bots = dict(bots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/") or "/"
        if scope["type"] != "http" or scope["method"] != "POST" or path not in self.bots:
            await self.app(scope, receive, send)
            return
        guarded = self.bots[path]
        try:
            _authorize(scope, guarded.key)
            request = protocol.read(await _read_body(receive), guarded.bot.access_key)
        except Refused as refused:
            await _answer(send, refused.status, {"detail": refused.detail})
            return
        if request is protocol.IGNORED:
            await _answer(send, 200, {})  # "The server's response is ignored"
            return
        response = await _handle(guarded.bot, request, Request(scope, receive))
        await response(scope, receive, send)


async def _handle(bot: fp.PoeBot, request: protocol.Request, http: Request) -> Response:
    """The bot's handler for the request, called as fastapi_poe's own route calls it."""
    context = fp.RequestContext(http_request=http)
    if isinstance(request, fp.QueryRequest):
        return EventSourceResponse(bot.handle_query(request, context))
    if isinstance(request, fp.SettingsRequest):
        return await bot.handle_settings(request, context)
    if isinstance(request, fp.ReportFeedbackRequest):
        return await bot.handle_report_feedback(request, context)
    if isinstance(request, fp.ReportReactionRequest):
        return await bot.handle_report_reaction(request, context)
    return await bot.handle_report_error(request, context)


def _authorize(scope: Scope, key: Key) -> None:
    if key.refusal is not None:
        raise Refused(503, key.refusal)  # deployed without its key: never open
    if key.value is None:
        return  # no key configured: any caller is accepted (local development)
    given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, credentials = given.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        credentials.encode(), key.value.encode()
    ):
        raise Refused(
            401, "Invalid access key: send this bot's own key as 'Authorization: Bearer <key>'"
        )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Refused(400, "the request ended before its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise Refused(413, f"the request body is over {MAX_BODY_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, content: dict[str, str]) -> None:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
