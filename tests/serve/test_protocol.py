"""Poe's published protocol, rule by rule, over HTTP against the stand-in.

Each test is named after the rule it holds and quotes, in its docstring, where Poe states it
(the Poe Protocol Specification, creator.poe.com/docs/poe-protocol-specification, and the guides
in ../shared/poe-docs). Every reply is read by `standin.Reply`, which fails any reply that breaks
Poe's limits (characters, events, done last, a text or error event, files before the text that
shows them).
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from bots.run.delivery import Pacing
from bots.run.limits import REPLY_CHAR_LIMIT, TRUNCATED
from bots.serve.logs import JsonFormatter
from bots.serve.server import build_app
from bots.spec import loader
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import serve_app
from standin.user import PoeChat, identifier, poe_query

FAST = Pacing(delta_gap=0.005, replace_gap=0.02, status_delay=0.05)

# --- length --------------------------------------------------------------------------------

SECTIONS = """\
    version: 1
    bots:
      sections:
        steps:
          - parallel: [{bot: A}, {bot: B}, {bot: C}]
            show: sections
"""


async def test_no_reply_exceeds_100000_characters_counting_every_text_and_replace() -> None:
    """ "The total length of a bot response (the sum of the length of all `text` events ...)
    may not exceed 100,000 characters." Three live sections of about 40,000 characters each:
    re-rendered as they grow, they would send several times that."""
    words = Behavior(text="word " * 8_000, token_gap=0.0002)  # 40,000 characters
    async with serve_pipelines(SECTIONS, {"A": words, "B": words, "C": words}, pacing=FAST) as s:
        reply = await s.ask("sections")  # the stand-in fails a reply over the limit
    assert reply.chars <= REPLY_CHAR_LIMIT
    assert reply.text.startswith("### A\n\nword word") and reply.text.endswith(TRUNCATED)
    assert any(name == "replace_response" for name, _ in reply.events)  # sections were live


async def test_an_ordinary_reply_is_shown_whole() -> None:
    """The limit costs nothing below it: three live sections of a few thousand characters
    arrive complete, with no note."""
    words = Behavior(text="word " * 600, token_gap=0.001)
    async with serve_pipelines(SECTIONS, {"A": words, "B": words, "C": words}, pacing=FAST) as s:
        reply = await s.ask("sections")
    assert reply.text == "\n\n".join(f"### {b}\n\n{'word ' * 599}word" for b in "ABC")


# --- files ---------------------------------------------------------------------------------

DRAWER = Behavior(
    text="Here it is: ![a cat][cat1] and a few more words to stream slowly",
    token_gap=0.02,
    attachment=("https://files.example/cat.png", "image/png", "cat.png"),
    attachment_at=0,
    inline_ref="cat1",
)


async def test_a_file_reaches_the_user_before_the_text_that_shows_it() -> None:
    """fastapi_poe sends pending file events before text "to ensure responses with inline_ref
    are sent after attachment is made". A dependency's file is relayed as it arrives, so the
    text that shows it inline (`![a cat][cat1]`) never comes first."""
    yaml = "version: 1\nbots:\n  draw:\n    steps: [{bot: Drawer}]\n"
    async with serve_pipelines(yaml, {"Drawer": DRAWER}, pacing=FAST) as s:
        reply = await s.ask("draw")  # the stand-in fails a reference before its file
    assert [f["inline_ref"] for f in reply.files] == ["cat1"]
    names = [name for name, _ in reply.events]
    assert names.index("file") < next(
        i for i, (name, data) in enumerate(reply.events) if "cat1" in str(data.get("text"))
    )


async def test_files_of_hidden_steps_are_not_shown() -> None:
    """A step the user does not see (`show: hide`, the default for all but the last) keeps
    its files to itself."""
    yaml = """\
        version: 1
        bots:
          quiet:
            steps:
              - {id: picture, bot: Drawer}
              - text: "drawn"
    """
    async with serve_pipelines(yaml, {"Drawer": DRAWER}, pacing=FAST) as s:
        reply = await s.ask("quiet")
    assert reply.text == "drawn" and reply.files == []


# --- errors --------------------------------------------------------------------------------

FAILING = """\
    version: 1
    bots:
      fails:
        steps:
          - {bot: Good, show: stream}
          - {bot: Bad, retries: 1}
