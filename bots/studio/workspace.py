"""The pipelines file the studio serves, watched: every save is loaded again; a valid version
replaces the bots at once, an invalid one is reported (every problem at FILE:LINE:COL) while
the last valid version keeps serving.

Each valid version is served by the same app `serve` runs (`build_app`), its lifespan entered
here. A reply in flight keeps the version it started with: the old app's lifespan holds
nothing a running reply still needs (the dependency calls go through the studio's caller).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from bots.errors import ConfigError, Problem
from bots.run.client import Caller
from bots.run.engine import Run
from bots.serve.server import build_app
from bots.spec import catalog, loader

log = logging.getLogger("bots.studio")

POLL_SECONDS = 0.05
"""How often the file's size and time are looked at: a save is seen within about this."""
REREAD_SECONDS = 1.0
"""How often the file is read even when its size and time are the same."""


@dataclass(frozen=True)
class Version:
    """One valid version of the file, and the app serving its bots."""

    number: int
    config: loader.Config
    app: FastAPI


class Workspace:
    """The file, its last valid version (served), and the problems of the version on disk."""

    def __init__(self, path: Path, caller: Caller, on_run: Callable[[Run], None]) -> None:
        self.path = path
        self.caller = caller
        self.on_run = on_run
        self.serving: Version | None = None
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []  # what Poe's model catalog doubts (as validate says)
        self.changes = 0  # every change seen, valid or not: what the page waits on
        self._changed = asyncio.Event()
        self._seen: bytes | None = None
        self._stat: tuple[int, ...] | None = None
        self._read_at = 0.0
        self._lifespan: contextlib.AsyncExitStack | None = None

    async def __aenter__(self) -> Workspace:
        await self.look()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._lifespan is not None:
            await self._lifespan.aclose()

    async def look(self) -> bool:
        """Loads the file again if it changed since last seen; True when it did. The file is
        read when its size, time or inode changed, and once a second in any case (a save within
        the same clock tick, of the same size, is still seen)."""
        try:
            found = self.path.stat()
            stat: tuple[int, ...] = (found.st_mtime_ns, found.st_size, found.st_ino)
        except OSError:
            stat = ()
        now = time.monotonic()
        if stat == self._stat and now - self._read_at < REREAD_SECONDS:
            return False
        self._stat, self._read_at = stat, now
        try:
            text = self.path.read_bytes()
        except OSError:
            text = b""
        digest = hashlib.sha256(text).digest()
        if digest == self._seen:
            return False
        self._seen = digest
        await self._load()
        return True

    async def watch(self) -> None:
        """Looks at the file every POLL_SECONDS, for ever (cancel to stop)."""
        while True:
            await asyncio.sleep(POLL_SECONDS)
            await self.look()

    async def changed_after(self, seen: int, wait: float) -> int:
        """Waits until there was a change after number `seen` (or `wait` s); the number."""
        if self.changes == seen:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._changed.wait()
        return self.changes

    async def _load(self) -> None:
        # in a thread: a large file takes seconds, and the bots keep answering meanwhile
        config, self.problems, self.warnings = await asyncio.to_thread(_checked, self.path)
        if config is not None:
            await self._serve(config)
        else:
            count = f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}"
            log.warning("%s: %s; the last valid version serves on", self.path, count)
        self.changes += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _serve(self, config: loader.Config) -> None:
        keys = logging.getLogger("bots.keys")
        level = keys.level
        keys.setLevel(logging.ERROR)  # "no access key" for each bot: none is needed here
        try:
            app = build_app(config, environ={}, caller=self.caller, on_run=self.on_run)
        finally:
            keys.setLevel(level)
        lifespan = contextlib.AsyncExitStack()
        await lifespan.enter_async_context(app.router.lifespan_context(app))
        old, self._lifespan = self._lifespan, lifespan
        number = self.serving.number + 1 if self.serving else 1
        self.serving = Version(number, config, app)
        if old is not None:
            await old.aclose()


def _checked(path: Path) -> tuple[loader.Config | None, list[Problem], list[Problem]]:
    """The file validated (None and its problems when it is invalid), and what Poe's model
    catalog doubts about it (an unknown bot, with did you mean), as `validate` warns."""
    _, doubts = catalog.checked(str(path))
    try:
        return loader.load(path), [], doubts
    except ConfigError as e:
        return None, e.problems, doubts
