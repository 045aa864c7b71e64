"""The template sandbox: Jinja2's immutable sandbox, bounded in what a template can build and
how long it can run, at load and at run time.

Jinja2's sandbox keeps templates away from private attributes and mutation, but not from
size or time: `{{ 10 ** 100000000 }}` is folded while compiling (outside any sandbox), `'a' *
10**10` asks for gigabytes, and loops nest. Here:

- nothing is folded while compiling (the optimizer is off), so loading a file never computes;
- `*`, `**` and `%` are checked before they run: a text or list of at most `MAX_SIZE` items,
  numbers of at most `MAX_BITS` bits, format widths of at most six digits;
- `~` (joining texts) is checked the same way, and so is any call a template makes (a filter,
  `range`, a text's method): no whole-number argument above `MAX_SIZE`;
- every loop counts its turns against `MAX_TURNS` per render, and every turn and call looks at
  the clock: a render stops after `MAX_SECONDS`;
- a render's output stops at `MAX_SIZE` characters;
- `namespace`, `lipsum`, `cycler` and `joiner` are gone, and macros are refused at load, so a
  template keeps no state that grows from turn to turn.

A template past a bound fails its step (`Bounded`, a ValueError), which `on_error` decides,
like any other failed template.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Callable, Iterable, Iterator
from functools import wraps
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bots.spec.filters import FILTERS

MAX_SIZE = 1_000_000
"""The longest text or list a template may build, and the largest whole number it may pass."""
MAX_BITS = 4_096
"""The largest number `**` may make (bits: about 1,200 digits)."""
MAX_TURNS = 100_000
"""Loop turns in one render, all loops together."""
MAX_SECONDS = 2.0
"""How long one render may run."""
REMOVED = ("namespace", "lipsum", "cycler", "joiner")
"""Jinja2's globals a template may not use: state that grows from turn to turn, or filler."""
_WIDE = re.compile(r"\d{7,}")  # a format width or precision of a million or more


class Bounded(ValueError):
    """A template went past one of the sandbox's bounds."""


class _Budget:
    """One render's allowance of loop turns and time."""

    def __init__(self) -> None:
        self.turns = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise Bounded(f"the template ran for more than {MAX_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("budget", default=None)


def _current() -> _Budget:
    # outside `bounded` (which every render of `templates` is in), the clock still counts
    return _budget.get() or _Budget()


def bounded(render: Callable[[], Any]) -> Any:
    """Runs one render (or evaluation) with a fresh budget of turns and time."""
    token = _budget.set(_Budget())
    try:
        return render()
    finally:
        _budget.reset(token)


def _turns(iterable: Iterable[Any]) -> Iterator[Any]:
    budget = _current()
    for item in iterable:
        budget.turns += 1
        if budget.turns > MAX_TURNS:
            raise Bounded(f"the template's loops ran more than {MAX_TURNS:,} turns")
        budget.tick()
        yield item


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


def _joined(*pieces: Any) -> str:
    total = 0
    texts = []
    for piece in pieces:
        text = str(piece)
        total += len(text)
        if total > MAX_SIZE:
            raise Bounded(f"the template would build a text over {MAX_SIZE:,} characters")
        texts.append(text)
    return "".join(texts)


def _check_arguments(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_SIZE:
            raise Bounded(f"the template passed {arg:.3g}, over {MAX_SIZE:,}")


def _check_format(text: Any) -> None:
    if isinstance(text, str) and _WIDE.search(text):
        raise Bounded("the template formats with a width or precision of a million or more")


def _bounded_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose arguments (not the value it filters) are checked before it runs."""
    first = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0  # the value

    @wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        _current().tick()
        value, rest = (args[first], args[first + 1 :]) if len(args) > first else (None, ())
        _check_arguments([*rest, *kwargs.values()])
        if function.__name__ == "do_format":
            _check_format(value)
        elif function.__name__ == "do_replace":
            _check_replace(value, *rest[:2])
        return function(*args, **kwargs)

    return checked


def _check_replace(text: Any, old: Any = "", new: Any = "", *_: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        worst = len(text) + (len(text) // max(1, len(old)) + 1) * len(new)
        if worst > MAX_SIZE:
            raise Bounded(f"the template's replace could build a text over {MAX_SIZE:,} characters")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with bounds on size and time (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _current().tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if _size(seq) and isinstance(count, int) and _size(seq) * count > MAX_SIZE:
                    raise Bounded(
                        f"the template would build a text or list over {MAX_SIZE:,} items"
                    )
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(1, abs(left).bit_length()) * right > MAX_BITS:
                    raise Bounded(f"the template would make a number over {MAX_BITS:,} bits")
        elif operator == "%":
            _check_format(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        _check_format(value.__self__)  # '{:1000000000}'.format(...)

        def checked(*args: Any, **kwargs: Any) -> str:
            for arg in [*args, *kwargs.values()]:  # a width given as an argument: '{:{w}}'
                _check_format(arg if isinstance(arg, str) else None)
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _current().tick()
        _check_arguments([*args, *kwargs.values()])
        if getattr(__obj, "__name__", "") == "replace":
            _check_replace(getattr(__obj, "__self__", None), *args)
        return super().call(__context, __obj, *args, **kwargs)


def environment() -> BoundedEnvironment:
    """The templates' environment: bounded, undefined names are errors, no autoescaping."""
    env = BoundedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        optimized=False,  # no constant folding at load: `{{ 10 ** 10**9 }}` is never computed
    )
    env.filters.update(FILTERS)  # lines, from_json, vote, numbered, shorten
    env.filters = {name: _bounded_filter(f) for name, f in env.filters.items()}
    for name in REMOVED:
        env.globals.pop(name, None)
    env.globals.update(_turns=_turns, _joined=_joined)
    return env


def refused(ast: nodes.Template) -> str | None:
    """Why a template is refused at load for what it is built of, or None."""
    if any(True for _ in ast.find_all((nodes.Macro, nodes.CallBlock))):
        return "templates may not define macros or call blocks; write the text out instead"
    return None


def bound(ast: nodes.Template) -> nodes.Template:
    """The template, rewritten so its loops count their turns and its `~` joins are checked."""
    for loop in ast.find_all(nodes.For):
        loop.iter = nodes.Call(nodes.Name("_turns", "load"), [loop.iter], [], None, None)
    for concat in list(ast.find_all(nodes.Concat)):
        call = nodes.Call(nodes.Name("_joined", "load"), list(concat.nodes), [], None, None)
        concat.nodes = [call]
    return ast


def render_capped(template: jinja2.Template, variables: Any) -> str:
    """A template's output, stopped once past MAX_SIZE characters."""
    pieces: list[str] = []
    total = 0
    for piece in template.generate(variables):
        total += len(piece)
        if total > MAX_SIZE:
            raise Bounded(f"the template's output would be over {MAX_SIZE:,} characters")
        pieces.append(piece)
    return "".join(pieces)