"""


async def test_a_failed_pipeline_ends_with_its_partial_answer_and_the_reason_once() -> None:
    """`error`: "the server will close the connection and indicate to the user that there
    was an error communicating with the bot server ... `text` ... will not be shown to the
    user". So a failure with no error type Poe knows ends with what the user already has and
    one note saying why, then `done`: no error event to hide it or to make Poe retry."""
    behaviors = {"Good": Behavior(text="shown first"), "Bad": Behavior(error_at=0, error_text="x")}
    async with serve_pipelines(FAILING, behaviors) as s:
        reply = await s.ask("fails")
    assert reply.text == "shown first\n\n> ⚠️ Bad failed after 2 tries (Bad: x; Bad: x)"
    assert reply.errors == [] and reply.done


async def test_allow_retry_is_false_once_a_call_was_made_and_error_type_reaches_poe() -> None:
    """`allow_retry`: "If this is True or omitted, the server may retry the request", which
    would run the pipeline, and spend the user's points, again. `error_type`: "Specifying an
    `error_type` allows Poe to handle protocol bot errors similarly to Poe-internal errors"."""
    broke = Behavior(
        error_at=0,
        error_text="not enough points",
        allow_retry=False,
        error_type="insufficient_fund",
    )
    async with serve_pipelines(FAILING, {"Good": Behavior(text="ok"), "Bad": broke}) as s:
        reply = await s.ask("fails")
    assert reply.errors == [
        {
            "allow_retry": False,
            "text": "Bad failed: not enough points",
            "error_type": "insufficient_fund",
        }
    ]
    assert reply.text == "ok"  # Poe explains insufficient_fund itself: no second telling


async def test_an_error_type_poe_does_not_explain_also_gets_a_note() -> None:
    """Poe shows no error text to the user, so for an error type it does not explain itself
    (`user_caused_error`), the note says why and the error event still carries the type."""
    broke = Behavior(error_at=0, error_text="that request is not allowed", allow_retry=False)
    broke.error_type = "user_caused_error"
    async with serve_pipelines(FAILING, {"Good": Behavior(text="ok"), "Bad": broke}) as s:
        reply = await s.ask("fails")
    assert reply.text == "ok\n\n> ⚠️ Bad failed: that request is not allowed"
    assert [e.get("error_type") for e in reply.errors] == ["user_caused_error"]
    assert reply.errors[0]["allow_retry"] is False


# --- rate limits ---------------------------------------------------------------------------


def busy_once(reset: float) -> Behavior:
    """A dependency whose first call per message gets Poe's 429, asking for `reset` seconds."""
    return Behavior(
        text="answered",
        http_status=429,
        http_status_first=1,
        headers={"x-ratelimit-reset-requests": f"{reset:g}"},
    )


async def test_a_rate_limited_call_waits_as_poes_headers_say_before_trying_again() -> None:
    """Poe's rate limits: "When your application exceeds the rate limit, the API will respond
    with a 429 ... implement exponential backoff", with `x-ratelimit-reset-requests`: "Time in
    seconds until the rate limit window resets". The stand-in answers 429 again to a call made
    before that time."""
    yaml = "version: 1\nbots:\n  patient:\n    steps: [{bot: Busy, retries: 2}]\n"
    async with serve_pipelines(yaml, {"Busy": busy_once(reset=1)}, pacing=FAST) as s:
        reply = await s.ask("patient")
    assert reply.text == "answered"
    assert s.standin.too_early == []  # the retry waited the full second
    assert s.standin.attempts[s.standin.requests[-1]["message_id"]] == {"Busy": 2}
    shown = [str(data.get("text")) for _, data in reply.events]
    assert any("rate limited" in text for text in shown)  # the user saw why it waits


async def test_retries_made_at_once_after_a_429_would_be_refused() -> None:
    """The check above can fail: without waiting, the stand-in refuses the retry."""
    yaml = "version: 1\nbots:\n  hasty:\n    steps: [{bot: Busy, retries: 1, timeout: 2}]\n"
    async with serve_pipelines(yaml, {"Busy": busy_once(reset=30)}, pacing=FAST) as s:
        reply = await s.ask("hasty")  # the wait is capped by the step's 2 s timeout
    assert len(s.standin.too_early) == 1
    assert "HTTP 429" in reply.text
    assert json.dumps(reply.errors) == "[]"


# --- tolerant where the spec says ignore --------------------------------------------------

ECHO_YAML = """\
    version: 1
    bots:
      echo:
        steps: [{bot: Echo}]
      words:
        steps: [{text: "{{ conversation | length }} messages; last: {{ message }}"}]
"""


