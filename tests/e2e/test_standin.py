"""The Poe stand-in itself, driven over real HTTP by fastapi_poe's own client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import fastapi_poe as fp
import httpx
import pytest
from fastapi_poe.client import BotError, BotErrorNoRetry
from hypothesis import given
from hypothesis import strategies as st

from standin.poe import Behavior, ScriptedBot, StandIn, chunks, echo_text
from standin.serving import serve_app
from standin.user import Reply, identifier, poe_query

KEY = "caller-key-0123456789abcdef01234"  # the calling server bot's access key
UNDECLARED = "Bot Caller called on bot that has 0 or undefined call count in settings"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def query(text: str = "hi", message_id: str = "m-1", key: str = KEY) -> fp.QueryRequest:
    return fp.QueryRequest(
        version="1.2",
        type="query",
        query=[fp.ProtocolMessage(role="user", content=text)],
        user_id="u-1",
        conversation_id="c-1",
        message_id=message_id,
        metadata=identifier("d"),
        access_key=key,
    )


def stream(
    standin: StandIn, http: httpx.AsyncClient, bot: str, request: fp.QueryRequest, tries: int = 1
) -> AsyncIterator[fp.PartialResponse]:
    # The key also goes in the header: with the default api_key="" fastapi_poe would send
    # "Bearer ", which h11 refuses to send at all.
    return fp.stream_request(
        request,
        bot,
        request.access_key,
        session=http,
        num_tries=tries,
        retry_sleep_time=0,
        base_url=standin.base_url,
        on_error=lambda error, message: None,
    )


async def collect(
    standin: StandIn, http: httpx.AsyncClient, bot: str, request: fp.QueryRequest, tries: int = 1
) -> list[fp.PartialResponse]:
    return [message async for message in stream(standin, http, bot, request, tries)]


async def ask(
    standin: StandIn, http: httpx.AsyncClient, bot: str, key: str | None = KEY, **options: Any
) -> Reply:
    """A query straight to the stand-in from the caller with `key` (body and header)."""
    extra = {"access_key": key} if key is not None else {}
    return await poe_query(http, standin.base_url + bot, key, "hi", extra=extra, **options)


def shown(messages: list[fp.PartialResponse]) -> str:
    """The reply text as Poe displays it (replace_response clears what came before)."""
    text = ""
    for m in messages:
        if m.is_suggested_reply or m.attachment is not None:
            continue
        text = m.text if m.is_replace_response else text + m.text
    return text


@given(st.text())
def test_chunks_keep_every_character(text: str) -> None:
    assert "".join(chunks(text)) == text
    assert all(re.fullmatch(r"\S*\s*", piece) and piece for piece in chunks(text))


@given(st.text(), st.dictionaries(st.text(), st.integers() | st.text()))
def test_echo_is_one_json_object_whatever_the_text(text: str, parameters: dict[str, Any]) -> None:
    request = query(text)
    request.query[-1].parameters = parameters
    bot = ScriptedBot("E", Behavior(echo=True), [])
    tokens = bot.reply_tokens(request)
    assert "".join(tokens) == echo_text("E", request)
    assert json.loads("".join(tokens))["last"] == text
    assert json.loads("".join(tokens))["parameters"] == parameters


async def test_text_streams_as_tokens_after_the_delays(http: httpx.AsyncClient) -> None:
    behavior = Behavior(text="alpha beta  gamma\n", first_token_delay=0.05, token_gap=0.02)
    async with StandIn({"A": behavior}) as standin:
        standin.declare(KEY, {"A": 2}, "Caller")
        start, arrivals, texts = time.perf_counter(), [], []
        async for message in stream(standin, http, "A", query()):
            arrivals.append(time.perf_counter() - start)
            texts.append(message.text)
        reply = await ask(standin, http, "A")
    assert texts == ["alpha ", "beta  ", "gamma\n"]
    assert arrivals[0] >= 0.04 and arrivals[-1] - arrivals[0] >= 0.03  # very loose
    assert reply.text == "alpha beta  gamma\n" and reply.done and reply.status == 200
    assert reply.first_event_at is not None and reply.done_at is not None
    assert 0.04 <= reply.first_event_at <= reply.done_at
    assert reply.bytes_received > len("alpha beta  gamma")
    assert standin.closed_early == 0 and standin.open_streams == 0
    assert standin.max_open_streams == 1


async def test_tokens_and_the_logged_request(http: httpx.AsyncClient) -> None:
    async with StandIn({"T": Behavior(tokens=3)}) as standin:
        standin.declare(KEY, {"T": 1})
        messages = await collect(standin, http, "T", query("count", message_id="m-7"))
    assert [m.text for m in messages] == ["t0 ", "t1 ", "t2 "]
    [logged] = standin.requests
    assert logged["bot"] == "T" and logged["type"] == "query"
    assert (logged["user_id"], logged["conversation_id"], logged["message_id"]) == (
        "u-1",
        "c-1",
        "m-7",
    )
    assert logged["access_key"] == KEY and logged["query"][0]["content"] == "count"


async def test_replace_response_replaces_what_came_before(http: httpx.AsyncClient) -> None:
    behavior = Behavior(text="one two three", replace_at=2, replace_text="TWO ")
    async with StandIn({"R": behavior}) as standin:
        standin.declare(KEY, {"R": 2})
        messages = await collect(standin, http, "R", query())
        reply = await ask(standin, http, "R")
    assert [m.is_replace_response for m in messages] == [False, False, True, False]
    assert shown(messages) == "TWO three"
    assert reply.text == "TWO three"
    assert [name for name, _ in reply.events] == [
        *("text", "text", "replace_response", "text", "done")
    ]


@pytest.mark.parametrize(
    ("allow_retry", "raised"), [(True, BotError), (False, BotErrorNoRetry)], ids=["retry", "no"]
)
async def test_error_event_raises_after_the_tokens_before_it(
    http: httpx.AsyncClient, allow_retry: bool, raised: type[BotError]
) -> None:
    behavior = Behavior(tokens=5, error_at=2, error_text="it broke", allow_retry=allow_retry)
    async with StandIn({"X": behavior}) as standin:
        standin.declare(KEY, {"X": 1})
        got: list[str] = []
        with pytest.raises(BotError) as caught:
            async for message in stream(standin, http, "X", query()):
                got.append(message.text)
    assert type(caught.value) is raised
    assert got == ["t0 ", "t1 "]
    assert json.loads(str(caught.value)) == {"allow_retry": allow_retry, "text": "it broke"}


async def test_attachment_and_suggested_replies_arrive(http: httpx.AsyncClient) -> None:
    behavior = Behavior(
        text="see file",
        attachment=("https://files.example/a.png", "image/png", "a.png"),
        suggested_replies=["More?", "Why?"],
    )
    async with StandIn({"F": behavior}) as standin:
        standin.declare(KEY, {"F": 2})
        messages = await collect(standin, http, "F", query())
        reply = await ask(standin, http, "F")
    [attached] = [m.attachment for m in messages if m.attachment is not None]
    assert (attached.url, attached.content_type, attached.name) == (
        "https://files.example/a.png",
        "image/png",
        "a.png",
    )
    assert [m.text for m in messages if m.is_suggested_reply] == ["More?", "Why?"]
    assert shown(messages) == "see file" == reply.text
    assert [f["name"] for f in reply.files] == ["a.png"] and reply.suggested == ["More?", "Why?"]


async def test_echo_describes_messages_parameters_and_attachments(http: httpx.AsyncClient) -> None:
    request = query().model_copy(
        update={
            "query": [
                fp.ProtocolMessage(role="system", content="Be brief."),
                fp.ProtocolMessage(role="user", content="Hello"),
                fp.ProtocolMessage(role="bot", content="Hi!"),
                fp.ProtocolMessage(
                    role="user",
                    content="Look",
                    parameters={"temperature": 0.2, "style": "terse"},
                    attachments=[
                        fp.Attachment(
                            url="https://x/y.txt",
                            content_type="text/plain",
                            name="y.txt",
                            parsed_content="inside",
                        )
                    ],
                ),
            ]
        }
    )
    async with StandIn({"E": Behavior(echo=True), "D": Behavior()}) as standin:
        standin.declare(KEY, {"E": 1, "D": 1})
        echoed = json.loads(shown(await collect(standin, http, "E", request)))
        reply = await poe_query(
            http,
            standin.base_url + "D",
            KEY,
            "plain",
            parameters={"n": 1},
            attachments=[{"url": "u", "content_type": "image/png", "name": "p.png"}],
            extra={"access_key": KEY},
        )
    assert echoed == {
        "bot": "E",
        "last": "Look",
        "system": "Be brief.",
        "messages": 4,
        "roles": ["system", "user", "bot", "user"],
        "parameters": {"temperature": 0.2, "style": "terse"},
        "attachments": ["y.txt"],
        "history": [["system", "Be brief."], ["user", "Hello"], ["bot", "Hi!"], ["user", "Look"]],
    }
    default = json.loads(reply.text)  # no text, no tokens: the default reply is an echo
    assert (default["bot"], default["last"], default["system"]) == ("D", "plain", None)
    assert default["parameters"] == {"n": 1} and default["attachments"] == ["p.png"]


async def test_undeclared_bot_is_refused_with_poes_words(http: httpx.AsyncClient) -> None:
    async with StandIn({"A": Behavior(text="a"), "B": Behavior(text="b")}) as standin:
        standin.declare(KEY, {"A": 1}, "Caller")
        with pytest.raises(BotErrorNoRetry) as caught:
            await collect(standin, http, "B", query())
        reply = await ask(standin, http, "B")
    assert json.loads(str(caught.value)) == {"allow_retry": False, "text": UNDECLARED}
    assert reply.status == 200 and reply.errors == [{"allow_retry": False, "text": UNDECLARED}]
    assert reply.done and reply.text == ""
    assert [(r.bot, r.status, r.text) for r in standin.refused] == [("B", 200, UNDECLARED)] * 2
    assert standin.total_calls("m-1") == 0 and standin.attempts["m-1"]["B"] == 1
    assert len(standin.requests) == 2  # refused queries are still logged


async def test_calls_past_the_declared_count_are_refused_per_message(
    http: httpx.AsyncClient,
) -> None:
    async with StandIn({"A": Behavior(text="a")}) as standin:
        standin.declare(KEY, {"A": 2}, "Caller")
        for _ in range(2):
            assert shown(await collect(standin, http, "A", query(message_id="m-1"))) == "a"
        with pytest.raises(BotErrorNoRetry) as caught:
            await collect(standin, http, "A", query(message_id="m-1"))
        assert shown(await collect(standin, http, "A", query(message_id="m-2"))) == "a"
    text = json.loads(str(caught.value))["text"]
    assert "Caller" in text and "A" in text and "2" in text
    assert standin.calls["m-1"] == {"A": 2} and standin.calls["m-2"] == {"A": 1}
    assert standin.attempts["m-1"] == {"A": 3}
    assert [r.message_id for r in standin.refused] == ["m-1"]
    assert (standin.total_calls("m-1"), standin.total_calls("m-2")) == (2, 1)


async def test_more_than_100_calls_for_one_message_are_refused(http: httpx.AsyncClient) -> None:
    async with StandIn({"A": Behavior(text="a"), "B": Behavior(text="b")}) as standin:
        standin.declare(KEY, {"A": 150, "B": 1}, "Caller")
        replies = await asyncio.gather(*(collect(standin, http, "A", query()) for _ in range(100)))
        with pytest.raises(BotErrorNoRetry) as caught:
            await collect(standin, http, "B", query())
    assert all(shown(r) == "a" for r in replies)
    assert "100" in json.loads(str(caught.value))["text"]
    assert standin.total_calls("m-1") == 100 and standin.calls["m-1"]["B"] == 0
    assert standin.max_open_streams >= 1


async def test_report_error_and_settings_posts_are_not_counted(http: httpx.AsyncClient) -> None:
    async with StandIn({"Q": Behavior(text="")}) as standin:
        standin.declare(KEY, {"Q": 1})
        # An empty reply makes fastapi_poe's client post report_error to the same URL.
        assert await collect(standin, http, "Q", query()) == []
        settings_request = {"version": "1.2", "type": "settings"}
        settings = await http.post(standin.base_url + "Q", json=settings_request)
    assert [r["message"] for r in standin.reports] == ["Bot returned no text in response"]
    assert settings.status_code == 200 and "server_bot_dependencies" in settings.json()
    assert standin.calls["m-1"] == {"Q": 1} and standin.attempts["m-1"] == {"Q": 1}
    assert len(standin.requests) == 1 and standin.refused == []


async def test_cancelled_consumers_end_their_streams(http: httpx.AsyncClient) -> None:
    async with StandIn({"H": Behavior(tokens=5, hang_at=1)}) as standin:
        standin.declare(KEY, {"H": 1})
        first_tokens: asyncio.Queue[str] = asyncio.Queue()

        async def consume(message_id: str) -> None:
            async for message in stream(standin, http, "H", query(message_id=message_id)):
                await first_tokens.put(message.text)

        consumers = [asyncio.create_task(consume(f"m-{i}")) for i in range(2)]
        async with asyncio.timeout(5):
            assert [await first_tokens.get() for _ in consumers] == ["t0 ", "t0 "]
        assert standin.open_streams == 2
        with pytest.raises(TimeoutError):
            await standin.wait_until_idle(timeout=0.05)
        for consumer in consumers:
            consumer.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
        await standin.wait_until_idle(timeout=5)
    assert standin.open_streams == 0 and standin.closed_early == 2
    assert standin.max_open_streams == 2


@pytest.mark.parametrize("status", [500, 429])
async def test_http_status_raises_and_is_counted(http: httpx.AsyncClient, status: int) -> None:
    async with StandIn({"S": Behavior(text="never", http_status=status)}) as standin:
        standin.declare(KEY, {"S": 2})
        with pytest.raises(BotError) as caught:
            await collect(standin, http, "S", query())
        reply = await ask(standin, http, "S")
    assert type(caught.value) is BotError and "Error communicating with bot S" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.TransportError)  # httpx_sse's SSEError
    assert reply.status == status and reply.events == [] and not reply.done
    assert standin.calls["m-1"] == {"S": 1} and standin.open_streams == 0


async def test_unknown_bot_is_404_and_unknown_key_401(http: httpx.AsyncClient) -> None:
    async with StandIn({"A": Behavior(text="a")}) as standin:
        standin.declare(KEY, {"Nope": 1})
        with pytest.raises(BotError):
            await collect(standin, http, "Nope", query())
        missing = await ask(standin, http, "Nope")
        stranger = await ask(standin, http, "A", "k")
        standin.allow_any_caller = True
        anyone = await ask(standin, http, "A", "k")
        keyless = await ask(standin, http, "A", None)  # no Authorization header at all
    assert (missing.status, missing.body) == (404, {"detail": "Bot Nope does not exist"})
    assert stranger.status == 401 and anyone.text == "a" and keyless.text == "a"
    assert [r.status for r in standin.refused] == [404, 404, 401]
    assert sum(standin.calls[r["message_id"]]["A"] for r in standin.requests) == 2


async def test_fail_first_then_succeed_and_retries_are_calls(http: httpx.AsyncClient) -> None:
    async with StandIn({"F": Behavior(text="fine", fail_first=1)}) as standin:
        standin.declare(KEY, {"F": 3})
        with pytest.raises(BotError) as caught:
            await collect(standin, http, "F", query(message_id="m-1"))
        again = await collect(standin, http, "F", query(message_id="m-1"))
        retried = await collect(standin, http, "F", query(message_id="m-2"), tries=2)
    assert type(caught.value) is BotError and json.loads(str(caught.value))["allow_retry"]
    assert shown(again) == "fine" and shown(retried) == "fine"
    assert standin.calls["m-1"] == {"F": 2} and standin.calls["m-2"] == {"F": 2}


class Forwarder(fp.PoeBot):
    """A tiny server bot: declares A and forwards the query to it under its own key."""

    def __init__(self, base_url: str, http: httpx.AsyncClient) -> None:
        super().__init__(path="/", access_key="server-bot-key-0123456789abcdef0")
        self.base_url, self.http = base_url, http

    async def get_settings(self, setting: fp.SettingsRequest) -> fp.SettingsResponse:
        return fp.SettingsResponse(server_bot_dependencies={"A": 1})

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterator[fp.PartialResponse]:
        async for message in fp.stream_request(
            request,
            "A",
            request.access_key,
            session=self.http,
            num_tries=1,
            base_url=self.base_url,
            on_error=lambda error, message: None,
        ):
            yield message


async def test_register_caller_from_a_server_bots_settings(http: httpx.AsyncClient) -> None:
    async with StandIn({"A": Behavior(text="from A"), "B": Behavior()}) as standin:
        bot = Forwarder(standin.base_url, http)
        async with serve_app(fp.make_app(bot)) as url:
            assert bot.access_key is not None
            with pytest.raises(httpx.HTTPStatusError):
                await standin.register_caller(url + "/", "wrong-key")
            assert await standin.register_caller(url + "/", bot.access_key, "Fwd") == {"A": 1}
            first = await poe_query(http, url + "/", bot.access_key, "hi", message_id="m-5")
            second = await poe_query(http, url + "/", bot.access_key, "hi", message_id="m-5")
    assert first.text == "from A" and first.done and first.errors == []
    assert second.errors and second.errors[0]["allow_retry"] is False  # over its count
    assert "Fwd" in standin.refused[0].text and standin.calls["m-5"] == {"A": 1}
    logged = standin.requests[0]
    assert (logged["access_key"], logged["user_id"], logged["message_id"]) == (
        bot.access_key,
        "u-" + "1" * 32,
        "m-5",
    )


async def test_settings_sync_declares_dependencies(http: httpx.AsyncClient) -> None:
    async with StandIn({"A": Behavior(text="a"), "B": Behavior(text="b")}) as standin:
        settings = fp.SettingsResponse(server_bot_dependencies={"A": 1}).model_dump()
        k2 = "k2".ljust(32, "-")
        short = await http.post(standin.base_url + "update_settings/MyBot/k2/1.2", json=settings)
        synced = await http.post(
            standin.base_url + f"update_settings/MyBot/{k2}/1.2", json=settings
        )
        ok = await ask(standin, http, "A", k2)
        no = await ask(standin, http, "B", k2)
    assert short.status_code == 401  # not a Poe access key
    assert synced.status_code == 200 and standin.settings_updates[0]["bot"] == "MyBot"
    assert ok.text == "a"
    assert no.errors[0]["text"] == UNDECLARED.replace("Caller", "MyBot")


# --- the rules the stand-in holds callers to --------------------------------------------------


async def test_a_call_without_poes_metadata_or_under_another_bearer_is_refused(
    http: httpx.AsyncClient,
) -> None:
    async with StandIn({"A": Behavior(text="a")}) as standin:
        standin.declare(KEY, {"A": 5}, caller="Caller")
        bare = query().model_copy(update={"metadata": ""})
        with pytest.raises(BotError):
            await collect(standin, http, "A", bare)
        other = fp.stream_request(
            query(),
            "A",
            "someone-else-key-0123456789abcdef",
            session=http,
            num_tries=1,
            base_url=standin.base_url,
            on_error=lambda error, message: None,
        )
        with pytest.raises(BotError):
            [m async for m in other]
        fine = await collect(standin, http, "A", query())
    assert [r.status for r in standin.refused] == [400, 401]
    assert "".join(m.text for m in fine) == "a"


async def test_a_call_before_the_rate_limit_resets_gets_429_again(
    http: httpx.AsyncClient,
) -> None:
    busy = Behavior(
        text="ok",
        http_status=429,
        http_status_first=1,
        headers={"x-ratelimit-reset-requests": "30"},
    )
    async with StandIn({"Busy": busy}) as standin:
        standin.declare(KEY, {"Busy": 5}, caller="Caller")
        for _ in range(2):
            with pytest.raises(BotError):
                await collect(standin, http, "Busy", query())
    assert len(standin.too_early) == 1 and standin.refused[0].status == 429


def events(*pairs: tuple[str, dict[str, Any]]) -> Reply:
    reply = Reply(status=200)
    for name, data in pairs:
        reply.apply(name, data)
    reply.end()
    return reply


TEXT = ("text", {"text": "hi"})
DONE = ("done", {})


@pytest.mark.parametrize(
    ("pairs", "broken"),
    [
        (
            [("text", {"text": "x" * 60_000}), ("replace_response", {"text": "y" * 50_000}), DONE],
            "over 100,000 characters",
        ),
        ([("text", {"text": "😀" * 50_001}), DONE], "over 100,000 characters"),
        ([TEXT] * 10_001 + [DONE], "more than 10,000 events"),
        ([TEXT, DONE, TEXT], "came after 'done'"),
        ([("data", {"metadata": "m"}), DONE], "neither a text nor an error event"),
        ([TEXT], "without a 'done' event"),
        (
            [
                ("text", {"text": "![cat][c1]"}),
                (
                    "file",
                    {"url": "u", "name": "c.png", "content_type": "image/png", "inline_ref": "c1"},
                ),
                DONE,
            ],
            "before its file arrived",
        ),
        ([("text", {"invalid": "{oops"}), DONE], "not JSON"),
    ],
    ids=["chars", "emoji", "events", "after-done", "no-text", "no-done", "file-order", "json"],
)
def test_the_reply_reader_fails_each_broken_rule(
    pairs: list[tuple[str, dict[str, Any]]], broken: str
) -> None:
    reply = events(*pairs)
    assert any(broken in violation for violation in reply.violations), reply.violations


def test_a_reply_that_keeps_every_rule_has_no_violations() -> None:
    file = {"url": "u", "name": "c.png", "content_type": "image/png", "inline_ref": "c1"}
    reply = events(("file", file), ("text", {"text": "![cat][c1] " + "x" * 99_989}), DONE)
    assert reply.violations == [] and reply.chars == 100_000
