"""The gate in front of the bots: each request is checked before fastapi_poe sees it.

fastapi_poe answers malformed requests with a 500 (or a traceback in the logs), accepts any
bot's key only through its own dependency, and demands an Authorization header even for a bot
served without a key. The gate, a plain ASGI middleware, checks each bot's own key first
(constant-time), lets a keyless local bot be called without a header, then has `protocol` read
the body as Poe's spec asks: what is to be ignored is left out, and every bad request gets a
clear 4xx (or 501 for a request type it does not know) instead of a 500.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bots.errors import Refused
from bots.serve import protocol
from bots.serve.keys import Key

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Poe resends the whole conversation (up to 1,000 messages) every turn: 500 replies of 8,000
CJK characters, escaped as JSON, are about 25 MB; this leaves room beyond that."""


class Gate:
    """ASGI middleware: `keys` maps each bot path to its access key (its value None: no key
    needed; its refusal set: every request is refused with it)."""

    def __init__(self, app: ASGIApp, keys: Mapping[str, Key]) -> None:
        self.app = app
        self.keys = dict(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "").rstrip("/") or "/"
        if scope["type"] != "http" or scope["method"] != "POST" or path not in self.keys:
            await self.app(scope, receive, send)
            return
        try:
            headers = self._authorize(scope, self.keys[path])
            body = protocol.read(await _read_body(receive))
        except Refused as refused:
            await _answer(send, refused.status, {"detail": refused.detail})
            return
        if body is protocol.IGNORED:
            await _answer(send, 200, {})  # "The server's response is ignored"
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)

    @staticmethod
    def _authorize(scope: Scope, key: Key) -> list[tuple[bytes, bytes]]:
        if key.refusal is not None:
            raise Refused(503, key.refusal)  # deployed without its key: never open
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, credentials = given.decode("latin-1").partition(" ")
        if key.value is None:
            credentials = "local"  # no key configured: any caller is accepted (local development)
        elif scheme.lower() != "bearer" or not hmac.compare_digest(
            credentials.encode(), key.value.encode()
        ):
            raise Refused(
                401, "Invalid access key: send this bot's own key as 'Authorization: Bearer <key>'"
            )
        return [*headers, (b"authorization", f"Bearer {credentials}".encode("latin-1"))]


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
