"""Traces in OpenTelemetry: each message's run as one trace, and users' reactions joined to it.

A run's `trace` (`bots/run/trace.py`) becomes, once the reply is done, a tree of spans, in
both conventions LLM tools read (OpenTelemetry's GenAI attributes and OpenInference's):
- the message (`invoke_workflow <bot id>`, a CHAIN): bot, conversation (`session.id`), user,
  message id, calls made and declared, outcome; with content, its input and output;
- a CHAIN span per step, loop round, sample, wave and wait for Poe's rate limit, under the
  step it ran in, named by the step's id where it has one (path, kind, id, bot, what `when`
  said, the case a route took, the round);
- an LLM span per try of a call (`chat <bot>`: the dependency bot is `gen_ai.request.model`
  and `llm.model_name`; only calls carry a model), with its time to first token, characters
  and files received, and why it failed; with content, its messages.

Spans are made after the reply, from times the engine recorded, so tracing adds nothing to a
reply while it streams. A message's trace id and root span id come from its message id: a
reaction that arrives later is a span of a trace of its own, linked to the message's root.

What users and bots wrote (the message, prompts, answers, a route's value) is exported only
when the creator sets `PIPELINE_TRACE_CONTENT=1`. Access keys never are: no span holds a
request's headers or access key.

Export goes through the SDK's batch processor (a bounded queue, a background thread), so a
dead or slow collector never slows or breaks a reply: its first failure is logged, and the
spans that do not fit the queue are dropped until it answers again.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import fastapi_poe as fp
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace as api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from bots.run.engine import Run
from bots.run.trace import (
    ENDPOINT_ENVS,
    TraceEntry,
    content_wanted,
    label,
    root_span_id,
    trace_id,
)

log = logging.getLogger("bots.spans")  # the name in the log, as creators grep it

SERVICE = "poe-pipelines"
_NAMED = ("event", "bot", "message_id", "conversation_id")  # a root span says these as gen_ai.*
TEXT_CAP = 20_000
"""Longest text kept in one attribute when content is exported (characters)."""


class Spans:
    """Makes one trace per message, and a span per reaction, into an exporter."""

    def __init__(self, exporter: SpanExporter, *, content: bool, batch: bool = True) -> None:
        self.content = content
        self.exporter = exporter
        self._ids = _MessageIds()
        self.provider = TracerProvider(
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME") or SERVICE}
            ),
            id_generator=self._ids,
            shutdown_on_exit=False,  # `shutdown` does it, within a bound
        )
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("bots")

    def message(self, run: Run, fields: Mapping[str, Any]) -> None:
        """The trace of one answered message: `fields` are its log line's."""
        ended = time.time()
        ctx = run.ctx
        request = ctx.request
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.agent.name": ctx.plan.id,
            "gen_ai.conversation.id": request.conversation_id,
            "openinference.span.kind": "CHAIN",
            "session.id": request.conversation_id,
            "user.id": request.user_id,
            "poe.message.id": request.message_id,
            **{
                f"pipeline.{name}": value
                for name, value in fields.items()
                if isinstance(value, str | int | float | bool) and name not in _NAMED
            },
        }
        if self.content:
            asked, answered = request.query[-1].content, ctx.answer.text
            failed = fields.get("outcome") == "failed"
            attributes.update(
                {
                    "gen_ai.input.messages": _messages("user", asked),
                    "gen_ai.output.messages": _messages("assistant", answered, failed=failed),
                    **_values(asked, answered),
                    "langfuse.trace.input": _cap(asked),
                    "langfuse.trace.output": _cap(answered),
                }
            )
        self._ids.root = (trace_id(request.message_id), root_span_id(request.message_id))
        root = self.tracer.start_span(
            f"invoke_workflow {ctx.plan.id}",
            kind=api.SpanKind.SERVER,
            attributes=attributes,
            start_time=_ns(ctx.started),
        )
        self._ids.root = None
        failure = fields.get("failure")
        if failure:
            root.set_status(api.Status(api.StatusCode.ERROR, str(failure)))
        for entry in run.trace:
            if entry.kind == "param" and self.content:
                root.add_event("control value refused", {"note": entry.outcome})
        made: dict[int, api.Span] = {}
        for entry in _parents_first(run.trace):
            if entry.kind == "param":
                continue
            parent = made.get(id(entry.parent), root)
            span = self._entry_span(entry, parent, request.conversation_id)
            made[id(entry)] = span
        for entry in run.trace:
            if id(entry) in made:
                made[id(entry)].end(_ns(entry.started + entry.seconds))
        root.end(_ns(ended))

    def _entry_span(self, entry: TraceEntry, parent: api.Span, conversation: str) -> api.Span:
        context = api.set_span_in_context(parent)
        facts = {k: v for k, v in entry.facts.items() if v is not None}
        if entry.kind == "try":
            assert entry.bot is not None
            failed = "error_type" in facts or "failure" in facts
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "poe",
                "gen_ai.request.model": entry.bot,
                "gen_ai.conversation.id": conversation,
                "openinference.span.kind": "LLM",
                "llm.model_name": entry.bot,
                "llm.provider": "poe",
                "session.id": conversation,
                "pipeline.step.path": entry.path,
                **{f"pipeline.call.{name}": value for name, value in facts.items()},
            }
            if failed:
                attributes["error.type"] = facts.get("error_type") or "call_failed"
            if self.content:
                attributes.update(self._call_content(entry, failed=failed))
            name, kind = f"chat {entry.bot}", api.SpanKind.CLIENT
        else:
            attributes = {
                "openinference.span.kind": "CHAIN",
                "pipeline.step.path": entry.path,
                "pipeline.step.kind": entry.kind,
                "pipeline.step.outcome": entry.outcome.split(":")[0],
                "pipeline.step.calls": entry.calls,
                **{f"pipeline.step.{name}": value for name, value in facts.items()},
            }
            if entry.bot:  # the bot a step calls, said as a step's fact: only calls are LLMs
                attributes["pipeline.step.bot"] = entry.bot
            if self.content and "value" in entry.content:
                attributes["pipeline.step.route_value"] = _cap(entry.content["value"])
            name, kind = _span_name(entry), api.SpanKind.INTERNAL
        span = self.tracer.start_span(
            name, context, kind, attributes=attributes, start_time=_ns(entry.started)
        )
        if entry.failed:  # why, in the engine's words (what a bot wrote is in `outcome`)
            span.set_status(api.Status(api.StatusCode.ERROR, str(facts.get("failure", ""))))
        return span

    def _call_content(self, entry: TraceEntry, *, failed: bool) -> dict[str, Any]:
        """What a call was sent and answered, in both conventions (content mode only)."""
        prompt = entry.content.get("prompt", "")
        answer = entry.content.get("answer", "")
        system = entry.content.get("system")
        sent = [*([("system", system)] if system else []), ("user", prompt)]
        found: dict[str, Any] = {
            "gen_ai.input.messages": _messages("user", prompt),
            "gen_ai.output.messages": _messages("assistant", answer, failed=failed),
            **_values(prompt, answer),
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": _cap(answer),
        }
        for i, (role, text) in enumerate(sent):
            found[f"llm.input_messages.{i}.message.role"] = role
            found[f"llm.input_messages.{i}.message.content"] = _cap(text)
        if system:
            found["gen_ai.system_instructions"] = json.dumps(
                [{"type": "text", "content": _cap(system)}]
            )
        return found

    def reaction(
        self, request: fp.ReportReactionRequest | fp.ReportFeedbackRequest, what: str, value: str
    ) -> None:
        """A user's reaction (`report_reaction`) or feedback (`report_feedback`) to a message:
        a span in a trace of its own, linked to the message's root span, so the message's
        trace keeps the reply's own duration however late the reaction comes."""
        message_id = request.message_id
        message = api.SpanContext(
            trace_id(message_id),
            root_span_id(message_id),
            is_remote=True,
            trace_flags=api.TraceFlags(api.TraceFlags.SAMPLED),
        )
        span = self.tracer.start_span(
            f"{what} {value}",
            api.set_span_in_context(api.INVALID_SPAN),  # a root: its own trace
            links=[api.Link(message, {"poe.link": "the message reacted to"})],
            attributes={
                f"poe.{what}": value,
                "poe.message.id": message_id,
                "gen_ai.conversation.id": request.conversation_id,
                "session.id": request.conversation_id,
                "openinference.span.kind": "CHAIN",
            },
        )
        span.end()

    def shutdown(self, seconds: float = 2.0) -> None:
        """Exports what is still queued, for about `seconds` at most, then stops: spans a
        collector has not taken by then are dropped, so a dead collector never holds up the
        end of a container. (The SDK's own flush waits as long as its exporter retries.)"""

        def close() -> None:
            self.provider.force_flush()
            self.provider.shutdown()

        closing = threading.Thread(target=close, daemon=True)
        closing.start()
        closing.join(seconds)
        if closing.is_alive():
            self.exporter.shutdown()  # stops the exporter's retries
            log.info("traces: spans the collector had not taken at shutdown are dropped")


