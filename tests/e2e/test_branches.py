"""Steps that run side by side (map, repeat, wait: k), end to end: a real server, real
fastapi_poe dependency bots behind the Poe stand-in, real HTTP and SSE."""

from __future__ import annotations

import json

import pytest

from bots.spec import loader
from bots.tools import script, transcript
from bots.tools.simulator import SimulatedCaller
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.user import PoeChat

MAPPED = """\
    version: 1
    call_budget: 20
    bots:
      research:
        steps:
          - {id: plan, bot: Planner}
          - id: findings
            map: "{{ plan | lines }}"
            max_items: 3
            as: question
            show: sections
            steps:
              - {bot: Answerer, prompt: "{{ index }}. {{ question }}"}
          - {text: "{{ findings | numbered }}", show: stream}
"""


def asked(text: str) -> str:
    return json.loads(text)["last"]


@pytest.mark.parametrize(
    ("plan", "items"),
    [("", 0), ("Only one?", 1), ("A?\nB?\nC?", 3), ("A?\n\nB?\nC?\nD?\nE?", 3)],
)
async def test_map_runs_each_item_up_to_max_items_and_never_more(plan: str, items: int) -> None:
    behaviors = {"Planner": Behavior(text=plan), "Answerer": Behavior(echo=True)}
    async with serve_pipelines(MAPPED, behaviors) as s:
        reply = await s.ask("research", "why?")
        sent = s.requests_to("Answerer")
        assert s.standin.total_calls(sent[0]["message_id"] if sent else "") == (
            1 + items if sent else 0
        )
    assert reply.done and not reply.errors
    assert len(sent) == items  # extra items are dropped: never an extra call
    questions = [line for line in plan.splitlines() if line.strip()][:items]
    assert sorted(r["query"][-1]["content"] for r in sent) == sorted(
        f"{i}. {q}" for i, q in enumerate(questions, 1)
    )
    for question in questions:
        assert f"### {question}" in reply.text  # a section per item, headed by it


async def test_map_items_run_at_once_and_keep_their_order() -> None:
    behaviors = {
        "Planner": Behavior(text="A?\nB?\nC?"),
        "Answerer": Behavior(echo=True, first_token_delay=0.3),
    }
    async with serve_pipelines(MAPPED, behaviors) as s:
        reply = await s.ask("research")
        assert s.standin.max_open_streams == 3  # the three items' calls were open together
    listed = reply.text.split("---")[-1] if "---" in reply.text else reply.text
    assert listed.index('"1. A?"') < listed.index('"2. B?"') < listed.index('"3. C?"')


