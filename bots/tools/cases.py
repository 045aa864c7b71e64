"""Pipeline tests: the cases of pipelines.tests.yaml, checked against pipelines.yaml, and run.

A case sends one message (after optional earlier turns, with optional control values) to one
bot, with scripted bots (`script`) in place of Poe, through the real engine and merging, and
checks what happened: the reply, the calls, the routes taken, the steps that ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import fastapi_poe as fp
import regex
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from bots.errors import ConfigError, Problem
from bots.run.delivery import Pacing
from bots.run.engine import NO_CASE
from bots.spec import controls
from bots.spec.document import Document, Loc, dotted
from bots.spec.explanations import did_you_mean, validated
from bots.spec.filters import shorten
from bots.spec.format import CallStep, RouteStep, StepBase, walk
from bots.spec.loader import BotPlan, Config
from bots.spec.reading import read_source
from bots.tools import script, transcript
from bots.tools.script import Answers, Script, answer_model
from bots.tools.simulator import SimulatedCaller

DEFAULT_PATH = "pipelines.tests.yaml"
CASE_TIMEOUT = 60.0
"""Seconds one case may take; scripted bots answer at once, so only a stuck pipeline does."""
FAST = Pacing(delta_gap=0, delta_gap_after_2000=0, replace_gap=0, status_delay=3600)

REGEX_SECONDS = 1.0
"""How long a case's reply_matches may search one reply (`regex`'s timeout: a pattern that
backtracks without end fails its case instead of hanging the tests)."""


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


Texts = Annotated[list[str], BeforeValidator(_as_list)]
Count = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Turn(_Model):
    """An earlier turn of the conversation: what the user said, and what the bot answered."""

    user: str
    bot: str


class Expect(_Model):
    """What must hold after the case's message. Steps are named by id or by place."""

    reply_contains: Texts = Field(default_factory=list, description="Texts the reply contains.")
    reply_not_contains: Texts = Field(default_factory=list)
    reply_matches: str | None = Field(default=None, description="A regex the reply matches.")
    calls: Count | None = Field(default=None, description="Exactly this many calls in all.")
    max_calls: Count | None = None
    called: dict[str, Count] = Field(default_factory=dict, description="Bot -> exact calls.")
    not_called: list[str] = Field(default_factory=list)
    route: dict[str, Texts] = Field(
        default_factory=dict,
        description="Route step -> the case it took (a list: the case of each time it ran).",
    )
    ran: list[str] = Field(default_factory=list, description="Steps that ran at least once.")
    skipped: list[str] = Field(default_factory=list, description="Steps that never ran.")
    failed: list[str] = Field(default_factory=list, description="Steps that failed.")
    samples: dict[str, Count] = Field(
        default_factory=dict,
        description="Step with repeat -> the samples it asked (all its runs together).",
    )
    error: str | None = Field(default=None, description="Text of the note the reply failed with.")
    files: Count | None = Field(default=None, description="Files shown to the user.")

    @field_validator("reply_matches")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                regex.compile(value)
            except regex.error as e:
                raise ValueError(f"{value!r} is not a regular expression: {e}") from None
        return value


class Case(_Model):
    name: Annotated[str, Field(min_length=1)]
    bot: str
    message: str = "Hello"
    history: list[Turn] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict, description="The bot's controls' values.")
    answers: Answers = Field(default_factory=dict)
    expect: Expect = Field(default_factory=Expect)


_ANSWERS: TypeAdapter[Answers] = TypeAdapter(Answers)


class CasesFile(_Model):
    version: Literal[1]
    answers: Answers = Field(
        default_factory=dict, description="Answers every case uses (a case's own win)."
    )
    cases: Annotated[list[Case], Field(min_length=1)]


def _model_for(loc: Loc, data: Any) -> type[BaseModel] | None:
    if not loc:
        return CasesFile
    if "answers" in loc:
        return answer_model(loc, data)
    if len(loc) == 2:
        return Case
    if len(loc) == 3 and loc[2] == "expect":
        return Expect
    if len(loc) == 4 and loc[2] == "history":
        return Turn
    return None


@dataclass
class Suite:
    """A validated cases file: its cases, and where each stands in it."""

    path: str
    file: CasesFile
    lines: list[int]

    def script(self, case: Case) -> Script:
        folder = Path(self.path).parent
        return Script(self.file.answers, folder).merged(Script(case.answers, folder))


