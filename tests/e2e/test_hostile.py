"""Hostile requests get a 4xx or a normal reply, never a 500 or a raw exception, and every
message still writes its bounded log line; a hostile dependency fails only its step. Over real
HTTP, against the stand-in."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bots.spec import loader
from bots.tools import transcript
from bots.tools.script import Answer, Script
from bots.tools.simulator import SimulatedCaller
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.user import identifier, query_body

YAML = """\
version: 1
bots:
  knobs:
    controls:
      - {slider: rounds, label: Rounds, min: 1, max: 3, default: 2}
      - {toggle: loud, label: Loud}
    steps:
      - {bot: Echo, prompt: "rounds={{ params.rounds }} loud={{ params.loud }}"}
  planner:
    steps:
      - {id: plan, bot: Hostile}
      - id: parts
        map: "{{ plan | from_json }}"
        max_items: 3
        on_error: continue
        steps: [{bot: Echo}]
      - {text: "done: {{ parts }}"}
  strict:
    steps:
      - {id: plan, bot: Hostile}
      - {text: "{{ plan | from_json }}"}
"""
BEHAVIORS = {"Echo": Behavior(echo=True), "Hostile": Behavior(text="[" * 100_000 + "]" * 100_000)}


async def post(served: Any, bot: str, body: bytes | dict[str, Any]) -> tuple[int, str]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {served.keys[bot]}", "Content-Type": "application/json"}
    response = await served.http.post(f"{served.url}/{bot}", content=content, headers=headers)
    return response.status_code, response.text


def reply_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "reply"]


HOSTILE_BODIES: dict[str, tuple[bytes, int, str]] = {
    "100,000 brackets": (b"[" * 100_000, 400, "nested deeper than 64 levels"),
    "a deep parameter": (
        json.dumps(
            query_body("hi", parameters={"rounds": json.loads("[" * 70 + "]" * 70)})
        ).encode(),
        400,
        "nested deeper than 64 levels",
    ),
    "temperature NaN": (
        json.dumps(query_body("hi", extra={"temperature": float("nan")})).encode(),
        400,
        "NaN is not a JSON number",
    ),
    "temperature 1e999": (
        json.dumps(query_body("hi"))
        .replace('"type": "query"', '"temperature": 1e999, "type": "query"')
        .encode(),
        400,
        "too large to be a finite number",
    ),
    "a 400-digit parameter": (
        json.dumps(query_body("hi"))
        .replace('"version"', '"parameters": ' + "9" * 400 + ', "version"')
        .encode(),
        400,
        "more than 100 digits",
    ),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
async def test_a_hostile_body_gets_a_4xx_that_says_why(name: str) -> None:
    body, status, reason = HOSTILE_BODIES[name]
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        got, text = await post(s, "knobs", body)
        assert got == status and reason in text and "Traceback" not in text
        still = await s.ask("knobs", "still there?")
    assert still.done


async def test_huge_and_odd_parameter_values_fall_back_and_the_reply_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bots")
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        huge = await s.ask("knobs", "go", parameters={"rounds": 10**50, "loud": "x" * 10_000})
        odd = await s.ask("knobs", "go", parameters={"rounds": [1], "loud": {"a": 1}})
        sent = [r["query"][-1]["content"] for r in s.requests_to("Echo")]
    assert huge.done and odd.done and not huge.errors and not odd.errors
    assert sent == ["rounds=2 loud=False", "rounds=2 loud=False"]  # the defaults
    assert [line["outcome"] for line in reply_lines(caplog)] == ["done", "done"]


async def test_logged_fields_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bots")
    huge_id = "m-" + "x" * 1_000_000
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        reply = await s.ask("knobs", "hi", message_id=huge_id)
        status, _ = await post(
            s,
            "knobs",
            {"version": "1.2", "type": "report_error", "message": "e" * 5_000_000, "metadata": {}},
        )
    assert reply.done and status == 200
    line = reply_lines(caplog)[0]
    assert len(line["message_id"]) < 400 and line["message_id"].endswith("(1,000,002 chars)")
    errors = [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "poe_error"]
    assert len(errors) == 1 and len(errors[0]["error"]) < 400
    assert max(len(r.getMessage()) for r in caplog.records) < 10_000


async def test_deep_json_in_an_earlier_replys_metadata_leaves_later_turns_working() -> None:
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        history = [
            {"role": "user", "content": "first"},
            {"role": "bot", "content": "rounds=2", "metadata": "[" * 100_000},
            {
                "role": "bot",
                "content": "x",
                "metadata": '{"v": 2, "calls": ' + "[" * 900 + "]" * 900 + "}",
            },
            {"role": "user", "content": "second"},
        ]
        reply = await s.ask("knobs", history)
    assert reply.done and not reply.errors and "rounds=2" in reply.text


async def test_a_hostile_dependency_fails_only_its_step(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bots")
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        tolerant = await s.ask("planner", "plan it")
        strict = await s.ask("strict", "plan it")
    # on_error: continue: the (hidden) map step fails, and the pipeline goes on
    assert tolerant.done and tolerant.text == "done: "
    # on_error: fail: the reply stops with the step's own reason, not an unexpected error
    assert strict.done and "Something went wrong" not in strict.text
    assert "the template at steps[1].text failed" in strict.text
    lines = reply_lines(caplog)
    assert [line["outcome"] for line in lines] == ["done", "failed"]
    assert "unexpected" not in json.dumps(lines)


async def test_a_request_with_unknown_identifiers_still_answers() -> None:
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        reply = await s.ask("knobs", "hi", conversation_id=identifier("c") * 1000)
    assert reply.done


async def test_the_trace_marks_the_failed_step_and_says_why() -> None:
    config = loader.parse(YAML, "hostile.yaml")
    answers = Script({"plan": [Answer(text="[" * 1_000 + "]" * 1_000)]})
    said = await transcript.answer(
        config.bots["planner"], transcript.query("plan it"), SimulatedCaller(0, 0, script=answers)
    )
    parts = next(e for e in said.run.trace if e.facts.get("id") == "parts")
    assert parts.failed and "nested deeper than 64 levels" in parts.outcome
    assert said.text == "done: " and said.error is None
