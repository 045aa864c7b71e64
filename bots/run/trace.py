"""The trace of one run: what each step, loop round, wait and try of a call did, when, and
inside what. The terminal chat draws it (`transcript`), pipeline tests check it (`cases`), and
`spans` turns it into an OpenTelemetry trace.

An entry knows its parent: the innermost entry open in the task that made it (and in the
tasks that task started), so items of a map running the same step at once each hang under
their own step.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

_open: contextvars.ContextVar[tuple[TraceEntry, ...]] = contextvars.ContextVar("open", default=())


def _innermost() -> TraceEntry | None:
    entries = _open.get()
    return entries[-1] if entries else None


@dataclass(eq=False)
class TraceEntry:
    """What one step did (or a loop's round, a wait for Poe's rate limit, one try of a call).

    `detail` says what it decided in words (a route's compared value and case); `facts` say it
    as values, for spans (`when`, `case`, `round`, a try's `first_token_s`...); `content` holds
    what users or bots wrote (a route's value, a try's prompt and answer), exported only when
    the creator allows it."""

    path: str
    kind: str
    bot: str | None
    seconds: float
    calls: int
    outcome: str
    detail: str = ""
    started: float = field(default_factory=time.time)  # wall clock, seconds since the epoch
    parent: TraceEntry | None = field(default_factory=_innermost)
    facts: dict[str, Any] = field(default_factory=dict)
    content: dict[str, str] = field(default_factory=dict)
    sent: fp.QueryRequest | None = None  # a try's request as the dependency got it (no copy)

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("failed")


def label(entry: TraceEntry) -> str:
    """An entry's name as the creator wrote it: its step's id where it has one (with a
    sample's or item's number after it, "samples#2"), else its place ("steps[1]")."""
    owner: TraceEntry | None = entry
    while owner is not None and "id" not in owner.facts:
        owner = owner.parent
    if owner is None:
        return entry.path
    base = owner.path.split("#")[0]
    if not entry.path.startswith(base):
        return entry.path
    return f"{owner.facts['id']}{entry.path[len(base) :]}"


@contextlib.contextmanager
def inside(entry: TraceEntry) -> Iterator[None]:
    """Makes `entry` the parent of the entries made within (in this task and the tasks it
    starts), and counts every try made within in `entry.calls`, as well as in the entries
    already open: each step's entry holds its own calls, even while other items of a map run
    the same step at once."""
    token = _open.set((*_open.get(), entry))
    try:
        yield
    finally:
        _open.reset(token)


def count_call() -> None:
    """One more try, for every entry open here."""
    for entry in _open.get():
        entry.calls += 1


# --- a message's trace, in OpenTelemetry (made by `spans` when traces are exported) ----------

CONTENT_ENV = "PIPELINE_TRACE_CONTENT"
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def exported(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint is set, and the SDK is not
    disabled (`OTEL_SDK_DISABLED`) nor told to export nothing (`OTEL_TRACES_EXPORTER=none`)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_ENVS)


def content_wanted(environ: Mapping[str, str]) -> bool:
    """Whether spans may hold what users and bots wrote (`PIPELINE_TRACE_CONTENT=1`)."""
    return environ.get(CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def trace_id(message_id: str) -> int:
    """A message's trace id (128 bits, from its Poe message id)."""
    return int.from_bytes(hashlib.sha256(b"trace:" + message_id.encode()).digest()[:16]) or 1


def root_span_id(message_id: str) -> int:
    """The span id of a message's root span (64 bits, from its Poe message id)."""
    return int.from_bytes(hashlib.sha256(b"root:" + message_id.encode()).digest()[:8]) or 1