def read(path: str, config: Config) -> Suite:
    """Reads and checks a cases file against the pipelines; raises ConfigError listing every
    mistake at FILE:LINE:COL."""
    folder = Path(path).parent
    try:
        found, document = validated(path, CasesFile, _model_for)
    except ConfigError as invalid:  # the cases valid on their own are still checked, too
        raise ConfigError([*invalid.problems, *_valid_cases_problems(path, config)]) from None
    problems = [
        Problem(path, *document.position(loc), dotted(loc), message)
        for loc, message in _mistakes(found.answers, enumerate(found.cases), config, folder)
    ]
    if problems:
        raise ConfigError(problems)
    lines = [document.position(("cases", i))[0] for i in range(len(found.cases))]
    return Suite(path, found, lines)


def _valid_cases_problems(path: str, config: Config) -> list[Problem]:
    """For a cases file with mistakes: what its valid cases (and its shared answers, when
    those are valid) get wrong about the pipelines."""
    try:
        document = Document(read_source(path))
    except ConfigError:  # unreadable: said already
        return []
    data = document.data if isinstance(document.data, dict) else {}
    try:
        answers = _ANSWERS.validate_python(data.get("answers") or {})
    except ValidationError:
        answers = {}  # its own mistakes are reported already
    items = data.get("cases")
    cases: list[tuple[int, Case]] = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        try:
            cases.append((i, Case.model_validate(item)))
        except ValidationError:
            continue
    return [
        Problem(path, *document.position(loc), dotted(loc), message)
        for loc, message in _mistakes(answers, cases, config, Path(path).parent)
    ]


def _mistakes(
    answers: Answers, cases: Iterable[tuple[int, Case]], config: Config, folder: Path
) -> Iterator[tuple[Loc, str]]:
    """What valid-looking cases get wrong about the pipelines (each at its place)."""
    seen: dict[str, int] = {}
    for key in answers:  # shared answers: each must fit some bot
        if all(script.key_problem(key, plan) for plan in config.bots.values()):
            yield ("answers", key), f"{key!r} is no step id, step place or bot of any bot here"
    for key, problem in Script(answers, folder).file_problems():
        yield ("answers", key), problem
    for i, case in cases:
        at: Loc = ("cases", i)
        if case.name in seen:
            yield (*at, "name"), f"the name {case.name!r} is taken by case {seen[case.name] + 1}"
        seen.setdefault(case.name, i)
        plan = config.bots.get(case.bot)
        if plan is None:
            yield (
                (*at, "bot"),
                f"no bot {case.bot!r} in {config.path}; {did_you_mean(case.bot, list(config.bots))}"
                f"its bots: {', '.join(config.bots)}",
            )
            continue
        for key, problem in Script(case.answers, folder).problems(plan):
            yield (*at, "answers", key), problem
        try:
            controls.checked(plan.spec.controls, case.params)
        except ValueError as e:
            yield (*at, "params"), str(e)
        for loc, message in _expect_mistakes(case.expect, plan):
            yield (*at, "expect", *loc), message


def _expect_mistakes(expect: Expect, plan: BotPlan) -> Iterator[tuple[Loc, str]]:
    steps = _steps(plan)
    bots = sorted({bot for s in walk(plan.spec.steps) if isinstance(s, CallStep) for bot in s.bots})
    names = ", ".join(name for name in steps if not name.startswith("steps")) or "none"
    for key in ("ran", "skipped", "failed"):
        for i, ref in enumerate(getattr(expect, key)):
            if ref not in steps:
                yield (
                    (key, i),
                    f"/{plan.id} has no step {ref!r} (ids: {names}; or a place: steps[0])",
                )
    for ref in set(expect.ran) & set(expect.skipped):
        yield ("skipped",), f"{ref!r} is expected both to run and to be skipped"
    for key in ("reply_contains", "reply_not_contains"):
        if "" in getattr(expect, key):
            yield (key,), "an empty text is in every reply; write the text to look for"
    for ref, taken in expect.route.items():
        step = steps.get(ref)
        if not isinstance(step, RouteStep):
            routes = [name for name, s in steps.items() if isinstance(s, RouteStep)]
            yield (
                ("route", ref),
                f"{ref!r} is not a route step of /{plan.id}; its routes: "
                + (", ".join(routes) or "none"),
            )
            continue
        allowed = [*step.cases, "default" if step.default is not None else NO_CASE]
        for name in taken:
            if name not in allowed:
                yield (
                    ("route", ref),
                    f"{name!r} is not a case of {ref}; its cases: " + ", ".join(allowed),
                )
    for ref, count in expect.samples.items():
        step = steps.get(ref)
        if not isinstance(step, CallStep) or not step.repeat:
            sampled = [name for name, s in steps.items() if isinstance(s, CallStep) and s.repeat]
            yield (
                ("samples", ref),
                f"{ref!r} is not a step of /{plan.id} with repeat; those with it: "
                + (", ".join(sampled) or "none"),
            )
        elif count > step.samples:
            yield ("samples", ref), f"{ref} asks at most {step.samples} samples, not {count}"
    listed: list[tuple[Loc, str]] = [(("called", bot), bot) for bot in expect.called]
    listed += [(("not_called", i), bot) for i, bot in enumerate(expect.not_called)]
    for at, bot in listed:
        if bot not in bots:
            yield at, f"/{plan.id} never calls {bot!r}; it calls: {', '.join(bots)}"
    worst = plan.cost.total
    for key in ("calls", "max_calls"):
        wanted = getattr(expect, key)
        if wanted is not None and wanted > worst:
            yield (key,), f"/{plan.id} makes at most {worst} calls (its worst case), not {wanted}"


