"""`python -m bots traces send FILE`: a trace file the chat wrote (`chat --trace-file`, OTLP's
JSON encoding) sent to any OTLP/HTTP collector in OTLP's protobuf encoding, which every
collector takes (Phoenix takes only protobuf; MLflow, Langfuse and Jaeger take both).
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.json_format import ParseDict, ParseError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bots.errors import Unreadable, UsageError
from bots.spec.reading import RESULTS, json_value

TRACES_PATH = "/v1/traces"


def protobuf(request: Mapping[str, Any]) -> bytes:
    """An OTLP/JSON export request (ids in hex, as OTLP's JSON mapping has them) as the
    protobuf bytes OTLP/HTTP sends."""
    data = copy.deepcopy(dict(request))
    for resource in data.get("resourceSpans", []):
        for scope in resource.get("scopeSpans", []):
            for span in scope.get("spans", []):
                _ids_to_base64(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", []):
                    _ids_to_base64(link, ("traceId", "spanId"))
    message = ExportTraceServiceRequest()
    ParseDict(data, message)
    return message.SerializeToString()


def _ids_to_base64(holder: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if isinstance(holder.get(key), str):
            holder[key] = base64.b64encode(bytes.fromhex(holder[key])).decode()


def send(path: str, endpoint: str, headers: Mapping[str, str]) -> tuple[int, int]:
    """Sends the spans of a trace file to `endpoint` (a collector's base URL, as
    OTEL_EXPORTER_OTLP_ENDPOINT holds it; /v1/traces is added unless it is there); returns
    (the HTTP status, how many spans). UsageError when the file is not a trace file."""
    try:
        request = json_value(Path(path).read_bytes(), RESULTS)
        spans = sum(
            len(scope.get("spans", []))
            for resource in request.get("resourceSpans", [])
            for scope in resource.get("scopeSpans", [])
        )
        body = protobuf(request)
    except (OSError, Unreadable, ParseError, ValueError, AttributeError, TypeError) as e:
        raise UsageError(
            f"{path} is not a trace file chat --trace-file writes (OTLP/JSON): {e}"
        ) from None
    url = endpoint.rstrip("/")
    if not url.endswith(TRACES_PATH):
        url += TRACES_PATH
    try:
        response = httpx.post(
            url,
            content=body,
            headers={**headers, "Content-Type": "application/x-protobuf"},
            timeout=30,
        )
    except httpx.HTTPError as e:
        raise UsageError(f"{url} could not be reached ({type(e).__name__})") from None
    return response.status_code, spans
