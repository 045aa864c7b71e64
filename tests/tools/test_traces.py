"""`python -m bots traces send`: a chat's trace file reaches an OTLP/HTTP collector in the
protobuf encoding every tool takes (the stand-in collector, like Phoenix, refuses JSON)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx

from standin.collector import serve_collector
from standin.serving import ROOT


async def bots(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_chats_trace_file_is_sent_as_protobuf_and_read_back_whole(
    tmp_path: Path,
) -> None:
    trace_file = tmp_path / "trace.json"
    code, _, err = await bots(
        "chat",
        "router",
        "--dry-run",
        "--delay",
        "0",
        "-m",
        "hi",
        "--answer",
        "topic=code",
        "--trace-file",
        str(trace_file),
    )
    assert code == 0, err
    written = json.loads(trace_file.read_text())
    ids = sorted(s["spanId"] for s in written["resourceSpans"][0]["scopeSpans"][0]["spans"])
    async with serve_collector() as (collector, endpoint):
        async with httpx.AsyncClient() as http:  # what the docs' old curl did: JSON
            refused = await http.post(
                f"{endpoint}/v1/traces",
                content=trace_file.read_bytes(),
                headers={"Content-Type": "application/json"},
            )
        assert refused.status_code == 415
        code, out, err = await bots(
            "traces",
            "send",
            str(trace_file),
            "--endpoint",
            endpoint,
            "--header",
            "x-mlflow-experiment-id=7",
        )
        received = collector.spans()
        headers = collector.headers[-1]
    assert code == 0, err
    assert out.startswith(f"sent {len(ids)} spans to {endpoint}")
    assert sorted(span.span_id.hex() for span in received) == ids
    assert {span.name for span in received} >= {"invoke_workflow router", "bot topic"}
    assert headers["x-mlflow-experiment-id"] == "7"


async def test_sending_something_else_says_what_is_wrong(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}')
    async with serve_collector("500") as (_, endpoint):
        code, _, err = await bots("traces", "send", str(notes), "--endpoint", endpoint)
        assert code == 2 and "is not a trace file chat --trace-file writes" in err
        empty = tmp_path / "empty.json"
        empty.write_text('{"resourceSpans": []}')
        code, _, err = await bots("traces", "send", str(empty), "--endpoint", endpoint)
    assert code == 1 and "the collector answered HTTP 500" in err