async def test_map_concurrency_bounds_the_items_at_once() -> None:
    yaml = MAPPED.replace("as: question", "as: question\n            concurrency: 1")
    behaviors = {
        "Planner": Behavior(text="A?\nB?\nC?"),
        "Answerer": Behavior(echo=True, first_token_delay=0.1),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("research")
        assert s.standin.max_open_streams == 1
    assert reply.done and len(s.requests_to("Answerer")) == 3


async def test_repeat_makes_exactly_n_calls_and_the_output_is_their_list() -> None:
    yaml = """\
        version: 1
        bots:
          solver:
            steps:
              - {id: samples, bot: Sampler, repeat: 4, show: sections}
              - text: "{{ samples | length }} samples, vote: {{ samples | vote }}"
                show: stream
    """
    async with serve_pipelines(yaml, {"Sampler": Behavior(text="42")}) as s:
        reply = await s.ask("solver")
        assert len(s.requests_to("Sampler")) == 4
        assert s.standin.max_open_streams == 4
    assert "### Sampler #1" in reply.text and "### Sampler #4" in reply.text
    assert reply.text.endswith("4 samples, vote: 42")


async def test_wait_k_ends_at_the_kth_success_and_closes_the_other_streams() -> None:
    yaml = """\
        version: 1
        bots:
          quorum:
            steps:
              - id: quick
                parallel: [{bot: Fast}, {bot: Slow}, {bot: Steady}]
                wait: 2
              - {text: "{{ quick.keys() | join(', ') }}: {{ quick.values() | join(' / ') }}"}
    """
    behaviors = {
        "Fast": Behavior(text="fast"),
        "Slow": Behavior(text="never", hang_at=0),
        "Steady": Behavior(text="steady", first_token_delay=0.1),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("quorum")
        await s.standin.wait_until_idle()
        assert s.standin.closed_early == 1  # Slow's stream, cancelled once two had answered
    assert reply.text == "Fast, Steady: fast / steady"
    assert reply.done and not reply.errors


async def test_wait_k_fails_clearly_when_fewer_than_k_succeed() -> None:
    yaml = """\
        version: 1
        bots:
          quorum:
            steps:
              - {parallel: [{bot: Good}, {bot: Bad}, {bot: Worse}], wait: 2}
    """
    behaviors = {
        "Good": Behavior(text="ok"),
        "Bad": Behavior(error_at=0),
        "Worse": Behavior(error_at=0),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("quorum")
    assert reply.done
    assert "only 1 of the 2 branches needed succeeded" in reply.text


async def test_each_mapped_and_repeated_call_keeps_its_own_history_next_turn() -> None:
    yaml = """\
        version: 1
        call_budget: 20
        bots:
          both:
            steps:
              - id: parts
                map: "{{ message | lines }}"
                max_items: 2
                steps: [{bot: Echo, prompt: "item {{ index }}: {{ item }}"}]
              - {id: again, bot: Sampler, repeat: 2, prompt: "sample of {{ message }}"}
              - {text: "{{ parts | join(' | ') }}", show: stream}
    """
    async with serve_pipelines(
        yaml, {"Echo": Behavior(echo=True), "Sampler": Behavior(echo=True)}
    ) as s:
        chat = PoeChat(s.http, f"{s.url}/both", s.keys["both"])
        first = await chat.say("one\ntwo")
        assert first.done and not first.errors
        await chat.say("three\nfour")
        second_turn = s.requests_to("Echo")[2:]
        samples = s.requests_to("Sampler")[2:]
    # each item's call sees its own earlier exchange: its prompt then, and its own answer
    for request in second_turn:
        earlier = [m["content"] for m in request["query"][:-1]]
        now = request["query"][-1]["content"]
        index = now.split(":")[0]  # "item 1" or "item 2"
        assert earlier[0].startswith(index) and asked(earlier[1]).startswith(index)
    for request in samples:
        earlier = [m["content"] for m in request["query"][:-1]]
        assert earlier[0] == "sample of one\ntwo" and asked(earlier[1]) == "sample of one\ntwo"


async def test_a_failed_item_follows_its_steps_on_error() -> None:
    yaml = """\
        version: 1
        call_budget: 20
        bots:
          lenient:
            steps:
              - id: out
                map: "{{ message | lines }}"
                max_items: 3
                steps: [{id: answer, bot: Answerer, on_error: continue}]
              - {text: "{{ out | length }} results: {{ out | join(',') }}"}
          strict:
            steps:
              - {map: "{{ message | lines }}", max_items: 3, steps: [{bot: Answerer}]}
    """
    config = loader.parse(yaml, "test.yaml")
    answers = [script.Answer(text="a"), script.Answer(fail="HTTP 500"), script.Answer(text="c")]
    for bot, wanted in (("lenient", "3 results: a,,c"), ("strict", None)):
        caller = SimulatedCaller(0.0, 0.0, script=script.Script({"Answerer": answers}))
        said = await transcript.answer(config.bots[bot], transcript.query("x\ny\nz"), caller)
        if wanted:
            assert said.error is None and said.text.endswith(wanted)
        else:  # the item's failure fails the map, and the reply says so
            assert said.error is not None and "Answerer failed: HTTP 500" in said.error


def test_map_repeat_and_wait_are_checked_at_load() -> None:
    bad = """\
        version: 1
        bots:
          x:
            steps:
              - {id: plan, bot: A}
              - {map: "items: {{ plan }}", max_items: 3, as: plan, steps: [{bot: B}]}
              - {map: "{{ plan | lines }}", max_items: 25, steps: [{bot: B}]}
              - {parallel: [{bot: A}, {bot: B}], wait: 3}
              - {bot: C, repeat: 11}
              - {bot: C, show: sections}
    """
    with pytest.raises(Exception) as caught:
        loader.parse(bad, "bad.yaml")
    text = str(caught.value)
    assert (
        "bad.yaml:6:18: bots.x.steps[1].map: got 'items: {{ plan }}': map is one template" in text
    )
    assert "bots.x.steps[1].as: as: 'plan' is already a name templates use" in text
    assert "bots.x.steps[2].max_items: got 25: input should be less than or equal to 20" in text
    assert "bots.x.steps[3].wait: wait: 3 needs 3 branches to succeed, but there are 2" in text
    assert "bots.x.steps[4].repeat: got 11: input should be less than or equal to 10" in text
    assert "'sections' is for parallel, map and repeat steps; this is a bot step" in text


def test_the_worst_case_multiplies_by_max_items_and_repeat() -> None:
    config = loader.parse(MAPPED.replace("max_items: 3", "max_items: 4"), "test.yaml")
    assert config.bots["research"].dependencies == {"Planner": 1, "Answerer": 4}
    solver = "version: 1\nbots:\n  s: {steps: [{bot: A, repeat: 5, retries: 1}]}\n"
    assert loader.parse(solver).bots["s"].dependencies == {"A": 10}


def test_items_of_a_map_read_as_lists_texts_or_mappings() -> None:
    from bots.spec.filters import items_of

    assert items_of(["a", 1]) == ["a", 1]
    assert items_of("x\n\n y ") == ["x", "y"]
    assert items_of({"k": "v"}) == ["v"]
    with pytest.raises(ValueError, match="expected a list, a text or a mapping"):
        items_of(3)


async def test_the_shipped_research_and_solver_bots_run_end_to_end() -> None:
    from standin.serving import ROOT

    shipped = (ROOT / "pipelines.yaml").read_text()
    behaviors = {
        "GPT-5-mini": Behavior(
            reply=lambda r: (
                "Why A?\nWhy B?"
                if "sub-questions" in r.query[-1].content
                else (
                    "Working...\nANSWER: 42"
                    if "Solve this" in r.query[-1].content
                    else "**42**, because it is."
                )
            )
        ),
        "Claude-Sonnet-4.5": Behavior(reply=lambda r: "finding for " + r.query[-1].content[:30]),
        "Claude-Opus-4.1": Behavior(echo=True),
    }
    async with serve_pipelines(shipped, behaviors) as s:
        research = await s.ask("research", "Why is the sky blue?")
        solver = await s.ask("solver", "What is 6 * 7?")
        assert not s.standin.refused  # within what each bot declared to Poe
    assert research.done and not research.errors
    assert "### Why A?" in research.text and "### Why B?" in research.text
    written = json.loads(research.text.split("---\n\n")[-1])["last"]  # the write-up's prompt
    assert "[1] Why A?\nfinding for Answer briefly and precisely" in written
    assert solver.done and solver.text == "**42**, because it is."
    solved = [r for r in s.requests_to("GPT-5-mini") if "Solve this" in r["query"][-1]["content"]]
    assert len(solved) == 3  # waves of 3: the first three agree, so no second wave
    explained = s.requests_to("GPT-5-mini")[-1]["query"][-1]["content"]
    assert "reached this final answer: ANSWER: 42" in explained
