"""Templates: operator templates run sandboxed; what users type is data, never a template."""

from __future__ import annotations

import json

import pytest

from bots.errors import ConfigError, StepFailed
from bots.spec import loader
from bots.spec.templates import Branches, Template, truthy
from standin.poe import Behavior
from standin.served import serve_pipelines


@pytest.mark.parametrize(
    "source",
    [
        "{{ message.__class__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ conversation['__len__']() }}",
        "{{ self._TemplateReference__context }}",
    ],
)
def test_attribute_tricks_are_refused_at_validation(source: str) -> None:
    text = f'version: 1\nbots:\n  x:\n    steps:\n      - text: "{source}"\n'
    with pytest.raises(ConfigError, match="private attributes") as caught:
        loader.parse(text, "p.yaml")
    assert str(caught.value).startswith("p.yaml:5:9: bots.x.steps[0].text:")


def test_unknown_globals_like_config_are_refused_at_validation() -> None:
    text = 'version: 1\nbots:\n  x:\n    steps:\n      - text: "{{ config }}"\n'
    with pytest.raises(ConfigError, match="template uses 'config', which is not defined"):
        loader.parse(text, "p.yaml")


def test_the_sandbox_stops_unsafe_calls_at_run_time_with_a_clear_error() -> None:
    template = Template("{{ range(10**9) | list | length }}", "steps[0].text")
    with pytest.raises(StepFailed, match=r"the template at steps\[0\].text failed"):
        template.render({})
    immutable = Template("{{ params.update({'a': 1}) }}", "steps[0].text")
    with pytest.raises(StepFailed, match="failed"):
        immutable.render({"params": {}})


def test_conditions_read_as_a_bot_author_expects() -> None:
    for false in ["", " ", "false", "False.", "no", "0", "none", "off"]:
        assert not truthy(false), false
    for true in ["true", "yes", "1", "APPROVED", "anything"]:
        assert truthy(true), true


def test_parallel_outputs_render_as_sections() -> None:
    assert str(Branches(a="one", b="two")) == "### a\n\none\n\n### b\n\ntwo"
    template = Template("{% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}", "t")
    assert template.render({"d": Branches(a="1", b="2")}) == "a=1 b=2 "


@pytest.mark.parametrize(
    "user_text",
    [
        "{{ 7*7 }}",
        "{% for x in range(3) %}{{ x }}{% endfor %}",
        "{{ config }}",
        "{{ ''.__class__ }}",
    ],
)
async def test_template_syntax_from_users_reaches_bots_literally(user_text: str) -> None:
    yaml = """\
        version: 1
        bots:
          quote:
            steps:
              - {id: a, bot: Echo, history: false, prompt: "Q: {{ message }}"}
              - text: "{{ a }}"
    """
    async with serve_pipelines(yaml, {"Echo": Behavior(echo=True)}) as s:
        reply = await s.ask("quote", user_text)
    assert reply.done and not reply.errors
    assert json.loads(reply.text)["last"] == f"Q: {user_text}"


async def test_a_giant_prompt_gets_a_clear_message_instead_of_an_upstream_call() -> None:
    yaml = "version: 1\nbots:\n  big:\n    steps: [{bot: Echo}]\n"
    async with serve_pipelines(yaml, {"Echo": Behavior(echo=True)}) as s:
        reply = await s.ask("big", "y" * 5_000_000)
        assert not s.requests_to("Echo")
    assert reply.status == 200 and reply.done
    # the user's own message is too long: Poe has an error type for that, and explains it
    assert reply.errors[0]["error_type"] == "user_message_too_long"
    assert reply.errors[0]["text"].startswith("the prompt for Echo would be 5,000,000 characters")
    assert reply.errors[0]["allow_retry"] is True  # no call was made