async def test_messages_of_unknown_roles_and_content_types_are_ignored_not_refused() -> None:
    """`role`: "More roles may be added in the future. Bot servers should ignore messages with
    roles they do not recognize." `content_type`: "Bots should ignore messages with content
    types they do not understand." Feedback: "More types may be added ... bot servers should
    ignore types they do not recognize"; its `reason` "may be omitted". Poe resends the whole
    conversation every turn, so refusing one such message would end the chat."""
    async with serve_pipelines(ECHO_YAML, {"Echo": Behavior(echo=True)}) as s:
        chat = PoeChat(s.http, f"{s.url}/echo", s.keys["echo"], unusual=True)
        replies = [await chat.say(f"turn {i}") for i in range(3)]
        words = PoeChat(s.http, f"{s.url}/words", s.keys["words"], unusual=True)
        counted = [await words.say(f"turn {i}") for i in range(2)]
    seen = json.loads(replies[-1].text)
    assert all(r.status == 200 and r.done for r in replies)
    assert "narrator" not in seen["roles"] and "<b>rich</b>" not in json.dumps(seen["history"])
    assert seen["last"] == "turn 2"
    # the odd-but-known message stays, with its unknown feedback ignored
    assert ["user", "an ordinary message with odd extras"] in seen["history"]
    # templates see the conversation without them too: 2 turns, 1 odd message, 1 new message
    assert counted[-1].text == "4 messages; last: turn 1"


async def test_report_requests_of_kinds_poe_may_add_are_acknowledged() -> None:
    """`report_feedback`: "Additional types may be added in the future; bot servers should
    ignore feedback with types they do not recognize"; "The server's response is ignored"."""
    base = {"version": "1.2", "message_id": identifier("m"), "conversation_id": identifier("c")}
    bodies = [
        {**base, "type": "report_feedback", "user_id": identifier("u"), "feedback_type": "love"},
        {**base, "type": "report_feedback", "user_id": identifier("u"), "feedback_type": "like"},
        {**base, "type": "report_reaction", "reaction": "heart"},  # no user_id
        {**base, "type": "report_reaction", "user_id": identifier("u"), "reaction": None},
        {"version": "1.2", "type": "report_error", "message": "x", "metadata": None},
    ]
    async with serve_pipelines(ECHO_YAML, {"Echo": Behavior(echo=True)}) as s:
        headers = {"Authorization": f"Bearer {s.keys['echo']}"}
        answers = [await s.http.post(f"{s.url}/echo", json=b, headers=headers) for b in bodies]
    assert [a.status_code for a in answers] == [200] * len(bodies)


async def test_unknown_request_types_get_501_after_the_key_check() -> None:
    """ "Additional request types may be added in the future. Bot servers should ignore any
    request types they do not understand, ideally by sending a `501 Not Implemented` HTTP
    response." The access key is still checked first."""
    body = {"version": "1.2", "type": "report_typing", "user_id": identifier("u")}
    async with serve_pipelines(ECHO_YAML, {"Echo": Behavior(echo=True)}) as s:
        own = {"Authorization": f"Bearer {s.keys['echo']}"}
        wrong = {"Authorization": "Bearer " + "w" * 32}
        known = await s.http.post(f"{s.url}/echo", json=body, headers=own)
        refused = await s.http.post(f"{s.url}/echo", json=body, headers=wrong)
        no_query = await s.http.post(f"{s.url}/echo", json={"version": "1.2", "type": "query"})
    assert known.status_code == 501 and "report_typing" in known.json()["detail"]
    assert refused.status_code == 401
    assert no_query.status_code == 401  # no key at all: refused before the body is read


# --- conversations of any length Poe sends ----------------------------------------------------

COUNCIL = """\
    version: 1
    bots:
      council:
        steps:
          - id: drafts
            parallel: [{id: a, bot: A}, {id: b, bot: B}, {id: c, bot: Echo}]
            show: sections
          - bot: Judge
            history: false
            prompt: "{% for name, text in drafts.items() %}{{ name }}: {{ text }}\\n{% endfor %}"
"""
CJK = "这个问题的答案取决于具体情况，我们需要仔细分析每一个步骤。"  # 29 characters


def council_behaviors() -> dict[str, Behavior]:
    answer = Behavior(text=(CJK * 70)[:2_000])  # 2,000 CJK characters, as a long answer
    return {"A": answer, "B": answer, "Echo": Behavior(echo=True), "Judge": answer}


