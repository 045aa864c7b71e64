"""Traces: served bots export each message as one OpenTelemetry trace over OTLP/HTTP, to a real
receiver on 127.0.0.1 (`tests/collector.py`, which decodes the protobuf export), with the SDK's
real batch processor and exporter; reactions join their message's trace; a dead collector
changes nothing in the replies; the terminal chat writes the same spans as OTLP/JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bots.run import trace
from standin.collector import attributes, serve_collector
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import closed_port
from standin.user import identifier

EVERY_KIND = """\
    version: 1
    call_budget: 20
    bots:
      every:
        steps:
          - id: drafts
            parallel: [{id: a, bot: A}, {id: b, bot: B}]
            show: sections
          - {id: topic, bot: Classifier}
          - route: "{{ topic }}"
            cases:
              code: [{id: fix, bot: Flaky, retries: 1}]
            default: [{bot: A}]
          - id: parts
            map: "{{ ['x', 'y'] }}"
            max_items: 2
            steps: [{bot: B, prompt: "item {{ item }}"}]
          - {id: votes, bot: A, repeat: 2}
          - loop:
              max: 2
              until: "{{ iteration == 2 }}"
              steps: [{id: r, bot: B}]
          - {bot: A, when: "{{ false }}"}
          - text: "done {{ fix }}"
"""
BEHAVIORS = {
    "A": Behavior(text="alpha answer"),
    "B": Behavior(text="beta answer"),
    "Classifier": Behavior(text="code"),
    "Flaky": Behavior(text="fixed answer", fail_first=1),
}
USER_TEXT = "my private question 4711"


@pytest.fixture
def quick_export(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Exports soon after each span ends, and gives up on a collector after 1 s."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.delenv(trace.CONTENT_ENV, raising=False)
    return monkeypatch


def tree(spans: list[Any]) -> dict[str, list[str]]:
    """Each span's name -> the names of its children (spans of one trace)."""
    names = {span.span_id: span.name for span in spans}
    children: dict[str, list[str]] = {}
    for span in spans:
        if span.parent_span_id:
            children.setdefault(names[span.parent_span_id], []).append(span.name)
    return children


