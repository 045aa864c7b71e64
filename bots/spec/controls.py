"""Poe's parameter controls: the knobs a bot puts in Poe's chat UI, in short YAML forms.

Each kind is its own model, told apart by its key (as steps are), whose value is the parameter's
name: `aspect_ratio`, `drop_down`, `slider`, `toggle`, `text`, `text_area`; a `divider`; and a
`section` grouping others. `parameter_controls` turns them into fastapi_poe's models, so the
settings Poe gets follow Poe's own schema; `values` checks a user's parameters against them at
run time: every declared control has a value (the user's when valid, else its default), and
nothing undeclared gets through.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, get_args

import fastapi_poe as fp
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from bots.spec.templates import IDENTIFIER

Name = Annotated[str, Field(pattern=IDENTIFIER, max_length=64)]
Ratio = Annotated[str, Field(pattern=r"^\d+(\.\d+)?:\d+(\.\d+)?$")]
KINDS = ("aspect_ratio", "drop_down", "slider", "toggle", "text", "text_area", "divider")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Labeled(_Model):
    label: Annotated[str, Field(min_length=1, max_length=100)]
    description: str | None = None

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def default_value(self) -> Any:
        raise NotImplementedError

    def accept(self, value: Any) -> Any:
        """The value as this control holds it; raises ValueError, saying why, if invalid."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the user may set, for `chat --controls`."""
        raise NotImplementedError

    def poe(self) -> Any:
        """The control as fastapi_poe's model (Poe's schema)."""
        raise NotImplementedError


class _Choice(Labeled):
    """A control whose value is one of its options."""

    default: str | None = None

    @property
    def values(self) -> list[str]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _default_is_an_option(self) -> _Choice:
        if self.default is not None and self.default not in self.values:
            raise ValueError(
                f"default {self.default!r} is not one of the options: {', '.join(self.values)}"
            )
        return self

    @property
    def default_value(self) -> str:
        return self.default or self.values[0]

    def accept(self, value: Any) -> str:
        if value not in self.values:
            raise ValueError(f"{_shown(value)} is not one of {', '.join(self.values)}")
        return str(value)

    def describe(self) -> str:
        return " | ".join(self.values)


class AspectRatioControl(_Choice):
    aspect_ratio: Name
    options: Annotated[list[Ratio], Field(min_length=1)]
    default: Ratio | None = None

    @property
    def name(self) -> str:
        return self.aspect_ratio

    @property
    def values(self) -> list[str]:
        return list(self.options)

    def poe(self) -> fp.types.AspectRatio:
        options = []
        for option in self.options:
            width, height = (float(side) for side in option.split(":"))
            options.append(
                fp.types.AspectRatioOption(
                    value=option, width=_number(width), height=_number(height)
                )
            )
        return fp.types.AspectRatio(
            label=self.label,
            description=self.description,
            parameter_name=self.name,
            default_value=self.default_value,
            options=options,
        )


class DropDownControl(_Choice):
    drop_down: Name
    options: (
        Annotated[list[str], Field(min_length=1)] | Annotated[dict[str, str], Field(min_length=1)]
    )

    @property
    def name(self) -> str:
        return self.drop_down

    @property
    def values(self) -> list[str]:
        return list(self.options)

    def poe(self) -> fp.types.DropDown:
        names = self.options if isinstance(self.options, dict) else {v: v for v in self.options}
        return fp.types.DropDown(
            label=self.label,
            description=self.description,
            parameter_name=self.name,
            default_value=self.default_value,
            options=[fp.types.ValueNamePair(value=v, name=n) for v, n in names.items()],
        )