def _steps(plan: BotPlan) -> dict[str, StepBase]:
    """The plan's steps by id and by place."""
    found: dict[str, StepBase] = {}
    for step in walk(plan.spec.steps):
        if step.id:
            found[step.id] = step
        found[step.path] = step
    return found


# --- running ---------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    line: int
    failures: list[str] = field(default_factory=list)
    said: transcript.Transcript | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


async def run(suite: Suite, config: Config, case: Case, line: int) -> Result:
    """Runs one case with scripted bots, and checks its expectations."""
    plan = config.bots[case.bot]
    history: list[fp.ProtocolMessage] = []
    for turn in case.history:
        history += [
            fp.ProtocolMessage(role="user", content=turn.user),
            fp.ProtocolMessage(role="bot", content=turn.bot),
        ]
    params = controls.checked(plan.spec.controls, case.params)
    request = transcript.query(case.message, history=history, params=params, user_id="tests")
    caller = SimulatedCaller(0.0, 0.0, script=suite.script(case))
    result = Result(case, line)
    started = time.monotonic()
    try:
        async with asyncio.timeout(CASE_TIMEOUT):
            result.said = await transcript.answer(plan, request, caller, pacing=FAST)
    except TimeoutError:
        result.failures.append(f"the pipeline did not finish within {CASE_TIMEOUT:g} s")
    result.seconds = time.monotonic() - started
    if result.said is not None:
        result.failures += list(_unmet(case.expect, plan, result.said))
    return result


def _unmet(expect: Expect, plan: BotPlan, said: transcript.Transcript) -> Iterator[str]:
    """Each expectation that did not hold: what was expected, and what happened."""
    reply = repr(shorten(said.text, 160))
    for text in expect.reply_contains:
        if text not in said.text:
            yield f"reply_contains: {text!r} is not in the reply; {_nearest(said.text, text)}"
    for text in expect.reply_not_contains:
        if text in said.text:
            at = said.text.index(text)
            shown = said.text[max(0, at - 60) : at + len(text) + 60]
            dots = ("…" if at > 60 else "", "…" if at + len(text) + 60 < len(said.text) else "")
            where = f"{dots[0]}{shown}{dots[1]}"
            yield f"reply_not_contains: {text!r} is in the reply, here: {where!r}"
    if expect.reply_matches is not None:
        try:
            found = regex.search(expect.reply_matches, said.text, timeout=REGEX_SECONDS)
        except TimeoutError:
            yield (
                f"reply_matches: {expect.reply_matches!r} took over {REGEX_SECONDS:g} s on the "
                "reply (it backtracks without end: simplify it)"
            )
        else:
            if not found:
                yield (
                    f"reply_matches: {expect.reply_matches!r} does not match the reply, which "
                    f"is {reply}"
                )
    for ref, count in expect.samples.items():
        path = _steps(plan)[ref].path
        asked = [e for e in said.run.trace if e.kind == "sample" and e.path.split("#")[0] == path]
        if len(asked) != count:
            how = next((e.detail for e in said.run.trace if e.path == path and e.detail), "")
            yield f"samples {ref}: expected {count}, asked {len(asked)}" + (
                f" ({how})" if how else ""
            )
    total = said.calls
    if total > plan.cost.total:  # the guard stops this first; kept as the budget's check
        yield f"budget: {total} calls, over the {plan.cost.total} declared to Poe"
    if expect.calls is not None and total != expect.calls:
        yield f"calls: expected {expect.calls}, made {total} ({_per_bot(said.called)})"
    if expect.max_calls is not None and total > expect.max_calls:
        yield f"max_calls: expected at most {expect.max_calls}, made {total}"
    for bot, count in expect.called.items():
        made = said.called.get(bot, 0)
        if made != count:
            yield f"called: expected {bot} {_times(count)}, called {_times(made)}"
    for bot in expect.not_called:
        if said.called.get(bot, 0):
            yield f"not_called: {bot} was called {_times(said.called[bot])}"
    steps = _steps(plan)
    for ref, wanted in expect.route.items():
        taken = said.run.routes.get(steps[ref].path, [])
        if not taken:
            yield f"route {ref}: expected {', '.join(wanted)}, but the route never ran"
        elif taken != wanted and not (len(wanted) == 1 and set(taken) == set(wanted)):
            yield f"route {ref}: expected {', '.join(wanted)}, took {', '.join(taken)}"
    outcomes = _outcomes(said)
    for ref in expect.ran:
        if not outcomes.get(steps[ref].path, {"skipped"}) - {"skipped"}:
            yield f"ran: {ref} never ran"
    for ref in expect.skipped:
        if outcomes.get(steps[ref].path, {"skipped"}) - {"skipped"}:
            yield f"skipped: {ref} ran"
    for ref in expect.failed:
        if not any(o.startswith("failed") for o in outcomes.get(steps[ref].path, set())):
            yield f"failed: {ref} did not fail"
    if expect.error is None and said.error:
        yield f"the pipeline stopped: {said.error}"
    elif expect.error is not None and expect.error not in (said.error or ""):
        got = f"it stopped with {said.error!r}" if said.error else "it finished without one"
        yield f"error: expected a failure note containing {expect.error!r}; {got}"
    if expect.files is not None and len(said.files) != expect.files:
        yield f"files: expected {expect.files} shown, the reply showed {len(said.files)}"


