"""How a validation error reads: pydantic's errors located in the file and put in a
creator's words (what is wrong, what is allowed, a likely fix). Used for pipelines.yaml, and
for the other YAML files a creator writes (answers, test cases) through `validated`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bots.errors import ConfigError, Problem
from bots.spec import format as fmt
from bots.spec.controls import CONTROL_MODELS, control_kind
from bots.spec.document import Document, Loc, dotted
from bots.spec.format import BotSpec, PipelineFile
from bots.spec.reading import read_source

ModelFor = Callable[[Loc, Any], type[BaseModel] | None]
"""The model whose fields are the valid keys of the mapping at a place in a file."""
M = TypeVar("M", bound=BaseModel)


_MISSING = object()


def real_loc(loc: Sequence[str | int], data: Any) -> Loc:
    """Drops the union tags pydantic puts after a step's index, keeping the keys in the data."""
    out: list[str | int] = []
    skipped_at: dict[int, bool] = {}
    current = data
    for part in loc:
        # pydantic names the union member right after a step's index (or first, for one step)
        after_index = not out or isinstance(out[-1], int)
        tag = fmt.step_kind(current) or control_kind(current)
        if after_index and part == tag and not skipped_at.get(len(out)):
            skipped_at[len(out)] = True
            continue
        if out and out[-1] == "repeat" and part in ("count", "waves"):
            continue  # the union tag of `repeat: N` and `repeat: {max, ...}`
        if isinstance(part, int) and current is not _MISSING and not isinstance(current, list):
            continue  # one value that a model takes as a list of one (`answers: {x: text}`)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = _MISSING
        out.append(part)
    return tuple(out)


def _model_for(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model whose fields are the valid keys of the mapping at `loc` in the file."""
    if not loc:
        return PipelineFile
    if len(loc) == 2 and loc[0] == "bots":
        return BotSpec
    if loc[-1] == "loop":
        return fmt.LoopSpec
    if loc[-1] == "repeat":
        return fmt.Sampling
    if len(loc) > 1 and loc[-2] == "controls" and isinstance(loc[-1], int):
        control = control_kind(data)
        return CONTROL_MODELS[control] if control else None
    kind = fmt.step_kind(data)
    return fmt.STEP_MODELS[kind] if kind else None


def located(
    error: ValidationError, data: Any, base: Loc = (), model_for: ModelFor | None = None
) -> Iterator[tuple[Loc, str]]:
    """Each of pydantic's errors about `data` (found at `base` in its file): where it is in
    the data, and what it says in a creator's words."""
    for each in error.errors():
        inner = real_loc(each["loc"], data)
        parent = _get(data, inner[:-1])
        yield inner, explain(dict(each), (*base, *inner), parent, model_for or _model_for)


def validated(
    name: str, model: type[M], model_for: ModelFor, *, wrap: str | None = None
) -> tuple[M, Document]:
    """A YAML file validated as `model`, and the document (where each key stands); raises
    ConfigError with every problem at FILE:LINE:COL. With `wrap`, a file that is a list is
    read as the mapping {wrap: the list}."""
    document = Document(read_source(name))
    data = document.data
    wrapped = wrap is not None and isinstance(data, list)
    if wrapped:
        data = {wrap: data}

    def problem(loc: Loc, message: str, at: tuple[int, int] | None = None) -> Problem:
        line, column = at or document.position(loc[1:] if wrapped else loc)
        return Problem(name, line, column, dotted(loc), message)

    problems = [problem(loc, message, at) for loc, message, at in document.problems]
    if not isinstance(data, dict):
        if not problems:
            got = "an empty file" if data is None else f"a {type(data).__name__}"
            problems.append(problem((), f"expected a mapping of keys, got {got}"))
        raise ConfigError(problems)
    # what YAML could not read is None in the data: the models' words about it are not repeated
    unread = {(wrap, *loc) if wrapped else loc for loc, _, _ in document.problems}
    try:
        found = model.model_validate(data)
    except ValidationError as e:
        problems += [
            problem(loc, message)
            for loc, message in located(e, data, (), model_for)
            if loc not in unread
        ]
    if problems:
        raise ConfigError(problems)
    return found, document


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def did_you_mean(name: str, names: Sequence[str]) -> str:
    """'did you mean X? ' for the closest of `names`, or nothing: the hint every lookup of a
    name the creator wrote gives."""
    shortened = [n for n in names if len(name) >= 3 and n.startswith(name)]  # intro
    close = shortened[:1] or difflib.get_close_matches(name, names, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def explain(error: dict[str, Any], loc: Loc, parent: Any, model_for: ModelFor) -> str:
    kind, message, value = error["type"], error["msg"], error.get("input")
    key = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        model = model_for(loc[:-1], parent)
        allowed = sorted(model.model_fields) if model else []
        hint = did_you_mean(str(key), allowed)
        if model is fmt.CallStep and not hint:  # temperature, max_tokens...: the bot's own
            hint = f"the bot's own settings go under parameters: {{{key}: ...}}; "
        return f"unknown key {key!r}; {hint}allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{key!r} is required here"
    if kind == "step_kind":
        present = [k for k in fmt.STEP_KINDS if isinstance(value, dict) and k in value]
        found = " and ".join(present) if present else "none of them"
        if not isinstance(value, dict):
            found = f"{type(value).__name__} {value!r}"
        elif not present:
            guesses = [
                f"{close[0]!r} for {key!r}"
                for key in value
                if (close := difflib.get_close_matches(str(key), fmt.STEP_KINDS, n=1))
            ]
            if guesses:
                found += f" (did you mean {', '.join(guesses)}?)"
        return f"a step needs exactly one of {', '.join(fmt.STEP_KINDS)}; found {found}"
    if kind == "control_kind":
        present = [k for k in CONTROL_MODELS if isinstance(value, dict) and k in value]
        found = " and ".join(present) if present else "none of them"
        return f"{message}; found {found}"
    if kind == "list_type" and isinstance(value, str | int | float):
        return f"got {value!r}: a list is needed here; write [{value}]"
    if kind == "string_pattern_mismatch" and (
        key in ("bot", "fallback", "known_bots")
        or len(loc) > 1
        and loc[-2] in ("fallback", "known_bots")
    ):
        fixed = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-._")
        hint = f"; did you mean {fixed!r}?" if fixed and fixed != value else ""
        return (
            f"{value!r} cannot be a Poe bot name: names (as in poe.com/<name>) use only "
            f"letters, digits, '-', '_' and '.'{hint}"
        )
    if kind == "string_pattern_mismatch" and key in ("id", "access_key_env"):
        what = "step id" if key == "id" else "variable name"
        return (
            f"{what} {value!r} may use only letters, digits and _ and must not start with a "
            "digit (templates read step outputs by their id)"
        )
    if kind in ("too_long", "too_short") and isinstance(value, list | dict):
        context = error.get("ctx") or {}
        what = {"parallel": "branches", "cases": "cases", "steps": "steps"}.get(str(key), "items")
        if kind == "too_long":
            most = context.get("max_length")
            return (
                f"{len(value)} {what}, more than the {most} allowed here; split it in two, or "
                "leave some out"
            )
        return f"{len(value)} {what}: at least {context.get('min_length', 1)} needed here"
    message = str(message).removeprefix("Value error, ")
    if kind.startswith("value_error") or kind == "assertion_error":
        return message
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"got {shown}: {message[0].lower()}{message[1:]}"
