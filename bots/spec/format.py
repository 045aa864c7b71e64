"""The pipelines.yaml format, as typed pydantic models, and the walks over their step trees.

Each step kind is its own model, told apart by the one key it has (its `kind`: `bot`,
`parallel`, `route`, `loop`, `map`, `text`), so the engine walks typed objects; the kinds are
declared once, in `STEP_MODELS`, and everything else derives from it. A `BotSpec` is built
complete: as it is made it places each of its steps (the step's path in the file, its compiled
templates, a slider loop's most rounds), and nothing is written into it afterwards.
Cross-field rules that need the whole file (ids defined before use, budgets) live in `loader`
and `budget`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    field_validator,
    model_validator,
)

from bots.errors import TemplateProblem
from bots.spec.controls import Control, SliderControl, flat
from bots.spec.document import Loc, dotted
from bots.spec.templates import IDENTIFIER, Template

POE_CALL_CAP = 100
"""Poe refuses more than this many dependency calls for one user message."""

BOT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
POE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
"""A Poe bot's handle, as in poe.com/<name>: letters, digits, '-', '_' and '.'."""
PoeName = Annotated[str, Field(min_length=1, max_length=100, pattern=POE_NAME_PATTERN)]
MAX_ITEMS = 20
"""The most items a `map` may run its steps for (its budget multiplies by max_items)."""

Show = Literal["stream", "sections", "final", "hide"]
OnError = Literal["fail", "continue"]
Wait = Literal["all", "first"] | Annotated[int, Field(ge=1, le=20)]
Name = Annotated[str, Field(pattern=IDENTIFIER)]
LOOP_BOUND = re.compile(r"^\{\{\s*params\.(" + IDENTIFIER[1:-1] + r")\s*\}\}$")
"""A loop's `max` read from a slider control: "{{ params.NAME }}"."""


def _one_line(text: str) -> str:
    if "\n" in text or not text.strip():
        raise ValueError("expected one line of text (no line breaks), e.g. 'Thinking it over…'")
    return text


Wording = Annotated[str, Field(max_length=120), AfterValidator(_one_line)]
WAITING_HELP = (
    "What the progress line says while this step's calls (or the bot's) run and nothing is "
    "shown yet, instead of 'Waiting for <bot names>…'; one line. An inner step's wins."
)


class Model(BaseModel):
    # no key it does not know; numbers finite (they reach Poe as JSON, which has no NaN)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StepBase(Model):
    kind: ClassVar[str]
    """The key that makes a step this kind (its model's entry in `STEP_MODELS`)."""

    id: Name | None = Field(
        default=None, description="Name of the step's output in later templates."
    )
    show: Show | None = Field(
        default=None,
        description="How the user sees this step: stream, sections (parallel only), final or "
        "hide. Default: the last top-level step streams, the rest are hidden.",
    )
    when: str | None = Field(default=None, description="Template; the step is skipped unless true.")
    on_error: OnError = Field(default="fail", description="fail (default) or continue.")
    waiting: Wording | None = Field(default=None, description=WAITING_HELP)

    # Where the step stands in its bot (e.g. "steps[1].parallel[0]"): its stable key in
    # traces and reply metadata; and its compiled templates by field name ("prompt",
    # "parameters.size"...). Both are set once, by the BotSpec that holds the step, as it is made.
    _path: str = PrivateAttr(default="")
    _templates: dict[str, Template] = PrivateAttr(default_factory=dict)

    @property
    def path(self) -> str:
        return self._path

    def template(self, name: str) -> Template | None:
        """The compiled template of a field, or None when the field is not set."""
        return self._templates.get(name)

    def templated(self) -> Iterator[tuple[str, str]]:
        """Each template this step has, by field name, in the order the step uses them."""
        if self.when is not None:
            yield "when", self.when

    def nested(self) -> Iterator[tuple[Loc, StepBase]]:
        """The steps nested directly in this one, each with its place relative to it."""
        return iter(())

    def _place(self, loc: Loc, rounds: dict[str, int]) -> None:
        """Called once by the BotSpec being made: this step and those inside it learn their
        place, compile their templates (one that does not compile is left out: the loader
        reports it, and no such file is ever run), and a slider loop its most rounds."""
        self._path = path = dotted(loc)
        for name, source in self.templated():
            try:
                self._templates[name] = Template(source, f"{path}.{name}")
            except TemplateProblem:
                pass
        for inner, step in self.nested():
            step._place((*loc, *inner), rounds)