async def test_each_message_is_one_trace_of_its_steps_and_tries(
    quick_export: pytest.MonkeyPatch,
) -> None:
    async with serve_collector() as (collector, endpoint):
        quick_export.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        async with serve_pipelines(EVERY_KIND, BEHAVIORS) as s:
            first = await s.ask("every", USER_TEXT, message_id="m-first")
            second = await s.ask("every", USER_TEXT, message_id="m-second")
            keys = list(s.keys.values())
    assert first.text.endswith("done fixed answer") and second.done
    spans = collector.spans()
    traces = {span.trace_id for span in spans}
    assert traces == {trace.trace_id(m).to_bytes(16) for m in ("m-first", "m-second")}
    one = [span for span in spans if span.trace_id == trace.trace_id("m-first").to_bytes(16)]
    root = next(span for span in one if not span.parent_span_id)
    assert root.name == "invoke_workflow every"
    assert root.span_id == trace.root_span_id("m-first").to_bytes(8)
    facts = attributes(root)
    assert facts["gen_ai.operation.name"] == "invoke_workflow"
    assert facts["poe.message.id"] == "m-first"
    assert facts["pipeline.calls"] == 11 and facts["pipeline.calls_declared"] == 12
    assert facts["pipeline.outcome"] == "done"
    children = tree(one)
    # steps are named by their ids, the creator's own words; those without one by their place
    assert children["invoke_workflow every"] == [
        "parallel drafts",
        "bot topic",
        "route steps[2]",
        "map parts",
        "bot votes",
        "loop steps[5]",
        "bot steps[6]",
        "text steps[7]",
    ]
    assert sorted(children["parallel drafts"]) == ["bot a", "bot b"]
    assert children["bot a"] == ["chat A"]
    assert children["route steps[2]"] == ["bot fix"]
    assert children["bot fix"] == ["chat Flaky"] * 2  # a retry
    assert sorted(children["map parts"]) == ["bot parts.steps[0]#1", "bot parts.steps[0]#2"]
    assert sorted(children["bot votes"]) == ["sample votes#1", "sample votes#2"]
    assert sorted(children["loop steps[5]"]) == ["loop steps[5] round 1", "loop steps[5] round 2"]
    assert children["loop steps[5] round 1"] == ["bot r"]
    assert "bot steps[6]" not in children  # skipped: no call

    by_name = {span.name: attributes(span) for span in one}
    assert by_name["route steps[2]"]["pipeline.step.case"] == "code"
    assert by_name["bot steps[6]"]["pipeline.step.when"] is False
    assert by_name["bot steps[6]"]["pipeline.step.outcome"] == "skipped"
    assert by_name["bot topic"]["pipeline.step.path"] == "steps[1]"  # its place, kept
    rounds = sorted(
        attributes(span)["pipeline.step.round"]
        for span in one
        if span.name.startswith("loop steps[5] round")
    )
    assert rounds == [1, 2]
    # the kinds LLM tools read: the message and its steps are chains, only the calls are LLMs
    kinds = {name: facts["openinference.span.kind"] for name, facts in by_name.items()}
    assert {kind for name, kind in kinds.items() if name.startswith("chat ")} == {"LLM"}
    assert {kind for name, kind in kinds.items() if not name.startswith("chat ")} == {"CHAIN"}
    assert not any(
        "gen_ai.request.model" in facts for name, facts in by_name.items() if "chat " not in name
    )
    assert by_name["bot topic"]["pipeline.step.bot"] == "Classifier"
    assert by_name["invoke_workflow every"]["session.id"] == facts["gen_ai.conversation.id"]
    tries = sorted(
        (attributes(span)["pipeline.call.try"], span.status.code, attributes(span))
        for span in one
        if span.name == "chat Flaky"
    )
    (n1, status1, failed), (n2, status2, ok) = tries
    assert (n1, n2) == (1, 2) and status1 == 2 and status2 != 2  # 2: STATUS_CODE_ERROR
    assert failed["error.type"] and failed["pipeline.call.failure"] == "it sent an error"
    assert ok["gen_ai.request.model"] == "Flaky" and ok["gen_ai.operation.name"] == "chat"
    assert ok["llm.model_name"] == "Flaky" and ok["openinference.span.kind"] == "LLM"
    assert ok["pipeline.call.characters"] == len("fixed answer")
    assert ok["pipeline.call.first_token_s"] >= 0
    for span in one:  # every span inside its parent's time
        parent = next((p for p in one if p.span_id == span.parent_span_id), None)
        if parent is not None:
            assert parent.start_time_unix_nano <= span.start_time_unix_nano
    # nothing anyone wrote, and no key, in any byte sent
    everything = b"".join(collector.bodies)
    for secret in [USER_TEXT, "alpha answer", "fixed answer", "item x", "boom", *keys]:
        assert secret.encode() not in everything, secret
    content_keys = ("gen_ai.input", "gen_ai.output", "input.value", "output.value", "llm.input")
    assert not any(key.startswith(content_keys) for span in spans for key in attributes(span))