class _MessageIds(RandomIdGenerator):
    """Random ids, except for a message's root span: its trace id and span id come from the
    message id (`root`, set just while the root span is made)."""

    root: tuple[int, int] | None = None

    def generate_trace_id(self) -> int:
        return self.root[0] if self.root else super().generate_trace_id()

    def generate_span_id(self) -> int:
        return self.root[1] if self.root else super().generate_span_id()


def _parents_first(entries: Sequence[TraceEntry]) -> list[TraceEntry]:
    """The entries with each one after its parent (a loop's round is recorded after its
    steps, so list order is not enough)."""

    def depth(entry: TraceEntry) -> int:
        n = 0
        while entry.parent is not None:
            entry, n = entry.parent, n + 1
        return n

    return sorted(entries, key=depth)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _cap(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[:TEXT_CAP] + "…"


def _messages(role: str, text: str, *, failed: bool = False) -> str:
    """Content as the GenAI conventions put it on spans: a JSON list of messages of parts; an
    answer says why it ended (`finish_reason`: stop, or error for a failed try)."""
    message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": _cap(text)}]}
    if role == "assistant":
        message["finish_reason"] = "error" if failed else "stop"
    return json.dumps([message])


def _values(asked: str, answered: str) -> dict[str, str]:
    """OpenInference's input and output of a span, as LLM tools show them in their lists."""
    return {
        "input.value": _cap(asked),
        "input.mime_type": "text/plain",
        "output.value": _cap(answered),
        "output.mime_type": "text/plain",
    }


def _span_name(entry: TraceEntry) -> str:
    """A step's span, named by the creator's own words: its id where it has one ("bot plan",
    "map answers", "loop refine round 2", "wave 1 of samples"), else its place."""
    name = label(entry)
    if entry.kind == "round":
        return f"loop {name} round {entry.facts.get('round', '')}".rstrip()
    if entry.kind == "wave":
        return f"wave {entry.facts.get('wave', '')} of {name}"
    return f"{entry.kind} {name}"


class QuietExporter(SpanExporter):
    """Another exporter, whose failures are logged once (and once more when it recovers)
    instead of at every batch; the OTLP exporter's own per-batch complaints are muted."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner = inner
        self.where = where
        self.failing = False
        self.closed = False
        logging.getLogger(OTLP_LOGGER).addFilter(_mute)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as e:  # an exporter must not take the export thread down
            log.debug("traces: export raised %r", e)
            result = SpanExportResult.FAILURE
        failed = result is not SpanExportResult.SUCCESS
        if failed and not self.failing:
            log.warning(
                "traces: the collector at %s did not take %d spans; replies go on, and spans "
                "are dropped until it answers (this is said once)",
                self.where,
                len(spans),
            )
        elif not failed and self.failing:
            log.info("traces: the collector at %s answers again", self.where)
        self.failing = failed
        return result

    def shutdown(self) -> None:
        if not self.closed:
            self.closed = True
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def _mute(record: logging.LogRecord) -> bool:
    return False


def otlp(environ: Mapping[str, str]) -> Spans:
    """Spans exported over OTLP/HTTP as the standard variables say (endpoint, headers,
    timeout, compression: read by the OpenTelemetry exporter itself)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter()
    where = next(environ[name] for name in ENDPOINT_ENVS if environ.get(name, "").strip())
    return Spans(QuietExporter(exporter, where), content=content_wanted(environ))


class SpanFile:
    """Spans kept in memory and written as OTLP/JSON: the terminal chat's `--trace-file`."""

    def __init__(self, *, content: bool) -> None:
        self.memory = InMemorySpanExporter()
        self.spans = Spans(self.memory, content=content, batch=False)

    def write(self, path: os.PathLike[str] | str) -> int:
        """Writes every span so far (a complete file each time); returns how many."""
        spans = self.memory.get_finished_spans()
        with open(path, "w", encoding="utf-8") as out:
            json.dump(otlp_json(spans), out, indent=1, ensure_ascii=False)
        return len(spans)


def otlp_json(spans: Sequence[ReadableSpan]) -> dict[str, Any]:
    """Spans in OTLP's JSON encoding, as an OTLP/HTTP collector accepts it: the protobuf
    export request, with trace and span ids in hex as OTLP's JSON mapping requires."""
    request: dict[str, Any] = MessageToDict(encode_spans(spans))
    for resource in request.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        link[key] = base64.b64decode(link[key]).hex()
    return request
