"""What a reply keeps for later turns, and how each dependency's view of the chat is rebuilt."""

from __future__ import annotations

import json

import fastapi_poe as fp

from bots.run.conversation import (
    ANSWER_RECORD_CAP,
    METADATA_CAP,
    PROMPT_RECORD_CAP,
    History,
    write_metadata,
)


def request(*messages: fp.ProtocolMessage) -> fp.QueryRequest:
    return fp.QueryRequest(
        version="1.2",
        type="query",
        query=list(messages),
        user_id="u",
        conversation_id="c",
        message_id="m",
    )


def user(text: str) -> fp.ProtocolMessage:
    return fp.ProtocolMessage(role="user", content=text)


def bot(text: str, metadata: str | None) -> fp.ProtocolMessage:
    return fp.ProtocolMessage(role="bot", content=text, metadata=metadata)


def test_a_shown_answer_is_kept_as_a_checked_reference_into_the_reply() -> None:
    long_answer = "draft " * 2_000  # 12,000 characters, shown in the reply
    shown = f"### gpt\n\n{long_answer}\n\n### claude\n\nshort"
    metadata = write_metadata({"gpt": {"a": long_answer}, "claude": {"a": "short"}}, shown)
    assert len(metadata) < 150  # not the 12,000 characters again
    history = History(request(user("q1"), bot(shown, metadata), user("q2")))
    view = history.view("gpt", attachments=True)
    assert [(m.role, m.content) for m in view] == [("user", "q1"), ("bot", long_answer)]
    assert view[1].metadata is None  # ours, never forwarded


def test_when_poe_hands_back_other_text_the_merged_reply_stands_in() -> None:
    shown = "### gpt\n\nthe answer"
    metadata = write_metadata({"gpt": {"a": "the answer"}}, shown)
    returned = "gpt\n\nthe answer"  # say Poe dropped the heading marks: the offsets moved
    view = History(request(user("q"), bot(returned, metadata), user("n"))).view(
        "gpt", attachments=True
    )
    assert view[1].content == returned  # the checksum did not match: the whole text


def test_hidden_answers_are_kept_when_short_and_left_out_when_long() -> None:
    short, long = "code", "x" * (ANSWER_RECORD_CAP + 1)
    metadata = json.loads(write_metadata({"topic": {"a": short}, "draft": {"a": long}}, "final"))
    assert metadata["calls"] == {"topic": {"a": "code"}}


def test_prompts_are_kept_when_short_and_left_out_when_long() -> None:
    calls = {
        "a": {"a": "x", "p": "Classify: q1"},
        "b": {"a": "y", "p": "P" * (PROMPT_RECORD_CAP + 1)},
    }
    metadata = write_metadata(calls, "x y")
    history = History(request(user("q1"), bot("x y", metadata), user("q2")))
    assert history.view("a", attachments=True)[0].content == "Classify: q1"
    assert history.view("b", attachments=True)[0].content == "q1"  # the user's own message


def test_metadata_never_exceeds_its_cap() -> None:
    calls = {f"s{i}": {"a": str(i) * ANSWER_RECORD_CAP, "p": "p" * 1_000} for i in range(20)}
    assert len(write_metadata(calls, "")) <= METADATA_CAP


def test_replies_written_by_the_first_version_are_still_read() -> None:
    old = json.dumps({"v": 1, "calls": {"s": {"a": "old answer", "p": "old prompt"}}})
    view = History(request(user("q"), bot("merged", old), user("n"))).view("s", attachments=True)
    assert [m.content for m in view] == ["old prompt", "old answer"]
