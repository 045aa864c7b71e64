"""The client to dependency bots: one shared HTTP client, one try per call, plain-words failures.

fastapi_poe's `stream_request` retries twice by default and every try is a call Poe counts, so
it is always called with `num_tries=1`: the engine's own `retries` and `fallback` are the only
retries, and each goes through the call guard first.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol, cast, get_args

import fastapi_poe as fp
import httpx
from fastapi_poe.client import BotError, BotErrorNoRetry
from fastapi_poe.types import ErrorType

from bots.errors import CallFailed
from bots.spec.reading import json_value

log = logging.getLogger("bots.client")  # the name in the log, as creators grep it

POE_BASE_URL = "https://api.poe.com/bot/"
POE_UPLOAD_URL = "https://www.quora.com/poe_api/"
"""Poe's file upload API, as fastapi_poe's `upload_file` knows it (POE_UPLOAD_URL overrides)."""

_responses: contextvars.ContextVar[list[httpx.Response]] = contextvars.ContextVar("responses")
_reports: contextvars.ContextVar[list[str]] = contextvars.ContextVar("reports")
NO_DONE = "without sending 'done'"
POE_ERROR_TYPES: frozenset[str] = frozenset(get_args(ErrorType))
"""The `error_type`s Poe handles as its own errors (fastapi_poe's list)."""


@dataclass(frozen=True)
class CallSite:
    """The step a call is made for: its id and place (a scripted bot's answers may be keyed by
    them), and whether a later step uses the files of its answer (a simulated bot then makes
    one)."""

    step_id: str | None = None
    path: str = ""
    files_used: bool = False


ANYWHERE = CallSite()
"""A call made for no step in particular (a plain bot in a test, say)."""


class Caller(Protocol):
    """Streams one dependency bot's answer to a request made for `site`."""

    def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]: ...


def new_http_client() -> httpx.AsyncClient:
    """The one HTTP client a server shares between all replies (connection reuse)."""

    async def remember_response(response: httpx.Response) -> None:
        box = _responses.get(None)
        if box is not None:
            box.append(response)

    return httpx.AsyncClient(
        timeout=httpx.Timeout(600, connect=10),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        event_hooks={"response": [remember_response]},
    )


def _on_protocol_error(error: Exception, message: str) -> None:
    """fastapi_poe's report of a misbehaving dependency (it also posts it to the bot)."""
    reports = _reports.get(None)
    if reports is not None:
        reports.append(str(error))
    # `message` holds the event's data, and an error event's JSON the dependency's own words
    # (which may quote the user): neither is logged. The engine logs each failed try.
    text = str(error)
    log.debug(
        "dependency call: %s (%s)",
        "an error event" if text.startswith("{") else text[:200],
        type(error).__name__,
    )


class PoeCaller:
    """Calls dependency bots through Poe's bot query API (or a stand-in at `base_url`)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str = POE_BASE_URL, api_key: str = ""):
        self.http = http
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key = api_key

    async def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]:
        responses: list[httpx.Response] = []
        reports: list[str] = []
        tokens = _responses.set(responses), _reports.set(reports)
        events = fp.stream_request(
            request,
            bot,
            # Poe attributes a server bot's call by its access key (an empty key would also
            # make an illegal "Bearer " header); the terminal chat uses the user's API key.
            self.api_key or request.access_key,
            session=self.http,
            num_tries=1,
            base_url=self.base_url,
            on_error=_on_protocol_error,
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        except BotError as e:
            raise _failure(e, responses) from e
        except httpx.HTTPError as e:
            raise CallFailed(_connection_reason(e)) from e
        finally:
            _responses.reset(tokens[0])
            _reports.reset(tokens[1])
        if any(NO_DONE in report for report in reports):
            raise CallFailed("its stream ended early (no 'done' event), so the answer may be cut")


_HTTP_WORDS = {
    401: "refused the key",
    402: "out of points",
    403: "refused access",
    404: "no such bot",
    429: "rate limited",
}


def http_reason(status: int) -> str:
    """A failed HTTP status in a few words."""
    return _HTTP_WORDS.get(status, "server error" if status >= 500 else "refused")


def _failure(error: BotError, responses: list[httpx.Response]) -> CallFailed:
    """A short reason from what stream_request raised (never its raw payload)."""
    retry = not isinstance(error, BotErrorNoRetry)
    failed = [response for response in responses if response.status_code >= 400]
    if failed:
        status = failed[-1].status_code
        return CallFailed(
            f"HTTP {status} ({http_reason(status)})",
            retry=retry,
            rate_limited=status == 429,
            wait=_wait_asked(failed[-1].headers) if status == 429 else None,
        )
    text = str(error)
    try:
        data = json_value(text)
    except ValueError:
        data = None
    if isinstance(data, dict):  # the bot's own error event
        kind = data.get("error_type")
        error_type = cast(ErrorType, kind) if kind in POE_ERROR_TYPES else None
        said = str(data.get("text") or "")[:300]
        plain = f"it sent an error ({error_type})" if error_type else "it sent an error"
        return CallFailed(
            said or plain,
            retry=retry,  # fastapi_poe raised BotErrorNoRetry for allow_retry false
            error_type=error_type,
            log_reason=plain,
        )
    if isinstance(error.__cause__, httpx.HTTPError):
        text = _connection_reason(error.__cause__)
    elif error.__cause__ is not None:
        text = f"its stream broke ({type(error.__cause__).__name__})"
    return CallFailed(text[:300], retry=retry)


def _wait_asked(headers: httpx.Headers) -> float | None:
    """Seconds a 429 asks to wait: Poe's x-ratelimit-reset-requests ("Time in seconds until
    the rate limit window resets"), else Retry-After; None when neither says."""
    for name in ("x-ratelimit-reset-requests", "retry-after"):
        value = headers.get(name, "").strip().removesuffix("s")
        try:
            seconds = float(value)
        except ValueError:
            continue
        if seconds >= 0 and math.isfinite(seconds):
            return seconds
    return None


def _connection_reason(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.RemoteProtocolError):
        return "the connection dropped before the answer was complete"
    if isinstance(error, httpx.TimeoutException):
        return "the connection timed out"
    return f"connection failed ({type(error).__name__})"


async def poe_balance(http: httpx.AsyncClient, base_url: str, api_key: str) -> int | None:
    """The API key's point balance from Poe's usage API (`GET /usage/current_balance`, at the
    root of the bot API's host); None when Poe does not tell."""
    root = base_url.rstrip("/").removesuffix("/bot")
    try:
        response = await http.get(
            f"{root}/usage/current_balance", headers={"Authorization": f"Bearer {api_key}"}
        )
        value = response.json().get("current_point_balance") if response.is_success else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


async def upload(content: bytes, name: str, api_key: str, base_url: str) -> fp.Attachment:
    """A file uploaded to Poe with a user's API key, for a message's attachments; raises
    CallFailed in one line. One try (fastapi_poe's default retries once). fastapi_poe closes
    the client it is given, so the upload opens its own rather than the shared one."""
    try:
        return await fp.upload_file(
            content, file_name=name, api_key=api_key, num_tries=1, base_url=base_url
        )
    except Exception as e:  # fastapi_poe raises several kinds; the user needs one line
        raise CallFailed(f"uploading {name} to Poe failed ({type(e).__name__})") from e