def _outcomes(said: transcript.Transcript) -> dict[str, set[str]]:
    """Each step's outcomes (ok, skipped, failed: ...), by place (a map's items together)."""
    found: dict[str, set[str]] = {}
    for entry in said.run.trace:
        if entry.kind not in ("wait", "round", "param", "sample", "try"):
            found.setdefault(entry.path.split("#")[0], set()).add(entry.outcome)
    return found


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _per_bot(called: dict[str, int]) -> str:
    return ", ".join(f"{bot} {n}" for bot, n in called.items()) or "none"


async def run_all(suite: Suite, config: Config, select: str | None, out: TextIO) -> int:
    """Runs the suite's cases (those whose name or bot contains `select`), printing each
    result; returns the exit status: 0 when every case passed, 1 otherwise."""
    chosen = [
        (case, line)
        for case, line in zip(suite.file.cases, suite.lines, strict=True)
        if select is None or select.casefold() in f"{case.bot}: {case.name}".casefold()
    ]
    if not chosen:
        out.write(f"no case of {suite.path} matches -k {select!r}\n")
        return 1
    started = time.monotonic()
    failed = 0
    for case, line in chosen:
        result = await run(suite, config, case, line)
        name = f"{case.bot}: {case.name}"
        if result.passed and result.said is not None:
            calls = result.said.calls
            out.write(f"PASS  {name}  ({calls} call{'s' if calls != 1 else ''})\n")
            continue
        failed += 1
        out.write(f"FAIL  {name}  ({suite.path}:{line})\n")
        for failure in result.failures:
            out.write(f"      {failure}\n")
        if result.said is not None:
            table = result.said.trace_table(config.bots[case.bot].cost.total)
            out.write("".join(f"      {row}\n" for row in table.splitlines()))
    seconds = time.monotonic() - started
    passed = len(chosen) - failed
    out.write(f"{passed} passed, {failed} failed in {seconds:.2f} s\n")
    return 1 if failed else 0


def _nearest(reply: str, wanted: str) -> str:
    """Where the reply comes closest to a text it lacks (its first words, matched loosely),
    or, failing that, how the reply ends."""
    if not reply:
        return "the reply is empty"
    head = wanted.strip().split()[0] if wanted.strip() else ""
    at = reply.casefold().find(head.casefold()) if head else -1
    if at >= 0:
        shown = reply[max(0, at - 40) : at + len(wanted) + 40]
        return f"closest: {('…' if at > 40 else '') + shown!r}"
    return f"it ends {('…' if len(reply) > 160 else '') + reply[-160:]!r}"
