"""Poe's rate limit on an API key (500 requests a minute), kept on the caller's side.

A `Throttle` admits at most `limit` requests in any `window` seconds, waiting (in order of
arrival) for the oldest of the last `limit` to leave the window; `ThrottledCaller` puts every
dependency call of a `Caller` through one, so many runs at once never earn a 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import deque
from collections.abc import AsyncGenerator

import fastapi_poe as fp

from bots.errors import UsageError
from bots.run.client import ANYWHERE, Caller, CallSite

POE_API_RATE = (500, 60.0)
"""Requests a minute Poe allows one API key ("500 rpm"; its external-application guide)."""


class Throttle:
    """At most `limit` admissions in any `window` seconds (a sliding window). The window is
    kept a little longer than asked (5%, and 0.1 s): requests admitted a window apart may
    arrive closer together than that, when the first took longer on its way."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window * 1.05 + 0.1
        self._times: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def admit(self) -> None:
        async with self._lock:  # one waiter at a time: admissions keep their order
            loop = asyncio.get_running_loop()
            while True:
                now = loop.time()
                while self._times and self._times[0] <= now - self.window:
                    self._times.popleft()
                if len(self._times) < self.limit:
                    self._times.append(now)
                    return
                await asyncio.sleep(self._times[0] + self.window - now)


def parse_rate(text: str) -> tuple[int, float]:
    """'500/60' (requests per seconds) -> (500, 60.0)."""
    found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*", text)
    if not found or int(found.group(1)) < 1 or float(found.group(2)) <= 0:
        raise UsageError(f"{text!r}: expected REQUESTS/SECONDS, e.g. 500/60")
    return int(found.group(1)), float(found.group(2))


class ThrottledCaller:
    """A `Caller` whose every call first passes the throttle."""

    def __init__(self, caller: Caller, throttle: Throttle) -> None:
        self.caller = caller
        self.throttle = throttle

    async def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]:
        await self.throttle.admit()
        events = self.caller.stream(request, bot, site)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event
