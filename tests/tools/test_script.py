"""Scripted bots: what a step or a bot answers in a dry run, through the real engine and merging."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bots.errors import ConfigError
from bots.run.delivery import Pacing
from bots.spec import loader
from bots.tools import script, transcript
from bots.tools.script import Answer, Script
from bots.tools.simulator import SimulatedCaller
from tests.tools.test_chat import chat

FAST = Pacing(delta_gap=0, delta_gap_after_2000=0, replace_gap=0, status_delay=3600)

PIPELINE = """
version: 1
call_budget: 20
bots:
  shop:
    steps:
      - id: kind
        bot: Classifier
        prompt: "kind of: {{ message }}"
      - route: "{{ kind }}"
        cases:
          shoes: [{id: fit, bot: Fitter, retries: 1, fallback: [Backup]}]
        default: [{bot: Generalist}]
  loopy:
    steps:
      - loop:
          max: 4
          until: "{{ verdict == 'OK' }}"
          steps:
            - {id: verdict, bot: Judge}
  drawer:
    steps:
      - {id: picture, bot: Painter, attachments: false}
      - {bot: Looker, attachments: [picture], prompt: "look"}
"""


async def ask(
    bot: str, answers: dict[str, object], message: str = "boots"
) -> transcript.Transcript:
    config = loader.parse(PIPELINE, "test.yaml")
    found = script.Script(script.ScriptFile.model_validate({"answers": answers}).answers)
    caller = SimulatedCaller(0.0, 0.0, script=found)
    request = transcript.query(message)
    return await transcript.answer(config.bots[bot], request, caller, pacing=FAST)


async def test_a_step_answers_as_scripted_and_the_route_follows() -> None:
    said = await ask("shop", {"kind": "shoes", "Fitter": "Size 42."})
    assert said.text == "Size 42."
    assert said.run.routes == {"steps[1]": ["shoes"]}
    route = next(e for e in said.run.trace if e.kind == "route")
    assert route.detail == "compared 'shoes': took shoes"


async def test_unscripted_calls_echo_and_routes_say_what_they_compared() -> None:
    said = await ask("shop", {})
    assert "*[Generalist (simulated) was asked:]*" in said.text
    route = next(e for e in said.run.trace if e.kind == "route")
    assert route.detail.startswith("compared '*[Classifier (simulated) was asked:]* kind of")
    assert said.run.routes == {"steps[1]": ["default"]}


async def test_step_id_wins_over_bot_name_and_place_works_too() -> None:
    said = await ask(
        "shop", {"Classifier": "hats", "kind": "shoes", "steps[1].cases.shoes[0]": "x"}
    )
    assert said.run.routes["steps[1]"] == ["shoes"] and said.text == "x"


async def test_successive_answers_take_turns_and_the_last_repeats() -> None:
    said = await ask("loopy", {"verdict": ["no", "no", "OK", "never used"]})
    assert said.calls == 3 and said.text == "OK"
    rounds = [e for e in said.run.trace if e.kind == "round"]
    assert [r.detail for r in rounds] == [
        "until: false, so another round",
        "until: false, so another round",
        "until: true, so it stops",
    ]
    said = await ask("loopy", {"verdict": ["no"]})
    assert said.calls == 4 and rounds[0].outcome == "round 1"
    assert said.run.trace[-1].detail == "until: false, and that was the last round"


async def test_http_failures_are_retried_then_fall_back_as_real_ones() -> None:
    said = await ask("shop", {"kind": "shoes", "Fitter": {"fail": "HTTP 500"}, "Backup": "ok"})
    assert said.called == {"Classifier": 1, "Fitter": 2, "Backup": 1}
    assert said.text == "ok"
    said = await ask("shop", {"kind": "shoes", "fit": {"fail": "HTTP 503"}})
    assert said.error is not None
    assert "Backup: HTTP 503 (server error)" in said.error and said.calls == 5  # all of `fit`


async def test_a_bot_that_asks_no_retry_is_not_retried() -> None:
    answer = {"fail": "No more.", "retry": False}
    said = await ask("shop", {"kind": "shoes", "Fitter": answer, "Backup": "fallback"})
    assert said.called["Fitter"] == 1 and said.text == "fallback"


async def test_timeouts_and_poe_error_types_read_as_real_failures() -> None:
    said = await ask("shop", {"kind": "shoes", "fit": {"fail": "timeout"}})
    assert said.error is not None and "no complete answer within 120 s" in said.error
    broke = {"fail": "Out of points.", "error_type": "insufficient_fund"}
    said = await ask("shop", {"kind": "shoes", "fit": broke})
    assert said.run.ctx.answer.ending.error_type == "insufficient_fund"


async def test_a_scripted_file_is_shown_and_passed_to_the_next_step(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"\x89PNG fake")
    config = loader.parse(PIPELINE, "test.yaml")
    found = Script({"picture": [Answer(file="cat.png", text="A cat.")]}, tmp_path)
    caller = SimulatedCaller(0.0, 0.0, script=found)
    said = await transcript.answer(
        config.bots["drawer"], transcript.query("a cat"), caller, pacing=FAST
    )
    assert [f.name for f in said.files] == []  # the picture step is hidden
    assert "*attachments: cat.png*" in said.text  # ...but the Looker received it
    assert said.run.files["picture"][0].url == (tmp_path / "cat.png").resolve().as_uri()


def test_an_answers_file_is_checked_at_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "answers.yaml"
    path.write_text(
        "answers:\n  topic: 7\n  GPT-5: {fail: HTTP 500, text: hi}\n  x: [a, {fiel: y}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        script.read(str(path))
    messages = [str(p) for p in caught.value.problems]
    assert messages[0].startswith(f"{path}:3:3: answers.GPT-5: an answer either fails")
    assert messages[1].startswith(f"{path}:4:11: answers.x[1].fiel: unknown key 'fiel'")
    path.write_text("answers:\n  topic: 7\n  empty:\n")
    with pytest.raises(ConfigError, match=r":3:3: answers.empty: .*this answer is empty"):
        script.read(str(path))
    path.write_text("answers:\n  topic: 7\n")
    assert script.read(str(path)).answers["topic"] == [Answer(text="7")]  # numbers are text


async def test_chat_dry_run_takes_answers_from_a_file_and_the_command_line(
    tmp_path: Path,
) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        textwrap.dedent("""\
        answers:
          review: [Too vague., APPROVED]
          draft: A first draft.
        """)
    )
    code, out, err = await chat(
        "refiner",
        "--dry-run",
        "--delay",
        "0",
        "--answers",
        str(answers),
        "--answer",
        "revision=The revised answer.",
        "-m",
        "Explain recursion.",
    )
    assert code == 0, err
    assert "The revised answer." in out
    assert "round 1 (until: false, so another round)" in out
    assert "round 2 (until: true, so it stops)" in out
    assert "calls used: 4 of 7" in out


async def test_chat_refuses_answers_it_cannot_use() -> None:
    code, _, err = await chat("router", "--answer", "topic=code", "-m", "x")
    assert code == 2 and "add --dry-run" in err
    code, _, err = await chat("router", "--dry-run", "--answer", "topc=code", "-m", "x")
    assert code == 2 and "'topc' is neither a step id" in err and "it answers for: topic" in err
    code, _, err = await chat("router", "--dry-run", "--answer", "code", "-m", "x")
    assert code == 2 and "expected KEY=TEXT" in err
    code, _, err = await chat("router", "--dry-run", "--answers", "nowhere.yaml", "-m", "x")
    assert code == 2 and "nowhere.yaml:1:1: cannot read the file" in err
