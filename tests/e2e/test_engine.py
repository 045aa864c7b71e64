"""Running pipelines end to end: a real server, real fastapi_poe dependency bots behind the Poe
stand-in, real HTTP and SSE. Each test plays Poe: it POSTs a query and reads the reply."""

from __future__ import annotations

import json

from bots.run.delivery import Pacing
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.user import Reply


def echoed(text: str) -> dict:
    return json.loads(text)


async def test_sequence_passes_earlier_outputs_to_templates() -> None:
    yaml = """\
        version: 1
        bots:
          seq:
            steps:
              - {id: first, bot: Writer}
              - bot: Echo
                history: false
                system: "Be brief."
                prompt: "Improve: {{ first }} (asked: {{ message }})"
                parameters: {reasoning_effort: low, budget: 3}
    """
    async with serve_pipelines(
        yaml, {"Writer": Behavior(text="a draft"), "Echo": Behavior(echo=True)}
    ) as s:
        reply = await s.ask("seq", "the question")
    assert reply.done and not reply.errors
    got = echoed(reply.text)
    assert got["last"] == "Improve: a draft (asked: the question)"
    assert got["system"] == "Be brief."
    assert got["roles"] == ["system", "user"]
    assert got["parameters"] == {"reasoning_effort": "low", "budget": 3}


async def test_each_call_carries_the_users_request_identity() -> None:
    yaml = "version: 1\nbots:\n  one:\n    steps: [{bot: Echo}]\n"
    async with serve_pipelines(yaml, {"Echo": Behavior(echo=True)}) as s:
        await s.ask(
            "one",
            "hi",
            user_id="u-42",
            conversation_id="c-7",
            message_id="m-9",
            extra={"language_code": "fr", "temperature": 0.3},
        )
        sent = s.requests_to("Echo")
    assert len(sent) == 1
    request = sent[0]
    assert (request["user_id"], request["conversation_id"], request["message_id"]) == (
        "u-42",
        "c-7",
        "m-9",
    )
    assert request["language_code"] == "fr" and request["temperature"] == 0.3
    assert request["access_key"] == s.keys["one"]


