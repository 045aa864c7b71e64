"""Loading pipelines.yaml: the document (`document`), the pydantic models, and every
cross-field check.

Every mistake is collected and reported together, each as `FILE:LINE:COL: key.path: what is
wrong, and what is expected`, where the line is where the offending key or value stands.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from bots.errors import ConfigError, Problem
from bots.spec import format as fmt
from bots.spec.budget import Cost, largest, sequence_cost
from bots.spec.document import Document, Loc, dotted
from bots.spec.explanations import located
from bots.spec.format import (
    BotSpec,
    CallStep,
    PipelineFile,
    StepBase,
    walk,
)
from bots.spec.reading import read_source
from bots.spec.wiring import Wiring

DEFAULT_PATH = "pipelines.yaml"


@dataclass(frozen=True)
class BotPlan:
    """One validated bot: its spec and its worst-case cost."""

    id: str
    spec: BotSpec
    cost: Cost
    # the paths of the call steps whose files a later step uses (for the dry run)
    file_calls: frozenset[str] = frozenset()
    # the progress line's wording for each call step that has one (`waiting`), by path
    wording: Mapping[str, str] = field(default_factory=dict)

    @property
    def dependencies(self) -> dict[str, int]:
        """Exactly what the bot declares to Poe as `server_bot_dependencies`."""
        return dict(self.cost.per_bot)

    @property
    def access_key_env(self) -> str:
        return fmt.access_key_env(self.id, self.spec)


@dataclass(frozen=True)
class Config:
    """A validated pipelines.yaml."""

    path: str
    call_budget: int
    bots: dict[str, BotPlan] = field(default_factory=dict)
    known_bots: frozenset[str] = frozenset()  # bots Poe's public list lacks (see catalog)


def load(path: str | Path = DEFAULT_PATH) -> Config:
    """Reads and validates a pipelines file; raises ConfigError listing every mistake."""
    name = str(path)
    return parse(read_source(name), name)


def parse(text: str, name: str = DEFAULT_PATH) -> Config:
    """Validates the text of a pipelines file; raises ConfigError listing every mistake."""
    return _Checker(name).check(text)


# --- the checks ------------------------------------------------------------------------------


_BOT_ID = re.compile(fmt.BOT_ID_PATTERN)
_STEP: TypeAdapter[StepBase] = TypeAdapter(fmt.Step)


class _Checker:
    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []
        self.document = Document("")
        self._unread: set[Loc] = set()
        # bots with a mistake, costed as far as they validated: (cost, their steps)
        self._partial: dict[str, tuple[Cost, BotSpec]] = {}

    def add(self, loc: Loc, message: str, *, at: tuple[int, int] | None = None) -> None:
        line, column = at or self._position(loc)
        self.problems.append(Problem(self.name, line, column, dotted(loc), message))

    def _position(self, loc: Loc) -> tuple[int, int]:
        return self.document.position(loc)

    def check(self, text: str) -> Config:
        self.document = Document(text)
        for loc, message, at in self.document.problems:
            self.add(loc, message, at=at)
        # a value the document could not read is None: what the models say of it is noise
        self._unread = {loc for loc, _, _ in self.document.problems}
        data = self.document.data
        if not isinstance(data, dict):
            if not self.problems:
                got = "an empty file" if data is None else f"a {type(data).__name__}"
                self.add((), f"expected a mapping with 'version: 1' and 'bots:', got {got}")
            raise ConfigError(self.problems)
        top = {k: v for k, v in data.items() if k != "bots"}
        header = self._validate(PipelineFile, {**top, "bots": {"_": {"steps": [{"text": ""}]}}}, ())
        bots_data = data.get("bots")
        plans: dict[str, BotPlan] = {}
        if isinstance(bots_data, dict):
            seen: dict[str, str] = {}
            for bot_id, bot_data in bots_data.items():
                self._check_bot_id(bot_id, seen)
                plan = self._check_bot(bot_id, bot_data)
                if plan is not None:
                    plans[bot_id] = plan
            if not bots_data:
                self.add(("bots",), "no bots are declared; add at least one under 'bots:'")
        elif "bots" in data:
            self._validate(PipelineFile, data, ())  # reports what is wrong with `bots`
        else:
            self.add((), "'bots' is required: a mapping of bot id to its steps")
        budget = header.call_budget if isinstance(header, PipelineFile) else _raw_budget(data)
        costed = {bot_id: (plan.cost, plan.spec) for bot_id, plan in plans.items()}
        for bot_id, (cost, spec) in {**costed, **self._partial}.items():
            if cost.total > budget:
                self._over_budget(bot_id, cost, spec, budget, sure=bot_id in plans)
        if self.problems:
            raise ConfigError(self.problems)
        assert isinstance(header, PipelineFile)
        return Config(self.name, header.call_budget, plans, frozenset(header.known_bots))

    def _validate(self, model: type[BaseModel] | TypeAdapter[Any], data: Any, loc: Loc) -> Any:
        try:
            if isinstance(model, TypeAdapter):
                return model.validate_python(data)
            return model.model_validate(data)
        except ValidationError as e:
            for inner, message in located(e, data, loc):
                if (*loc, *inner) not in self._unread:
                    self.add((*loc, *inner), message)
            return None

    def _check_bot_id(self, bot_id: str, seen: dict[str, str]) -> None:
        loc: Loc = ("bots", bot_id)
        if not _BOT_ID.match(bot_id):
            self.add(
                loc,
                f"bot id {bot_id!r} cannot be a URL path segment; use letters, digits, '-' and "
                "'_' (starting with a letter or digit, at most 64 characters)",
            )
        other = seen.setdefault(bot_id.lower(), bot_id)
        if other != bot_id:
            self.add(
                loc,
                f"bot ids {other!r} and {bot_id!r} differ only in case; their paths "
                "would be confused, so rename one",
            )

    def _check_bot(self, bot_id: str, data: Any) -> BotPlan | None:
        """Validates one bot step by step, so one broken step hides no other mistake."""
        base: Loc = ("bots", bot_id)
        steps_data = data.get("steps") if isinstance(data, dict) else None
        if not isinstance(steps_data, list) or not steps_data:
            self._validate(BotSpec, data, base)
            return None
        placeholder = {**data, "steps": [{"text": ""}]}
        spec = self._validate(BotSpec, placeholder, base)
        steps: list[StepBase | None] = []
        broken_ids: set[str] = set()
        for i, item in enumerate(steps_data):
            step = self._validate(_STEP, item, (*base, "steps", i))
            steps.append(step if isinstance(step, StepBase) else None)
            if step is None:
                broken_ids |= set(_raw_ids(item))
        known = spec if isinstance(spec, BotSpec) else None
        raw_controls = data.get("controls") if isinstance(data, dict) else None
        wiring = Wiring(self.add, self.document, known, base, raw_controls)
        wiring.check(steps, (*base, "steps"), broken_ids)
        valid = [step for step in steps if step is not None]
        if not isinstance(spec, BotSpec) or broken_ids or len(valid) != len(steps):
            # still costed, broken steps as none, so a budget it is sure to pass is said too
            whole = [step or fmt.TextStep(text="") for step in steps]
            costed = BotSpec(steps=whole)
            self._partial[bot_id] = sequence_cost(costed.steps), costed
            return None
        # the bot as it is served: made anew with its own steps, which it places as it is made
        fields = {name: getattr(spec, name) for name in BotSpec.model_fields if name != "steps"}
        spec = BotSpec(**fields, steps=valid)
        placed = {step.id: step for step in walk(spec.steps) if step.id}
        used = [placed[i] for i in wiring.file_uses if i in placed]
        file_calls = frozenset(step.path for step in walk(used) if isinstance(step, CallStep))
        wording = fmt.wordings(spec.steps, spec.waiting)
        return BotPlan(bot_id, spec, sequence_cost(spec.steps), file_calls, wording)

    def _over_budget(
        self, bot_id: str, cost: Cost, spec: BotSpec, budget: int, *, sure: bool
    ) -> None:
        parts = Counter[tuple[str, str]]()
        for path, bot, calls in cost.parts:
            parts[(path, bot)] += calls
        made_of = ", ".join(f"{path} {bot} x{n}" for (path, bot), n in parts.items())
        at_least = "" if sure else "at least "  # the steps that did not validate are not counted
        raise_it = (
            f", or raise call_budget (at most {fmt.POE_CALL_CAP})"
            if budget < fmt.POE_CALL_CAP
            else ""
        )
        self.add(
            ("bots", bot_id, "steps"),
            f"worst case is {at_least}{cost.total} calls per message, over call_budget {budget}; "
            f"it is made of: {made_of}. The most: {'; '.join(largest(spec.steps))}. Lower "
            f"those{raise_it}",
        )


def _raw_ids(data: Any) -> Iterator[str]:
    """Step ids found anywhere in raw data (of a step that did not validate)."""
    if isinstance(data, dict):
        if isinstance(data.get("id"), str):
            yield data["id"]
        for value in data.values():
            yield from _raw_ids(value)
    elif isinstance(data, list):
        for item in data:
            yield from _raw_ids(item)


def _raw_budget(data: dict[str, Any]) -> int:
    value = data.get("call_budget", 10)
    return value if isinstance(value, int) and 1 <= value <= fmt.POE_CALL_CAP else 10