async def test_a_1000_message_conversation_carrying_our_metadata_gets_a_normal_reply() -> None:
    """Limits: "If the number of messages in a user's previous conversation with the bot
    exceeds 1000, Poe may truncate the conversation", and `query` "includes all messages in
    the current context window", each bot message with the metadata its reply sent. 500 turns
    of long CJK replies, each carrying the metadata our bot really wrote, sent as escaped JSON
    (6 bytes a character): a normal reply, not a 413."""
    async with serve_pipelines(COUNCIL, council_behaviors()) as s:
        chat = PoeChat(s.http, f"{s.url}/council", s.keys["council"])
        for turn in range(2):
            await chat.say(f"问题 {turn}: " + CJK * 14)  # about 400 characters
        turns = [chat.history[i : i + 2] for i in range(0, len(chat.history), 2)]
        chat.history = [message for i in range(500) for message in turns[i % 2]][:-1]
        assert len(chat.history) == 999
        reply = await chat.say("最后一个问题")
        size = len(json.dumps({"query": chat.history}).encode())
        print(
            f"\n1,000 messages: {size / 1e6:.1f} MB as escaped JSON, done in {reply.done_at:.2f} s"
        )
        to_echo = s.requests_to("Echo")[-1]["query"]
    assert reply.status == 200 and reply.done and not reply.errors
    assert reply.text.startswith("### a\n\n")
    assert len(to_echo) == 1_000  # Echo's own view: the whole history, then the question


async def test_our_metadata_stays_small_and_never_reaches_the_dependencies() -> None:
    """`metadata` is ours: the last `data` event of each reply, handed back with it. Dependency
    bots are sent their own view of the conversation, never our records. Each reply's metadata
    holds what its text does not: shown answers are references, a few dozen characters each."""
    async with serve_pipelines(COUNCIL, council_behaviors()) as s:
        chat = PoeChat(s.http, f"{s.url}/council", s.keys["council"])
        replies = [await chat.say(f"question {turn}") for turn in range(3)]
        to_dependencies = [r["query"] for r in s.standin.requests]
        to_echo = s.requests_to("Echo")[-1]["query"]
    for reply in replies:
        assert reply.metadata is not None and len(reply.metadata) < 400, reply.metadata
    assert all(m.get("metadata") is None for query in to_dependencies for m in query)
    # and Echo still sees its own earlier answers, rebuilt from the references
    earlier = [m["content"] for m in to_echo if m["role"] == "bot"]
    assert len(earlier) == 2 and all(json.loads(text)["bot"] == "Echo" for text in earlier)


# --- visible in production, secure by default ---------------------------------------------


async def test_each_message_makes_one_json_log_line_without_keys_or_user_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a creator reads in `modal app logs`: per message, one JSON line with the bot,
    message id, calls made and declared, seconds, outcome, and each failed call's step, bot
    and reason. (tests/e2e/test_main.py runs it the way Modal does, with no logging set up.)"""
    caplog.set_level(logging.INFO)
    marker = "private-words-9931"
    behaviors = {"Good": Behavior(text="ok"), "Bad": Behavior(error_at=0, error_text=marker)}
    async with serve_pipelines(FAILING, behaviors) as s:
        reply = await s.ask("fails", f"my secret is {marker}")
    formatted = [JsonFormatter().format(record) for record in caplog.records]
    lines = [json.loads(line) for line in formatted]
    (line,) = [line for line in lines if line.get("event") == "reply"]
    assert reply.text.endswith(f"Bad: {marker})")  # the user reads the reason...
    assert marker not in "\n".join(formatted)  # ...the logs never do
    assert s.keys["fails"] not in "\n".join(formatted)
    assert line["outcome"] == "failed" and line["failure"] == "steps[1]: Bad failed"
    assert (line["calls"], line["calls_declared"]) == (3, 3)
    assert [call["reason"] for call in line["failed_calls"]] == ["it sent an error"] * 2


async def test_a_deployed_bot_with_a_malformed_key_refuses_instead_of_serving_openly() -> None:
    """Poe: "an access key consisting of 32 ASCII characters". Deployed with a variable that
    holds something else (a user's API key pasted by mistake), the bot refuses every request
    rather than let anyone in or turn every one of Poe's requests away with 401."""
    environ = {"FAILS_ACCESS_KEY": "pk-" + "x" * 40, "OTHER_ACCESS_KEY": " " + "o" * 32 + "\n"}
    config = loader.parse(
        "version: 1\nbots:\n  fails:\n    steps: [{text: hi}]\n  other:\n    steps: [{text: ok}]\n"
    )
    app = build_app(
        config, environ=environ, base_url="http://127.0.0.1:9/bot/", deployed_with="poe-pipelines"
    )
    async with serve_app(app) as url, httpx.AsyncClient() as http:
        refused = await poe_query(http, f"{url}/fails", "pk-" + "x" * 40, "hello")
        trimmed = await poe_query(http, f"{url}/other", "o" * 32, "hello")  # no newline: fine
    assert refused.status == 503 and "FAILS_ACCESS_KEY does not look like" in refused.body["detail"]
    assert trimmed.status == 200 and trimmed.text == "ok"