class SliderControl(Labeled):
    slider: Name
    min: float
    max: float
    step: Annotated[float, Field(gt=0)] = 1
    default: float | None = None

    @model_validator(mode="after")
    def _within_range(self) -> SliderControl:
        if not self.min < self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default:g} is outside {self.min:g} to {self.max:g}")
        return self

    @property
    def name(self) -> str:
        return self.slider

    @property
    def whole(self) -> bool:
        """Whether every value it can take is a whole number."""
        return all(float(x).is_integer() for x in (self.min, self.max, self.step))

    @property
    def default_value(self) -> float:
        return _number(self.min if self.default is None else self.default)

    def accept(self, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):  # a 400-digit whole number overflows
            raise ValueError(f"{_shown(value)} is not a number in range") from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"{_shown(value)} is not a number")
        if not self.min <= number <= self.max:
            raise ValueError(f"{number:g} is outside {self.min:g} to {self.max:g}")
        return _number(round(number) if self.whole else number)

    def describe(self) -> str:
        return f"{self.min:g} to {self.max:g}, step {self.step:g}"

    def poe(self) -> fp.types.Slider:
        return fp.types.Slider(
            label=self.label,
            description=self.description,
            parameter_name=self.name,
            default_value=self.default_value,
            min_value=_number(self.min),
            max_value=_number(self.max),
            step=_number(self.step),
        )


