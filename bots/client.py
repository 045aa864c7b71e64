"""The client to dependency bots: one shared HTTP client, one try per call, plain-words failures.

fastapi_poe's `stream_request` retries twice by default and every try is a call Poe counts, so
it is always called with `num_tries=1`: the engine's own `retries` and `fallback` are the only
retries, and each goes through the call guard first.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import AsyncIterator
from typing import Protocol

import fastapi_poe as fp
import httpx
from fastapi_poe.client import BotError, BotErrorNoRetry

log = logging.getLogger(__name__)

POE_BASE_URL = "https://api.poe.com/bot/"

_status: contextvars.ContextVar[list[int]] = contextvars.ContextVar("status")
_reports: contextvars.ContextVar[list[str]] = contextvars.ContextVar("reports")
NO_DONE = "without sending 'done'"


class CallFailed(Exception):
    """One try of a dependency call failed; the message says why in a few words.
    `retry` is False when the bot asked not to be retried (its error had allow_retry false)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class Caller(Protocol):
    """Streams one dependency bot's answer to a request."""

    def stream(self, request: fp.QueryRequest, bot: str) -> AsyncIterator[fp.PartialResponse]: ...


def new_http_client() -> httpx.AsyncClient:
    """The one HTTP client a server shares between all replies (connection reuse)."""

    async def remember_status(response: httpx.Response) -> None:
        box = _status.get(None)
        if box is not None:
            box.append(response.status_code)

    return httpx.AsyncClient(
        timeout=httpx.Timeout(600, connect=10),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
        event_hooks={"response": [remember_status]},
    )


def _on_protocol_error(error: Exception, message: str) -> None:
    """fastapi_poe's report of a misbehaving dependency (it also posts it to the bot)."""
    reports = _reports.get(None)
    if reports is not None:
        reports.append(str(error))
    log.info("dependency call: %s: %s", message.split(" for endpoint ")[0], type(error).__name__)


class PoeCaller:
    """Calls dependency bots through Poe's bot query API (or a stand-in at `base_url`)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str = POE_BASE_URL, api_key: str = ""):
        self.http = http
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key = api_key

    async def stream(self, request: fp.QueryRequest, bot: str) -> AsyncIterator[fp.PartialResponse]:
        statuses: list[int] = []
        reports: list[str] = []
        tokens = _status.set(statuses), _reports.set(reports)
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
        except BotErrorNoRetry as e:
            raise CallFailed(_reason(e, statuses), retry=False) from e
        except BotError as e:
            raise CallFailed(_reason(e, statuses)) from e
        except httpx.HTTPError as e:
            raise CallFailed(_connection_reason(e)) from e
        finally:
            _status.reset(tokens[0])
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


def _reason(error: BotError, statuses: list[int]) -> str:
    """A short reason from what stream_request raised (never its raw payload)."""
    failed = [status for status in statuses if status >= 400]
    if failed:
        words = _HTTP_WORDS.get(failed[-1], "server error" if failed[-1] >= 500 else "refused")
        return f"HTTP {failed[-1]} ({words})"
    text = str(error)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        text = str(data.get("text") or "it sent an error without a message")
    elif isinstance(error.__cause__, httpx.HTTPError):
        text = _connection_reason(error.__cause__)
    elif error.__cause__ is not None:
        text = f"its stream broke ({type(error.__cause__).__name__})"
    return text[:300]


def _connection_reason(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.RemoteProtocolError):
        return "the connection dropped before the answer was complete"
    if isinstance(error, httpx.TimeoutException):
        return "the connection timed out"
    return f"connection failed ({type(error).__name__})"
