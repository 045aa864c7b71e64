"""Playing Poe in front of a server bot under test: Poe-shaped query bodies, whole
conversations turn after turn, and every reply read as Poe reads it, failing one that breaks
Poe's rules (`Reply`'s docstring lists them)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp
import httpx
import httpx_sse
from starlette.requests import Request

from standin.poe import INLINE_REF, PROTOCOL_VERSION, REPLY_CHAR_LIMIT, REPLY_EVENT_LIMIT


class ProtocolViolation(AssertionError):
    """A server bot's reply broke a rule of Poe's protocol (the message lists every one)."""


@dataclass
class Reply:
    """What Poe would have seen of one reply of a server bot, checked as Poe checks it.

    Each rule it enforces, with where Poe says it (the Poe Protocol Specification, "Limits"
    and the `query` response):
    - "The total length of a bot response (the sum of the length of all `text` events) may
      not exceed 100,000 characters": `replace_response` text is charged too (Poe does not
      say it is free), in UTF-16 code units (the larger count);
    - at most 10,000 events in a reply;
    - "The bot response must include at least one `text` or `error` event";
    - "`done`: must be the last event in the stream";
    - a `file` comes before any text that shows it inline (`![title][inline_ref]`), as
      fastapi_poe orders them "to ensure responses with inline_ref are sent after attachment
      is made";
    - the event data is JSON.
    Poe's deadlines (first event within 5 s, done within 600 s) are measured
    (`first_event_at`, `done_at`), not enforced: tests make no timing assertions.
    """

    status: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    text: str = ""
    files: list[dict[str, Any]] = field(default_factory=list)
    suggested: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    done: bool = False
    body: Any = None  # the parsed JSON (or text) of a reply that is not an SSE stream
    bytes_received: int = 0
    first_event_at: float | None = None
    done_at: float | None = None
    chars: int = 0  # characters charged: every text and replace_response event's text
    violations: list[str] = field(default_factory=list)
    _file_refs: dict[str, int] = field(default_factory=dict)  # inline_ref -> its file's event
    _text_refs: dict[str, int] = field(default_factory=dict)  # reference -> first event using it

    @property
    def metadata(self) -> str | None:
        """The reply's metadata as Poe keeps it: the last `data` event's."""
        return self.data[-1] if self.data else None

    def apply(self, name: str, data: dict[str, Any]) -> None:
        """Updates the reply as Poe's display would with one event, checking the rules."""
        index = len(self.events)
        if self.done:
            self.violations.append(f"event {index} ({name}) came after 'done'")
        self.events.append((name, data))
        if len(self.events) == REPLY_EVENT_LIMIT + 1:
            self.violations.append(f"more than {REPLY_EVENT_LIMIT:,} events in one reply")
        if "invalid" in data:
            self.violations.append(f"event {index} ({name}) has data that is not JSON")
        text = str(data.get("text", ""))
        if name in ("text", "replace_response"):
            before, self.chars = self.chars, self.chars + len(text.encode("utf-16-le")) // 2
            if before <= REPLY_CHAR_LIMIT < self.chars:
                self.violations.append(
                    f"the reply's text and replace_response events add up to over "
                    f"{REPLY_CHAR_LIMIT:,} characters (at event {index})"
                )
            self.text = self.text + text if name == "text" else text
            scanned = self.text[-(len(text) + 200) :] if name == "text" else self.text
            for ref in INLINE_REF.findall(scanned):
                self._text_refs.setdefault(ref, index)
        elif name == "suggested_reply":
            self.suggested.append(text)
        elif name == "file":
            self.files.append(data)
            ref = data.get("inline_ref")
            if isinstance(ref, str) and ref:
                self._file_refs.setdefault(ref, index)
                if ref in self._text_refs:
                    self.violations.append(
                        f"text showed inline_ref {ref!r} (event {self._text_refs[ref]}) "
                        f"before its file arrived (event {index})"
                    )
        elif name == "error":
            self.errors.append(data)
        elif name == "data":
            self.data.append(str(data.get("metadata", "")))
        elif name == "done":
            self.done = True
            if not any(kind in ("text", "error") for kind, _ in self.events):
                self.violations.append("the reply has neither a text nor an error event")

    def end(self) -> None:
        """The stream closed: a reply without 'done' is incomplete."""
        if not self.done:
            self.violations.append("the stream ended without a 'done' event")


async def poe_query(
    client: httpx.AsyncClient,
    url: str,
    access_key: str | None,
    text_or_messages: str | Sequence[Mapping[str, Any] | fp.ProtocolMessage],
    *,
    strict: bool = True,
    **options: Any,
) -> Reply:
    """POSTs a Poe query (Bearer `access_key`) to a server bot and reads its SSE reply;
    `options` are those of `query_body`. A reply that breaks Poe's rules raises
    ProtocolViolation, unless `strict` is false (then see `reply.violations`)."""
    body = query_body(text_or_messages, **options)
    headers = {"Authorization": f"Bearer {access_key}"} if access_key is not None else {}
    # JSON as Python writes it by default: non-ASCII escaped, the larger of the encodings Poe
    # may use (a CJK character takes 6 bytes)
    headers["Content-Type"] = "application/json"
    content = json.dumps(body).encode()
    start = time.perf_counter()
    async with httpx_sse.aconnect_sse(
        client, "POST", url, content=content, headers=headers
    ) as source:
        response = source.response
        reply = Reply(status=response.status_code)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            await response.aread()
            try:
                reply.body = response.json()
            except ValueError:
                reply.body = response.text
        else:
            async for event in source.aiter_sse():
                if reply.first_event_at is None:
                    reply.first_event_at = time.perf_counter() - start
                reply.apply(event.event, _event_data(event.data))
                if event.event == "done":
                    reply.done_at = time.perf_counter() - start
            reply.end()
        reply.bytes_received = response.num_bytes_downloaded
    if strict and reply.violations:
        raise ProtocolViolation("; ".join(reply.violations))
    return reply