class Sampling(Model):
    """`repeat` in waves: up to `max` samples, `wave` at a time, stopping as soon as `agree`
    answers agree on their `key`, or `until` is true of the answers so far."""

    max: Annotated[int, Strict(), Field(ge=2, le=MAX_ITEMS)] = Field(
        description="The most samples (2 to 20): the worst case declared to Poe."
    )
    wave: Annotated[int, Strict(), Field(ge=1, le=MAX_ITEMS)] = Field(
        default=3, description="Samples asked at once (default 3)."
    )
    agree: Annotated[int, Strict(), Field(ge=2, le=MAX_ITEMS)] | None = Field(
        default=None, description="Stop once this many answers agree on their key."
    )
    key: str | None = Field(
        default=None,
        description="Template giving what an answer says, compared for agreement; it reads "
        "`answer`. Default: the whole answer, trimmed, case ignored.",
    )
    until: str | None = Field(
        default=None,
        description="Template over the answers so far (`answers`); sampling stops once it is true.",
    )

    @model_validator(mode="after")
    def _a_rule_within_the_ceiling(self) -> Sampling:
        if self.agree is None and self.until is None:
            raise ValueError(
                "waves need a rule to stop on: agree (how many answers must agree) or until "
                "(a condition), e.g. {max: 9, wave: 3, agree: 3}; a fixed count is repeat: N"
            )
        if self.wave > self.max:
            raise ValueError(f"wave {self.wave} is larger than max {self.max}; use 1 to {self.max}")
        if self.agree is not None and self.agree > self.max:
            raise ValueError(
                f"agree {self.agree} can never hold within max {self.max} samples; use 2 to "
                f"{self.max}"
            )
        if self.key is not None and self.agree is None:
            raise ValueError("key says what answers agree on: it needs agree")
        return self


Repeat = Annotated[
    Annotated[Annotated[int, Strict(), Field(ge=2, le=10)], Tag("count")]
    | Annotated[Sampling, Tag("waves")],
    Discriminator(lambda value: "waves" if isinstance(value, dict | Sampling) else "count"),
]
"""`repeat: N` (samples at once), or `repeat: {max, wave, ...}` (waves that stop early)."""


class CallStep(StepBase):
    """One call to a dependency bot."""

    bot: PoeName
    prompt: str | None = Field(default=None, description="Template; default: the user's message.")
    system: str | None = Field(default=None, description="Template for a system message.")
    history: bool = Field(default=True, description="Send the conversation so far.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The message's parameters (string values are templates)."
    )
    attachments: bool | list[Name] = Field(
        default=True,
        description="Files sent with the prompt: true (the user's), false (none), or a list "
        "of sources: user, and ids of earlier steps (the files they produced).",
    )
    retries: Annotated[int, Field(ge=0, le=5)] = 0
    fallback: list[PoeName] = Field(
        default_factory=list, description="Bots tried in order when the call fails."
    )
    timeout: Annotated[float, Field(gt=0, le=590)] | None = Field(
        default=None, description="Seconds for one try; default 120."
    )
    repeat: Repeat | None = Field(
        default=None,
        description="Independent calls made at once (2 to 10), or in waves that stop once "
        "the answers agree ({max, wave, agree, key, until}); the output is the list of their "
        "answers.",
    )

    kind: ClassVar[str] = "bot"

    def templated(self) -> Iterator[tuple[str, str]]:
        yield from super().templated()
        if self.prompt is not None:
            yield "prompt", self.prompt
        if self.system is not None:
            yield "system", self.system
        for name, value in self.parameters.items():
            if isinstance(value, str):
                yield f"parameters.{name}", value
        if isinstance(self.repeat, Sampling):
            if self.repeat.key is not None:
                yield "repeat.key", self.repeat.key
            if self.repeat.until is not None:
                yield "repeat.until", self.repeat.until

    @property
    def samples(self) -> int:
        """The most samples it takes: `repeat: N`, a wave's `max`, or 1."""
        if isinstance(self.repeat, Sampling):
            return self.repeat.max
        return self.repeat or 1

    @property
    def bots(self) -> list[str]:
        """The bots this step may call, in the order it tries them."""
        return [self.bot, *self.fallback]

    @property
    def sources(self) -> list[str]:
        """Where the files sent with the prompt come from: `user`, and step ids."""
        if isinstance(self.attachments, bool):
            return ["user"] if self.attachments else []
        return list(self.attachments)


class ParallelStep(StepBase):
    """Branches that run at the same time."""

    parallel: Annotated[list[Step], Field(min_length=1, max_length=20)]
    wait: Wait = Field(
        default="all",
        description="all; first (the first answer wins); or k: done when k branches succeed.",
    )

    kind: ClassVar[str] = "parallel"

    def nested(self) -> Iterator[tuple[Loc, StepBase]]:
        for i, branch in enumerate(self.parallel):
            yield ("parallel", i), branch


