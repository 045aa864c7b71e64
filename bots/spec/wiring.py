"""A bot's wiring: what each step may refer to, checked over the whole bot, in file order.

Ids are defined before they are read (a loop's own ids from the round before, a map item's
only inside it), are unique and take no name a template already gives a meaning; templates
read only what exists there (earlier ids, declared controls, files of steps that produce
them); `show: sections` is for steps with sections; a loop's `max` read from a control needs a
whole-number slider. Each mistake is reported where it stands (`report`), all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bots.errors import TemplateProblem
from bots.spec import format as fmt
from bots.spec.controls import KINDS, Labeled, SectionControl, control_kind
from bots.spec.document import Document, Loc
from bots.spec.explanations import did_you_mean
from bots.spec.format import BotSpec, CallStep, ParallelStep, StepBase, branch_key, ids_in, walk
from bots.spec.templates import (
    BUILTINS,
    JINJA_NAMES,
    LOOP_VARIABLES,
    compile_template,
    expression_of,
)


class Wiring:
    """The references of one bot's steps, checked; `file_uses` names the steps whose files a
    later step uses. `spec` is None when the bot's own keys did not validate: then the names
    its controls declare are read from `raw_controls` as written, so a template reading one
    of them is not told it is missing, and one reading another still is."""

    def __init__(
        self,
        report: Callable[[Loc, str], None],
        document: Document,
        spec: BotSpec | None,
        base: Loc,
        raw_controls: Any = None,
    ) -> None:
        self.report = report
        self.document = document
        self._seen_ids: dict[str, Loc] = {}
        self._controls: dict[str, Labeled] = {}
        self._declared = set() if spec is not None else set(_raw_names(raw_controls))
        self.file_uses: set[str] = set()  # ids whose files a later step uses
        self._steps: dict[str, StepBase] = {}
        self._producers: set[str] = set()
        if spec is not None:
            self._check_controls(spec, base)

    def check(self, steps: Sequence[StepBase | None], loc: Loc, broken_ids: set[str]) -> None:
        """Checks a bot's steps (None: one that did not validate, whose ids are `broken_ids`)."""
        valid = [step for step in steps if step is not None]
        self._steps = {step.id: step for step in walk(valid) if step.id}
        self._producers = {
            step_id
            for step_id, step in self._steps.items()
            if any(isinstance(inner, CallStep) for inner in walk([step]))
        }
        self._walk(steps, loc, set(BUILTINS) | broken_ids, loop_ids=set())

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
                self.report(
                    (*loc, "id"),
                    f"duplicate step id {step.id!r} (first at line {first}); "
                    "ids must be unique within a bot",
                )
            elif step.id in BUILTINS | LOOP_VARIABLES | {"user"}:
                what = "a source of attachments" if step.id == "user" else "a built-in variable"
                self.report((*loc, "id"), f"step id {step.id!r} is {what}; choose another name")
            elif step.id in JINJA_NAMES:
                self.report(
                    (*loc, "id"),
                    f"step id {step.id!r} is a name Jinja2 templates already use, so templates "
                    "could not read this step's output; choose another name",
                )
            self._seen_ids.setdefault(step.id, loc)
        sectioned = isinstance(step, (ParallelStep, fmt.MapStep)) or (
            isinstance(step, CallStep) and step.repeat
        )
        if step.show == "sections" and not sectioned:
            self.report(
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
            if isinstance(step.repeat, fmt.Sampling):
                rloc = (*loc, "repeat")
                key, until = step.repeat.key, step.repeat.until
                self._template(step, "repeat.key", key, (*rloc, "key"), visible | {"answer"})
                self._template(step, "repeat.until", until, (*rloc, "until"), visible | {"answers"})
            for name, value in step.parameters.items():
                ploc = (*loc, "parameters", name)
                try:
                    json.dumps(value)
                except (TypeError, ValueError):
                    self.report(
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
                self.report(
                    (*loc, "wait"),
                    f"wait: {step.wait} needs {step.wait} branches to succeed, but there are "
                    f"{len(step.parallel)}; use 1 to {len(step.parallel)}, first or all",
                )
            keys: dict[str, int] = {}
            for i, branch in enumerate(step.parallel):
                key = branch_key(branch, i)
                if key in keys:
                    self.report(
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
            self.report(
                (*loc, "map"),
                f"got {step.map!r}: map is one template expression that gives a list, e.g. "
                '"{{ plan | lines }}" (a text is split into its lines)',
            )
        self._template(step, "map", step.map, (*loc, "map"), visible)
        taken = set(BUILTINS) | LOOP_VARIABLES | JINJA_NAMES | set(self._steps) | {"index"}
        if step.as_ in taken:
            self.report(
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
            self.report(loc, str(e))
            return
        variables = compiled.variables
        declared_names = [*self._controls, *sorted(self._declared - set(self._controls))]
        unknown = compiled.members.get("params", set()) - set(declared_names)
        for control in sorted(unknown):
            declared = ", ".join(declared_names) or "none (add them under this bot's controls:)"
            self.report(
                loc,
                f"template reads params.{control}, which no control declares; params holds "
                f"only this bot's controls, and they are: {declared}",
            )
        self.file_uses |= compiled.members.get("files", set())
        for source_id in sorted(compiled.members.get("files", set())):
            problem = self._source_problem(source_id, visible)
            if problem:
                self.report(loc, f"template reads files.{source_id}: {problem}")
        for variable in sorted(variables - visible):
            known = sorted(name for name in visible if name.isidentifier())
            hint = did_you_mean(variable, known)
            self.report(
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
                    self.report(
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
        self.report(
            (*loc, "loop", "max"),
            f"loop.max reads params.{name}, which must be a slider control with whole-number "
            f"min of 0 or more, max of 20 or less and step, e.g. {{slider: {name}, label: Rounds, "
            "min: 1, max: 3}; the worst case then uses its max",
        )

    def _check_sources(self, step: CallStep, loc: Loc, visible: set[str]) -> None:
        if isinstance(step.attachments, bool):
            return
        self.file_uses |= set(step.attachments) - {"user"}
        for j, source in enumerate(step.attachments):
            problem = None if source == "user" else self._source_problem(source, visible)
            if problem:
                self.report((*loc, "attachments", j), f"{problem}; user names the user's files")

    def _source_problem(self, source: str, visible: set[str]) -> str | None:
        """Why step `source` cannot give files here, or None when it can."""
        if source not in self._steps:
            known = sorted(self._producers & visible)
            hint = did_you_mean(source, known)
            listed = ", ".join(known) or "none"
            return f"no step has the id {source!r}; {hint}steps with files: {listed}"
        if source not in visible:
            return f"step {source!r} does not run before this one, so it has no files yet"
        if source not in self._producers:
            kind = self._steps[source].kind
            return f"step {source!r} is a {kind} step, which calls no bot and so has no files"
        return None


def _raw_names(controls: Any) -> Iterator[str]:
    """The names controls declare as written (a `slider: rounds` names rounds), sections and
    tabs included, for a bot whose controls did not all validate."""
    if not isinstance(controls, list):
        return
    for control in controls:
        if not isinstance(control, dict):
            continue
        for kind in KINDS:
            if isinstance(control.get(kind), str):
                yield control[kind]
        yield from _raw_names(control.get("controls"))
        for tab in control.get("tabs") or []:
            if isinstance(tab, dict):
                yield from _raw_names(tab.get("controls"))
