"""Where a running step's output goes (`Slot`) and what it sees (`Scope`).

A `Scope` is the run's variables and files, by step id. Each item of a `map` runs in a child
scope: it reads everything its parent sees, but its item, its index and the outputs of its own
steps are its own, so items running at once never see each other's. Each child also carries an
`instance` ("#2", "#2#1" nested) that keeps its calls apart in the reply's per-call history.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import fastapi_poe as fp

from bots.run.answer import Answer, Part


class Slot:
    """Where a step's visible output goes: a part of the reply made on first use, or nowhere."""

    def __init__(self, answer: Answer | None, mode: str, heading: str | None = None) -> None:
        self.answer = answer if mode != "hide" else None
        self.mode = mode
        self.heading = heading
        self._part: Part | None = None

    def part(self) -> Part | None:
        if self._part is None and self.answer is not None:
            self._part = self.answer.add_part(self.heading, deferred=self.mode == "final")
        return self._part

    def close(self) -> None:
        if self._part is not None:
            self._part.close()


HIDDEN = Slot(None, "hide")


def slots(answer: Answer, mode: str, headings: list[str]) -> list[Slot]:
    """One slot per branch, item or sample, shown as `mode` says: `sections` under their
    headings (shown at once, in order), `stream` side by side, `final` when done, or `hide`."""
    made = []
    for heading in headings:
        slot = Slot(answer, mode, heading if mode == "sections" else None)
        if mode == "sections":
            slot.part()
        made.append(slot)
    return made


@dataclass
class Scope:
    """The variables templates see and the files of each step id; writes stay in this scope."""

    variables: MutableMapping[str, Any]
    files: MutableMapping[str, list[fp.Attachment]]
    instance: str = ""

    def child(self, number: int, names: dict[str, Any]) -> Scope:
        """The scope of item `number` of a map, with its own `names` (the item, its index)."""
        described = ChainMap[str, Any]({}, self.variables["files"])
        own = ChainMap[str, Any]({**names, "files": described}, self.variables)
        return Scope(own, ChainMap({}, self.files), f"{self.instance}#{number}")