class RouteStep(StepBase):
    """Runs the case whose key equals the rendered `route` template."""

    route: str
    cases: Annotated[dict[str, list[Step]], Field(min_length=1)]
    default: list[Step] | None = None

    kind: ClassVar[str] = "route"

    def templated(self) -> Iterator[tuple[str, str]]:
        yield from super().templated()
        yield "route", self.route

    def nested(self) -> Iterator[tuple[Loc, StepBase]]:
        for value, case in self.cases.items():
            for i, step in enumerate(case):
                yield ("cases", value, i), step
        for i, step in enumerate(self.default or []):
            yield ("default", i), step


class LoopSpec(Model):
    max: int | str = Field(
        description='Rounds at most: 1 to 20, or "{{ params.NAME }}" naming a slider control.'
    )
    until: str | None = None
    steps: Annotated[list[Step], Field(min_length=1)]

    @field_validator("max", mode="before")
    @classmethod
    def _rounds(cls, value: Any) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 20:
            return value
        if isinstance(value, str) and LOOP_BOUND.match(value):
            return value
        raise ValueError(
            f"got {value!r}: loop.max is a whole number from 1 to 20, or "
            '"{{ params.NAME }}" naming a slider control'
        )

    # The most rounds it can run when a slider sets `max`: the slider's max_value; set once,
    # by the BotSpec that holds the loop (which has the controls), as it is made.
    _bound: int = PrivateAttr(default=0)

    @property
    def bound(self) -> int:
        return self.max if isinstance(self.max, int) else self._bound

    @property
    def slider(self) -> str | None:
        """The slider control whose value sets `max`, if one does."""
        found = LOOP_BOUND.match(self.max) if isinstance(self.max, str) else None
        return found.group(1) if found else None


def slider_rounds(control: Any) -> int | None:
    """The most rounds of a loop whose `max` reads this control: its max, when it is a slider
    of whole numbers from 0 or more to 20 or less; else None (no loop may read it)."""
    if (
        isinstance(control, SliderControl)
        and control.whole
        and 0 <= control.min
        and control.max <= 20
    ):
        return int(control.max)
    return None


class LoopStep(StepBase):
    """Repeats its steps up to `max` times, stopping early when `until` renders true."""

    loop: LoopSpec

    kind: ClassVar[str] = "loop"

    def templated(self) -> Iterator[tuple[str, str]]:
        yield from super().templated()
        if self.loop.until is not None:
            yield "until", self.loop.until

    def nested(self) -> Iterator[tuple[Loc, StepBase]]:
        for i, step in enumerate(self.loop.steps):
            yield ("loop", "steps", i), step

    def _place(self, loc: Loc, rounds: dict[str, int]) -> None:
        slider = self.loop.slider
        if slider is not None:
            self.loop._bound = rounds.get(slider, 0)  # none: the loader reports it
        super()._place(loc, rounds)


class MapStep(StepBase):
    """Runs its steps once per item of a list known at run time, concurrently."""

    map: str = Field(
        description='One template expression giving a list, e.g. "{{ plan | lines }}".'
    )
    max_items: Annotated[int, Field(ge=1, le=MAX_ITEMS)] = Field(
        description="The most items run (extra items are dropped); the budget counts this many."
    )
    as_: Name = Field(default="item", alias="as", description="The item's name in the steps.")
    concurrency: Annotated[int, Field(ge=1, le=MAX_ITEMS)] | None = Field(
        default=None, description="Items run at once; default all."
    )
    steps: Annotated[list[Step], Field(min_length=1)]

    kind: ClassVar[str] = "map"

    def templated(self) -> Iterator[tuple[str, str]]:
        yield from super().templated()
        yield "map", self.map

    def nested(self) -> Iterator[tuple[Loc, StepBase]]:
        for i, step in enumerate(self.steps):
            yield ("steps", i), step


class TextStep(StepBase):
    """Emits rendered text; calls nobody."""

    text: str

    kind: ClassVar[str] = "text"

    def templated(self) -> Iterator[tuple[str, str]]:
        yield from super().templated()
        yield "text", self.text


STEP_MODELS: dict[str, type[StepBase]] = {
    model.kind: model for model in (CallStep, ParallelStep, RouteStep, LoopStep, MapStep, TextStep)
}
"""Every step kind: the key that makes a step that kind, and its model."""
STEP_KINDS = tuple(STEP_MODELS)


