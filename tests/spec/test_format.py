"""The format's models: what validates is what runs, and every setting sent to Poe is valid
JSON within Poe's rules; step kinds are declared once; a bot places its steps as it is made."""

from __future__ import annotations

import json
import textwrap

import pytest

from bots.errors import ConfigError
from bots.serve.server import settings_for
from bots.spec import format as fmt
from bots.spec import loader


def problems(yaml: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loader.parse(textwrap.dedent(yaml), "p.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("bot", "expected"),
    [
        ('{poe_name: "My\\nBot", steps: [{text: hi}]}', "bots.x.poe_name: got 'My\\nBot'"),
        ("{poe_name: " + "a" * 101 + ", steps: [{text: hi}]}", "at most 100 characters"),
        ("{poe_name: My Bot, steps: [{text: hi}]}", "bots.x.poe_name: got 'My Bot'"),
        (
            "{controls: [{slider: s, label: S, min: 0, max: .inf}], steps: [{text: hi}]}",
            "'.inf' is not a finite number",
        ),
        ("{steps: [{bot: A, timeout: .nan}]}", "'.nan' is not a finite number"),
    ],
)
def test_a_setting_poe_could_not_take_is_refused_at_load(bot: str, expected: str) -> None:
    found = problems(f"version: 1\nbots:\n  x: {bot}\n")
    assert any(expected in p for p in found), found


def test_call_budget_true_is_not_one() -> None:
    found = problems("version: 1\ncall_budget: true\nbots:\n  x: {steps: [{text: hi}]}\n")
    assert any("call_budget: got True: input should be a valid integer" in p for p in found)


def test_every_shipped_bots_settings_are_plain_json() -> None:
    config = loader.load("pipelines.yaml")
    for plan in config.bots.values():
        settings = settings_for(plan).model_dump()
        assert json.loads(json.dumps(settings, allow_nan=False)) == settings


def test_step_kinds_are_declared_once() -> None:
    assert fmt.STEP_KINDS == ("bot", "parallel", "route", "loop", "map", "text")
    assert all(model.kind == kind for kind, model in fmt.STEP_MODELS.items())
    with pytest.raises(ConfigError) as caught:
        loader.parse("version: 1\nbots:\n  x: {steps: [{bots: A}]}\n", "p.yaml")
    assert "a step needs exactly one of bot, parallel, route, loop, map, text" in str(caught.value)


def test_a_bot_places_its_steps_as_it_is_made() -> None:
    yaml = """\
        version: 1
        bots:
          x:
            controls: [{slider: n, label: N, min: 1, max: 3}]
            steps:
              - parallel: [{id: a, bot: A, prompt: "{{ message }}"}, {bot: B}]
              - route: "{{ a }}"
                cases: {yes: [{bot: C}]}
                default: [{loop: {max: "{{ params.n }}", steps: [{bot: D}]}}]
        """
    plan = loader.parse(textwrap.dedent(yaml), "p.yaml").bots["x"]
    paths = [step.path for step in fmt.walk(plan.spec.steps)]
    assert paths == [
        "steps[0]",
        "steps[0].parallel[0]",
        "steps[0].parallel[1]",
        "steps[1]",
        "steps[1].cases.yes[0]",
        "steps[1].default[0]",
        "steps[1].default[0].loop.steps[0]",
    ]
    first = plan.spec.steps[0]
    assert isinstance(first, fmt.ParallelStep)
    template = first.parallel[0].template("prompt")
    assert template is not None and template.where == "steps[0].parallel[0].prompt"
    loop = next(s for s in fmt.walk(plan.spec.steps) if isinstance(s, fmt.LoopStep))
    assert loop.loop.bound == 3 and plan.cost.total == 2 + 3  # a route costs its dearest case
    with pytest.raises(ValueError, match="frozen"):
        first.id = "changed"  # type: ignore[misc]
