"""The runs the page looks inside: each message's run, kept by message id while the page may
still ask for it, and described as the page draws it (a waterfall of its trace, the calls
against the worst case, what each dependency was sent and answered)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from bots.run.engine import Run
from bots.run.trace import TraceEntry, label

KEPT = 64
"""Runs kept (the oldest go first): a page asks for its messages' runs soon after they end."""
RECENT, SHOWN = 6, 2000
"""Of a dependency's history, the page shows the last RECENT messages, SHOWN characters each."""


class Runs:
    """The last KEPT runs, by message id, and the points each live message spent."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self.points: dict[str, int] = {}

    def add(self, run: Run) -> None:
        self._runs[run.ctx.request.message_id] = run
        while len(self._runs) > KEPT:
            gone, _ = self._runs.popitem(last=False)
            self.points.pop(gone, None)

    def get(self, message_id: str) -> Run | None:
        return self._runs.get(message_id)


def described(run: Run, points: int | None = None) -> dict[str, Any]:
    """The run as the page draws it, at this moment (a running step is still open)."""
    ctx = run.ctx
    ending = ctx.answer.ending
    entries = list(ctx.trace)
    index = {id(entry): i for i, entry in enumerate(entries)}
    now = time.time()
    return {
        "bot": ctx.plan.id,
        "message_id": ctx.request.message_id,
        "done": ending is not None,
        "error": ending.error if ending is not None else None,
        "calls": ctx.guard.calls,
        "worst_case": ctx.plan.cost.total,
        "per_bot": dict(ctx.guard.used),
        "declared": ctx.plan.dependencies,
        "seconds": round((now if ending is None else _end(entries, ctx.started)) - ctx.started, 3),
        "points": points,
        "entries": [
            _entry(entry, index, ctx.started, now, running=ending is None) for entry in entries
        ],
    }


def _end(entries: list[TraceEntry], started: float) -> float:
    return max((e.started + e.seconds for e in entries), default=started)


def _entry(
    entry: TraceEntry, index: dict[int, int], started: float, now: float, *, running: bool
) -> dict[str, Any]:
    # an entry's time is set when it ends; until then (while the run goes on) it is running
    open_ = running and entry.seconds == 0.0 and entry.outcome == "ok" and entry.kind != "param"
    described: dict[str, Any] = {
        "parent": index.get(id(entry.parent)) if entry.parent is not None else None,
        "label": label(entry) if entry.kind != "try" else f"try {entry.facts.get('try', 1)}",
        "path": entry.path,
        "step": entry.path.split("#")[0],
        "kind": entry.kind,
        "bot": entry.bot,
        "start": round(entry.started - started, 4),
        "seconds": round(now - entry.started if open_ else entry.seconds, 4),
        "running": open_,
        "calls": entry.calls,
        "outcome": entry.outcome,
        "detail": entry.detail,
    }
    if entry.kind == "try":
        described["answer"] = entry.content.get("answer", "")
        if entry.sent is not None:
            described["sent"] = _sent(entry)
    elif "value" in entry.content:
        described["value"] = entry.content["value"]
    return described


def _sent(entry: TraceEntry) -> dict[str, Any]:
    """What a dependency was sent: its prompt, system message, parameters, files, history."""
    assert entry.sent is not None
    messages = entry.sent.query
    last = messages[-1]
    system = next((m.content for m in messages if m.role == "system"), None)
    earlier = [m for m in messages[:-1] if m.role != "system"]
    return {
        "prompt": last.content,
        "system": system,
        "parameters": last.parameters,
        "files": [{"name": a.name, "content_type": a.content_type} for a in last.attachments],
        "history": len(earlier),
        "recent": [{"role": m.role, "content": m.content[:SHOWN]} for m in earlier[-RECENT:]],
    }