async def test_content_is_exported_only_when_the_creator_turns_it_on(
    quick_export: pytest.MonkeyPatch,
) -> None:
    quick_export.setenv(trace.CONTENT_ENV, "1")
    quick_export.setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Basic cGs6c2s=")
    async with serve_collector() as (collector, endpoint):
        quick_export.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        async with serve_pipelines(EVERY_KIND, BEHAVIORS) as s:
            await s.ask("every", USER_TEXT)
            keys = list(s.keys.values())
    spans = collector.spans()
    root = attributes(next(span for span in spans if not span.parent_span_id))
    assert USER_TEXT in json.loads(root["gen_ai.input.messages"])[0]["parts"][0]["content"]
    assert "done fixed answer" in root["gen_ai.output.messages"]
    # what the LLM tools read: the root's input and output, in both conventions and Langfuse's
    assert root["input.value"] == USER_TEXT and root["output.value"].endswith("done fixed answer")
    assert root["langfuse.trace.input"] == USER_TEXT and root["openinference.span.kind"] == "CHAIN"
    assert json.loads(root["gen_ai.output.messages"])[0]["finish_reason"] == "stop"
    item = next(
        attributes(span)
        for span in spans
        if attributes(span).get("pipeline.step.path") == "steps[3].steps[0]#2"
        and span.name.startswith("chat ")
    )
    assert (
        "item y" in item["gen_ai.input.messages"]
        and "beta answer" in item["gen_ai.output.messages"]
    )
    assert item["input.value"] == "item y" and item["output.value"] == "beta answer"
    assert item["llm.input_messages.0.message.role"] == "user"
    assert item["llm.input_messages.0.message.content"] == "item y"
    assert item["llm.output_messages.0.message.content"] == "beta answer"
    outputs = [
        json.loads(attributes(span)["gen_ai.output.messages"])[0]["finish_reason"]
        for span in spans
        if span.name == "chat Flaky"
    ]
    assert sorted(outputs) == ["error", "stop"]  # the failed try, then the retry
    route = next(attributes(span) for span in spans if span.name == "route steps[2]")
    assert route["pipeline.step.route_value"] == "code"
    everything = b"".join(collector.bodies)
    assert not any(key.encode() in everything for key in keys)
    # OTEL_EXPORTER_OTLP_HEADERS reaches the collector, as Langfuse's and Honeycomb's need
    assert all(h.get("authorization") == "Basic cGs6c2s=" for h in collector.headers)


