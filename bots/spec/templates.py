"""Jinja2 templates of pipelines.yaml: compiled once at load, rendered sandboxed at run time.

Templates are the operator's; what users type only ever arrives as data (`message`,
`conversation`...), so it is never evaluated. The sandbox is immutable and undefined names are
errors; the loader also refuses private attribute access before anything is served.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser

from bots.errors import StepFailed, TemplateProblem
from bots.spec import sandbox

IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
"""A name templates can read: a step id, a control, a map's item."""
BUILTINS = frozenset({"message", "conversation", "params", "attachments", "files"})
"""Variables every template sees; each step's output is added under its id."""
LOOP_VARIABLES = frozenset({"iteration"})
"""Extra variables inside a loop's steps and its `until`."""

PROMPT_CHAR_CAP = 100_000
"""Largest rendered prompt or system message sent to a dependency bot (characters)."""

FALSE_WORDS = frozenset({"", "false", "no", "0", "none", "off", "n"})

ENV = sandbox.environment()
JINJA_NAMES = frozenset(
    {*ENV.globals, *sandbox.REMOVED, "loop", "self", "caller", "varargs", "kwargs", "super"}
)
"""Names Jinja2 gives a meaning of its own: a step id or map item named so could not be read."""


class Branches(dict[str, Any]):
    """A parallel step's output: branch key -> text. Renders as headed sections."""

    def __str__(self) -> str:
        return "\n\n".join(f"### {key}\n\n{value}" for key, value in self.items())


def _unsafe_names(ast: nodes.Template) -> list[str]:
    found: list[str] = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        name: object = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        if isinstance(name, str) and name.startswith("_"):
            found.append(name)
    return found


@dataclass(frozen=True)
class Compiled:
    """A compiled template, the variables it reads, and the named members it reads of each
    (`params.rounds`, `files["picture"]`, `params.get("tone")` -> {"params": {"rounds",
    "tone"}, "files": {"picture"}})."""

    template: jinja2.Template
    variables: set[str]
    members: dict[str, set[str]]


MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})


def _members(ast: nodes.Template) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Call)):
        owner, member = None, None
        if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name):
            owner, member = node.node.name, node.attr
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.node, nodes.Name)
            and isinstance(node.arg, nodes.Const)
        ):
            owner, member = node.node.name, node.arg.value
        elif (
            isinstance(node, nodes.Call)
            and isinstance(node.node, nodes.Getattr)
            and isinstance(node.node.node, nodes.Name)
            and node.node.attr == "get"
            and node.args
            and isinstance(node.args[0], nodes.Const)
        ):
            owner, member = node.node.node.name, node.args[0].value
        if owner is not None and isinstance(member, str) and member not in MAPPING_METHODS:
            found.setdefault(owner, set()).add(member)
    return found


def compile_template(source: str) -> Compiled:
    """Compiles a template, with the variables and members it reads.

    Raises TemplateProblem with a one-line reason when it is invalid or unsafe.
    """
    try:
        ast = ENV.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateProblem(
            f"template does not compile: {e.message} (template line {e.lineno})"
        ) from e
    for node_type, known, what in (
        (nodes.Filter, ENV.filters, "filter"),
        (nodes.Test, ENV.tests, "test"),
    ):
        for node in ast.find_all(node_type):
            if node.name not in known:
                close = difflib.get_close_matches(node.name, list(known), n=1)
                hint = (
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"Jinja2's {what}s are: {', '.join(sorted(known))}"
                )
                raise TemplateProblem(
                    f"template line {node.lineno} uses the {what} {node.name!r}, which Jinja2 "
                    f"does not have; {hint}"
                )
    unsafe = _unsafe_names(ast)
    if unsafe:
        raise TemplateProblem(
            f"template reaches for private attributes ({', '.join(sorted(set(unsafe)))}), which "
            "the sandbox refuses; use only the variables and their public values"
        )
    why = sandbox.refused(ast)
    if why:
        raise TemplateProblem(why)
    variables = set(meta.find_undeclared_variables(ast)) - set(ENV.globals)
    members = _members(ast)
    try:
        return Compiled(ENV.from_string(sandbox.bound(ast)), variables, members)
    except jinja2.TemplateSyntaxError as e:  # whatever else the compiler refuses
        raise TemplateProblem(f"template does not compile: {e.message}") from e


def _compile_expression(source: str) -> jinja2.Template:
    """One expression as a template that assigns its value to `result` (as Jinja2's own
    compile_expression does), bounded like every template."""
    parser = Parser(ENV, source, state="variable")
    expression = parser.parse_expression()
    if not parser.stream.eos:
        raise TemplateProblem("template does not compile: more after the expression")
    body = [nodes.Assign(nodes.Name("result", "store"), expression, lineno=1)]
    return ENV.from_string(sandbox.bound(nodes.Template(body, lineno=1)))


_EXPRESSION = re.compile(r"^\s*\{\{(?P<expression>.*)\}\}\s*$", re.DOTALL)


def expression_of(source: str) -> str | None:
    """The expression of a template that is exactly one `{{ expression }}`, else None."""
    found = _EXPRESSION.match(source)
    if found is None or any(mark in found["expression"] for mark in ("{{", "}}", "{%", "%}")):
        return None
    return found["expression"]


class Template:
    """A compiled template with the place it came from (for run-time error messages)."""

    __slots__ = ("_expression", "_template", "source", "where")

    def __init__(self, source: str, where: str) -> None:
        self._template = compile_template(source).template
        expression = expression_of(source)
        self._expression = _compile_expression(expression) if expression else None
        self.source = source
        self.where = where

    def render(self, variables: Mapping[str, Any]) -> str:
        return str(self._evaluate(lambda: sandbox.render_capped(self._template, variables)))

    def value(self, variables: Mapping[str, Any]) -> Any:
        """What a one-expression template (`{{ plan | lines }}`) evaluates to, not only its
        text: a list stays a list. Other templates give their text."""
        if self._expression is None:
            return self.render(variables)
        expression = self._expression

        def evaluate() -> Any:
            context = expression.new_context(dict(variables))
            for _ in expression.root_render_func(context):
                pass
            result = context.vars["result"]
            return None if isinstance(result, jinja2.Undefined) else result

        return self._evaluate(evaluate)

    def _evaluate(self, run: Callable[[], Any]) -> Any:
        """Runs a render within the sandbox's bounds; whatever fails is the step's failure."""
        try:
            return sandbox.bounded(run)
        except jinja2.TemplateError as e:
            raise StepFailed(
                f"the template at {self.where} failed: {e}",
                log_reason=f"the template at {self.where} failed ({type(e).__name__})",
            ) from e
        except (
            TypeError,
            ValueError,  # sandbox.Bounded too: a template past a bound
            ArithmeticError,
            LookupError,
            AttributeError,
            RecursionError,
        ) as e:
            raise StepFailed(
                f"the template at {self.where} failed: {type(e).__name__}: {e}",
                log_reason=f"the template at {self.where} failed ({type(e).__name__})",
            ) from e

    def is_true(self, variables: Mapping[str, Any]) -> bool:
        return truthy(self.render(variables))


def truthy(text: str) -> bool:
    """How a rendered `when`/`until` reads as a condition."""
    return text.strip().strip(".!").lower() not in FALSE_WORDS