async def test_parallel_sections_stream_every_branch_at_once() -> None:
    yaml = """\
        version: 1
        bots:
          council:
            steps:
              - id: drafts
                show: sections
                parallel:
                  - {id: a, bot: A}
                  - {id: b, bot: B}
                  - {id: c, bot: C}
              - bot: Judge
                history: false
                prompt: "{% for k, v in drafts.items() %}{{ k }}={{ v }};{% endfor %}"
    """
    behaviors = {
        "A": Behavior(text="alpha one two", first_token_delay=0.1, token_gap=0.05),
        "B": Behavior(text="beta one two", first_token_delay=0.2, token_gap=0.05),
        "C": Behavior(text="gamma one two", first_token_delay=0.3, token_gap=0.05),
        "Judge": Behavior(echo=True),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("council")
        assert s.standin.max_open_streams == 3  # the branches ran at the same time
    sections, _, verdict = reply.text.partition("\n\n---\n\n")
    assert sections == "### a\n\nalpha one two\n\n### b\n\nbeta one two\n\n### c\n\ngamma one two"
    assert echoed(verdict)["last"] == "a=alpha one two;b=beta one two;c=gamma one two;"
    assert any(name == "replace_response" for name, _ in reply.events)  # sections refreshed live


async def test_a_dependencys_replace_response_replaces_only_its_own_section() -> None:
    yaml = """\
        version: 1
        bots:
          two:
            steps:
              - parallel: [{id: a, bot: A}, {id: b, bot: B}]
                show: sections
    """
    behaviors = {
        "A": Behavior(
            text="draft words here", token_gap=0.02, replace_at=2, replace_text="REDONE "
        ),
        "B": Behavior(text="steady text", token_gap=0.03),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("two")
    assert reply.text == "### a\n\nREDONE here\n\n### b\n\nsteady text"


async def test_race_takes_the_first_answer_and_closes_the_others() -> None:
    yaml = """\
        version: 1
        bots:
          race:
            steps:
              - parallel: [{bot: Slow}, {bot: Fast}]
                wait: first
    """
    behaviors = {"Slow": Behavior(text="slow", hang_at=0), "Fast": Behavior(text="fast answer")}
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("race")
        await s.standin.wait_until_idle()
        assert s.standin.closed_early == 1
    assert reply.text == "fast answer"
    assert reply.done and not reply.errors


async def test_route_picks_the_case_the_classifier_names() -> None:
    yaml = """\
        version: 1
        bots:
          router:
            steps:
              - {id: topic, bot: Classifier}
              - route: "{{ topic }}"
                cases:
                  code: [{bot: Coder}]
                  math: [{bot: Mathy}]
                default: [{bot: General}]
    """
    behaviors = {
        "Classifier": Behavior(text=" Code. "),
        "Coder": Behavior(text="def f(): ..."),
        "Mathy": Behavior(text="42"),
        "General": Behavior(text="hello"),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("router")
        message_id = s.standin.requests[-1]["message_id"]
        assert s.standin.calls[message_id] == {"Classifier": 1, "Coder": 1}
    assert reply.text == "def f(): ..."


async def test_loop_repeats_until_its_condition_and_text_steps_show_results() -> None:
    yaml = """\
        version: 1
        bots:
          loop:
            steps:
              - loop:
                  max: 5
                  until: "{{ iteration >= 3 }}"
                  steps:
                    - {id: note, bot: Note}
              - text: "done after {{ note }}"
                show: stream
    """
    async with serve_pipelines(yaml, {"Note": Behavior(text="a note")}) as s:
        reply = await s.ask("loop")
        assert s.standin.calls[s.standin.requests[-1]["message_id"]] == {"Note": 3}
    assert reply.text == "done after a note"  # the loop is not last, so hidden


async def test_when_skips_a_step_and_continue_keeps_going_after_a_failure() -> None:
    yaml = """\
        version: 1
        bots:
          tolerant:
            steps:
              - {id: skipped, bot: Never, when: "{{ 'please' in message }}"}
              - {id: broken, bot: Broken, on_error: continue, show: stream}
              - {bot: Fine, show: stream}
    """
    behaviors = {
        "Never": Behavior(text="x"),
        "Broken": Behavior(text="partial words", error_at=1, error_text="model overloaded"),
        "Fine": Behavior(text="all good"),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("tolerant", "no magic word")
        assert not s.requests_to("Never")
    # what the failing bot had sent stays, with a note on what went wrong
    assert reply.text == "partial \n\n> ⚠️ Broken failed: model overloaded\n\nall good"
    assert not reply.errors


async def test_retries_then_fallback_are_the_only_retries() -> None:
    yaml = """\
        version: 1
        bots:
          sturdy:
            steps:
              - {bot: Flaky, retries: 1}
              - {bot: Down, retries: 1, fallback: [Backup], show: stream}
    """
    behaviors = {
        "Flaky": Behavior(text="second try works", fail_first=1),
        "Down": Behavior(http_status=500),
        "Backup": Behavior(text="backup answer"),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("sturdy")
        message_id = s.standin.requests[-1]["message_id"]
        attempts = s.standin.attempts[message_id]
    assert reply.text == "backup answer"
    # fastapi_poe would have tried each call twice by itself; only the engine's tries happen
    assert attempts == {"Flaky": 2, "Down": 2, "Backup": 1}


async def test_a_stalled_dependency_times_out_and_its_stream_is_closed() -> None:
    yaml = """\
        version: 1
        bots:
          patient:
            steps:
              - {bot: Stuck, timeout: 0.5, on_error: continue, show: stream}
              - {bot: Fine, show: stream}
    """
    behaviors = {"Stuck": Behavior(text="one two three", hang_at=1), "Fine": Behavior(text="ok")}
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("patient")
        await s.standin.wait_until_idle()
    assert reply.text == "one \n\n> ⚠️ Stuck failed: no complete answer within 0.5 s\n\nok"


async def test_failure_keeps_what_was_shown_and_says_what_went_wrong() -> None:
    yaml = """\
        version: 1
        bots:
          fragile:
            steps:
              - {bot: Good, show: stream}
              - {bot: Bad}
    """
    behaviors = {
        "Good": Behavior(text="shown first"),
        "Bad": Behavior(error_at=0, error_text="quota"),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("fragile")
    assert reply.text == "shown first\n\n> ⚠️ Bad failed: quota"
    assert not reply.errors  # said once, in the note
    assert "unexpected issue" not in json.dumps(reply.events)
    assert reply.done


async def test_unknown_dependency_bot_gives_a_clear_message() -> None:
    yaml = "version: 1\nbots:\n  typo:\n    steps: [{bot: GTP-5}]\n"
    async with serve_pipelines(yaml, {}) as s:
        reply = await s.ask("typo")
    assert "GTP-5 failed: HTTP 404 (no such bot)" in reply.text


async def test_attachments_and_suggested_replies_reach_the_user() -> None:
    yaml = """\
        version: 1
        bots:
          draw:
            controls:
              - {aspect_ratio: aspect, label: Shape, default: "1:1", options: ["1:1", "16:9"]}
            steps:
              - {bot: Writer, show: stream}
              - bot: Painter
                parameters: {aspect_ratio: "{{ params.aspect }}"}
    """
    behaviors = {
        "Writer": Behavior(text="a prompt", suggested_replies=["not this one"]),
        "Painter": Behavior(
            text="Here it is.",
            attachment=("https://files.example/cat.png", "image/png", "cat.png"),
            suggested_replies=["Make it bigger"],
        ),
    }
    async with serve_pipelines(yaml, behaviors) as s:
        reply = await s.ask("draw", parameters={"aspect": "16:9"})
        painter_request = s.requests_to("Painter")[0]
        writer_request = s.requests_to("Writer")[0]
    assert reply.text == "a prompt\n\nHere it is."
    assert [f["name"] for f in reply.files] == ["cat.png"]
    assert reply.suggested == ["Make it bigger"]
    assert painter_request["query"][-1]["parameters"] == {"aspect_ratio": "16:9"}
    assert writer_request["query"][-1]["parameters"] == {}  # nothing is copied implicitly


async def test_user_attachments_are_forwarded_unless_the_step_says_no() -> None:
    yaml = """\
        version: 1
        bots:
          files:
            steps:
              - {id: a, bot: Echo}
              - {bot: Echo2, attachments: false, history: false, show: stream}
    """
    attachment = {
        "url": "https://files.example/doc.pdf",
        "content_type": "application/pdf",
        "name": "doc.pdf",
    }
    async with serve_pipelines(
        yaml, {"Echo": Behavior(echo=True), "Echo2": Behavior(echo=True)}
    ) as s:
        reply = await s.ask("files", attachments=[attachment])
        forwarded = s.requests_to("Echo")[0]["query"][-1]["attachments"]
    assert [a["name"] for a in forwarded] == ["doc.pdf"]
    assert echoed(reply.text)["attachments"] == []


async def test_later_turns_give_each_dependency_its_own_earlier_answers() -> None:
    yaml = """\
        version: 1
        bots:
          duo:
            steps:
              - parallel: [{id: a, bot: A}, {id: b, bot: Echo}]
                show: sections
    """
    async with serve_pipelines(
        yaml, {"A": Behavior(text="answer from A"), "Echo": Behavior(echo=True)}
    ) as s:
        first = await s.ask("duo", "first question")
        assert len(first.data) == 1
        history = [
            {"role": "user", "content": "first question"},
            {"role": "bot", "content": first.text, "metadata": first.data[0]},
            {"role": "user", "content": "second question"},
        ]
        await s.ask("duo", history)
        second_to_echo = s.requests_to("Echo")[-1]["query"]
    contents = [(m["role"], m["content"]) for m in second_to_echo]
    assert contents[0] == ("user", "first question")
    assert contents[1][0] == "bot"
    assert echoed(contents[1][1])["bot"] == "Echo"  # its own earlier answer
    assert "answer from A" not in contents[1][1]  # not the merged reply with A's section
    assert contents[2] == ("user", "second question")


async def test_old_messages_without_metadata_fall_back_to_the_merged_text() -> None:
    yaml = "version: 1\nbots:\n  one:\n    steps: [{bot: Echo}]\n"
    async with serve_pipelines(yaml, {"Echo": Behavior(echo=True)}) as s:
        history = [
            {"role": "user", "content": "q1"},
            {"role": "bot", "content": "merged old reply"},
            {"role": "user", "content": "q2"},
        ]
        reply = await s.ask("one", history)
    assert echoed(reply.text)["history"] == [
        ["user", "q1"],
        ["bot", "merged old reply"],
        ["user", "q2"],
    ]


async def test_progress_line_comes_first_while_a_hidden_step_works() -> None:
    yaml = """\
        version: 1
        bots:
          slow:
            steps:
              - {id: think, bot: Thinker}
              - text: "result: {{ think }}"
    """
    async with serve_pipelines(
        yaml, {"Thinker": Behavior(text="deep", first_token_delay=1.5)}
    ) as s:
        reply = await s.ask("slow")
    first_name, first_data = reply.events[0]
    assert first_name == "text" and "Waiting for Thinker" in first_data["text"]
    assert reply.text == "result: deep"


async def test_calls_never_exceed_the_declared_dependencies() -> None:
    yaml = """\
        version: 1
        bots:
          busy:
            steps:
              - parallel:
                  - {bot: A, retries: 2}
                  - {bot: B, fallback: [A]}
                show: sections
                on_error: continue
              - loop: {max: 2, steps: [{bot: B, retries: 1, on_error: continue}]}
    """
    behaviors = {"A": Behavior(error_at=0), "B": Behavior(http_status=500)}
    async with serve_pipelines(yaml, behaviors) as s:
        for _ in range(3):
            reply = await s.ask("busy")
            assert reply.done
        assert not s.standin.refused
        declared = s.config.bots["busy"].dependencies
        for calls in s.standin.calls.values():
            assert all(calls[bot] <= declared[bot] for bot in calls)


def _progress_lines(reply: Reply) -> list[str]:
    """The progress lines the user saw, in order (each shown while nothing else was)."""
    lines = []
    for name, data in reply.events:
        text = data.get("text", "") if name in ("text", "replace_response") else ""
        if text.startswith("_") and text.endswith("…_") and text not in lines[-1:]:
            lines.append(text)
    return lines


QUICK_STATUS = Pacing(status_delay=0.05)


async def test_progress_line_names_every_bot_of_a_fan_out_then_follows_the_sequence() -> None:
    yaml = """\
        version: 1
        bots:
          busy:
            steps:
              - id: drafts
                parallel: [{bot: Alpha}, {bot: Beta}, {bot: Gamma}]
              - {id: check, bot: Checker, prompt: "{{ drafts }}"}
              - text: "checked: {{ check }}"
    """
    slow = Behavior(text="ok", first_token_delay=0.8)
    behaviors = {"Alpha": slow, "Beta": slow, "Gamma": slow, "Checker": slow}
    async with serve_pipelines(yaml, behaviors, pacing=QUICK_STATUS) as s:
        reply = await s.ask("busy")
    lines = _progress_lines(reply)
    assert reply.text == "checked: ok"
    first = lines[0]
    assert all(name in first for name in ("Alpha", "Beta", "Gamma")), lines
    assert lines[-1] == "_Waiting for Checker…_", lines


async def test_progress_line_says_the_creators_wording_instead_of_bot_names() -> None:
    yaml = """\
        version: 1
        bots:
          discreet:
            waiting: Consulting the council…
            steps:
              - id: drafts
                parallel: [{bot: Alpha}, {bot: Beta}]
              - {id: check, bot: Checker, prompt: "{{ drafts }}", waiting: Checking the facts…}
              - text: "checked: {{ check }}"
    """
    slow = Behavior(text="ok", first_token_delay=0.8)
    behaviors = {"Alpha": slow, "Beta": slow, "Checker": slow}
    async with serve_pipelines(yaml, behaviors, pacing=QUICK_STATUS) as s:
        reply = await s.ask("discreet")
    assert _progress_lines(reply) == ["_Consulting the council…_", "_Checking the facts…_"]
    assert reply.text == "checked: ok"
