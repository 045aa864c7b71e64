"""Bad input to the server: every malformed request gets a 4xx or a clean error event, never a
500, and the server keeps serving. Ends with a property-based fuzz over real HTTP."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.serve.server import build_app
from bots.spec import loader
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import serve_app
from standin.user import query_body

YAML = """\
    version: 1
    bots:
      echo:
        steps: [{bot: Echo}]
      words:
        steps: [{text: "you said: {{ message }}"}]
"""
BEHAVIORS = {"Echo": Behavior(echo=True)}


def valid() -> dict[str, Any]:
    return query_body("hello")


def without(field: str) -> dict[str, Any]:
    body = valid()
    del body[field]
    return body


def with_(**changes: Any) -> dict[str, Any]:
    return {**valid(), **changes}


MALFORMED: dict[str, tuple[bytes, int]] = {
    "not JSON": (b"{this is not json", 400),
    "JSON but not an object": (b"[1, 2, 3]", 400),
    "unknown type": (json.dumps(with_(type="dance")).encode(), 501),
    "type missing": (json.dumps(without("type")).encode(), 400),
    "query missing": (json.dumps(without("query")).encode(), 422),
    "user_id missing": (json.dumps(without("user_id")).encode(), 422),
    "query not a list": (json.dumps(with_(query="hello")).encode(), 422),
    "message_id a number": (json.dumps(with_(message_id=12)).encode(), 422),
    "only unknown roles": (json.dumps(with_(query=[{"role": "x", "content": "x"}])).encode(), 422),
    "content missing": (json.dumps(with_(query=[{"role": "user"}])).encode(), 422),
    "empty query": (json.dumps(with_(query=[])).encode(), 422),
    "over 64 MB": (b'{"a": "' + b"x" * (65 * 1024 * 1024) + b'"}', 413),
}


@pytest.mark.parametrize("bot", ["echo", "words"])
async def test_malformed_requests_get_a_clear_4xx_and_the_server_keeps_serving(bot: str) -> None:
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        headers = {"Authorization": f"Bearer {s.keys[bot]}"}
        for name, (body, status) in MALFORMED.items():
            response = await s.http.post(f"{s.url}/{bot}", content=body, headers=headers)
            assert response.status_code == status, name
            detail = response.json()["detail"]
            assert detail and "Traceback" not in detail, name
        reply = await s.ask(bot, "still there?")
    assert reply.done and "still there?" in reply.text


async def test_odd_but_valid_requests_get_a_clean_reply() -> None:
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        empty = await s.ask("words", "")
        extra = await s.ask("words", "hi", extra={"unknown_field": [1, 2], "another": {"x": None}})
        history = [
            {"role": "user" if i % 2 == 0 else "bot", "content": f"m{i}"} for i in range(10_001)
        ]
        long_history = await s.ask("echo", history)
        huge = await s.ask("words", "z" * 5_000_000)
    assert empty.done and empty.text == "you said: "
    assert extra.done and extra.text == "you said: hi"
    # the echo of 10,001 messages is cut at Poe's limit; it begins with the count
    assert long_history.done and '"messages": 10001' in long_history.text[:200]
    assert huge.done and huge.status == 200  # answered (Poe explains the error), not crashed


# --- the fuzz ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers={"Authorization": "Bearer k"}) as http:
        yield http


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The pipelines server (text steps only: no dependency calls) in its own thread."""
    config = loader.parse(YAML.replace("    ", "", 1).replace("\n    ", "\n"), "fuzz.yaml")
    app = build_app(config, environ={}, base_url="http://127.0.0.1:9/bot/")
    ready, stop = threading.Event(), threading.Event()
    url: list[str] = []

    async def main() -> None:
        async with serve_app(app) as base:
            url.append(base)
            ready.set()
            while not stop.is_set():  # noqa: ASYNC110 (a thread's stop flag, checked 10x a second)
                await asyncio.sleep(0.1)

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield url[0]
    stop.set()
    thread.join(10)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
feedback = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["like", "dislike", "love"]) | json_values,
        "reason": st.text(max_size=10) | json_values,
    },
)
reaction = st.fixed_dictionaries(
    {}, optional={"user_id": st.text(max_size=10) | json_values, "reaction": json_values}
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "bot", "system", "tool", "alien"]) | json_values},
    optional={
        "content": st.text(max_size=50) | json_values,
        "parameters": json_values,
        "attachments": json_values,
        "metadata": st.text(max_size=30) | json_values,
        "content_type": st.sampled_from(["text/markdown", "text/plain", "text/html"]) | json_values,
        "feedback": st.lists(feedback, max_size=2) | json_values,
        "reactions": st.lists(reaction, max_size=2) | json_values,
        "message_type": st.sampled_from(["function_call", "poll"]) | json_values,
    },
)
messages = st.recursive(
    message,
    lambda inner: (
        message.map(lambda m: m)
        | st.builds(lambda m, r: {**m, "referenced_message": r}, message, inner)
    ),
    max_leaves=2,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "version": st.just("1.2") | json_values,
        "type": st.sampled_from(
            ["query", "settings", "report_error", "report_feedback", "report_reaction", "x"]
        )
        | json_values,
        "query": st.lists(messages, max_size=4) | json_values,
        "user_id": st.text(max_size=10) | json_values,
        "conversation_id": st.text(max_size=10) | json_values,
        "message_id": st.just(uuid.uuid4().hex) | json_values,
        "message": json_values,
        "metadata": json_values,
        "feedback_type": st.sampled_from(["like", "dislike", "love"]) | json_values,
        "reaction": json_values,
    },
)
raw = st.binary(max_size=200) | bodies.map(lambda body: json.dumps(body).encode())


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=raw, bot=st.sampled_from(["words", "echo", "nobody"]))
def test_fuzzed_requests_never_get_a_5xx(
    server_url: str, client: httpx.Client, body: bytes, bot: str
) -> None:
    response = client.post(f"{server_url}/{bot}", content=body)
    # 501 is the spec's answer to a request type the bot does not know; no other 5xx
    assert response.status_code < 500 or response.status_code == 501, (
        response.status_code,
        response.text[:300],
    )
    if "text/event-stream" in response.headers.get("content-type", ""):
        assert response.text.rstrip().endswith("event: done\r\ndata: {}")


def test_the_server_is_still_up_after_the_fuzz(server_url: str, client: httpx.Client) -> None:
    response = client.post(f"{server_url}/words", json=query_body("after"))
    assert response.status_code == 200 and "you said: after" in response.text
