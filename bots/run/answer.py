"""The answer being written: the document one reply's steps build, part by part.

The answer is an ordered list of `Part`s (a streamed call, one section of a parallel step, a
text step, a `final` step that appears when complete). Each step writes only into its own
part; the answer renders the whole, keeps the files waiting to be sent in order, says what the
reply waits for while nothing is shown, and ends once with an `Ending`. `delivery` turns it
into Poe's events.

State, not a queue, sits between the steps and the delivery: a slow reader only makes the next
delta bigger, never makes memory grow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import fastapi_poe as fp
from fastapi_poe.types import ErrorType

from bots.run.conversation import Record
from bots.run.limits import REPLY_CHAR_LIMIT

SEPARATOR = "\n\n"
RULE = "\n\n---\n\n"


class Part:
    """One piece of the answer. Only its owner writes to it."""

    def __init__(self, answer: Answer, heading: str | None, deferred: bool) -> None:
        self._answer = answer
        self.heading = heading
        self.deferred = deferred
        self._chunks: list[str] = []  # appended to per token; joined only when read
        self._text = ""
        self.closed = False
        self.suggestions: list[str] = []
        self.attachments: list[fp.Attachment] = []

    @property
    def text(self) -> str:
        if self._chunks:
            # no more than the reply could ever show is kept (the step's own output is whole)
            self._text = (self._text + "".join(self._chunks))[: REPLY_CHAR_LIMIT + 1]
            self._chunks.clear()
        return self._text

    def render(self, text: str | None = None) -> str:
        """The part as shown (nothing while a deferred part is open), with `text` in place of
        its own when given (what the user last saw of it)."""
        if self.deferred and not self.closed:
            return ""
        text = self.text if text is None else text
        return f"### {self.heading}\n\n{text}".rstrip() if self.heading is not None else text

    def write(self, text: str) -> None:
        if text:
            self._chunks.append(text)
            self._answer.touch()

    def replace(self, text: str) -> None:
        if text != self.text:
            self._text = text[: REPLY_CHAR_LIMIT + 1]
            self._answer.touch()

    def note(self, text: str) -> None:
        """Adds a short visible note (e.g. what went wrong) on its own line."""
        self.write(f"{SEPARATOR if self.text else ''}> ⚠️ {text}")

    def attach(self, attachment: fp.Attachment) -> None:
        """A file for this part: sent at once, or with the part when it is deferred."""
        self.attachments.append(attachment)
        if not self.deferred or self.closed:
            self._answer.files.append(attachment)
        self._answer.touch()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.deferred:
                self._answer.files.extend(self.attachments)
            self._answer.touch()


@dataclass(frozen=True)
class Ending:
    """How an answer ended: why it failed (shown once), Poe's error type for that when it has
    one (Poe then handles it as its own), each call's record for later turns (the reply's
    metadata), and whether a dependency call was made (Poe must then not retry the message)."""

    error: str | None = None
    error_type: ErrorType | None = None
    records: Mapping[str, Record] = field(default_factory=dict)
    spent: bool = False


class Answer:
    """The document of one reply: its parts in order, the files waiting to be sent, what it
    waits for, and its ending."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self.files: list[fp.Attachment] = []  # files to send before the next text
        # what the reply waits for now, for the progress line: bots by name, and the
        # creator's own wording (`waiting`) for the calls that have one
        self._asking: Counter[str] = Counter()
        self._saying: Counter[str] = Counter()
        self.ending: Ending | None = None
        self.changed = asyncio.Event()  # set by every change; cleared by the reader
        self._version = 0  # bumped by every change; the full render is cached per version
        self._rendered: tuple[int, str] = (-1, "")

    @property
    def finished(self) -> bool:
        return self.ending is not None

    def add_part(self, heading: str | None = None, *, deferred: bool = False) -> Part:
        part = Part(self, heading, deferred)
        self.parts.append(part)
        self.touch()
        return part

    def touch(self) -> None:
        self._version += 1
        self.changed.set()

    def finish(self, ending: Ending | None = None) -> None:
        """Ends the answer, once: nothing is written after this."""
        if self.ending is None:
            self.ending = ending or Ending()
            self.touch()

    @contextlib.contextmanager
    def waiting(self, label: str, *, worded: bool = False) -> Iterator[None]:
        """While inside, the reply waits for `label`: a bot by name, or the creator's own
        wording for a step (`worded`)."""
        named = self._saying if worded else self._asking
        named[label] += 1
        self.touch()
        try:
            yield
        finally:
            named[label] -= 1
            if named[label] <= 0:
                del named[label]
            self.touch()

    def awaited(self) -> str | None:
        """What the reply waits for now, in one line; None between calls."""
        said = list(self._saying)
        if self._asking:
            said.append(f"Waiting for {', '.join(self._asking)}…")
        return f"_{' · '.join(said)}_" if said else None

    @property
    def text(self) -> str:
        """The answer as it stands, before Poe's limits are applied."""
        return self.render()

    def visible(self) -> list[Part]:
        """The parts with something to show, in order."""
        return [part for part in self.parts if part.render()]

    def render(self, shown: Mapping[Part, str] | None = None) -> str:
        """The whole answer. With `shown`, each part as the user last saw it, except the live
        tail (the last part with something to show), which is rendered whole."""
        if shown is None and self._rendered[0] == self._version:
            return self._rendered[1]  # the delivery asks more than once per change
        if shown is None:
            rendered = [part.render() for part in self.parts]
        else:
            rendered = [part.render(shown.get(part, "")) for part in self.parts]
            live = self.visible()
            if live:
                tail = self.parts.index(live[-1])
                rendered[tail] = live[-1].render()
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
        if shown is None:
            self._rendered = (self._version, text)
        return text
