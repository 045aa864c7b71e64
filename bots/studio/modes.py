"""The three ways the studio's dependency bots answer, chosen for each message in the page:
simulated (free, the default), scripted (a pipeline test's answers, or an answers file), and
live (real Poe bots with POE_API_KEY, spending its points).

The served app has one caller, `Switch`; each message's own caller rides in a context
variable set where its request enters the app, and reaches every call the run makes (tasks
copy the context they start in).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import fastapi_poe as fp
import httpx

from bots.errors import ConfigError, UsageError
from bots.run.client import (
    ANYWHERE,
    POE_BASE_URL,
    POE_UPLOAD_URL,
    Caller,
    CallSite,
    PoeCaller,
    poe_balance,
    upload,
)
from bots.spec import catalog
from bots.spec.loader import Config
from bots.tools import cases, script
from bots.tools.script import Script
from bots.tools.simulator import SimulatedCaller

MODES = ("simulated", "scripted", "live")

_message_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("message_caller")


class Switch:
    """The app's `Caller`: passes each call to its message's own caller."""

    def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]:
        return _message_caller.get().stream(request, bot, site)


@contextlib.contextmanager
def answering(caller: Caller) -> Iterator[None]:
    """Makes `caller` answer the calls of the message handled within."""
    token = _message_caller.set(caller)
    try:
        yield
    finally:
        _message_caller.reset(token)


@dataclass
class Modes:
    """What each mode needs: the pipelines file (Poe's catalog is beside it), the simulated
    delay, the answers file, the pipeline tests file, the live key (never used unless the page
    asks for live), and the shared client."""

    http: httpx.AsyncClient
    config_path: Path = Path("pipelines.yaml")
    delay: float = 0.4
    answers: Path | None = None
    cases_file: Path = Path(cases.DEFAULT_PATH)
    api_key: str = ""
    base_url: str = POE_BASE_URL
    upload_url: str = POE_UPLOAD_URL

    @classmethod
    def from_environment(
        cls, http: httpx.AsyncClient, config: Path, answers: str | None, cases_file: str | None
    ) -> Modes:
        return cls(
            http,
            config,
            answers=Path(answers) if answers else None,
            cases_file=Path(cases_file) if cases_file else config.parent / cases.DEFAULT_PATH,
            api_key=os.environ.get("POE_API_KEY", ""),
            base_url=os.environ.get("POE_BASE_URL") or POE_BASE_URL,
            upload_url=os.environ.get("POE_UPLOAD_URL") or POE_UPLOAD_URL,
        )

    @property
    def live(self) -> bool:
        return bool(self.api_key)

    _read: tuple[tuple[int, ...], Config, cases.Suite | ConfigError] | None = field(
        default=None, repr=False
    )
    _makers: tuple[Config, frozenset[str]] | None = field(default=None, repr=False)

    def suite(self, config: Config) -> cases.Suite | None:
        """The pipeline tests, when the file exists; raises ConfigError when it is invalid.
        Read again only when the file or the pipelines changed."""
        try:
            found = self.cases_file.stat()
        except OSError:
            return None
        stat = (found.st_mtime_ns, found.st_size, found.st_ino)
        if self._read is None or self._read[0] != stat or self._read[1] is not config:
            try:
                read: cases.Suite | ConfigError = cases.read(str(self.cases_file), config)
            except ConfigError as e:
                read = e
            self._read = (stat, config, read)
        if isinstance(self._read[2], ConfigError):
            raise self._read[2]
        return self._read[2]

    def scripted_files(self, config: Config) -> set[Path]:
        """The files scripted answers name (the answers file's, the pipeline tests')."""
        scripts = []
        with contextlib.suppress(ConfigError):
            if self.answers:
                scripts.append(script.read(str(self.answers)))
            suite = self.suite(config)
            scripts += [suite.script(case) for case in suite.file.cases] if suite else []
        return {
            (found.folder / answer.file).resolve()
            for found in scripts
            for answers in found.answers.values()
            for answer in answers
            if answer.file
        }

    def caller(self, mode: str, config: Config, case: int | None) -> Caller:
        """A fresh caller for one message (scripted answers start again at each message)."""
        if mode == "live":
            if not self.live:
                raise UsageError("live mode needs POE_API_KEY: export it, then start the studio")
            return PoeCaller(self.http, self.base_url, api_key=self.api_key)
        if mode == "scripted":
            script = self.script(config, case)
            return SimulatedCaller(self.delay, 0.01, script, self.file_makers(config))
        if mode != "simulated":
            raise UsageError(f"no mode {mode!r}; the modes are {', '.join(MODES)}")
        return SimulatedCaller(self.delay, 0.01, file_makers=self.file_makers(config))

    def script(self, config: Config, case: int | None) -> Script:
        """A case's answers (over the answers file's, when there is one)."""
        found = script.read(str(self.answers)) if self.answers else Script()
        if case is None:
            return found
        suite = self.suite(config)
        if suite is None or not 0 <= case < len(suite.file.cases):
            raise UsageError(f"no case #{case} in {self.cases_file}")
        return found.merged(suite.script(suite.file.cases[case]))

    def file_makers(self, config: Config) -> frozenset[str]:
        """The bots Poe's catalog (the one beside the file, else the shipped snapshot) says make
        files: simulated, they answer with a small picture, as an image bot would."""
        if self._makers is None or self._makers[0] is not config:
            try:
                models = catalog.load(self.config_path).models
            except ConfigError:  # the catalog file beside it cannot be used: the page says so
                models = {}
            makers = frozenset(name for name, model in models.items() if model.makes_files())
            self._makers = (config, makers)
        return self._makers[1]

    async def uploaded(self, content: bytes, name: str) -> fp.Attachment:
        """A file attached in live mode, uploaded to Poe: a real bot fetches it from there."""
        if not self.live:
            raise UsageError("live mode needs POE_API_KEY: export it, then start the studio")
        return await upload(content, name, self.api_key, self.upload_url)

    async def balance(self) -> int | None:
        """Points left on the live key, when Poe's usage API tells."""
        return await poe_balance(self.http, self.base_url, self.api_key) if self.live else None


def problems_of(error: ConfigError) -> list[dict[str, object]]:
    """Problems as the page lists them: where, and what to do."""
    return [
        {
            "file": p.file,
            "line": p.line,
            "column": p.column,
            "path": p.path,
            "message": p.message,
            "text": str(p),
        }
        for p in error.problems
    ]
