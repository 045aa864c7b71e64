"""Our traces, checked in a real Arize Phoenix and a real MLflow (`make check-traces`; not in the
default CI run, since each is a large install of its own).

It starts `phoenix serve` on 127.0.0.1 (from its own virtual environment, in a temporary
working folder), serves the shipped bots in front of the Poe stand-in with OTLP pointed at it
and content on, sends a few chats and a reaction, then asks Phoenix's own REST API what it
made of them:

- each message's root is a CHAIN with the user's message as input and the answer as output;
- each call is an LLM span with its model, input messages and output messages;
- steps are CHAIN spans named by their ids ("bot plan", "map findings");
- a reaction is in a trace of its own, so the message's trace keeps the reply's duration.

With --mlflow, the same chats go to `mlflow server` (OTLP at /v1/traces, with the
x-mlflow-experiment-id header), and MLflow's API must show each message's request and response,
its session and user, and the same kinds: CHAIN for the message and its steps, LLM for calls.

With --screenshots DIR, headless Chromium (Debian's) draws Phoenix's trace list and one trace.

    .venv/bin/python -m checks.traces --phoenix .venv-traces/bin/phoenix \
        --mlflow .venv-traces/bin/mlflow [--screenshots DIR]   # as `make check-traces` runs it
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bots.spec import loader
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import ROOT

REPLIES = {
    "GPT-5-mini": lambda r: (
        "Why blue?\nWhy not red?" if "sub-questions" in r.query[-1].content else "ANSWER: 42"
    ),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit(f"Phoenix did not answer at {url} within {seconds:g} s")


async def spans_of(base: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{base}/v1/projects/default/spans", params={"limit": 1000})
        answer.raise_for_status()
        data: list[dict[str, Any]] = answer.json()["data"]
        return data


async def chat_and_react(endpoint: str, headers: str = "") -> None:
    os.environ.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_HEADERS=headers,
        PIPELINE_TRACE_CONTENT="1",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    shipped = (ROOT / "pipelines.yaml").read_text()
    config = loader.parse(shipped, "pipelines.yaml")
    names = {b for plan in config.bots.values() for b in plan.dependencies}
    behaviors = {name: Behavior(reply=lambda r, n=name: f"{n} answers.") for name in names}
    behaviors |= {name: Behavior(reply=reply) for name, reply in REPLIES.items()}
    async with serve_pipelines(shipped, behaviors) as served:
        for bot, text in [("research", "Why is the sky blue?"), ("solver", "What is 6 * 7?")]:
            reply = await served.ask(bot, text, message_id=f"m-check-{bot}")
            assert reply.done, bot
        await asyncio.sleep(2)  # a reaction some time after its reply
        body = {
            "version": "1.2",
            "type": "report_reaction",
            "message_id": "m-check-research",
            "conversation_id": "c-check",
            "user_id": "u-check",
            "reaction": "like",
        }
        headers = {"Authorization": f"Bearer {served.keys['research']}"}
        answer = await served.http.post(f"{served.url}/research", json=body, headers=headers)
        assert answer.status_code == 200


def check(spans: list[dict[str, Any]]) -> list[str]:
    """What Phoenix made of the spans; a problem per broken expectation."""
    problems: list[str] = []
    roots = [s for s in spans if s["name"].startswith("invoke_workflow ")]
    for root in roots:
        a = root["attributes"]
        if root["span_kind"] != "CHAIN" or not a.get("input.value") or not a.get("output.value"):
            problems.append(f"{root['name']}: kind {root['span_kind']}, no input or output")
    calls = [s for s in spans if s["name"].startswith("chat ")]
    for call in calls:
        a = call["attributes"]
        if call["span_kind"] != "LLM" or not a.get("llm.model_name"):
            problems.append(
                f"{call['name']}: kind {call['span_kind']}, model {a.get('llm.model_name')}"
            )
        if not a.get("llm.input_messages.0.message.content") or not a.get("output.value"):
            problems.append(f"{call['name']}: no input or output messages")
    steps = {s["name"]: s for s in spans if s["name"].split()[0] in ("bot", "map", "text")}
    for wanted in ("bot plan", "map findings", "bot samples", "text answer"):
        if wanted not in steps or steps[wanted]["span_kind"] != "CHAIN":
            problems.append(f"no CHAIN step named {wanted!r}")
    reactions = [s for s in spans if s["name"] == "reaction like"]
    research = next((r for r in roots if r["name"] == "invoke_workflow research"), None)
    if not reactions or research is None:
        problems.append("the reaction or the research message is missing")
    else:
        trace = research["context"]["trace_id"]
        if reactions[0]["context"]["trace_id"] == trace:
            problems.append("the reaction is inside its message's trace")
        in_trace = [s for s in spans if s["context"]["trace_id"] == trace]
        if max(s["end_time"] for s in in_trace) > research["end_time"]:
            problems.append("something ends after the message's root: the trace is stretched")
    if len(roots) < 2 or len(calls) < 5:
        problems.append(f"only {len(roots)} messages and {len(calls)} calls arrived")
    return problems


async def check_mlflow(command: str) -> list[str]:
    """The same chats in a real `mlflow server`, and what its API shows of them."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        server = await asyncio.create_subprocess_exec(
            command, "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{home}/mlflow.db",
            cwd=home,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            await wait_for(f"{base}/health")
            await chat_and_react(base, headers="x-mlflow-experiment-id=0")
            await asyncio.sleep(3)
            async with httpx.AsyncClient(timeout=30) as http:
                where = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "0"}}
                found = await http.post(
                    f"{base}/api/3.0/mlflow/traces/search",
                    json={"locations": [where], "max_results": 50},
                )
                traces = found.json().get("traces", [])
                kinds: dict[str, set[str]] = {}
                for listed in traces:
                    spans = await http.get(
                        f"{base}/ajax-api/2.0/mlflow/get-trace-artifact",
                        params={"request_id": listed["trace_id"]},
                    )
                    for span in spans.json().get("spans", []):
                        kind = str(span.get("attributes", {}).get("mlflow.spanType", "")).strip('"')
                        kinds.setdefault(span["name"].split()[0], set()).add(kind)
        finally:
            server.terminate()
            await asyncio.wait_for(server.wait(), 30)
    problems = []
    messages = [t for t in traces if t.get("request_preview") and t.get("response_preview")]
    if len(messages) < 2:
        problems.append(f"MLflow: {len(messages)} messages with a request and a response")
    if not all(t.get("trace_metadata", {}).get("mlflow.trace.session") for t in messages):
        problems.append("MLflow: a message without its session")
    if kinds.get("chat") != {"LLM"} or kinds.get("invoke_workflow") != {"CHAIN"}:
        problems.append(f"MLflow: the span kinds are {kinds}")
    if kinds.get("bot") != {"CHAIN"}:
        problems.append(f"MLflow: steps are {kinds.get('bot')}, not CHAIN")
    print(f"MLflow took {len(traces)} traces; {len(problems)} problems")
    return problems


