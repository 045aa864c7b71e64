"""A stand-in for Poe, on 127.0.0.1, built from real parts, as strict as Poe's published rules.

Poe is not reachable in tests, so `StandIn` plays it: one real uvicorn server serving real
`fastapi_poe` bots (`ScriptedBot`, each scripted by a `Behavior`) at `/bot/<Name>`, behind a
pure ASGI layer (`StandIn.__call__`) that does what Poe does between a server bot and the
bots it calls. Each rule, with where Poe says it:

* "Poe ... will enforce that bots do not access other bots that they did not declare
  beforehand" (settings, `server_bot_dependencies`): it holds each caller's declared
  dependencies (`declare`, `register_caller`, or a POST to `update_settings/<name>/<key>/
  <version>` as fastapi_poe's settings sync does), counts calls per message_id and bot, and
  refuses a call to an undeclared bot, past the declared count, or past 100 calls for one
  message (a 200 SSE stream of one `error` event with `allow_retry: false`, then `done`);
* a server bot's calls are attributed by its access key (`stream_request(request, bot,
  request.access_key)` in Poe's guide): the bearer token must be the key in the body, else
  HTTP 401; an unknown bot gets HTTP 404; settings pushed under a key that is not "an access
  key consisting of 32 ASCII characters" get HTTP 401;
* `metadata`: "This data must be sent when using the API to access other Poe bots": a call
  without Poe's `d-` identifier gets HTTP 400;
* "on 429, back off exponentially", `x-ratelimit-reset-requests` being "Time in seconds
  until the rate limit window resets": a call made before that time gets 429 again, and is
  noted in `too_early`;
* external applications call with a user's API key (`add_api_key`): "500 requests a minute"
  per key (`api_rate`; each request past it gets 429 with `x-ratelimit-reset-requests`, and is
  noted in `rate_refused`), every admitted call costs the key's owner points (`prices`, per
  bot), and `GET /usage/current_balance` tells the key's `current_point_balance`;
* "GET https://api.poe.com/v1/models" lists the public models without a key, as
  `{"object": "list", "data": [...]}`, each with `id`, `owned_by`, `architecture` and
  `pricing` (`catalog`, else one text model per scripted bot); another method gets 405.

It forwards the calls it admits with `Authorization: Bearer standin` (fastapi's HTTPBearer
refuses an empty credential) and tracks every stream in flight, so tests can wait for the
server to be idle and see streams the client abandoned (`closed_early`). Other request types
(`settings`, `report_error`, which fastapi_poe's client posts by itself when a bot misbehaves,
...) pass through uncounted.

In front of a server bot under test, `poe_query` and `PoeChat` play Poe: bodies with Poe-shaped
identifiers, JSON escaped as Python writes it, the whole conversation every turn with each bot
message's metadata, and (`unusual`) the messages Poe's spec tells bots to ignore. Every reply is
read by `Reply`, which fails one that breaks Poe's rules (its docstring lists them);
`read_events` does the same for events made in-process, and `serve_app` serves an app.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import logging
import mimetypes
import random
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import fastapi_poe as fp
import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from standin.serving import serve_app

PROTOCOL_VERSION = "1.2"
BOT_PREFIX = "/bot/"
MODELS_PATH = "/v1/models"
UPLOAD_PATH = "/poe_api/file_upload_3RD_PARTY_POST"  # where fastapi_poe's upload_file posts
UPLOADED_PREFIX = "/uploaded/"  # where the stand-in serves the files uploaded to it
MESSAGE_CALL_LIMIT = 100
API_RATE = (500, 60.0)  # an API key's requests per minute
REPLY_CHAR_LIMIT = 100_000
REPLY_EVENT_LIMIT = 10_000
ACCESS_KEY = re.compile(r"^[\x21-\x7e]{32}$")  # a bot's access key: 32 ASCII characters
IDENTIFIER = re.compile(r"^[a-z]{1,3}-[a-z0-9=]{32}$")  # Poe's identifiers: m-, u-, c-, d-...
INLINE_REF = re.compile(r"!\[[^\]]*\]\[([^\]\s]+)\]")  # ![title][inline_ref]


@dataclass
class Behavior:
    """How one dependency bot answers (it may be swapped on a running `ScriptedBot`).

    `*_at` fields count tokens already sent; with neither `text` nor `tokens` the bot echoes."""

    text: str | None = None  # streamed as whitespace-keeping tokens
    tokens: int | None = None  # instead of text: "t0 ", "t1 ", ...
    first_token_delay: float = 0.0  # seconds
    token_gap: float = 0.0  # seconds between tokens
    replace_at: int | None = None  # then a replace_response with replace_text, and the rest
    replace_text: str = ""
    error_at: int | None = None  # then an error event, and done
    error_text: str = "boom"
    allow_retry: bool = True
    error_type: str | None = None  # sent with the error event (one of Poe's error types)
    hang_at: int | None = None  # then wait forever (until cancelled)
    hang_after: int | None = None  # calls past the first N per message_id wait forever
    http_status: int | None = None  # the call is answered with this status, no stream
    http_status_first: int | None = None  # only the first N calls per message_id get it
    headers: dict[str, str] = field(default_factory=dict)  # sent with http_status
    fail_first: int = 0  # the first N calls per message_id answer an error event
    fail_rate: float = 0.0  # the chance that a call answers an error event (load tests)
    attachment: tuple[str, str, str] | None = None  # (url, content_type, name), after the text
    attachment_at: int | None = None  # instead: the file before token N
    inline_ref: str | None = None  # the file's inline_ref (text shows it as ![title][ref])
    suggested_replies: list[str] = field(default_factory=list)
    echo: bool = False  # the reply is `echo_text`: JSON describing what the bot received
    reply: Callable[[fp.QueryRequest], str] | None = None  # the reply text, made from the query
    # A reply no fastapi_poe bot would send, written by the stand-in itself: "cut" (the
    # connection drops mid-stream), "bad_json" (an event whose data is not JSON),
    # "unknown_event" (an event type the protocol lacks, then a normal reply), "no_done" (the
    # stream ends without its `done` event).
    raw: Literal["cut", "bad_json", "unknown_event", "no_done"] | None = None


@dataclass
class Refusal:
    """A query the stand-in refused, as Poe would."""

    message_id: str
    bot: str
    access_key: str
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)  # e.g. a 429's wait


def chunks(text: str) -> list[str]:
    """Splits text into tokens that keep their whitespace ("a b" -> ["a ", "b"])."""
    return re.findall(r"\S+\s*|\s+", text)


def echo_text(name: str, request: fp.QueryRequest) -> str:
    """A JSON description of what bot `name` received (the reply of an echoing bot)."""
    last = request.query[-1] if request.query else None
    system = next((m.content for m in request.query if m.role == "system"), None)
    return json.dumps(
        {
            "bot": name,
            "last": last.content if last else None,
            "system": system,
            "messages": len(request.query),
            "roles": [m.role for m in request.query],
            "parameters": last.parameters if last else {},
            "attachments": [a.name for a in last.attachments] if last else [],
            "history": [[m.role, m.content] for m in request.query],
        }
    )


class ScriptedBot(fp.PoeBot):
    """A fastapi_poe bot at /bot/<name> that answers as its `Behavior` says."""

    def __init__(self, name: str, behavior: Behavior, reports: list[dict[str, Any]]) -> None:
        # Attachments are not turned into extra messages: echo what was sent, as sent.
        super().__init__(BOT_PREFIX + name, None, should_insert_attachment_messages=False)
        self.name, self.behavior, self.reports = name, behavior, reports
        self.served: Counter[str] = Counter()  # message_id -> queries answered

    def reply_tokens(self, request: fp.QueryRequest) -> list[str]:
        b = self.behavior
        if b.reply is not None:
            return chunks(b.reply(request))
        if b.echo or (b.text is None and b.tokens is None):
            text = echo_text(self.name, request)
            size = -(-len(text) // 4)
            return [text[i : i + size] for i in range(0, len(text), size)]  # four pieces
        if b.tokens is not None:
            return [f"t{i} " for i in range(b.tokens)]
        return chunks(b.text or "")

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        b = self.behavior
        self.served[request.message_id] += 1
        number = self.served[request.message_id]  # this call's, before any other arrives
        if b.fail_rate and random.random() < b.fail_rate:
            yield fp.ErrorResponse(text=f"{self.name} failed at random")
            return
        if self.served[request.message_id] <= b.fail_first:
            tries = self.served[request.message_id]
            yield fp.ErrorResponse(text=f"{self.name} failed on purpose (try {tries})")
            return
        await asyncio.sleep(b.first_token_delay)
        if b.hang_after is not None and number > b.hang_after:
            await asyncio.Event().wait()
        tokens = self.reply_tokens(request)
        file = None
        if b.attachment is not None:
            url, content_type, name = b.attachment
            file = fp.PartialResponse(
                text="",
                attachment=fp.Attachment(
                    url=url, content_type=content_type, name=name, inline_ref=b.inline_ref
                ),
            )
        for i in range(len(tokens) + 1):
            if file is not None and i == b.attachment_at:
                yield file
            if i == b.replace_at:
                yield fp.PartialResponse(text=b.replace_text, is_replace_response=True)
            if i == b.error_at:
                yield fp.ErrorResponse(
                    text=b.error_text,
                    allow_retry=b.allow_retry,
                    error_type=b.error_type,  # type: ignore[arg-type]
                )
                return
            if i == b.hang_at:
                await asyncio.Event().wait()
            if i == len(tokens):
                break
            if i and b.token_gap:
                await asyncio.sleep(b.token_gap)
            yield fp.PartialResponse(text=tokens[i])
        if file is not None and b.attachment_at is None:
            yield file
        for suggestion in b.suggested_replies:
            yield fp.PartialResponse(text=suggestion, is_suggested_reply=True)

    async def on_error(self, error_request: fp.ReportErrorRequest) -> None:
        self.reports.append({"bot": self.name, **error_request.model_dump()})


class StandIn:
    """Poe's bot query API in front of scripted bots; `async with StandIn({...}) as s:`."""

    def __init__(
        self, behaviors: Mapping[str, Behavior], *, message_call_limit: int = MESSAGE_CALL_LIMIT
    ) -> None:
        self.message_call_limit = message_call_limit
        self.allow_any_caller = False
        self.dependencies: dict[str, dict[str, int]] = {}  # access_key -> bot -> count
        self.callers: dict[str, str] = {}  # access_key -> caller name (for messages)
        self.requests: list[dict[str, Any]] = []  # every query body, plus "bot"
        self.calls: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.attempts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.refused: list[Refusal] = []
        self.rate_limited_until: dict[str, float] = {}  # caller key -> when it may call again
        self.too_early: list[tuple[str, str, float]] = []  # (message, bot, seconds too early)
        self.reports: list[dict[str, Any]] = []  # report_error posts the bots received
        self.settings_updates: list[dict[str, Any]] = []
        self.api_rate = API_RATE
        self.balances: dict[str, int] = {}  # API key -> its owner's points
        self.prices: dict[str, int] = {}  # bot -> points one call costs (default 1)
        self.catalog: list[dict[str, Any]] | None = None  # GET /v1/models' data, when set
        self.uploads: dict[str, tuple[str, bytes]] = {}  # number -> (file name, its bytes)
        self.api_requests: defaultdict[str, deque[float]] = defaultdict(deque)  # key -> times
        self.rate_refused = 0  # requests refused for passing `api_rate`
        self.open_streams = self.max_open_streams = self.closed_early = 0
        self._idle = asyncio.Event()
        self._idle.set()
        bots = [ScriptedBot(name, b, self.reports) for name, b in behaviors.items()]
        self.bots = {bot.name: bot for bot in bots}
        self.app = _quiet_make_app(bots)
        self.base_url = ""
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> StandIn:
        url = await self._stack.enter_async_context(serve_app(self, lifespan="off"))
        self.base_url = url + BOT_PREFIX
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    def add_api_key(self, key: str, points: int = 1_000_000) -> None:
        """A user's API key (an external application's calls), with the user's points."""
        self.balances[key] = points

    def _over_api_rate(self, key: str) -> float | None:
        """Counts one request of an API key; the seconds until its window has room again if
        it is over Poe's rate, else None."""
        limit, window = self.api_rate
        times, now = self.api_requests[key], time.monotonic()
        while times and times[0] <= now - window:
            times.popleft()
        if len(times) >= limit:
            self.rate_refused += 1
            return times[0] + window - now
        times.append(now)
        return None

    def declare(self, access_key: str, dependencies: Mapping[str, int], caller: str = "") -> None:
        """Declares the bots (and how many calls each) the caller with this key may make."""
        self.dependencies[access_key] = dict(dependencies)
        self.callers[access_key] = caller or f"{access_key[:4]}…"

    async def register_caller(
        self, settings_url: str, access_key: str, caller: str = ""
    ) -> dict[str, int]:
        """Asks a server bot for its settings and declares its `server_bot_dependencies`."""
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.post(
                settings_url,
                json={"version": PROTOCOL_VERSION, "type": "settings"},
                headers={"Authorization": f"Bearer {access_key}"},
            )
        response.raise_for_status()
        dependencies = dict(response.json().get("server_bot_dependencies") or {})
        self.declare(access_key, dependencies, caller)
        return dependencies

    def total_calls(self, message_id: str) -> int:
        """Calls admitted for one message_id, all bots together."""
        return sum(self.calls[message_id].values())

    async def wait_until_idle(self, timeout: float = 5) -> None:  # noqa: ASYNC109 (bounded wait)
        """Returns once no query response is in flight; TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    # The ASGI layer playing Poe.

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path == "/usage/current_balance":
            await self._balance(scope, send)
            return
        if scope["type"] == "http" and path == MODELS_PATH:
            await self._models(scope, send)
            return
        if scope["type"] == "http" and path == UPLOAD_PATH and scope["method"] == "POST":
            await self._upload(scope, receive, send)
            return
        if scope["type"] == "http" and path.startswith(UPLOADED_PREFIX):
            await self._uploaded(path[len(UPLOADED_PREFIX) :], send)
            return
        if scope["type"] != "http" or scope["method"] != "POST" or not path.startswith(BOT_PREFIX):
            await self.app(scope, receive, send)
            return
        name, body = path[len(BOT_PREFIX) :], await _read_body(receive)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            await _send_json(send, 400, {"detail": "The body is not a JSON object"})
            return
        if name.startswith("update_settings/"):
            await self._update_settings(name, payload, send)
            return
        caller_headers = scope["headers"]
        scope = {**scope, "headers": _with_standin_auth(scope["headers"])}
        if payload.get("type") != "query":  # settings, report_error, ...: not calls
            if name in self.bots:
                await self.app(scope, _replay(body, receive), send)
            else:
                await _send_json(send, 404, {"detail": f"Bot {name} does not exist"})
            return
        self.requests.append({**payload, "bot": name})
        refusal = self._admit(name, payload, _bearer(caller_headers))
        behavior = self.bots[name].behavior if name in self.bots else Behavior()
        first = behavior.http_status_first
        message_id = str(payload.get("message_id", ""))
        if refusal is not None:
            await self._refuse(refusal, send)
        elif behavior.http_status is not None and (
            first is None or self.attempts[message_id][name] <= first
        ):
            status, headers = behavior.http_status, behavior.headers
            if status == 429:
                self._rate_limit(str(payload.get("access_key", "")), headers)
            detail = {"detail": f"Bot {name} answered HTTP {status}"}
            await _send_raw(send, status, "application/json", json.dumps(detail).encode(), headers)
        elif (raw := self.bots[name].behavior.raw) is not None:
            await self._stream(scope, _replay(body, receive), send, _raw_reply(raw))
        else:
            await self._stream(scope, _replay(body, receive), send)

    def _admit(self, name: str, payload: dict[str, Any], bearer: str) -> Refusal | None:
        """Counts one query as Poe would: an attempt, and a call unless refused."""
        message_id, key = str(payload.get("message_id", "")), str(payload.get("access_key", ""))
        self.attempts[message_id][name] += 1

        def refuse(status: int, text: str, wait: float | None = None) -> Refusal:
            headers = {"x-ratelimit-reset-requests": f"{wait:.3f}"} if wait is not None else {}
            return Refusal(message_id, name, key, status, text, headers)

        # "On 429, back off": a call before the time Poe's headers gave is refused again.
        until = self.rate_limited_until.get(key or bearer)
        if until is not None and time.monotonic() < until:
            wait = until - time.monotonic()
            self.too_early.append((message_id, name, wait))
            return refuse(429, "Too many requests: wait as x-ratelimit-reset-requests says", wait)
        if bearer in self.balances:  # a user's API key: "500 requests a minute"
            wait = self._over_api_rate(bearer)
            if wait is not None:
                self.rate_limited_until[bearer] = time.monotonic() + wait
                text = f"Too many requests: {self.api_rate[0]} a minute per key"
                return refuse(429, text, wait)
        if name not in self.bots:
            return refuse(404, f"Bot {name} does not exist")
        if bearer in self.balances:
            self.balances[bearer] -= self.prices.get(name, 1)
        elif not self.allow_any_caller:
            # Poe attributes a server bot's call by its access key, sent as the bearer token
            if key not in self.dependencies or bearer != key:
                return refuse(401, "Invalid access key: unknown to the stand-in")
            # "metadata ... must be sent when using the API to access other Poe bots"
            if not IDENTIFIER.match(str(payload.get("metadata", ""))):
                return refuse(400, "The query lacks Poe's metadata (a d- identifier)")
            hint, declared = self.callers[key], self.dependencies[key].get(name, 0)
            limit = self.message_call_limit
            if declared <= 0:
                text = f"Bot {hint} called on bot that has 0 or undefined call count in settings"
                return refuse(200, text)
            if self.calls[message_id][name] >= declared:
                text = f"Bot {hint} called bot {name} more than the {declared} time(s) declared"
                return refuse(200, text + " in its settings for one message")
            if self.total_calls(message_id) >= limit:
                return refuse(200, f"Bot {hint} went past {limit} bot calls for one message")
        self.calls[message_id][name] += 1
        return None

    def _rate_limit(self, key: str, headers: Mapping[str, str]) -> None:
        """Remembers a 429 sent to this caller with the wait its headers gave."""
        reset = headers.get("x-ratelimit-reset-requests")
        if reset is not None:
            self.rate_limited_until[key] = time.monotonic() + float(reset)

    async def _balance(self, scope: Scope, send: Send) -> None:
        """Poe's usage API: the API key's point balance (401 for an unknown key)."""
        key = _bearer(scope["headers"])
        if key not in self.balances:
            await _send_json(send, 401, {"detail": "Invalid API key"})
        elif self._over_api_rate(key) is not None:
            await _send_json(send, 429, {"detail": "Too many requests"})
        else:
            await _send_json(send, 200, {"current_point_balance": self.balances[key]})

    @property
    def upload_url(self) -> str:
        """The base URL of Poe's file upload API, as fastapi_poe's `upload_file` takes it."""
        return self.base_url.removesuffix(BOT_PREFIX) + UPLOAD_PATH.rsplit("/", 1)[0] + "/"

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Poe's file upload API: a multipart `file` from a user's API key (sent as the bare
        Authorization header, as fastapi_poe sends it); answers where the file now is."""
        headers = dict(scope["headers"])
        key = headers.get(b"authorization", b"").decode("latin-1")
        if key not in self.balances:
            await _send_json(send, 401, {"detail": "Invalid API key"})
            return
        kind = headers.get(b"content-type", b"")
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + kind + b"\r\n\r\n" + await _read_body(receive)
        )
        parts = (
            [
                p
                for p in form.iter_parts()
                if p.get_param("name", header="content-disposition") == "file"
            ]
            if form.is_multipart()
            else []
        )
        if len(parts) != 1 or not parts[0].get_filename():
            await _send_json(send, 400, {"detail": "Expected one multipart field 'file'"})
            return
        name = parts[0].get_filename() or "file"
        content = parts[0].get_payload(decode=True)
        assert isinstance(content, bytes)
        number = f"{len(self.uploads)}"
        self.uploads[number] = (name, content)
        root = self.base_url.removesuffix(BOT_PREFIX)
        kind_of = mimetypes.guess_type(name)[0] or "application/octet-stream"
        await _send_json(
            send,
            200,
            {"attachment_url": f"{root}{UPLOADED_PREFIX}{number}/{name}", "mime_type": kind_of},
        )

    async def _uploaded(self, rest: str, send: Send) -> None:
        number, _, name = rest.partition("/")
        found = self.uploads.get(number)
        if found is None or found[0] != name:
            await _send_json(send, 404, {"detail": "No such file"})
            return
        kind = (mimetypes.guess_type(name)[0] or "application/octet-stream").encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", kind)]}
        )
        await send({"type": "http.response.body", "body": found[1]})

    @property
    def models_url(self) -> str:
        """Where the stand-in serves Poe's model catalog."""
        return self.base_url.removesuffix(BOT_PREFIX) + MODELS_PATH

    async def _models(self, scope: Scope, send: Send) -> None:
        """Poe's model catalog (`GET /v1/models`, no key): `catalog` if set, else one
        text-to-text entry per scripted bot, in the shape Poe's API reference gives."""
        if scope["method"] != "GET":
            await _send_json(send, 405, {"detail": "Method Not Allowed"})
            return
        default = [
            {
                "id": name,
                "object": "model",
                "created": 1_750_000_000_000,
                "owned_by": "standin",
                "description": f"the stand-in's scripted bot {name}",
                "architecture": {"input_modalities": ["text"], "output_modalities": ["text"]},
                "pricing": None,
            }
            for name in self.bots
        ]
        data = self.catalog if self.catalog is not None else default
        await _send_json(send, 200, {"object": "list", "data": data})

    async def _refuse(self, refusal: Refusal, send: Send) -> None:
        """Answers as Poe does: HTTP 401/404/429 with a JSON body, or one error event then
        done."""
        self.refused.append(refusal)
        if refusal.status != 200:
            body = json.dumps({"detail": refusal.text}).encode()
            await _send_raw(send, refusal.status, "application/json", body, refusal.headers)
            return
        error = json.dumps({"allow_retry": False, "text": refusal.text})
        body = f"event: error\r\ndata: {error}\r\n\r\nevent: done\r\ndata: {{}}\r\n\r\n"
        await _send_raw(send, 200, "text/event-stream; charset=utf-8", body.encode())

    async def _update_settings(self, name: str, payload: dict[str, Any], send: Send) -> None:
        parts = name.split("/")
        if len(parts) != 4:
            await _send_json(send, 404, {"detail": "Use update_settings/<bot>/<key>/<version>"})
            return
        _, bot, key, _version = parts
        # "an access key consisting of 32 ASCII characters"
        if not ACCESS_KEY.match(key):
            await _send_json(send, 401, {"detail": "Invalid access key"})
            return
        self.settings_updates.append({"bot": bot, "access_key": key, "settings": payload})
        self.declare(key, payload.get("server_bot_dependencies") or {}, bot)
        await _send_json(send, 200, {"status": "ok"})

    async def _stream(
        self, scope: Scope, receive: Receive, send: Send, app: ASGIApp | None = None
    ) -> None:
        """Forwards one admitted query (to `app`, default the bots) and tracks its stream
        until the ASGI call ends."""
        complete = disconnected = False

        async def tracked_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                disconnected = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True

        self.open_streams += 1
        self.max_open_streams = max(self.max_open_streams, self.open_streams)
        self._idle.clear()
        try:
            await (app or self.app)(scope, tracked_receive, tracked_send)
        finally:
            self.open_streams -= 1
            if disconnected or not complete:
                self.closed_early += 1
            if self.open_streams == 0:
                self._idle.set()


