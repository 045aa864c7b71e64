"""Poe's published protocol, rule by rule, over HTTP against the stand-in.

Each test is named after the rule it holds and quotes, in its docstring, where Poe states it
(the Poe Protocol Specification, creator.poe.com/docs/poe-protocol-specification, and the guides
in ../shared/poe-docs). Every reply is read by `standin.Reply`, which fails any reply that breaks
Poe's limits (characters, events, done last, a text or error event, files before the text that
shows them).
"""

from __future__ import annotations

import json

from bots.limits import REPLY_CHAR_LIMIT, TRUNCATED
from bots.reply import Pacing
from tests.conftest import serve_pipelines
from tests.standin import Behavior

FAST = Pacing(delta_gap=0.005, replace_gap=0.02, status_delay=0.05)

# --- length --------------------------------------------------------------------------------


async def test_no_reply_exceeds_100000_characters_counting_every_text_and_replace() -> None:
    """ "The total length of a bot response (the sum of the length of all `text` events ...)
    may not exceed 100,000 characters." Three live sections of about 40,000 characters each:
    re-rendered as they grow, they would send several times that."""
    yaml = """\
        version: 1
        bots:
          long:
            steps:
              - parallel: [{bot: A}, {bot: B}, {bot: C}]
                show: sections
    """
    words = Behavior(text="word " * 8_000, token_gap=0.0002)  # 40,000 characters
    async with serve_pipelines(yaml, {"A": words, "B": words, "C": words}, pacing=FAST) as s:
        reply = await s.ask("long")  # the stand-in fails a reply over the limit
    assert reply.chars <= REPLY_CHAR_LIMIT
    assert reply.text.startswith("### A\n\nword word") and reply.text.endswith(TRUNCATED)
    assert any(name == "replace_response" for name, _ in reply.events)  # sections were live


async def test_an_ordinary_reply_is_shown_whole() -> None:
    """The limit costs nothing below it: three live sections of a few thousand characters
    arrive complete, with no note."""
    yaml = """\
        version: 1
        bots:
          council:
            steps:
              - parallel: [{bot: A}, {bot: B}, {bot: C}]
                show: sections
    """
    words = Behavior(text="word " * 600, token_gap=0.001)
    async with serve_pipelines(yaml, {"A": words, "B": words, "C": words}, pacing=FAST) as s:
        reply = await s.ask("council")
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


async def test_a_rate_limited_call_waits_as_poes_headers_say_before_trying_again() -> None:
    """Poe's rate limits: "When your application exceeds the rate limit, the API will respond
    with a 429 ... implement exponential backoff", with `x-ratelimit-reset-requests`: "Time in
    seconds until the rate limit window resets". The stand-in answers 429 again to a call made
    before that time."""
    yaml = "version: 1\nbots:\n  patient:\n    steps: [{bot: Busy, retries: 2}]\n"
    busy = Behavior(
        text="answered",
        http_status=429,
        http_status_first=1,
        headers={"x-ratelimit-reset-requests": "1"},
    )
    async with serve_pipelines(yaml, {"Busy": busy}, pacing=FAST) as s:
        reply = await s.ask("patient")
    assert reply.text == "answered"
    assert s.standin.too_early == []  # the retry waited the full second
    assert s.standin.attempts[s.standin.requests[-1]["message_id"]] == {"Busy": 2}
    shown = [str(data.get("text")) for _, data in reply.events]
    assert any("rate limited" in text for text in shown)  # the user saw why it waits


async def test_retries_made_at_once_after_a_429_would_be_refused() -> None:
    """The check above can fail: without waiting, the stand-in refuses the retry."""
    yaml = "version: 1\nbots:\n  hasty:\n    steps: [{bot: Busy, retries: 1, timeout: 0.01}]\n"
    busy = Behavior(
        text="answered",
        http_status=429,
        http_status_first=1,
        headers={"x-ratelimit-reset-requests": "30"},
    )
    async with serve_pipelines(yaml, {"Busy": busy}, pacing=FAST) as s:
        reply = await s.ask("hasty")  # the wait is capped by the step's 0.01 s timeout
    assert len(s.standin.too_early) == 1
    assert "HTTP 429" in reply.text
    assert json.dumps(reply.errors) == "[]"
