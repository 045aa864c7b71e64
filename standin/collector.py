"""An OTLP/HTTP trace receiver on 127.0.0.1, for the tests: it takes what OpenTelemetry's
exporter POSTs to /v1/traces, keeps every byte, and decodes the spans with opentelemetry-proto.
It can also answer like a broken collector: HTTP 500, or too slowly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from standin.serving import serve_app

Mode = Literal["ok", "500", "slow"]


@dataclass
class Collector:
    mode: Mode = "ok"
    bodies: list[bytes] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.headers.append({k.decode(): v.decode() for k, v in scope["headers"]})
        if self.mode == "slow":
            await asyncio.sleep(3)
        # as strict as the strictest tool: Phoenix takes protobuf only ("415 Unsupported
        # content type: application/json"), where MLflow and Langfuse take JSON too
        protobuf = self.headers[-1].get("content-type", "") == "application/x-protobuf"
        ok = self.mode == "ok" and scope["path"] == "/v1/traces" and protobuf
        if ok:
            self.bodies.append(body)
        answer = ExportTraceServiceResponse().SerializeToString() if ok else b"no"
        status = 200 if ok else 415 if self.mode == "ok" and not protobuf else 500
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/x-protobuf")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def spans(self) -> list[Span]:
        found: list[Span] = []
        for body in self.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found


@contextlib.asynccontextmanager
async def serve_collector(mode: Mode = "ok") -> AsyncIterator[tuple[Collector, str]]:
    """A collector and its base URL (what OTEL_EXPORTER_OTLP_ENDPOINT is set to)."""
    collector = Collector(mode)
    async with serve_app(collector, lifespan="off") as url:
        yield collector, url


def attributes(span: Span) -> dict[str, Any]:
    """A span's attributes as plain values."""
    return {a.key: value(a.value) for a in span.attributes}


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None