def step_kind(value: Any) -> str | None:
    """The step kind of raw data (the one kind key present), or None."""
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        return present[0] if len(present) == 1 else None
    if isinstance(value, StepBase):
        return value.kind
    return None


if TYPE_CHECKING:
    Step = StepBase
else:  # one of the kinds of STEP_MODELS, told apart by its key
    Step = Annotated[
        Union[tuple(Annotated[model, Tag(kind)] for kind, model in STEP_MODELS.items())],  # noqa: UP007
        Discriminator(
            step_kind,
            custom_error_type="step_kind",
            custom_error_message=f"a step needs exactly one of {', '.join(STEP_KINDS)}",
        ),
    ]


class BotSpec(Model):
    """One Poe server bot, served at /<bot id>."""

    poe_name: PoeName | None = Field(
        default=None, description="The bot's handle on poe.com (poe.com/<poe_name>)."
    )
    access_key_env: str | None = Field(
        default=None,
        pattern=IDENTIFIER,
        description="Environment variable holding the access key; default <ID>_ACCESS_KEY.",
    )
    introduction: str | None = None
    allow_attachments: bool = True
    expand_text_attachments: bool | None = Field(
        default=None, description="Poe adds parsed_content to text attachments (Poe's default)."
    )
    enable_image_comprehension: bool | None = Field(
        default=None,
        description="Poe adds parsed_content to images (limits users to one image a message).",
    )
    controls: list[Control] = Field(
        default_factory=list, description="Poe's parameter controls: the knobs in its chat UI."
    )
    waiting: Wording | None = Field(default=None, description=WAITING_HELP)
    steps: Annotated[list[Step], Field(min_length=1)]

    def model_post_init(self, context: Any) -> None:
        rounds = {c.name: n for c in flat(self.controls) if (n := slider_rounds(c)) is not None}
        for i, step in enumerate(self.steps):
            step._place(("steps", i), rounds)


class PipelineFile(Model):
    """The whole of pipelines.yaml."""

    version: Literal[1]
    call_budget: Annotated[int, Strict(), Field(ge=1)] = Field(
        default=10, description="Most dependency calls one user message may cost (at most 100)."
    )
    known_bots: Annotated[list[PoeName], Field(max_length=1000)] = Field(
        default_factory=list,
        description="Private or community bots that Poe's public model list lacks: validate "
        "takes them as known.",
    )
    bots: Annotated[dict[str, BotSpec], Field(min_length=1)]

    @field_validator("call_budget")
    @classmethod
    def _within_poe_cap(cls, value: int) -> int:
        if value > POE_CALL_CAP:
            raise ValueError(
                f"call_budget {value} is above Poe's cap of {POE_CALL_CAP} calls per message; "
                f"use 1 to {POE_CALL_CAP}"
            )
        return value


def access_key_env(bot_id: str, spec: BotSpec) -> str:
    """The environment variable that holds a bot's access key."""
    return spec.access_key_env or f"{bot_id.upper().replace('-', '_')}_ACCESS_KEY"


def within(path: str, ancestor: str) -> bool:
    """Whether the step at `path` is the step at `ancestor` or nested in it
    ("steps[1].parallel[0]" is within "steps[1]"; "steps[10]" is not)."""
    return path == ancestor or path.startswith((ancestor + ".", ancestor + "["))


def wordings(steps: Sequence[StepBase], inherited: str | None = None) -> dict[str, str]:
    """Each call step's progress-line wording (`waiting`: its own, else the innermost step's
    around it, else `inherited`), by path; calls with none are left out."""
    found: dict[str, str] = {}
    for step in steps:
        own = step.waiting or inherited
        if isinstance(step, CallStep) and own:
            found[step.path] = own
        found |= wordings([inner for _, inner in step.nested()], own)
    return found


def walk(steps: Sequence[StepBase]) -> Iterator[StepBase]:
    """These steps and every step nested in them, in file order."""
    for step in steps:
        yield step
        yield from walk([inner for _, inner in step.nested()])


def ids_in(steps: Sequence[StepBase]) -> Iterator[str]:
    """Every step id in these steps and those nested in them."""
    return (step.id for step in walk(steps) if step.id)


def branch_key(step: StepBase, index: int) -> str:
    """A parallel branch's name: its id, else its bot, else its position."""
    if step.id:
        return step.id
    if isinstance(step, CallStep):
        return step.bot
    return f"branch{index + 1}"


for _model in (ParallelStep, RouteStep, LoopSpec, LoopStep, MapStep, BotSpec, PipelineFile):
    _model.model_rebuild()
