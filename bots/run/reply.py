"""Merging: the one reply the user watches grow, built from many streaming parts.

The reply is an ordered list of `Part`s (a streamed call, one section of a parallel step, a text
step, a `final` step that appears when complete). Steps write into their parts; `Reply.stream`
turns the changing whole into Poe events:

- when only the tail grew, it sends a plain text delta (cheap: each character is sent once);
- when something before the tail changed (a section above, a dependency's own
  replace_response, a retry), it re-renders with replace_response, throttled in time and in
  bytes so the total sent stays a small multiple of the reply; while a re-render is held back,
  the last part still streams live as deltas against what the user already sees;
- files go out as they arrive, before any text sent after them (text may show a file inline by
  its `inline_ref`), and a hidden or not-yet-shown part's files wait with it;
- everything stays within Poe's limits (`limits`): text events are coalesced, so a reply stays
  under 10,000 events, and every character of every text and replace event is charged against
  the 100,000 allowed. As a reply nears that limit, re-rendering gives way first; a reply that
  must be cut ends with a note saying so.

State, not a queue, sits between the steps and the stream: a slow reader only makes the next
delta bigger, never makes memory grow.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import fastapi_poe as fp
from fastapi_poe.types import ErrorType

from bots.run.limits import (
    EVENT_LIMIT,
    FINAL_EVENTS,
    REPLY_CHAR_LIMIT,
    STREAM_EVENT_LIMIT,
    TRUNCATED,
    Allowance,
    cut_to,
    poe_len,
)

SEPARATOR = "\n\n"
RULE = "\n\n---\n\n"
NO_ANSWER = "_(The pipeline finished without a visible answer.)_"
POE_EXPLAINS = frozenset({"insufficient_fund", "user_message_too_long"})
"""Error types Poe explains to the user itself: no note repeats them. (Poe shows an error
event's text to nobody; for other types the note says why.)"""
IDLE = "_Waiting for the pipeline…_"
"""The progress line before any call has started."""
NOTE_CAP = 600
"""Longest error note at the end of a reply (characters); it fits the ending's reserve."""

Event = fp.PartialResponse | fp.DataResponse


@dataclass
class Pacing:
    """How often the reply may be updated (seconds), and how much re-rendering may cost."""

    delta_gap: float = 0.02
    delta_gap_after_2000: float = 0.1
    replace_gap: float = 0.2
    replace_ratio: float = 1.5
    replace_slack: int = 1024
    status_delay: float = 1.0


class Part:
    """One piece of the reply. Only its owner writes to it."""

    def __init__(self, reply: Reply, heading: str | None, deferred: bool) -> None:
        self._reply = reply
        self.heading = heading
        self.deferred = deferred
        self._chunks: list[str] = []  # appended to per token; joined only when read
        self._text = ""
        self.closed = False
        self.suggestions: list[str] = []
        self.attachments: list[fp.Attachment] = []
        self._shown = ""  # what the user currently sees of this part (its last full render)

    @property
    def text(self) -> str:
        if self._chunks:
            # no more than the reply could ever show is kept (the step's own output is whole)
            self._text = (self._text + "".join(self._chunks))[: REPLY_CHAR_LIMIT + 1]
            self._chunks.clear()
        return self._text

    def render(self, *, shown: bool = False) -> str:
        if self.deferred and not self.closed:
            return ""
        text = self._shown if shown else self.text
        return f"### {self.heading}\n\n{text}".rstrip() if self.heading is not None else text

    def write(self, text: str) -> None:
        if text:
            self._chunks.append(text)
            self._reply.touch()

    def replace(self, text: str) -> None:
        if text != self.text:
            self._text = text[: REPLY_CHAR_LIMIT + 1]
            self._reply.touch()

    def note(self, text: str) -> None:
        """Adds a short visible note (e.g. what went wrong) on its own line."""
        self.write(f"{SEPARATOR if self.text else ''}> ⚠️ {text}")

    def attach(self, attachment: fp.Attachment) -> None:
        """A file for this part: shown at once, or with the part when it is deferred."""
        self.attachments.append(attachment)
        if not self.deferred or self.closed:
            self._reply.files.append(attachment)
        self._reply.touch()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.deferred:
                self._reply.files.extend(self.attachments)
            self._reply.touch()


class Reply:
    """The reply of one user message, and the pacing of its events to Poe."""

    def __init__(self, pacing: Pacing | None = None) -> None:
        self.pacing = pacing or Pacing()
        self.parts: list[Part] = []
        self.files: list[fp.Attachment] = []  # files to send before the next text
        # what the reply waits for now, for the progress line: bots by name, and the
        # creator's own wording (`waiting`) for the calls that have one
        self.asking: Counter[str] = Counter()
        self.saying: Counter[str] = Counter()
        self._status = ""  # the progress line shown last
        self._statuses: set[str] = {IDLE}  # and every one shown
        # makes the reply's metadata from the text the user was finally shown
        self.metadata: Callable[[str], str] | None = None
        self.error: str | None = None  # why the pipeline failed, shown once
        # A Poe error type (e.g. insufficient_fund): the reason then goes in an error event
        # carrying it, so Poe handles it as its own, instead of in a note.
        self.error_type: ErrorType | None = None
        self.spent = False  # a dependency call was made: Poe must not retry the message
        self.finished = False
        self._changed = asyncio.Event()
        self._version = 0  # bumped by every change; the full render is cached per version
        self._rendered: tuple[int, str] = (-1, "")
        self._sent = ""
        self.allowance = Allowance()
        # what was sent, for pacing and for reporting
        self.events = 0
        self.bytes_sent = 0
        self.replaces = 0
        self.files_sent = 0
        self.cut = False  # the reply reached Poe's character limit
        self.wakeups = 0  # times the stream loop woke up (it must not spin while held back)

    # --- writers --------------------------------------------------------------------------

    def add_part(self, heading: str | None = None, *, deferred: bool = False) -> Part:
        part = Part(self, heading, deferred)
        self.parts.append(part)
        self.touch()
        return part

    def touch(self) -> None:
        self._version += 1
        self._changed.set()

    def finish(self) -> None:
        self.finished = True
        self.touch()

    @property
    def text(self) -> str:
        """The reply as it stands, before Poe's limits are applied."""
        return self._render()

    # --- rendering -------------------------------------------------------------------------

    def _render(self, *, live_tail_only: bool = False) -> str:
        if not live_tail_only and self._rendered[0] == self._version:
            return self._rendered[1]  # the stream loop asks more than once per change
        rendered = [part.render(shown=live_tail_only) for part in self.parts]
        if live_tail_only:
            live = [i for i, part in enumerate(self.parts) if part.render()]
            if live:
                rendered[live[-1]] = self.parts[live[-1]].render()
        pieces: list[str] = []
        after_sections = False
        for part, text in zip(self.parts, rendered, strict=True):
            if not text:
                continue
            if pieces:
                # a rule ends a block of sections, so what follows is not read as the last one
                pieces.append(RULE if after_sections and part.heading is None else SEPARATOR)
            pieces.append(text)
            after_sections = part.heading is not None
        text = "".join(pieces)
        if not live_tail_only:
            self._rendered = (self._version, text)
        return text

    def _status_line(self) -> str:
        """What runs now, while nothing is shown: every bot being asked, by name, and the
        creator's wording for calls that have one."""
        said = list(self.saying)
        if self.asking:
            said.append(f"Waiting for {', '.join(self.asking)}…")
        if not said:  # between two calls the last line stays, rather than flicker
            return self._status or IDLE
        self._status = f"_{' · '.join(said)}_"
        self._statuses.add(self._status)
        return self._status

    def is_status(self, text: str) -> bool:
        """Whether `text` is (only) a progress line this reply showed while nothing else was."""
        return text in self._statuses

    # --- the event stream ------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Event]:
        """Poe events for this reply until `finish()`, then its files, final text, suggested
        replies, metadata and error."""
        started = time.monotonic()
        last_event = last_replace = -1e9
        while not self.finished:
            wake = self._next_wake(started, last_replace, time.monotonic())
            try:
                async with asyncio.timeout(wake):
                    await self._changed.wait()
            except TimeoutError:
                pass
            self._changed.clear()
            self.wakeups += 1
            gap = self._delta_gap()
            if self.finished or gap is None:
                continue  # out of streaming events: the final flush sends the rest
            wait = last_event + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # pacing: changes meanwhile coalesce into one event
            now = time.monotonic()
            for event in self._take_files(STREAM_EVENT_LIMIT):
                yield event
            update = self._update(
                now - started, replace_ok=now - last_replace >= self.pacing.replace_gap
            )
            if update is not None:
                last_event = now
                if update.is_replace_response:
                    last_replace = now
                yield update
        for last in self._final():
            yield last

    def _delta_gap(self) -> float | None:
        if self.events >= STREAM_EVENT_LIMIT:
            return None
        return self.pacing.delta_gap if self.events < 2000 else self.pacing.delta_gap_after_2000

    def _next_wake(self, started: float, last_replace: float, now: float) -> float | None:
        """How long to wait for a change before updating anyway (None: only on a change)."""
        if not self._sent:
            return max(0.0, started + self.pacing.status_delay - now)
        if self._render() != self._sent and now - last_replace < self.pacing.replace_gap:
            # a re-render held back by time: try again when it is allowed (one held back by
            # bytes or characters waits for the reply to grow, which is a change)
            return last_replace + self.pacing.replace_gap - now
        return None

    def _affordable(self, target: str) -> bool:
        budget = self.pacing.replace_ratio * len(target) + self.pacing.replace_slack
        return self.bytes_sent + len(target) <= budget

    def _update(self, elapsed: float, *, replace_ok: bool) -> fp.PartialResponse | None:
        """The one event that brings the user's view closer to the reply, if any."""
        target = self._render()
        if not target:
            if elapsed < self.pacing.status_delay:
                return None
            target = self._status_line()  # nothing to show yet: say what we are waiting for
            replace_ok = True
        if target == self._sent:
            return None
        allowance = self.allowance
        if target.startswith(self._sent):
            # the tail grew: send what Poe's limit allows (the rest waits for the ending)
            view = cut_to(target, allowance.room(replace=False, final=False))
            if len(view) <= len(self._sent):
                return None
            return self._emit(view, replace=False, snapshot=True)
        if (
            replace_ok
            and self._affordable(target)
            and allowance.may_rerender(poe_len(target))  # (which leaves room for it too)
        ):
            return self._emit(target, replace=True, snapshot=True)
        # held back: the last part streams on below what the user sees, as long as the
        # re-render that must follow is still affordable
        live = self._render(live_tail_only=True)
        if (
            live != self._sent
            and live.startswith(self._sent)
            and allowance.may_rerender(poe_len(live) - allowance.shown)
        ):
            return self._emit(live, replace=False, snapshot=False)
        return None

    def _take_files(self, event_limit: int) -> list[fp.PartialResponse]:
        """File events for the files waiting, as many as the events left allow."""
        room = max(0, event_limit - self.events) // 2
        files, self.files = self.files[:room], self.files[room:]
        self.events += 2 * len(files)  # fastapi_poe follows each file event with a text event
        self.files_sent += len(files)
        return [fp.PartialResponse(text="", attachment=attachment) for attachment in files]

    def _emit(self, target: str, *, replace: bool, snapshot: bool) -> fp.PartialResponse:
        text = target if replace else target[len(self._sent) :]
        self._sent = target
        self.events += 1
        self.bytes_sent += len(text.encode())
        self.replaces += replace
        self.allowance.charge(text, replace=replace)
        visible = [part for part in self.parts if part.render()]
        for part in visible if snapshot else visible[-1:]:
            part._shown = part.text
        return fp.PartialResponse(text=text, is_replace_response=replace)

    def _final(self) -> list[Event]:
        """The end of the reply: files first (the last text may show them inline), the last
        text, suggested replies, metadata, and the error event when there is one."""
        events: list[Event] = list(self._take_files(EVENT_LIMIT - FINAL_EVENTS))
        target = self._render()
        note = ""
        if self.error and self.error_type not in POE_EXPLAINS:
            note = f"{SEPARATOR if target else ''}> ⚠️ {cut_to(self.error, NOTE_CAP)}"
        elif not target and not self.error_type and not self.files_sent:
            target = NO_ANSWER  # say so, rather than leave an empty message
        last = self._closing(target, note)
        if last is None and not self.allowance.chars and not self.error_type:
            last = self._emit("", replace=False, snapshot=False)  # Poe needs a text event
        if last is not None:
            events.append(last)
        ending: list[Event] = []
        visible = [part for part in self.parts if part.render()]
        if visible:
            ending += [
                fp.PartialResponse(text=suggestion, is_suggested_reply=True)
                for suggestion in visible[-1].suggestions[:10]
            ]
        if self.metadata is not None:
            ending.append(fp.DataResponse(metadata=self.metadata(self._sent)))
        if self.error_type:
            error = self.error or ""
            ending.append(
                fp.ErrorResponse(text=error, error_type=self.error_type, allow_retry=not self.spent)
            )
        self.events += len(ending)
        return events + ending

    def _closing(self, target: str, note: str) -> fp.PartialResponse | None:
        """The last text event: the whole reply and its note, within Poe's limit."""
        allowance = self.allowance
        final, self.cut = allowance.fit(target, replace=False, suffix=note)
        if final.startswith(self._sent):
            return self._emit(final, replace=False, snapshot=True) if final != self._sent else None
        room = allowance.room(replace=True)
        if poe_len(target + note) <= room or room > allowance.shown:
            final, self.cut = allowance.fit(target, replace=True, suffix=note)
            return self._emit(final, replace=True, snapshot=True)
        # a re-render no longer fits and would show less than the user has: keep their view
        self.cut = True
        return self._emit(self._sent + TRUNCATED + note, replace=False, snapshot=False)