def _quiet_make_app(bots: list[ScriptedBot]) -> ASGIApp:
    """make_app, without its warning (once per bot) that it will not sync settings."""
    fp_logger = logging.getLogger("uvicorn.default")
    level = fp_logger.level
    fp_logger.setLevel(logging.ERROR)
    try:
        return fp.make_app(bots, allow_without_key=True)
    finally:
        fp_logger.setLevel(level)


def _raw_reply(kind: str) -> ASGIApp:
    """An SSE reply that breaks the protocol in the way `kind` names."""
    text = 'event: text\r\ndata: {"text": "partial "}\r\n\r\n'
    done = "event: done\r\ndata: {}\r\n\r\n"
    events = {
        "cut": [text],
        "bad_json": [text, "event: text\r\ndata: {not json\r\n\r\n", done],
        "unknown_event": ["event: sparkle\r\ndata: {}\r\n\r\n", text, done],
        "no_done": [text],
    }[kind]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for event in events:
            await send({"type": "http.response.body", "body": event.encode(), "more_body": True})
        if kind != "cut":  # "cut" returns with the body unfinished: uvicorn drops the connection
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body first, then the real messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _with_standin_auth(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != b"authorization"]
    return [*kept, (b"authorization", b"Bearer standin")]


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> str:
    value = next((v for k, v in headers if k.lower() == b"authorization"), b"").decode("latin-1")
    scheme, _, credentials = value.partition(" ")
    return credentials if scheme.lower() == "bearer" else ""


async def _send_raw(
    send: Send, status: int, content_type: str, body: bytes, extra: Mapping[str, str] = {}
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, obj: object) -> None:
    await _send_raw(send, status, "application/json", json.dumps(obj).encode())


# Playing Poe in front of a server bot under test.
