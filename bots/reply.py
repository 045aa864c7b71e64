"""Merging: the one reply the user watches grow, built from many streaming parts.

The reply is an ordered list of `Part`s (a streamed call, one section of a parallel step, a text
step, a `final` step that appears when complete). Steps write into their parts; `Reply.events`
turns the changing whole into Poe events:

- when only the tail grew, it sends a plain text delta (cheap: each byte is sent once);
- when something before the tail changed (a section above, a dependency's own
  replace_response, a retry), it re-renders with replace_response, throttled in time and in
  bytes so the total sent stays a small multiple of the reply; while a re-render is held back,
  the last part still streams live as deltas against what the user already sees;
- text events are coalesced, so a reply stays under Poe's 10,000 events whatever its
  dependencies stream, and the reply is capped below Poe's 512k characters.

State, not a queue, sits between the steps and the stream: a slow reader only makes the next
delta bigger, never makes memory grow.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import fastapi_poe as fp

MAX_REPLY_CHARS = 500_000
"""Poe accepts replies of up to 512k characters; we stop a little below."""
MAX_STREAM_EVENTS = 9_000
"""Text and replace events sent while streaming; Poe allows 10,000 per reply in all."""
TRUNCATED = "\n\n_(The reply was cut here: it reached Poe's size limit.)_"
SEPARATOR = "\n\n"
RULE = "\n\n---\n\n"

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
            self._text += "".join(self._chunks)
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
            self._text = text
            self._reply.touch()

    def note(self, text: str) -> None:
        """Adds a short visible note (e.g. what went wrong) on its own line."""
        self.write(f"{SEPARATOR if self.text else ''}> ⚠️ {text}")

    def attach(self, attachment: fp.Attachment) -> None:
        self.attachments.append(attachment)
        if not self.deferred:
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
        self.files: list[fp.Attachment] = []
        self.asking: Counter[str] = Counter()  # bots being called right now (for the status)
        self.metadata: str | None = None
        self.error: str | None = None
        self.finished = False
        self._changed = asyncio.Event()
        self._version = 0  # bumped by every change; the full render is cached per version
        self._rendered: tuple[int, str] = (-1, "")
        self._sent = ""
        # what was sent, for pacing and for reporting
        self.events = 0
        self.bytes_sent = 0
        self.replaces = 0
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
        """The reply as it stands (what the user will see once everything is sent)."""
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
        if len(text) > MAX_REPLY_CHARS:
            text = text[: MAX_REPLY_CHARS - len(TRUNCATED)] + TRUNCATED
        if not live_tail_only:
            self._rendered = (self._version, text)
        return text

    def _status_line(self) -> str:
        names = ", ".join(self.asking) if self.asking else "the pipeline"
        return f"_Waiting for {names}…_"

    # --- the event stream ------------------------------------------------------------------

    async def stream(self) -> AsyncIterator[Event]:
        """Poe events for this reply until `finish()`, then the final text, attachments,
        suggested replies, metadata and error."""
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
            for event in self._take_files():
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
        if self.events >= MAX_STREAM_EVENTS:
            return None
        return self.pacing.delta_gap if self.events < 2000 else self.pacing.delta_gap_after_2000

    def _next_wake(self, started: float, last_replace: float, now: float) -> float | None:
        """How long to wait for a change before updating anyway (None: only on a change)."""
        if not self._sent:
            return max(0.0, started + self.pacing.status_delay - now)
        if self._render() != self._sent and now - last_replace < self.pacing.replace_gap:
            # a re-render held back by time: try again when it is allowed (one held back by
            # bytes waits for the reply to grow, which is a change)
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
        if target.startswith(self._sent):
            return self._emit(target, replace=False, snapshot=True)
        if replace_ok and self._affordable(target):
            return self._emit(target, replace=True, snapshot=True)
        live = self._render(live_tail_only=True)
        if live != self._sent and live.startswith(self._sent):
            return self._emit(live, replace=False, snapshot=False)
        return None

    def _take_files(self) -> list[fp.PartialResponse]:
        files, self.files = self.files, []
        return [fp.PartialResponse(text="", attachment=attachment) for attachment in files]

    def _emit(self, target: str, *, replace: bool, snapshot: bool) -> fp.PartialResponse:
        text = target if replace else target[len(self._sent) :]
        self._sent = target
        self.events += 1
        self.bytes_sent += len(text.encode())
        self.replaces += replace
        visible = [part for part in self.parts if part.render()]
        for part in visible if snapshot else visible[-1:]:
            part._shown = part.text
        return fp.PartialResponse(text=text, is_replace_response=replace)

    def _final(self) -> list[Event]:
        events: list[Event] = []
        target = self._render()
        if self.error:
            target = f"{target}{SEPARATOR if target else ''}> ⚠️ {self.error}"
        if target != self._sent:
            events.append(
                self._emit(target, replace=not target.startswith(self._sent), snapshot=True)
            )
        events += self._take_files()
        visible = [part for part in self.parts if part.render()]
        if visible:
            events += [
                fp.PartialResponse(text=suggestion, is_suggested_reply=True)
                for suggestion in visible[-1].suggestions[:10]
            ]
        if self.metadata is not None:
            events.append(fp.DataResponse(metadata=self.metadata))
        if self.error:
            events.append(fp.ErrorResponse(text=self.error, allow_retry=True))
        return events
