"""How a validation error reads: pydantic's errors located in the file and put in a
creator's words (what is wrong, what is allowed, a likely fix).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from . import format as fmt
from .controls import CONTROL_MODELS, control_kind
from .document import Loc
from .format import BotSpec, PipelineFile


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
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            current = None
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
    if len(loc) > 1 and loc[-2] == "controls" and isinstance(loc[-1], int):
        control = control_kind(data)
        return CONTROL_MODELS[control] if control else None
    kind = fmt.step_kind(data)
    return fmt.STEP_MODELS[kind] if kind else None


def explain(error: dict[str, Any], loc: Loc, parent: Any) -> str:
    kind, message, value = error["type"], error["msg"], error.get("input")
    key = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        model = _model_for(loc[:-1], parent)
        allowed = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
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
        return f"a step needs exactly one of bot, parallel, route, loop, text; found {found}"
    if kind == "control_kind":
        present = [k for k in CONTROL_MODELS if isinstance(value, dict) and k in value]
        found = " and ".join(present) if present else "none of them"
        return f"{message}; found {found}"
    if kind == "string_pattern_mismatch" and (
        key in ("bot", "fallback") or len(loc) > 1 and loc[-2] == "fallback"
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
    message = str(message).removeprefix("Value error, ")
    if kind.startswith("value_error") or kind == "assertion_error":
        return message
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"got {shown}: {message[0].lower()}{message[1:]}"
