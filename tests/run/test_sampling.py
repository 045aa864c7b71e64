"""Samples in waves that stop once the answers agree: validated, budgeted, run, traced, and a
wave in flight when the rule holds is cancelled with its streams closed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bots.errors import ConfigError
from bots.run.delivery import Pacing
from bots.spec import loader
from bots.tools import transcript
from bots.tools.script import Answer, Script
from bots.tools.simulator import SimulatedCaller
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import ROOT

FAST = Pacing(delta_gap=0, delta_gap_after_2000=0, replace_gap=0, status_delay=3600)

YAML = """\
version: 1
call_budget: 20
bots:
  agreeing:
    steps:
      - id: samples
        bot: Solver
        repeat: {max: 9, wave: 3, agree: 2, key: "{{ answer | lines | last | default('') }}"}
      - {text: "{{ samples | length }} answers: {{ samples | join(' / ') }}"}
  until:
    steps:
      - id: samples
        bot: Solver
        repeat: {max: 6, wave: 2, until: "{{ 'stop' in answers }}"}
      - {text: "{{ samples | join(',') }}"}
"""


async def ask(bot: str, answers: list[str]) -> transcript.Transcript:
    config = loader.parse(YAML, "sampling.yaml")
    script = Script({"samples": [Answer(text=text) for text in answers]})
    caller = SimulatedCaller(0.0, 0.0, script=script)
    return await transcript.answer(config.bots[bot], transcript.query("q"), caller, pacing=FAST)


async def test_an_easy_question_stops_after_its_first_wave() -> None:
    said = await ask("agreeing", ["work\nANSWER: 4", "ANSWER: 4 ", "answer: 5"])
    # two agreed: the third sample's call was made (and counted), its answer not waited for
    assert said.calls == 3 and said.text == "2 answers: work\nANSWER: 4 / ANSWER: 4 "
    step = next(e for e in said.run.trace if e.path == "steps[0]" and e.kind == "bot")
    assert step.facts["samples"] == 3 and step.facts["stopped"] == "agreed"
    assert step.detail == "3 samples in 1 wave: 2 agreed on 'answer: 4'"
    waves = [e for e in said.run.trace if e.kind == "wave"]
    assert [w.facts["wave"] for w in waves] == [1]


async def test_a_hard_question_runs_to_the_ceiling_in_waves() -> None:
    said = await ask("agreeing", [f"ANSWER: {n}" for n in range(1, 10)])
    assert said.calls == 9 and said.text.startswith("9 answers:")
    step = next(e for e in said.run.trace if e.path == "steps[0]" and e.kind == "bot")
    assert step.facts == {**step.facts, "samples": 9, "waves": 3, "stopped": "ceiling"}
    samples = [e for e in said.run.trace if e.kind == "sample"]
    assert [e.parent.facts["wave"] for e in samples if e.parent] == [1, 1, 1, 2, 2, 2, 3, 3, 3]


async def test_until_reads_the_answers_so_far() -> None:
    said = await ask("until", ["a", "b", "c", "stop", "e"])
    assert said.calls == 4 and said.text == "a,b,c,stop"


async def test_a_failed_sample_never_counts_towards_agreement() -> None:
    config = loader.parse(
        YAML.replace("bot: Solver\n", "bot: Solver\n        on_error: continue\n", 1), "s.yaml"
    )
    script = Script(
        {"Solver": [Answer(fail="HTTP 502"), Answer(fail="HTTP 502"), Answer(text="x")]}
    )
    said = await transcript.answer(
        config.bots["agreeing"],
        transcript.query("q"),
        SimulatedCaller(0, 0, script=script),
        pacing=FAST,
    )
    # the two failures' "" never agree; x (the third) and x (the fifth) do
    assert said.calls == 6
    step = next(e for e in said.run.trace if e.path == "steps[0]" and e.kind == "bot")
    assert step.facts["stopped"] == "agreed" and step.facts["samples"] == 6


async def test_a_wave_in_flight_is_cancelled_once_the_rule_holds_over_http() -> None:
    """The third sample of the first wave never answers; two agree first, so it is cancelled
    and its stream closed, and no second wave is asked."""
    behaviors = {"Solver": Behavior(text="ANSWER: 4", hang_after=2)}
    async with serve_pipelines(YAML, behaviors) as s:
        reply = await s.ask("agreeing", "2 + 2?")
        await s.standin.wait_until_idle()
        asked = len(s.requests_to("Solver"))
        closed = s.standin.closed_early
    assert reply.done and not reply.errors and reply.text.startswith("2 answers:")
    assert asked == 3 and closed == 1


def test_the_worst_case_declared_is_the_ceiling() -> None:
    plan = loader.parse(YAML, "s.yaml").bots["agreeing"]
    assert plan.dependencies == {"Solver": 9} and plan.cost.total == 9


@pytest.mark.parametrize(
    ("repeat", "expected"),
    [
        ("{max: 9, wave: 3}", "waves need a rule to stop on: agree"),
        ("{max: 3, wave: 4, agree: 2}", "wave 4 is larger than max 3; use 1 to 3"),
        ("{max: 3, agree: 4}", "agree 4 can never hold within max 3 samples"),
        ("{max: 5, key: '{{ answer }}', until: '{{ answers }}'}", "key says what answers agree on"),
        ("{max: 21, agree: 2}", "repeat.max"),
        ("{max: 9, agree: 2, key: '{{ reply }}'}", "template uses 'reply', which is not defined"),
        ("{max: 9, until: '{{ answer }}'}", "template uses 'answer', which is not defined"),
    ],
)
def test_waves_are_validated_at_load_where_they_stand(repeat: str, expected: str) -> None:
    yaml = f"""\
        version: 1
        bots:
          x:
            steps:
              - bot: A
                repeat: {repeat}
        """
    with pytest.raises(ConfigError) as caught:
        loader.parse(textwrap.dedent(yaml), "p.yaml")
    said = str(caught.value)
    assert said.startswith("p.yaml:6:") and expected in said, said


def test_waves_are_exported_in_the_messages_trace(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    args = ["chat", "solver", "--dry-run", "--delay", "0", "--answer", "samples=ANSWER: 4"]
    subprocess.run(
        [sys.executable, "-m", "bots", *args, "-m", "2 + 2?", "--trace-file", str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    spans = json.loads(out.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"]
    names = [span["name"] for span in spans]
    assert "wave 1 of samples" in names and names.count("chat GPT-5-mini") == 4
    step = next(s for s in spans if s["name"] == "bot samples")
    facts = {a["key"]: next(iter(a["value"].values())) for a in step["attributes"]}
    assert facts["pipeline.step.stopped"] == "agreed"
    assert facts["pipeline.step.samples"] in (3, "3")