UNUSUAL_MESSAGES: list[dict[str, Any]] = [
    # "More roles may be added in the future. Bot servers should ignore messages with roles
    # they do not recognize."
    {"role": "narrator", "content": "A new kind of message.", "content_type": "text/markdown"},
    # "Bots should ignore messages with content types they do not understand."
    {"role": "user", "content": "<b>rich</b>", "content_type": "text/html"},
    # feedback of a type Poe may add, feedback without its optional reason, a reaction without
    # user_id, and null where a list is expected
    {
        "role": "user",
        "content": "an ordinary message with odd extras",
        "content_type": "text/markdown",
        "attachments": None,
        "feedback": [{"type": "love"}, {"type": "like"}],
        "reactions": [{"reaction": "+1"}],
    },
]


class PoeChat:
    """Plays Poe for one conversation with a server bot: every turn sends the whole history,
    each earlier bot message carrying the metadata its reply sent (the last `data` event),
    as Poe does. With `unusual`, each turn also adds the kinds of messages Poe's spec tells
    bots to ignore or tolerate (`UNUSUAL_MESSAGES`) to the history."""

    def __init__(
        self, http: httpx.AsyncClient, url: str, key: str | None, *, unusual: bool = False
    ) -> None:
        self.http, self.url, self.key, self.unusual = http, url, key, unusual
        self.history: list[dict[str, Any]] = []
        self.conversation_id = identifier("c")

    async def say(self, text: str, **options: Any) -> Reply:
        message = {"role": "user", "content": text, "content_type": "text/markdown"}
        message["message_id"] = identifier("m")
        reply = await poe_query(
            self.http,
            self.url,
            self.key,
            [*self.history, message],
            conversation_id=self.conversation_id,
            **options,
        )
        if self.unusual:
            self.history += UNUSUAL_MESSAGES
        self.history += [
            message,
            {
                "role": "bot",
                "content": reply.text,
                "content_type": "text/markdown",
                "metadata": reply.metadata,
                "message_id": identifier("m"),
            },
        ]
        return reply


class _Relay(fp.PoeBot):
    """A fastapi_poe bot that sends the events it is given (to read them as Poe would)."""

    def __init__(self, events: AsyncIterable[fp.PartialResponse | fp.DataResponse]) -> None:
        super().__init__(path="/relay", access_key=None, should_insert_attachment_messages=False)
        self.events = events

    async def get_response(
        self, request: fp.QueryRequest
    ) -> AsyncIterable[fp.PartialResponse | fp.DataResponse]:
        async for event in self.events:
            yield event


async def read_events(
    events: AsyncIterable[fp.PartialResponse | fp.DataResponse],
    *,
    into: Reply | None = None,
    strict: bool = True,
) -> Reply:
    """Reads a server bot's events as Poe would, without HTTP: fastapi_poe turns them into
    the server-sent events it would send, and `Reply` (`into`, or a new one) checks them."""
    request = fp.QueryRequest.model_validate(query_body("relay"))
    http_request = Request({"type": "http", "method": "POST", "path": "/relay", "headers": []})
    reply = into or Reply(status=200)
    async for sse in _Relay(events).handle_query(
        request, fp.RequestContext(http_request=http_request)
    ):
        reply.apply(str(sse.event), _event_data(str(sse.data)))
    reply.end()
    if strict and reply.violations:
        raise ProtocolViolation("; ".join(reply.violations))
    return reply


def identifier(tag: str) -> str:
    """A fresh Poe identifier: a tag, a hyphen, 32 lowercase letters and digits."""
    return f"{tag}-{uuid.uuid4().hex}"


def query_body(
    text_or_messages: str | Sequence[Mapping[str, Any] | fp.ProtocolMessage],
    *,
    message_id: str | None = None,
    user_id: str = "u-" + "1" * 32,
    conversation_id: str = "c-" + "1" * 32,
    parameters: Mapping[str, Any] | None = None,
    attachments: Sequence[Mapping[str, Any] | fp.Attachment] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of a Poe `query` request, with Poe-shaped identifiers (message_id and
    Poe's own `metadata` are fresh for each query).

    A string is one user message; parameters and attachments go on the last message."""
    if isinstance(text_or_messages, str):
        text_or_messages = [{"role": "user", "content": text_or_messages}]
    messages = [
        m.model_dump() if isinstance(m, fp.ProtocolMessage) else {**m} for m in text_or_messages
    ]
    for m in messages:
        m.setdefault("content_type", "text/markdown")
    if parameters is not None:
        messages[-1]["parameters"] = dict(parameters)
    if attachments is not None:
        messages[-1]["attachments"] = [
            a.model_dump() if isinstance(a, fp.Attachment) else dict(a) for a in attachments
        ]
    return {
        "version": PROTOCOL_VERSION,
        "type": "query",
        "query": messages,
        "user_id": user_id,
        "conversation_id": conversation_id,
        "message_id": message_id or identifier("m"),
        "metadata": identifier("d"),
        **(extra or {}),
    }


def _event_data(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw or "{}")
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"invalid": raw}  # Poe would report_error
