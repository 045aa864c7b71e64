"""pipelines.yaml validation: each class of mistake is reported at its line with a clear message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bots.errors import ConfigError
from bots.spec import loader
from bots.spec.format import CallStep, LoopStep, ParallelStep, RouteStep, TextStep
from standin.serving import ROOT


def parse(text: str) -> loader.Config:
    return loader.parse(textwrap.dedent(text), "p.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return [str(p) for p in caught.value.problems]


def one_problem(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_shipped_pipelines_file_is_valid() -> None:
    config = loader.load(ROOT / "pipelines.yaml")
    assert config.bots
    for plan in config.bots.values():
        assert 0 < plan.cost.total <= config.call_budget


def test_issue_example_has_exact_worst_case() -> None:
    config = parse(
        """\
        version: 1
        bots:
          council:
            steps:
              - id: drafts
                parallel:
                  - {id: gpt, bot: GPT-5, parameters: {reasoning_effort: low}}
                  - {id: claude, bot: Claude-Sonnet-4.5}
                  - {id: gemini, bot: Gemini-2.5-Pro, retries: 1}
                show: sections
              - id: verdict
                bot: Claude-Opus-4.1
                prompt: |
                  Question: {{ message }}
                  {% for name, answer in drafts.items() %}
                  ### {{ name }}
                  {{ answer }}
                  {% endfor %}
        """
    )
    plan = config.bots["council"]
    assert config.call_budget == 10
    assert plan.dependencies == {
        "GPT-5": 1,
        "Claude-Sonnet-4.5": 1,
        "Gemini-2.5-Pro": 2,
        "Claude-Opus-4.1": 1,
    }
    assert plan.cost.total == 5
    assert plan.access_key_env == "COUNCIL_ACCESS_KEY"
    steps = plan.spec.steps
    assert isinstance(steps[0], ParallelStep) and isinstance(steps[1], CallStep)
    assert steps[0].parallel[2].path == "steps[0].parallel[2]"


def test_each_step_kind_parses_to_its_model_with_its_budget() -> None:
    config = parse(
        """\
        version: 1
        call_budget: 40
        bots:
          call:
            steps: [{bot: A, retries: 2, fallback: [B, C]}]
          text:
            steps: [{text: "hello {{ message }}"}]
          route:
            steps:
              - id: kind
                bot: Cheap
              - route: "{{ kind }}"
                cases:
                  code: [{bot: Coder}, {bot: Reviewer}]
                  math: [{bot: Mathy, retries: 3}]
                default: [{bot: General}]
          loop:
            steps:
              - id: draft
                bot: W
              - loop:
                  max: 3
                  until: "{{ 'OK' in critique }}"
                  steps:
                    - {id: critique, bot: C, prompt: "{{ revision or draft }}"}
                    - {id: revision, bot: W}
          race:
            steps:
              - parallel: [{bot: Fast1}, {bot: Fast2}]
                wait: first
        """
    )
    bots = config.bots
    assert isinstance(bots["call"].spec.steps[0], CallStep)
    assert bots["call"].dependencies == {"A": 3, "B": 3, "C": 3}
    assert bots["call"].cost.total == 9
    assert isinstance(bots["text"].spec.steps[0], TextStep)
    assert bots["text"].cost.total == 0
    assert isinstance(bots["route"].spec.steps[1], RouteStep)
    # per bot: the most any one path calls it; total: the worst path (math: 1 + 4)
    assert bots["route"].dependencies == {
        "Cheap": 1,
        "Coder": 1,
        "Reviewer": 1,
        "Mathy": 4,
        "General": 1,
    }
    assert bots["route"].cost.total == 5
    assert isinstance(bots["loop"].spec.steps[1], LoopStep)
    assert bots["loop"].dependencies == {"W": 4, "C": 3}
    assert bots["loop"].cost.total == 7
    assert bots["race"].dependencies == {"Fast1": 1, "Fast2": 1}


def test_yaml_syntax_error_names_where_the_unclosed_bracket_opened() -> None:
    message = one_problem("version: 1\nbots:\n  x:\n    steps: [{bot: A}\n")
    assert message.startswith(
        "p.yaml:4:12: YAML syntax error: a '[' is not closed, or two of its items lack a ','"
    ), message


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("version: 1\nbots:\n\tx:\n    steps: []\n", "3:1", "YAML indents with spaces only"),
        (
            "version: 1\nbots:\n  x:\n    steps:\n      - bot: A\n     prompt: hi\n",
            "6:6",
            "this line's indentation does not match the lines above it",
        ),
        (
            "version: 1\nbots:\n  x:\n    steps:\n      - bot: A\n        prompt: Answer: this\n",
            "6:23",
            "a value holds ': ', so it needs quotes",
        ),
        (
            "version: 1\nbots:\n  x:\n    steps:\n      - bot: A\n          history: false\n",
            "6:18",
            "this line is indented deeper than the key above it",
        ),
        (
            'version: 1\nbots:\n  x:\n    introduction: "Hi\n    steps:\n      - bot: A\n'
            '        prompt: "{{ message }}"\n',
            "4:19",
            "a quote opened here is never closed (YAML read on to line 7)",
        ),
        ('version: 1\nbots:\n  x:\n    steps:\n      - {text: "hi}\n', "5:16", "never closed"),
    ],
    ids=["tab", "dedent", "colon", "deeper", "quote-mid-file", "quote"],
)
def test_yaml_mistakes_say_what_is_probably_wrong(text: str, where: str, hint: str) -> None:
    message = one_problem(text)
    assert message.startswith(f"p.yaml:{where}: YAML syntax error: ") and hint in message
    assert "the YAML parser says:" in message  # PyYAML's own words stay, after the hint


def test_an_unquoted_template_says_to_quote_it_once() -> None:
    found = problems("version: 1\nbots:\n  x:\n    steps:\n      - text: {{ message }}\n")
    assert found == [
        "p.yaml:5:15: bots.x.steps[0].text: a template that starts with '{{' must be quoted, "
        'e.g. text: "{{ message }}"'
    ]


def test_a_misspelt_step_kind_gets_a_suggestion() -> None:
    assert one_problem("version: 1\nbots:\n  x:\n    steps:\n      - {bto: A}\n").endswith(
        "found none of them (did you mean 'bot' for 'bto'?)"
    )


def test_a_broken_step_id_is_not_suggested_to_templates() -> None:
    found = problems(
        "version: 1\nbots:\n  x:\n    steps:\n      - {id: drafts-1, bot: A}\n"
        "      - text: '{{ drafts }}'\n"
    )
    assert "drafts-1" not in found[1]


def test_misspelt_key_suggests_the_close_match() -> None:
    message = one_problem(
        """\
        version: 1
        bots:
          x:
            steps:
              - bot: A
                retires: 2
        """
    )
    assert message.startswith("p.yaml:6:9: bots.x.steps[0].retires: unknown key 'retires'")
    assert "did you mean 'retries'?" in message


def test_a_shortened_key_suggests_the_whole_one() -> None:
    message = one_problem("version: 1\nbots:\n  x:\n    intro: Hi\n    steps: [{bot: A}]\n")
    assert "unknown key 'intro'; did you mean 'introduction'?" in message


def test_wrong_type_says_what_was_expected() -> None:
    message = one_problem(
        """\
        version: 1
        bots:
          x:
            steps:
              - bot: A
                retries: many
        """
    )
    assert message.startswith("p.yaml:6:9: bots.x.steps[0].retries: got 'many'")
    assert "valid integer" in message


@pytest.mark.parametrize(
    ("step", "found"),
    [("{id: a}", "found none of them"), ("{bot: A, text: hi}", "found bot and text")],
)
def test_step_needs_exactly_one_kind(step: str, found: str) -> None:
    message = one_problem(f"version: 1\nbots:\n  x:\n    steps:\n      - {step}\n")
    assert message.startswith("p.yaml:5:9: bots.x.steps[0]: a step needs exactly one of")
    assert found in message


def test_duplicate_step_ids_within_a_bot() -> None:
    message = one_problem(
        """\
        version: 1
        bots:
          x:
            steps:
              - {id: a, bot: A}
              - {id: a, bot: B}
        """
    )
    assert message.startswith("p.yaml:6:10: bots.x.steps[1].id: duplicate step id 'a'")
    assert "first at line 5" in message


def test_duplicate_bot_ids_and_paths() -> None:
    found = problems(
        """\
        version: 1
        bots:
          x:
            steps: [{bot: A}]
          X:
            steps: [{bot: A}]
          x:
            steps: [{bot: B}]
        """
    )
    assert any(
        p.startswith("p.yaml:5:3: bots.X: bot ids 'x' and 'X' differ only in case") for p in found
    )
    assert any(
        p.startswith("p.yaml:7:3: bots.x: duplicate key 'x' (first at line 3)") for p in found
    )


def test_template_that_does_not_compile() -> None:
    message = one_problem('version: 1\nbots:\n  x:\n    steps:\n      - text: "{% for %}"\n')
    assert message.startswith("p.yaml:5:9: bots.x.steps[0].text: template does not compile")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ message | nosuch }}", "template line 1 uses the filter 'nosuch', which Jinja2"),
        ("{{ message | uper }}", "does not have; did you mean 'upper'?"),
        ("{% if message is odd_one %}x{% endif %}", "uses the test 'odd_one'"),
    ],
)
def test_unknown_filters_and_tests_are_refused_at_validation(template: str, expected: str) -> None:
    message = one_problem(f'version: 1\nbots:\n  x:\n    steps:\n      - text: "{template}"\n')
    assert message.startswith("p.yaml:5:9: bots.x.steps[0].text: ") and expected in message


def test_a_bot_name_that_cannot_be_a_poe_handle_gets_a_suggestion() -> None:
    found = problems(
        "version: 1\nbots:\n  x:\n    steps:\n"
        "      - {bot: FLUX pro/1.1, fallback: [Claude-Sonnet-4.5, 'GPT 5']}\n"
    )
    assert found == [
        "p.yaml:5:10: bots.x.steps[0].bot: 'FLUX pro/1.1' cannot be a Poe bot name: names (as "
        "in poe.com/<name>) use only letters, digits, '-', '_' and '.'; did you mean "
        "'FLUX-pro-1.1'?",
        "p.yaml:5:59: bots.x.steps[0].fallback[1]: 'GPT 5' cannot be a Poe bot name: names (as "
        "in poe.com/<name>) use only letters, digits, '-', '_' and '.'; did you mean 'GPT-5'?",
    ]


def test_template_referring_to_a_later_or_unknown_id() -> None:
    found = problems(
        """\
        version: 1
        bots:
          x:
            steps:
              - bot: A
                prompt: "{{ answer }} {{ mesage }}"
              - {id: answer, bot: B}
        """
    )
    assert len(found) == 2
    assert found[0].startswith("p.yaml:6:9: bots.x.steps[0].prompt: template uses 'answer'")
    assert "did you mean 'message'?" in found[1]


def test_private_attribute_tricks_are_refused() -> None:
    message = one_problem(
        'version: 1\nbots:\n  x:\n    steps:\n      - text: "{{ message.__class__.__mro__ }}"\n'
    )
    assert "private attributes (__class__, __mro__)" in message


def test_sections_on_a_step_that_is_not_parallel() -> None:
    message = one_problem("version: 1\nbots:\n  x:\n    steps:\n      - {bot: A, show: sections}\n")
    assert message.startswith("p.yaml:5:18: bots.x.steps[0].show: 'sections' is for parallel, map")


@pytest.mark.parametrize(
    ("loop", "expected"),
    [
        ("{steps: [{bot: A}]}", "p.yaml:5:9: bots.x.steps[0].loop.max: 'max' is required"),
        ("{max: 0, steps: [{bot: A}]}", "p.yaml:5:16: bots.x.steps[0].loop.max: got 0"),
    ],
)
def test_loop_max_missing_or_below_one(loop: str, expected: str) -> None:
    message = one_problem(f"version: 1\nbots:\n  x:\n    steps:\n      - loop: {loop}\n")
    assert message.startswith(expected), message


def test_bot_id_must_be_a_url_path_segment() -> None:
    message = one_problem("version: 1\nbots:\n  my bot/x:\n    steps: [{bot: A}]\n")
    assert message.startswith("p.yaml:3:3: bots.my bot/x: bot id 'my bot/x' cannot be a URL path")


def test_worst_case_over_budget_lists_its_calls() -> None:
    message = one_problem(
        """\
        version: 1
        call_budget: 4
        bots:
          x:
            steps:
              - {id: a, bot: A, retries: 1, fallback: [B]}
              - {bot: C}
        """
    )
    assert message.startswith("p.yaml:5:5: bots.x.steps: worst case is 5 calls per message, over")
    assert "steps[0] A x2, steps[0] B x2, steps[1] C x1" in message


def test_call_budget_above_poe_cap() -> None:
    message = one_problem("version: 1\ncall_budget: 150\nbots:\n  x:\n    steps: [{bot: A}]\n")
    assert message.startswith("p.yaml:2:1: call_budget: call_budget 150 is above Poe's cap of 100")


def test_every_mistake_is_reported_not_only_the_first() -> None:
    found = problems(
        """\
        version: 2
        bots:
          x:
            steps:
              - {bot: A, retries: -1}
              - {bot: B, show: loud}
          y:
            introduction: 5
            steps: [{text: "{{ nope }}"}]
        """
    )
    lines = [p.split(":")[1] for p in found]
    assert lines == ["1", "5", "6", "8", "9"], found


def test_parallel_branches_need_distinct_names() -> None:
    message = one_problem(
        "version: 1\nbots:\n  x:\n    steps:\n      - parallel: [{bot: A}, {bot: A}]\n"
    )
    assert "branches 0 and 1 would both be called 'A'" in message


def test_empty_and_non_mapping_files() -> None:
    assert "got an empty file" in one_problem("")
    assert "got a list" in one_problem("- 1\n")
    assert "'bots' is required" in one_problem("version: 1\n")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        loader.load(tmp_path / "missing.yaml")


def test_loop_steps_may_read_their_own_outputs_from_the_last_iteration() -> None:
    parse(
        """\
        version: 1
        bots:
          x:
            steps:
              - loop:
                  max: 2
                  until: "{{ iteration >= 2 and 'OK' in check }}"
                  steps:
                    - {id: check, bot: A, prompt: "{{ fix }}"}
                    - {id: fix, bot: B}
        """
    )


def test_step_ids_must_be_template_variable_names() -> None:
    message = one_problem("version: 1\nbots:\n  x:\n    steps:\n      - {id: my-step, bot: A}\n")
    assert message.startswith("p.yaml:5:10: bots.x.steps[0].id: step id 'my-step' may use only")


def test_waiting_wording_is_one_line_and_inner_steps_win() -> None:
    message = one_problem(
        'version: 1\nbots:\n  x:\n    steps:\n      - {bot: A, waiting: "two\\nlines"}\n'
    )
    assert message.startswith("p.yaml:5:18: bots.x.steps[0].waiting: expected one line of text")
    config = loader.parse(
        "version: 1\nbots:\n  x:\n    waiting: Thinking…\n    steps:\n"
        "      - parallel: [{bot: A}, {bot: B, waiting: Checking…}]\n"
        "        waiting: Asking around…\n      - {bot: C}\n",
        "p.yaml",
    )
    assert config.bots["x"].wording == {
        "steps[0].parallel[0]": "Asking around…",
        "steps[0].parallel[1]": "Checking…",
        "steps[1]": "Thinking…",
    }


def test_four_independent_mistakes_are_reported_at_once() -> None:
    """A broken control and a broken step hide neither the budget nor an undeclared param."""
    branches = ", ".join(f"{{bot: B{i}}}" for i in range(11))
    yaml = f"""\
        version: 1
        bots:
          x:
            controls:
              - {{slider: tone, label: Tone, min: 0, max: 2, defualt: 1}}
            steps:
              - parallel: [{branches}]
              - {{bot: L, retries: 9}}
              - {{bot: M, prompt: "{{{{ params.mood }}}}"}}
              - parallel: [{", ".join(["{bot: A}"] * 23)}]
        """
    with pytest.raises(ConfigError) as caught:
        loader.parse(textwrap.dedent(yaml), "p.yaml")
    said = [str(p) for p in caught.value.problems]
    assert len(said) == 5, said
    assert "unknown key 'defualt'; did you mean 'default'?" in said[0]
    assert said[1].startswith("p.yaml:6:5: bots.x.steps: worst case is at least 12 calls")
    assert "The most: steps[0] (a parallel of 11 branches: 11)" in said[1]
    assert "bots.x.steps[1].retries: got 9" in said[2]
    assert "params.mood, which no control declares; params holds only this bot's" in said[3]
    assert said[4].endswith(
        "steps[3].parallel: 23 branches, more than the 20 allowed here; "
        "split it in two, or leave some out"
    )
