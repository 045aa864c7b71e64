"""Loading pipelines.yaml: the document (`document`), the pydantic models, and every
cross-field check.

Every mistake is collected and reported together, each as `FILE:LINE:COL: key.path: what is
wrong, and what is expected`, where the line is where the offending key or value stands.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from bots.errors import ConfigError, Problem, TemplateProblem
from bots.spec import format as fmt
from bots.spec.budget import Cost, sequence_cost
from bots.spec.controls import Labeled, SectionControl, control_kind
from bots.spec.document import Document, Loc, dotted, read_source
from bots.spec.explanations import located
from bots.spec.format import (
    BotSpec,
    CallStep,
    ParallelStep,
    PipelineFile,
    StepBase,
    branch_key,
    ids_in,
    walk,
)
from bots.spec.templates import (
    BUILTINS,
    LOOP_VARIABLES,
    compile_template,
    expression_of,
)

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

    def add(self, loc: Loc, message: str, *, at: tuple[int, int] | None = None) -> None:
        line, column = at or self._position(loc)
        self.problems.append(Problem(self.name, line, column, dotted(loc), message))

    def _position(self, loc: Loc) -> tuple[int, int]:
        return self.document.position(loc)

    def check(self, text: str) -> Config:
        self.document = Document(text)
        for loc, message, at in self.document.problems:
            self.add(loc, message, at=at)
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
        for bot_id, plan in plans.items():
            if plan.cost.total > budget:
                self._over_budget(bot_id, plan, budget)
        if self.problems:
            raise ConfigError(self.problems)
        assert isinstance(header, PipelineFile)
        return Config(self.name, header.call_budget, plans)

    def _validate(self, model: type[BaseModel] | TypeAdapter[Any], data: Any, loc: Loc) -> Any:
        try:
            if isinstance(model, TypeAdapter):
                return model.validate_python(data)
            return model.model_validate(data)
        except ValidationError as e:
            for inner, message in located(e, data, loc):
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
        self._seen_ids: dict[str, Loc] = {}
        self._controls: dict[str, Labeled] = {}
        self._file_uses: set[str] = set()  # ids whose files a later step uses
        if isinstance(spec, BotSpec):
            self._check_controls(spec, base)
        valid_steps = [step for step in steps if step is not None]
        self._steps = {step.id: step for step in walk(valid_steps) if step.id}
        self._producers = {
            step_id
            for step_id, step in self._steps.items()
            if any(isinstance(inner, CallStep) for inner in walk([step]))
        }
        self._walk(steps, (*base, "steps"), set(BUILTINS) | broken_ids, loop_ids=set())
        valid = [step for step in steps if step is not None]
        if not isinstance(spec, BotSpec) or broken_ids or len(valid) != len(steps):
            return None
        # the bot as it is served: made anew with its own steps, which it places as it is made
        fields = {name: getattr(spec, name) for name in BotSpec.model_fields if name != "steps"}
        spec = BotSpec(**fields, steps=valid)
        used = [self._steps[i] for i in self._file_uses if i in self._steps]
        file_calls = frozenset(step.path for step in walk(used) if isinstance(step, CallStep))
        wording = fmt.wordings(valid, spec.waiting)
        return BotPlan(bot_id, spec, sequence_cost(valid), file_calls, wording)

    def _walk(
        self, steps: Sequence[StepBase | None], loc: Loc, defined: set[str], loop_ids: set[str]
    ) -> set[str]:
        """Checks steps in order (None: one that did not validate); returns the names defined
        once they have run."""
        defined = set(defined)
        for i, step in enumerate(steps):
            if step is not None:
                defined |= self._check_step(step, (*loc, i), defined, loop_ids)
        return defined

    def _check_step(
        self, step: StepBase, loc: Loc, defined: set[str], loop_ids: set[str]
    ) -> set[str]:
        if step.id is not None:
            if step.id in self._seen_ids:
                first = self.document.positions.get((*self._seen_ids[step.id], "id"), (0, 0))[0]
                self.add(
                    (*loc, "id"),
                    f"duplicate step id {step.id!r} (first at line {first}); "
                    "ids must be unique within a bot",
                )
            elif step.id in BUILTINS | LOOP_VARIABLES | {"user"}:
                what = "a source of attachments" if step.id == "user" else "a built-in variable"
                self.add((*loc, "id"), f"step id {step.id!r} is {what}; choose another name")
            self._seen_ids.setdefault(step.id, loc)
        sectioned = isinstance(step, (ParallelStep, fmt.MapStep)) or (
            isinstance(step, CallStep) and step.repeat
        )
        if step.show == "sections" and not sectioned:
            self.add(
                (*loc, "show"),
                f"'sections' is for parallel, map and repeat steps; this is a "
                f"{step.kind} step, so use stream, final or hide",
            )
        visible = defined | loop_ids
        self._template(step, "when", step.when, (*loc, "when"), visible)
        after: set[str] = set()
        if isinstance(step, CallStep):
            self._check_sources(step, loc, visible)
            self._template(step, "prompt", step.prompt, (*loc, "prompt"), visible)
            self._template(step, "system", step.system, (*loc, "system"), visible)
            for name, value in step.parameters.items():
                ploc = (*loc, "parameters", name)
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    self.add(
                        ploc,
                        f"got {value!r}: parameter values must be text, numbers, "
                        "booleans, lists or mappings (quote dates and times)",
                    )
                if isinstance(value, str):
                    self._template(step, f"parameters.{name}", value, ploc, visible)
        elif isinstance(step, fmt.TextStep):
            self._template(step, "text", step.text, (*loc, "text"), visible)
        elif isinstance(step, ParallelStep):
            if isinstance(step.wait, int) and step.wait > len(step.parallel):
                self.add(
                    (*loc, "wait"),
                    f"wait: {step.wait} needs {step.wait} branches to succeed, but there are "
                    f"{len(step.parallel)}; use 1 to {len(step.parallel)}, first or all",
                )
            keys: dict[str, int] = {}
            for i, branch in enumerate(step.parallel):
                key = branch_key(branch, i)
                if key in keys:
                    self.add(
                        (*loc, "parallel", i),
                        f"branches {keys[key]} and {i} would both be "
                        f"called {key!r}; give each branch its own id",
                    )
                keys.setdefault(key, i)
                after |= self._check_step(branch, (*loc, "parallel", i), defined, loop_ids)
        elif isinstance(step, fmt.RouteStep):
            self._template(step, "route", step.route, (*loc, "route"), visible)
            for value, case in step.cases.items():
                after |= self._walk(case, (*loc, "cases", value), defined, loop_ids)
            if step.default is not None:
                after |= self._walk(step.default, (*loc, "default"), defined, loop_ids)
        elif isinstance(step, fmt.MapStep):
            self._check_map(step, loc, visible)
            inner = loop_ids | {step.as_, "index"}
            self._walk(step.steps, (*loc, "steps"), defined, inner)  # its ids stay inside
        elif isinstance(step, fmt.LoopStep):
            self._check_loop_bound(step, loc)
            inner = loop_ids | LOOP_VARIABLES | set(ids_in(step.loop.steps))
            after |= self._walk(step.loop.steps, (*loc, "loop", "steps"), defined, inner)
            self._template(step, "until", step.loop.until, (*loc, "loop", "until"), after | inner)
        return after | ({step.id} if step.id else set())

    def _check_map(self, step: fmt.MapStep, loc: Loc, visible: set[str]) -> None:
        """`map` is one expression; `as` names the item without hiding another name."""
        if expression_of(step.map) is None:
            self.add(
                (*loc, "map"),
                f"got {step.map!r}: map is one template expression that gives a list, e.g. "
                '"{{ plan | lines }}" (a text is split into its lines)',
            )
        self._template(step, "map", step.map, (*loc, "map"), visible)
        taken = set(BUILTINS) | LOOP_VARIABLES | set(self._steps) | {"index"}
        if step.as_ in taken:
            self.add(
                (*loc, "as"),
                f"as: {step.as_!r} is already a name templates use; choose another, e.g. question",
            )

    def _template(
        self, step: StepBase, name: str, source: str | None, loc: Loc, visible: set[str]
    ) -> None:
        if source is None:
            return
        try:
            compiled = compile_template(source)
        except TemplateProblem as e:
            self.add(loc, str(e))
            return
        variables = compiled.variables
        for control in sorted(compiled.members.get("params", set()) - set(self._controls)):
            declared = ", ".join(self._controls) or "none (add them under this bot's controls:)"
            self.add(
                loc,
                f"template reads params.{control}, which no control declares; params holds "
                f"only this bot's controls, and they are: {declared}",
            )
        self._file_uses |= compiled.members.get("files", set())
        for source_id in sorted(compiled.members.get("files", set())):
            problem = self._source_problem(source_id, visible)
            if problem:
                self.add(loc, f"template reads files.{source_id}: {problem}")
        for variable in sorted(variables - visible):
            known = sorted(name for name in visible if name.isidentifier())
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.add(
                loc,
                f"template uses {variable!r}, which is not defined before this step; "
                f"{hint}available: {', '.join(known)}",
            )

    def _check_controls(self, spec: BotSpec, base: Loc) -> None:
        """Control names are unique within a bot (templates read them as params.NAME)."""
        for i, control in enumerate(spec.controls):
            if isinstance(control, SectionControl):
                at = [
                    ((*base, "controls", i, *where, j), item)
                    for where, inner in control.groups
                    for j, item in enumerate(inner)
                ]
            else:
                at = [((*base, "controls", i), control)]
            for where, item in at:
                if not isinstance(item, Labeled):
                    continue  # a divider
                if item.name in self._controls:
                    self.add(
                        (*where, control_kind(item) or ""),
                        f"a control named {item.name!r} is declared twice; each may appear once",
                    )
                self._controls.setdefault(item.name, item)

    def _check_loop_bound(self, step: fmt.LoopStep, loc: Loc) -> None:
        """A loop whose `max` reads a slider runs at most the slider's max_value rounds."""
        name = step.loop.slider
        if name is None:
            return
        if fmt.slider_rounds(self._controls.get(name)) is not None:
            return
        self.add(
            (*loc, "loop", "max"),
            f"loop.max reads params.{name}, which must be a slider control with whole-number "
            f"min of 0 or more, max of 20 or less and step, e.g. {{slider: {name}, label: Rounds, "
            "min: 1, max: 3}; the worst case then uses its max",
        )

    def _check_sources(self, step: CallStep, loc: Loc, visible: set[str]) -> None:
        if isinstance(step.attachments, bool):
            return
        self._file_uses |= set(step.attachments) - {"user"}
        for j, source in enumerate(step.attachments):
            problem = None if source == "user" else self._source_problem(source, visible)
            if problem:
                self.add((*loc, "attachments", j), f"{problem}; user names the user's files")

    def _source_problem(self, source: str, visible: set[str]) -> str | None:
        """Why step `source` cannot give files here, or None when it can."""
        if source not in self._steps:
            known = sorted(self._producers & visible)
            close = difflib.get_close_matches(source, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            listed = ", ".join(known) or "none"
            return f"no step has the id {source!r}; {hint}steps with files: {listed}"
        if source not in visible:
            return f"step {source!r} does not run before this one, so it has no files yet"
        if source not in self._producers:
            kind = self._steps[source].kind
            return f"step {source!r} is a {kind} step, which calls no bot and so has no files"
        return None

    def _over_budget(self, bot_id: str, plan: BotPlan, budget: int) -> None:
        parts = Counter[tuple[str, str]]()
        for path, bot, calls in plan.cost.parts:
            parts[(path, bot)] += calls
        made_of = ", ".join(f"{path} {bot} x{n}" for (path, bot), n in parts.items())
        self.add(
            ("bots", bot_id, "steps"),
            f"worst case is {plan.cost.total} calls per message, "
            f"over call_budget {budget}; it is made of: {made_of}. Lower retries, fallbacks "
            "or loop.max, or raise call_budget (at most 100)",
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