class ToggleControl(Labeled):
    toggle: Name
    default: bool = False

    @property
    def name(self) -> str:
        return self.toggle

    @property
    def default_value(self) -> bool:
        return self.default

    def accept(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{_shown(value)} is not true or false")

    def describe(self) -> str:
        return "true | false"

    def poe(self) -> fp.types.ToggleSwitch:
        return fp.types.ToggleSwitch(
            label=self.label,
            description=self.description,
            parameter_name=self.name,
            default_value=self.default,
        )


class _Textual(Labeled):
    default: str = ""
    placeholder: str | None = None
    _poe: ClassVar[type[fp.types.TextField] | type[fp.types.TextArea]]  # its model in Poe's schema

    @property
    def default_value(self) -> str:
        return self.default

    def accept(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"{_shown(value)} is not text")
        if len(value) > 10_000:
            raise ValueError(f"{len(value):,} characters is over 10,000")
        return value

    def describe(self) -> str:
        return "any text"

    def poe(self) -> fp.types.TextField | fp.types.TextArea:
        return self._poe(
            label=self.label,
            description=self.description,
            parameter_name=self.name,
            default_value=self.default,
            placeholder=self.placeholder,
        )


class TextControl(_Textual):
    text: Name
    _poe = fp.types.TextField

    @property
    def name(self) -> str:
        return self.text


class TextAreaControl(_Textual):
    text_area: Name
    _poe = fp.types.TextArea

    @property
    def name(self) -> str:
        return self.text_area


class DividerControl(_Model):
    divider: Literal[True]

    def poe(self) -> fp.types.Divider:
        return fp.types.Divider()


def control_kind(value: Any) -> str | None:
    """The control kind of raw data (the one kind key present), or None."""
    if isinstance(value, dict):
        present = [k for k in (*KINDS, "section") if k in value]
        return present[0] if len(present) == 1 else None
    for kind in (*KINDS, "section"):
        if getattr(value, kind, None) is not None:
            return kind
    return None


PLAIN_MESSAGE = "a control needs exactly one of " + ", ".join(KINDS)
_PLAIN_KINDS = (
    Annotated[AspectRatioControl, Tag("aspect_ratio")]
    | Annotated[DropDownControl, Tag("drop_down")]
    | Annotated[SliderControl, Tag("slider")]
    | Annotated[ToggleControl, Tag("toggle")]
    | Annotated[TextControl, Tag("text")]
    | Annotated[TextAreaControl, Tag("text_area")]
    | Annotated[DividerControl, Tag("divider")]
)
Plain = Annotated[
    _PLAIN_KINDS,
    Discriminator(
        control_kind, custom_error_type="control_kind", custom_error_message=PLAIN_MESSAGE
    ),
]


class TabControls(_Model):
    """One tab of a section: its name and its controls."""

    tab: Annotated[str, Field(min_length=1, max_length=100)]
    controls: Annotated[list[Plain], Field(min_length=1)]


class SectionControl(_Model):
    """Controls grouped under a heading in Poe's UI, directly or in tabs."""

    section: Annotated[str, Field(min_length=1, max_length=100)]
    collapsed: bool = False
    controls: Annotated[list[Plain], Field(min_length=1)] | None = None
    tabs: Annotated[list[TabControls], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _controls_or_tabs(self) -> SectionControl:
        if (self.controls is None) == (self.tabs is None):
            raise ValueError("a section has either controls or tabs (each with controls)")
        return self

    @property
    def groups(self) -> list[tuple[tuple[str | int, ...], list[Any]]]:
        """Its controls with where they stand in it: ("controls",) or ("tabs", i, "controls")."""
        if self.tabs is None:
            return [(("controls",), list(self.controls or []))]
        return [(("tabs", i, "controls"), list(tab.controls)) for i, tab in enumerate(self.tabs)]


Control = Annotated[
    _PLAIN_KINDS | Annotated[SectionControl, Tag("section")],
    Discriminator(
        control_kind,
        custom_error_type="control_kind",
        custom_error_message=PLAIN_MESSAGE + " (or section)",
    ),
]
# each kind key and its model, read off the tags of `Control` (one list, not two)
CONTROL_MODELS: dict[str, type[BaseModel]] = {
    str(tag.tag): model
    for model, tag in (get_args(member) for member in get_args(get_args(Control)[0]))
}


def flat(controls: Sequence[Any]) -> Iterator[Labeled]:
    """Every control that sets a parameter, sections opened, in order."""
    for control in controls:
        if isinstance(control, SectionControl):
            for _, inner in control.groups:
                yield from flat(inner)
        elif isinstance(control, Labeled):
            yield control


def parameter_controls(controls: Sequence[Any]) -> fp.types.ParameterControls | None:
    """The bot's `parameter_controls` setting; controls before any section form the first."""
    if not controls:
        return None
    sections: list[fp.types.Section] = []
    loose: list[Any] = []
    for control in controls:
        if isinstance(control, SectionControl):
            if loose:
                sections.append(fp.types.Section(controls=loose))
                loose = []
            tabs = None
            if control.tabs is not None:
                tabs = [
                    fp.types.Tab(name=tab.tab, controls=[c.poe() for c in tab.controls])
                    for tab in control.tabs
                ]
            sections.append(
                fp.types.Section(
                    name=control.section,
                    controls=[c.poe() for c in control.controls] if control.controls else None,
                    tabs=tabs,
                    collapsed_by_default=control.collapsed,
                )
            )
        else:
            loose.append(control.poe())
    if loose:
        sections.append(fp.types.Section(controls=loose))
    return fp.types.ParameterControls(sections=sections)


def values(controls: Sequence[Any], given: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Every declared control's value: the user's when valid, else its default; and, for each
    value that was not valid, a note saying so. Parameters no control declares are left out."""
    params: dict[str, Any] = {}
    notes: list[str] = []
    for control in flat(controls):
        if control.name not in given or given[control.name] is None:
            params[control.name] = control.default_value
            continue
        try:
            params[control.name] = control.accept(given[control.name])
        except ValueError as e:
            params[control.name] = control.default_value
            notes.append(f"{control.name}: {e}; used the default {control.default_value!r}")
    return params, notes


def checked(controls: Sequence[Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Values set by name (the terminal's --param, a test case's params), each checked as
    Poe's UI would allow it; a ValueError says what is wrong with the first that is not."""
    declared = {control.name: control for control in flat(controls)}
    found = {}
    for name, value in given.items():
        control = declared.get(name)
        if control is None:
            names = ", ".join(declared) or "none"
            raise ValueError(f"{name}: no control has that name; the controls: {names}")
        try:
            found[name] = control.accept(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return found


def _shown(value: Any) -> str:
    """A user's value as a note quotes it: never longer than a line."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
