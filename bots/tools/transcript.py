"""One message answered by a pipeline away from Poe's servers (the terminal chat, pipeline
tests, evals), and what its user would have seen: the transcript.

The same engine and merging as on Poe: a `Run` writes into an `Answer`, and its delivery's events
are read here as Poe's client shows them (the text grows or is replaced, files arrive, the last
data event is the metadata kept for the next turn).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

from bots.run.answer import Answer
from bots.run.client import Caller
from bots.run.context import Context
from bots.run.delivery import Delivery, Pacing
from bots.run.engine import Run
from bots.run.trace import label
from bots.spec.loader import BotPlan


@dataclass
class Transcript:
    """What one message's reply showed, and the run that made it."""

    run: Run
    delivery: Delivery
    text: str = ""
    files: list[fp.Attachment] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    metadata: str | None = None
    first_text: float | None = None  # seconds from the message to the first text shown
    seconds: float = 0.0  # to the end of the reply

    @property
    def error(self) -> str | None:
        """Why the pipeline stopped, as the failure note says it; None when it finished."""
        ending = self.run.ctx.answer.ending
        return ending.error if ending is not None else None

    @property
    def calls(self) -> int:
        return self.run.ctx.guard.calls

    @property
    def called(self) -> dict[str, int]:
        """Calls made (including failed tries) per dependency bot."""
        return dict(self.run.ctx.guard.used)

    def trace_table(self, budget: int, width: int = 24) -> str:
        """The run's trace as the terminal shows it: each step (and each try of a step that
        needed more than one), its bot, a bar on the run's time axis (a waterfall), its time,
        calls, outcome and decision; then the calls used against the worst case."""
        trace = self.run.trace
        tries = Counter(id(e.parent) for e in trace if e.kind == "try")
        rows = [e for e in trace if e.kind != "try" or tries[id(e.parent)] > 1]
        rows.sort(key=lambda e: e.started)
        start = min((e.started for e in rows), default=0.0)
        total = max((e.started + e.seconds - start for e in rows), default=0.0)
        lines = ["trace:"]
        for entry in rows:
            who = f" {entry.bot}" if entry.bot else ""
            path = label(entry) if entry.kind != "try" else f"  try {entry.facts['try']}"
            detail = f" ({entry.detail})" if entry.detail else ""
            bar = _bar(entry.started - start, entry.seconds, total, width)
            lines.append(
                f"  {path:<28} {entry.kind:<8}{who:<20} {bar} {entry.seconds:6.2f}s  "
                f"{entry.calls} call{'s' if entry.calls != 1 else ''}  {entry.outcome}{detail}"
            )
        axis = f"0 s{total:>{width - 3}.2f} s"
        lines.append(f"  {'':<28} {'':<8}{'':<20} {axis}")
        lines.append(f"  calls used: {self.calls} of {budget} (worst case)")
        return "\n".join(lines)


def _bar(offset: float, seconds: float, total: float, width: int) -> str:
    """One row of the waterfall: where a step ran on the run's time axis, `width` wide."""
    if total <= 0:
        return "|" + "█" + " " * (width - 1) + "|"
    begin = min(width - 1, int(offset / total * width))
    length = max(1, min(width - begin, round(seconds / total * width)))
    return "|" + " " * begin + "█" * length + " " * (width - begin - length) + "|"


def query(
    text: str,
    *,
    history: Sequence[fp.ProtocolMessage] = (),
    params: dict[str, Any] | None = None,
    attachments: Sequence[fp.Attachment] = (),
    conversation_id: str | None = None,
    user_id: str = "terminal",
) -> fp.QueryRequest:
    """A request as Poe would send it: earlier turns, then the user's message."""
    message = fp.ProtocolMessage(
        role="user", content=text, parameters=params or {}, attachments=list(attachments)
    )
    return fp.QueryRequest(
        version="1.2",
        type="query",
        query=[*history, message],
        user_id=user_id,
        conversation_id=conversation_id or uuid.uuid4().hex,
        message_id=uuid.uuid4().hex,
        access_key="",
    )


async def answer(
    plan: BotPlan,
    request: fp.QueryRequest,
    caller: Caller,
    *,
    pacing: Pacing | None = None,
    on_text: Callable[[str], None] | None = None,
    on_file: Callable[[fp.Attachment], None] | None = None,
) -> Transcript:
    """Runs `plan` for the request's last message and reads its reply to the end. `on_text`
    sees the whole text shown after each change; `on_file` each file as it arrives."""
    answer = Answer()
    delivery = Delivery(answer, pacing or Pacing(status_delay=0.5))
    transcript = Transcript(Run(Context.open(plan, request, answer, caller)), delivery)
    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        group.create_task(transcript.run.execute())
        async for event in delivery.stream():
            if isinstance(event, fp.DataResponse):
                transcript.metadata = event.metadata  # as Poe keeps it: the last data event
            elif isinstance(event, fp.ErrorResponse):
                continue  # Poe shows its own words for these; the note is in the text
            elif event.attachment is not None:
                transcript.files.append(event.attachment)
                if on_file is not None:
                    on_file(event.attachment)
            elif event.is_suggested_reply:
                transcript.suggestions.append(event.text)
            else:
                text = event.text if event.is_replace_response else transcript.text + event.text
                if transcript.first_text is None and text and not delivery.is_status(text):
                    transcript.first_text = time.monotonic() - started
                transcript.text = text
                if on_text is not None:
                    on_text(text)
    transcript.seconds = time.monotonic() - started
    return transcript