def screenshots(base: str, folder: Path, trace_id: str) -> list[Path]:
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("Chromium is missing: apt-get install chromium")
    folder.mkdir(parents=True, exist_ok=True)
    pages = {"phoenix-traces.png": f"{base}/projects/UHJvamVjdDox/traces"}
    pages["phoenix-trace.png"] = f"{base}/projects/UHJvamVjdDox/traces/{trace_id}"
    made = []
    for name, url in pages.items():
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--hide-scrollbars", "--window-size=1400,900",
                "--virtual-time-budget=8000", f"--screenshot={folder / name}", url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
        made.append(folder / name)
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checks.traces", description=__doc__)
    parser.add_argument("--phoenix", required=True, help="the phoenix command to run")
    parser.add_argument("--mlflow", help="the mlflow command: check MLflow too")
    parser.add_argument("--screenshots", type=Path, help="draw Phoenix's pages into this folder")
    args = parser.parse_args(argv)
    for name in ("phoenix", "mlflow"):  # the servers run in folders of their own
        command = getattr(args, name)
        if command:
            setattr(args, name, os.path.abspath(shutil.which(command) or command))
    return asyncio.run(check_all(args))


async def check_all(args: argparse.Namespace) -> int:
    port, grpc = free_port(), free_port()
    with tempfile.TemporaryDirectory() as home:
        environ = {
            **os.environ,
            "PHOENIX_WORKING_DIR": home,
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_PORT": str(port),
            "PHOENIX_GRPC_PORT": str(grpc),
        }
        base = f"http://127.0.0.1:{port}"
        phoenix = await asyncio.create_subprocess_exec(
            args.phoenix,
            "serve",
            env=environ,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await wait_for(f"{base}/v1/projects")
            await chat_and_react(base)
            await asyncio.sleep(3)  # the batch processor's last export
            spans = await spans_of(base)
            problems = check(spans)
            for problem in problems:
                print(f"problem: {problem}")
            print(f"Phoenix took {len(spans)} spans; {len(problems)} problems")
            if args.screenshots and not problems:
                research = next(s for s in spans if s["name"] == "invoke_workflow research")
                for path in screenshots(base, args.screenshots, research["context"]["trace_id"]):
                    print(f"screenshot: {path}")
        finally:
            phoenix.terminate()
            await asyncio.wait_for(phoenix.wait(), 30)
    if args.mlflow:
        for problem in await check_mlflow(args.mlflow):
            print(f"problem: {problem}")
            problems.append(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
