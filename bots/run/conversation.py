"""What each dependency call sends, and what the reply keeps so later turns can rebuild it.

On later turns every dependency should see the conversation as it was with it: the prompts it
was sent and its own answers, not the merged reply with everyone's sections. Poe hands each of
our earlier replies back with its metadata (the last `data` event), and resends them all every
turn, so what the metadata holds is paid for on every later request. It holds, per call step,
only what the reply's own text does not:

- an answer the user was shown verbatim is a reference into the reply's text: where it starts,
  its length and a checksum ({"o", "n", "h"}); when the text Poe hands back does not match the
  checksum, the merged text stands in;
- an answer not shown (a hidden step) is kept whole up to ANSWER_RECORD_CAP characters ({"a"});
  a longer one is left out, and the merged text stands in;
- a prompt other than the user's message is kept up to PROMPT_RECORD_CAP characters ({"p"});
  a longer one (a verdict's prompt quoting every draft) is left out, and the user's message
  of that turn stands in.

Our metadata is never forwarded to the dependencies: it is ours, not theirs.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

import fastapi_poe as fp

from bots.spec.reading import json_value

METADATA_VERSION = 2
ANSWER_RECORD_CAP = 2_000
"""Longest answer of a hidden step kept in the metadata (characters)."""
PROMPT_RECORD_CAP = 2_000
"""Longest prompt kept in the metadata (characters)."""
METADATA_CAP = 16_000
"""Largest metadata of one reply (characters); prompts are dropped first, then answers."""

Record = dict[str, Any]


class ForwardedRequest(fp.QueryRequest):
    """The user's request with `query` replaced, for one dependency call.

    fastapi_poe's client stores `repr(request)` on every event it yields (`full_prompt`); for
    a long conversation that repr dominates the cost of streaming, so it is kept short here.
    """

    def __repr__(self) -> str:
        return f"ForwardedRequest(message_id={self.message_id!r}, messages={len(self.query)})"


def forward(request: fp.QueryRequest, messages: list[fp.ProtocolMessage]) -> ForwardedRequest:
    """The user's request (identity, access key and all) carrying `messages` as its query."""
    return ForwardedRequest.model_construct(
        request.model_fields_set | {"query"}, **{**dict(request), "query": messages}
    )


def template_variables(request: fp.QueryRequest, params: dict[str, Any]) -> dict[str, Any]:
    """The built-in variables every template sees; `params` are the controls' values."""
    last = request.query[-1] if request.query else None
    return {
        "message": last.content if last else "",
        "conversation": [{"role": m.role, "content": m.content} for m in request.query],
        "params": params,
        "attachments": [
            {**describe(a), "parsed_content": a.parsed_content}
            for a in (last.attachments if last else [])
        ],
        "files": {},  # step id -> the files it produced, as steps run
    }


def describe(attachment: fp.Attachment) -> dict[str, str]:
    """A file as templates see it."""
    return {"name": attachment.name, "url": attachment.url, "content_type": attachment.content_type}


def _checksum(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


def write_metadata(calls: Mapping[str, Record], shown: str) -> str:
    """Encodes the calls of this reply (path -> {"a": answer, "p": prompt if not the user's
    message}) against `shown`, the reply's text as the user got it, within METADATA_CAP."""
    kept: dict[str, Record] = {}
    for path, call in calls.items():
        answer, prompt = call["a"], call.get("p")
        start = shown.find(answer) if answer else -1
        record: Record = {}
        if start >= 0:
            record = {"o": start, "n": len(answer), "h": _checksum(answer)}
        elif len(answer) <= ANSWER_RECORD_CAP:
            record = {"a": answer}
        if prompt is not None and len(prompt) <= PROMPT_RECORD_CAP:
            record["p"] = prompt
        if record:
            kept[path] = record

    def encoded() -> str:
        return json.dumps({"v": METADATA_VERSION, "calls": kept}, ensure_ascii=False)

    text = encoded()
    if len(text) > METADATA_CAP:
        for record in kept.values():
            record.pop("p", None)
        text = encoded()
    while len(text) > METADATA_CAP and kept:
        largest = max(kept, key=lambda k: len(json.dumps(kept[k], ensure_ascii=False)))
        del kept[largest]
        text = encoded()
    return text


def read_records(message: fp.ProtocolMessage) -> dict[str, Record]:
    """The per-call records kept on one of our earlier replies, or {} when there is none."""
    if message.role != "bot" or not message.metadata:
        return {}
    try:
        data = json_value(message.metadata)
    except ValueError:  # not ours, or past the reading bounds: no history from it
        return {}
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, dict):
        return {}
    return {k: v for k, v in calls.items() if isinstance(v, dict)}


def _answer(record: Record, content: str) -> str | None:
    """A call's answer from its record and the reply's text, or None to use the text whole."""
    if isinstance(record.get("a"), str):
        return str(record["a"])
    start, length, checksum = record.get("o"), record.get("n"), record.get("h")
    if isinstance(start, int) and isinstance(length, int) and start >= 0 and length >= 0:
        answer = content[start : start + length]
        if _checksum(answer) == checksum:
            return answer
    return None


class History:
    """The conversation before the user's new message, our records in it read once, from
    which each call step's own view of it is built."""

    def __init__(self, request: fp.QueryRequest) -> None:
        self.messages = request.query[:-1]
        self.records = [read_records(message) for message in self.messages]

    def view(self, key: str, *, attachments: bool) -> list[fp.ProtocolMessage]:
        """What the call step at `key` was sent and answered on earlier turns (the merged
        text, and the user's own message, where its record has nothing), without our
        metadata."""
        messages: list[fp.ProtocolMessage] = []
        for message, records in zip(self.messages, self.records, strict=True):
            update: dict[str, Any] = {}
            if message.metadata is not None:
                update["metadata"] = None  # ours, not the dependency's
            record = records.get(key)
            if record is not None:
                prompt = record.get("p")
                if isinstance(prompt, str) and messages and messages[-1].role == "user":
                    messages[-1] = messages[-1].model_copy(update={"content": prompt})
                answer = _answer(record, message.content)
                if answer is not None:
                    update["content"] = answer
            if not attachments and message.attachments:
                update["attachments"] = []
            messages.append(message.model_copy(update=update) if update else message)
        return messages


def call_messages(
    request: fp.QueryRequest,
    history: History,
    key: str,
    *,
    prompt: str,
    system: str | None,
    parameters: dict[str, Any],
    use_history: bool,
    attachments: list[fp.Attachment],
    user_files: bool,
) -> list[fp.ProtocolMessage]:
    """The `query` of one dependency call: its own view of the conversation (with the user's
    earlier files when `user_files`), then the prompt with `attachments`."""
    messages: list[fp.ProtocolMessage] = []
    if system:
        messages.append(fp.ProtocolMessage(role="system", content=system))
    if use_history:
        messages += history.view(key, attachments=user_files)
    last = request.query[-1]
    messages.append(
        last.model_copy(
            update={"content": prompt, "parameters": parameters, "attachments": attachments}
        )
    )
    return messages
