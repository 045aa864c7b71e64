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
from fastapi_poe.client import BotError

log = logging.getLogger(__name__)

POE_BASE_URL = "https://api.poe.com/bot/"

_status: contextvars.ContextVar[list[int]] = contextvars.ContextVar("status")


class CallFailed(Exception):
    """One try of a dependency call failed; the message says why in a few words."""


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


def _log_try_error(error: Exception, message: str) -> None:
    log.info("dependency call: %s: %s", message, type(error).__name__)


class PoeCaller:
    """Calls dependency bots through Poe's bot query API (or a stand-in at `base_url`)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str = POE_BASE_URL, api_key: str = ""):
        self.http = http
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.api_key = api_key

    async def stream(self, request: fp.QueryRequest, bot: str) -> AsyncIterator[fp.PartialResponse]:
        statuses: list[int] = []
        token = _status.set(statuses)
        events = fp.stream_request(
            request,
            bot,
            # Poe attributes a server bot's call by its access key (an empty key would also
            # make an illegal "Bearer " header); the terminal chat uses the user's API key.
            self.api_key or request.access_key,
            session=self.http,
            num_tries=1,
            base_url=self.base_url,
            on_error=_log_try_error,
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    yield event
        except BotError as e:
            raise CallFailed(_reason(e, statuses)) from e
        except httpx.HTTPError as e:
            raise CallFailed(f"connection failed ({type(e).__name__})") from e
        finally:
            _status.reset(token)


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
        text = f"connection failed ({type(error.__cause__).__name__})"
    elif error.__cause__ is not None:
        text = f"its stream broke ({type(error.__cause__).__name__})"
    return text[:300]
