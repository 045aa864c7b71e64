"""Delivery: one reply's `Answer` sent to Poe as events, as it grows.

- when only the tail grew, it sends a plain text delta (cheap: each character is sent once);
- when something before the tail changed (a section above, a dependency's own
  replace_response, a retry), it re-renders with replace_response, throttled in time and in
  bytes so the total sent stays a small multiple of the reply; while a re-render is held back,
  the last part still streams live as deltas against what the user already sees;
- files go out as they arrive, before any text sent after them (text may show a file inline by
  its `inline_ref`), and a hidden or not-yet-shown part's files wait with it;
- while nothing is shown, a progress line says what the reply waits for;
- everything stays within Poe's limits (`limits`): text events are coalesced, so a reply stays
  under 10,000 events, and every character of every text and replace event is charged against
  the 100,000 allowed. As a reply nears that limit, re-rendering gives way first; a reply that
  must be cut ends with a note saying so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import fastapi_poe as fp

from bots.run import conversation
from bots.run.answer import SEPARATOR, Answer, Ending, Part
from bots.run.limits import (
    EVENT_LIMIT,
    FINAL_EVENTS,
    STREAM_EVENT_LIMIT,
    TRUNCATED,
    Allowance,
    cut_to,
    poe_len,
)

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


class Delivery:
    """The events of one reply to Poe, paced, within Poe's limits, and what they cost."""

    def __init__(self, answer: Answer, pacing: Pacing | None = None) -> None:
        self.answer = answer
        self.pacing = pacing or Pacing()
        self._sent = ""  # what the user sees now
        self._shown: dict[Part, str] = {}  # and of each part, as last rendered for them
        self._status = ""  # the progress line shown last
        self._statuses: set[str] = {IDLE}  # and every one shown
        self.allowance = Allowance()
        # what was sent, for pacing and for reporting
        self.events = 0
        self.bytes_sent = 0
        self.replaces = 0
        self.files_sent = 0
        self.cut = False  # the reply reached Poe's character limit
        self.wakeups = 0  # times the stream loop woke up (it must not spin while held back)

    def is_status(self, text: str) -> bool:
        """Whether `text` is (only) a progress line this reply showed while nothing else was."""
        return text in self._statuses

    async def stream(self) -> AsyncIterator[Event]:
        """Poe events for the answer until it is finished, then its files, final text,
        suggested replies, metadata and error."""
        answer = self.answer
        started = time.monotonic()
        last_event = last_replace = -1e9
        while not answer.finished:
            wake = self._next_wake(started, last_replace, time.monotonic())
            try:
                async with asyncio.timeout(wake):
                    await answer.changed.wait()
            except TimeoutError:
                pass
            answer.changed.clear()
            self.wakeups += 1
            gap = self._delta_gap()
            if answer.finished or gap is None:
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
        for last in self._final(answer.ending or Ending()):
            yield last

    def _status_line(self) -> str:
        """What runs now, while nothing is shown; between two calls the last line stays,
        rather than flicker."""
        awaited = self.answer.awaited()
        if awaited is None:
            return self._status or IDLE
        self._status = awaited
        self._statuses.add(awaited)
        return awaited

    def _delta_gap(self) -> float | None:
        if self.events >= STREAM_EVENT_LIMIT:
            return None
        return self.pacing.delta_gap if self.events < 2000 else self.pacing.delta_gap_after_2000

    def _next_wake(self, started: float, last_replace: float, now: float) -> float | None:
        """How long to wait for a change before updating anyway (None: only on a change)."""
        if not self._sent:
            return max(0.0, started + self.pacing.status_delay - now)
        if self.answer.render() != self._sent and now - last_replace < self.pacing.replace_gap:
            # a re-render held back by time: try again when it is allowed (one held back by
            # bytes or characters waits for the reply to grow, which is a change)
            return last_replace + self.pacing.replace_gap - now
        return None

    def _affordable(self, target: str) -> bool:
        budget = self.pacing.replace_ratio * len(target) + self.pacing.replace_slack
        return self.bytes_sent + len(target) <= budget

    def _update(self, elapsed: float, *, replace_ok: bool) -> fp.PartialResponse | None:
        """The one event that brings the user's view closer to the answer, if any."""
        target = self.answer.render()
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
        live = self.answer.render(shown=self._shown)
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
        waiting = self.answer.files
        files = waiting[:room]
        del waiting[:room]
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
        visible = self.answer.visible()
        for part in visible if snapshot else visible[-1:]:
            self._shown[part] = part.text
        return fp.PartialResponse(text=text, is_replace_response=replace)

    def _final(self, ending: Ending) -> list[Event]:
        """The end of the reply: files first (the last text may show them inline), the last
        text, suggested replies, metadata, and the error event when there is one."""
        events: list[Event] = list(self._take_files(EVENT_LIMIT - FINAL_EVENTS))
        target = self.answer.render()
        note = ""
        if ending.error and ending.error_type not in POE_EXPLAINS:
            note = f"{SEPARATOR if target else ''}> ⚠️ {cut_to(ending.error, NOTE_CAP)}"
        elif not target and not ending.error_type and not self.files_sent:
            target = NO_ANSWER  # say so, rather than leave an empty message
        last = self._closing(target, note)
        if last is None and not self.allowance.chars and not ending.error_type:
            last = self._emit("", replace=False, snapshot=False)  # Poe needs a text event
        if last is not None:
            events.append(last)
        closing: list[Event] = []
        visible = self.answer.visible()
        if visible:
            closing += [
                fp.PartialResponse(text=suggestion, is_suggested_reply=True)
                for suggestion in visible[-1].suggestions[:10]
            ]
        if ending.records:
            metadata = conversation.write_metadata(ending.records, self._sent)
            closing.append(fp.DataResponse(metadata=metadata))
        if ending.error_type:
            closing.append(
                fp.ErrorResponse(
                    text=ending.error or "",
                    error_type=ending.error_type,
                    allow_retry=not ending.spent,
                )
            )
        self.events += len(closing)
        return events + closing

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
