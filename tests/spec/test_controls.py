"""Poe's parameter controls: the YAML forms, their checks at load, the settings Poe gets, and
the user's values at run time."""

from __future__ import annotations

import json
import textwrap

import fastapi_poe as fp
import pytest

from bots.errors import ConfigError
from bots.run.answer import Answer
from bots.run.context import Context
from bots.run.engine import Run
from bots.spec import loader
from bots.spec.controls import parameter_controls
from bots.tools.simulator import SimulatedCaller
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.user import query_body

CONTROLS = """\
    version: 1
    bots:
      painter:
        controls:
          - {aspect_ratio: aspect, label: Shape, default: "16:9", options: ["1:1", "16:9"]}
          - drop_down: style
            label: Style
            default: photo
            options: {photo: Photograph, ink: Ink drawing}
          - section: More
            collapsed: true
            controls:
              - {slider: rounds, label: Rounds, default: 1, min: 0, max: 3, step: 1}
              - {toggle: hd, label: High detail}
              - divider: true
              - {text: mood, label: Mood, placeholder: calm}
              - {text_area: notes, label: Notes}
        steps:
          - loop:
              max: "{{ params.rounds }}"
              steps:
                - id: picture
                  bot: Painter
                  parameters: {aspect_ratio: "{{ params.aspect }}", style: "{{ params.style }}"}
          - text: "{{ params.mood }}|{{ params.hd }}|{{ params.notes }}|{{ params.rounds }}"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        loader.parse(textwrap.dedent(text), "c.yaml")
    return [str(p) for p in caught.value.problems]


def with_controls(*lines: str, step: str = "{text: hi}") -> str:
    controls = "".join(f"\n          - {line}" for line in lines)
    return f"version: 1\nbots:\n  x:\n    controls:{controls}\n    steps: [{step}]\n"


def test_settings_carry_the_controls_as_fastapi_poe_serialises_them() -> None:
    plan = loader.parse(textwrap.dedent(CONTROLS), "c.yaml").bots["painter"]
    expected = fp.types.ParameterControls(
        sections=[
            fp.types.Section(
                controls=[
                    fp.types.AspectRatio(
                        label="Shape",
                        parameter_name="aspect",
                        default_value="16:9",
                        options=[
                            fp.types.AspectRatioOption(value="1:1", width=1, height=1),
                            fp.types.AspectRatioOption(value="16:9", width=16, height=9),
                        ],
                    ),
                    fp.types.DropDown(
                        label="Style",
                        parameter_name="style",
                        default_value="photo",
                        options=[
                            fp.types.ValueNamePair(value="photo", name="Photograph"),
                            fp.types.ValueNamePair(value="ink", name="Ink drawing"),
                        ],
                    ),
                ]
            ),
            fp.types.Section(
                name="More",
                collapsed_by_default=True,
                controls=[
                    fp.types.Slider(
                        label="Rounds",
                        parameter_name="rounds",
                        default_value=1,
                        min_value=0,
                        max_value=3,
                        step=1,
                    ),
                    fp.types.ToggleSwitch(
                        label="High detail", parameter_name="hd", default_value=False
                    ),
                    fp.types.Divider(),
                    fp.types.TextField(
                        label="Mood", parameter_name="mood", default_value="", placeholder="calm"
                    ),
                    fp.types.TextArea(label="Notes", parameter_name="notes", default_value=""),
                ],
            ),
        ]
    )
    assert plan.cost.total == 3  # the loop runs at most the slider's max
    assert plan.dependencies == {"Painter": 3}

    async def settings() -> dict[str, object]:
        async with serve_pipelines(CONTROLS, {"Painter": Behavior(text="p")}) as s:
            response = await s.http.post(
                f"{s.url}/painter",
                json={"version": "1.2", "type": "settings"},
                headers={"Authorization": f"Bearer {s.keys['painter']}"},
            )
        return dict(response.json())

    import asyncio

    got = asyncio.run(settings())
    assert got["parameter_controls"] == json.loads(expected.model_dump_json())
    fp.SettingsResponse.model_validate(got)  # what Poe would read back parses as Poe's schema


async def test_user_values_are_checked_and_only_steps_send_them() -> None:
    async with serve_pipelines(CONTROLS, {"Painter": Behavior(text="p")}) as s:
        good = await s.ask(
            "painter",
            parameters={"aspect": "1:1", "rounds": 2, "hd": True, "mood": "calm", "extra": "x"},
        )
        bad = await s.ask("painter", parameters={"aspect": "2:1", "rounds": 9, "style": 3})
        sent = [r["query"][-1]["parameters"] for r in s.requests_to("Painter")]
    assert good.text.endswith("calm|True||2")
    assert bad.text.endswith("|False||1")  # out of range and unknown values: the defaults
    assert sent == [{"aspect_ratio": "1:1", "style": "photo"}] * 2 + [
        {"aspect_ratio": "16:9", "style": "photo"}
    ]  # two rounds, then one; "extra" and the other controls reach no dependency


async def test_a_value_out_of_range_falls_back_and_the_trace_says_so() -> None:
    plan = loader.parse(textwrap.dedent(CONTROLS), "c.yaml").bots["painter"]
    request = fp.QueryRequest.model_validate(
        query_body("go", parameters={"rounds": 7, "aspect": "9:9"})
    )
    run = Run(Context.open(plan, request, Answer(), SimulatedCaller(0, 0)))
    await run.execute()
    notes = [entry.outcome for entry in run.trace if entry.kind == "param"]
    assert notes == [
        "aspect: '9:9' is not one of 1:1, 16:9; used the default '16:9'",
        "rounds: 7 is outside 0 to 3; used the default 1",
    ]
    assert run.ctx.guard.calls == 1


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        (["{slider: n, label: N}"], "c.yaml:5:13: bots.x.controls[0].min: 'min' is required"),
        (["{slider: n, label: N, min: 3, max: 1}"], "min (3) must be below max (1)"),
        (["{slider: n, label: N, min: 0, max: 2, default: 5}"], "default 5 is outside 0 to 2"),
        (["{slider: n, label: N, min: 0, max: 2, step: 0}"], "input should be greater than 0"),
        (
            ["{drop_down: s, label: S, options: [a, b], default: c}"],
            "default 'c' is not one of the options: a, b",
        ),
        (["{aspect_ratio: a, label: A, options: [wide]}"], "should match pattern"),
        (["{toggle: t, label: T, defualt: true}"], "unknown key 'defualt'; did you mean"),
        (["{slider: 2x, label: N, min: 0, max: 1}"], "bots.x.controls[0].slider: got '2x'"),
        (
            ["{label: Nothing}"],
            "a control needs exactly one of aspect_ratio, drop_down, slider, toggle, text, "
            "text_area, divider (or section); found none of them",
        ),
        (["{toggle: t, text: t, label: T}"], "found toggle and text"),
        (
            ["{toggle: t, label: A}", "{text: t, label: B}"],
            "c.yaml:6:14: bots.x.controls[1].text: a control named 't' is declared twice",
        ),
    ],
    ids=[
        "missing",
        "min-max",
        "default-range",
        "step",
        "default-option",
        "ratio",
        "typo",
        "name",
        "no-kind",
        "two-kinds",
        "duplicate",
    ],
)
def test_every_control_mistake_is_reported_at_its_line(controls: list[str], expected: str) -> None:
    found = problems(with_controls(*controls))
    assert any(expected in p for p in found), found


def test_sections_may_hold_tabs_and_names_stay_unique_across_them() -> None:
    tabs = (
        "{section: Style, tabs: [{tab: Colour, controls: [{toggle: bw, label: Black and white}]}, "
        "{tab: Light, controls: [{slider: glow, label: Glow, min: 0, max: 1, step: 0.5}]}]}"
    )
    text = with_controls(tabs, step="{text: '{{ params.bw }} {{ params.glow }}'}")
    plan = loader.parse(text, "c.yaml").bots["x"]
    section = parameter_controls(plan.spec.controls).sections[0]  # type: ignore[union-attr]
    assert section.name == "Style" and section.controls is None
    assert [t.name for t in section.tabs or []] == ["Colour", "Light"]
    duplicate = tabs.replace("glow", "bw")
    assert any(
        "bots.x.controls[0].tabs[1].controls[0].slider: a control named 'bw' is declared twice" in p
        for p in problems(with_controls(duplicate))
    )
    both = "{section: S, controls: [{toggle: a, label: A}], tabs: [{tab: T, controls: []}]}"
    assert any(
        "either controls or tabs" in p or "at least 1" in p for p in problems(with_controls(both))
    )


def test_a_template_reading_an_undeclared_control_is_refused() -> None:
    found = problems(with_controls("{toggle: hd, label: HD}", step="{text: '{{ params.tone }}'}"))
    assert found == [
        "c.yaml:6:14: bots.x.steps[0].text: template reads params.tone, which no control "
        "declares; params holds only this bot's controls, and they are: hd"
    ]
    plain = "version: 1\nbots:\n  x:\n    steps: [{text: \"{{ params.get('tone') }}\"}]\n"
    assert "they are: none (add them under this bot's controls:)" in problems(plain)[0]


@pytest.mark.parametrize(
    ("control", "why"),
    [
        ("{toggle: rounds, label: R}", "must be a slider control"),
        ("{slider: rounds, label: R, min: 0, max: 2.5}", "whole-number"),
        ("{slider: rounds, label: R, min: 0, max: 30}", "max of 20 or less"),
    ],
)
def test_a_loop_bound_must_be_a_whole_number_slider(control: str, why: str) -> None:
    step = '{loop: {max: "{{ params.rounds }}", steps: [{bot: A}]}}'
    found = problems(with_controls(control, step=step))
    assert len(found) == 1 and "loop.max reads params.rounds" in found[0]
    assert why.split()[0] in found[0]
