"""Templates are bounded at load and at run time: nothing is computed while compiling, and a
render can build neither huge texts nor huge numbers, nor loop or run without end."""

from __future__ import annotations

import textwrap
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.errors import ConfigError, StepFailed, TemplateProblem
from bots.spec import loader
from bots.spec.sandbox import MAX_SIZE
from bots.spec.templates import Template, compile_template

VARIABLES = {"message": "m" * 2_000, "plan": "a\nb\nc"}

PAST_A_BOUND = {
    "a huge power": "{{ 10 ** 100000000 }}",
    "a power past the bits": "{{ 10 ** 5000 }}",
    "text times ten billion": "{{ 'a' * 10**10 }}",
    "a list times a hundred million": "{{ [1] * 10**8 }}",
    "nested loops": (
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "loops over the message": (
        "{% for c in message %}{% for d in message %}{% endfor %}{% endfor %}"
    ),
    "a wide center": "{{ 'a' | center(10**9) }}",
    "a wide format": "{{ '%1000000000s' | format('a') }}",
    "a wide %": "{{ '%1000000000s' % 'a' }}",
    "a wide str.format": "{{ '{:1000000000}'.format('a') }}",
    "a width given to str.format": "{{ '{:{w}}'.format('a', w='1000000000') }}",
    "a long ljust": "{{ 'a'.ljust(10**9) }}",
    "a huge range": "{{ range(10**7) | list }}",
    "doubling with ~": (
        "{% set a = 'x' * 1000 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
        "{% set c = b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b ~ b %}"
        "{{ c ~ c ~ c ~ c ~ c ~ c ~ c ~ c ~ c ~ c ~ c }}"
    ),
    "replace that multiplies": "{{ message | replace('', 'x' * 1000) }}",
    "output past the cap": "{% for i in range(2000) %}{{ message }}{% endfor %}",
}


@pytest.mark.parametrize("name", PAST_A_BOUND)
def test_a_template_past_a_bound_fails_its_step_quickly(name: str) -> None:
    started = time.monotonic()
    template = Template(PAST_A_BOUND[name], "steps[0].text")  # compiling computes nothing
    with pytest.raises(StepFailed) as caught:
        template.render(VARIABLES)
    assert time.monotonic() - started < 5
    assert "the template at steps[0].text failed: Bounded:" in str(caught.value)


def test_compiling_folds_nothing() -> None:
    started = time.monotonic()
    compile_template("{{ 10 ** 10 ** 10 ** 10 }}{{ 'a' * 10**12 }}")
    assert time.monotonic() - started < 1


def test_a_template_that_runs_too_long_stops_at_the_clock() -> None:
    source = "{% for a in range(99999) %}{{ message | replace('m', 'mm') | length }}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(StepFailed, match="ran for more than 2 s|over 1,000,000"):
        Template(source, "x").render({"message": "m" * 400_000})
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "source",
    [
        "{% macro f(x) %}{{ f(x ~ x) }}{% endmacro %}{{ f('a') }}",
        "{% call f() %}x{% endcall %}",
    ],
)
def test_macros_and_call_blocks_are_refused_at_load(source: str) -> None:
    with pytest.raises(TemplateProblem, match="may not define macros"):
        compile_template(source)


@pytest.mark.parametrize("name", ["namespace", "lipsum", "cycler", "joiner"])
def test_globals_that_keep_state_are_gone(name: str) -> None:
    with pytest.raises(StepFailed, match=f"'{name}' is undefined"):
        Template(f"{{{{ {name}() }}}}", "x").render({})


def test_bounded_templates_still_do_what_creators_write() -> None:
    assert Template("{{ plan | lines | numbered }}", "x").render(VARIABLES) == "1. a\n2. b\n3. c"
    assert Template("{{ plan | lines }}", "x").value(VARIABLES) == ["a", "b", "c"]
    assert Template("{% for l in plan | lines %}{{ loop.index }}{{ l }} {% endfor %}", "x").render(
        VARIABLES
    ) == ("1a 2b 3c ")
    assert Template("{{ '%s-%d' | format('a', 3) }}{{ 'x' * 3 }}{{ 2 ** 10 }}", "x").render({}) == (
        "a-3xxx1024"
    )
    assert Template("{{ ('ab' ~ 'cd') | upper | replace('B', 'b') }}", "x").render({}) == "AbCD"
    assert len(Template("{{ 'a' * 1000000 }}", "x").render({})) == MAX_SIZE


def test_a_step_id_jinja_already_uses_is_refused_at_load() -> None:
    yaml = """\
        version: 1
        bots:
          x:
            steps:
              - {id: loop, bot: GPT-5}
              - {id: range, bot: GPT-5}
              - {map: "{{ loop | lines }}", as: namespace, max_items: 2, steps: [{bot: GPT-5}]}
        """
    with pytest.raises(ConfigError) as caught:
        loader.parse(textwrap.dedent(yaml), "p.yaml")
    said = str(caught.value)
    assert "step id 'loop' is a name Jinja2 templates already use" in said
    assert "step id 'range' is a name Jinja2 templates already use" in said
    assert "as: 'namespace' is already a name templates use" in said


expressions = st.recursive(
    st.sampled_from(["10", "2", "'ab'", "message", "[1, 2]", "range(5)", "plan"]),
    lambda inner: st.tuples(inner, st.sampled_from(["*", "**", "~", "+", "%"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})"
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(expressions)
def test_any_arithmetic_renders_or_fails_its_step_quickly(expression: str) -> None:
    started = time.monotonic()
    try:
        Template(f"{{{{ {expression} }}}}", "x").render(VARIABLES)
    except StepFailed:
        pass
    assert time.monotonic() - started < 5