@pytest.mark.parametrize("dead", ["refused", "500", "slow"])
async def test_a_dead_collector_changes_nothing_in_the_replies_and_is_said_once(
    dead: str, quick_export: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    texts = []
    async with serve_collector("ok" if dead == "refused" else dead) as (collector, endpoint):  # type: ignore[arg-type]
        quick_export.setenv(
            "OTEL_EXPORTER_OTLP_ENDPOINT", closed_port() if dead == "refused" else endpoint
        )
        async with serve_pipelines(EVERY_KIND, BEHAVIORS) as s:
            for n in range(3):
                reply = await s.ask("every", f"question {n}")
                assert reply.done and not reply.errors
                texts.append(reply.text)
    assert all(text.endswith("done fixed answer") for text in texts)
    said = [r for r in caplog.records if r.name == "bots.spans" and r.levelno >= logging.WARNING]
    assert len(said) == 1 and "did not take" in said[0].getMessage()
    exporter_noise = [r for r in caplog.records if r.name.startswith("opentelemetry.exporter")]
    assert exporter_noise == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert collector.spans() == []


async def test_reactions_and_feedback_link_to_their_message_without_stretching_it(
    quick_export: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = {"version": "1.2", "message_id": "m-liked", "conversation_id": identifier("c")}
    async with serve_collector() as (collector, endpoint):
        quick_export.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        async with serve_pipelines(EVERY_KIND, BEHAVIORS) as s:
            await s.ask("every", "hello", message_id="m-liked")
            headers = {"Authorization": f"Bearer {s.keys['every']}"}
            for body in (
                {**base, "type": "report_reaction", "user_id": identifier("u"), "reaction": "like"},
                {
                    **base,
                    "type": "report_feedback",
                    "user_id": identifier("u"),
                    "feedback_type": "dislike",
                },
            ):
                answer = await s.http.post(f"{s.url}/every", json=body, headers=headers)
                assert answer.status_code == 200
    spans = collector.spans()
    root = next(span for span in spans if span.name == "invoke_workflow every")
    reactions = {
        span.name: span for span in spans if span.name.split()[0] in ("reaction", "feedback")
    }
    assert set(reactions) == {"reaction like", "feedback dislike"}
    message = [span for span in spans if span.trace_id == root.trace_id]
    assert not any(span.name in reactions for span in message)  # the message's own duration
    assert max(s.end_time_unix_nano for s in message) == root.end_time_unix_nano
    for span in reactions.values():  # each in a trace of its own, linked to the message
        assert span.trace_id != root.trace_id and not span.parent_span_id
        assert [(link.trace_id, link.span_id) for link in span.links] == [
            (root.trace_id, root.span_id)
        ]
        assert attributes(span)["poe.message.id"] == "m-liked"
    lines = [getattr(r, "fields", {}) for r in caplog.records if r.name == "bots.server"]
    reply_line = next(f for f in lines if f.get("event") == "reply")
    reaction_line = next(f for f in lines if f.get("event") == "reaction")
    assert reaction_line["reaction"] == "like" and reaction_line["message_id"] == "m-liked"
    assert reaction_line["trace_id"] == reply_line["trace_id"] == root.trace_id.hex()
    assert next(f for f in lines if f.get("event") == "feedback")["feedback"] == "dislike"


async def test_without_an_endpoint_nothing_is_traced_and_reactions_are_still_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in trace.ENDPOINT_ENVS:
        monkeypatch.delenv(name, raising=False)
    caplog.set_level(logging.INFO)
    body = {
        "version": "1.2",
        "type": "report_reaction",
        "message_id": "m-1",
        "conversation_id": identifier("c"),
        "user_id": identifier("u"),
        "reaction": "heart",
    }
    async with serve_pipelines(EVERY_KIND, BEHAVIORS) as s:
        headers = {"Authorization": f"Bearer {s.keys['every']}"}
        assert (await s.http.post(f"{s.url}/every", json=body, headers=headers)).status_code == 200
    line = next(getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == "reaction")
    assert line["reaction"] == "heart" and "trace_id" not in line


def test_serving_without_traces_never_loads_the_sdk_or_the_exporter() -> None:
    """(FastAPI itself imports OpenTelemetry's small API package when it is installed.)"""
    code = (
        "import sys; from bots.serve import server; from bots.spec import loader\n"
        "server.build_app(loader.load('pipelines.yaml'), environ={})\n"
        "heavy = ('opentelemetry.sdk', 'opentelemetry.exporter', 'google.protobuf', 'requests')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_exported_follows_the_standard_switches() -> None:
    assert not trace.exported({})
    assert trace.exported({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"})
    assert trace.exported({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://x:4318/v1/traces"})
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}
    assert not trace.exported({**on, "OTEL_SDK_DISABLED": "true"})
    assert not trace.exported({**on, "OTEL_TRACES_EXPORTER": "none"})


def test_chat_trace_file_holds_the_same_spans_as_otlp_json(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(EVERY_KIND.replace("\n    ", "\n").removeprefix("    "))
    out = tmp_path / "trace.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bots",
            "chat",
            "every",
            "--config",
            str(config),
            "--dry-run",
            "--delay",
            "0.01",
            "--answer",
            "topic=code",
            "-m",
            "one",
            "-m",
            "two",
            "--trace-file",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"in {out} (OTLP/JSON)" in run.stdout
    assert "0 s" in run.stdout and "█" in run.stdout  # the waterfall's axis and bars
    exported = json.loads(out.read_text())
    spans = exported["resourceSpans"][0]["scopeSpans"][0]["spans"]
    roots = [span for span in spans if "parentSpanId" not in span]
    assert [root["name"] for root in roots] == ["invoke_workflow every"] * 2
    assert all(len(span["traceId"]) == 32 and len(span["spanId"]) == 16 for span in spans)
    ids = {span["spanId"] for span in spans}
    assert all(span["parentSpanId"] in ids for span in spans if "parentSpanId" in span)
    names = {span["name"] for span in spans}
    assert {"map parts", "sample votes#2", "loop steps[5] round 2", "chat Flaky"} <= names
    content = [a for s in spans for a in s["attributes"] if a["key"].startswith("gen_ai.input")]
    assert content == []  # no content by default


def test_chat_trace_file_must_be_writable(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bots",
            "chat",
            "council",
            "--dry-run",
            "-m",
            "x",
            "--trace-file",
            str(tmp_path / "nowhere" / "t.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2 and "does not exist" in run.stderr
