"""What each dependency call sends, and what the reply keeps so later turns can rebuild it.

On later turns every dependency should see the conversation as it was with it: the prompts it
was sent and its own answers, not the merged reply with everyone's sections. The reply's
metadata (a `data` event, which Poe hands back on the bot's earlier messages) keeps, per call
step, the prompt and the answer; where it is missing (an old message, a step that did not run
that turn), the merged text stands in.
"""

from __future__ import annotations

import json
from typing import Any

import fastapi_poe as fp

METADATA_VERSION = 1
METADATA_CAP = 100_000
"""Largest metadata kept on a reply (characters); prompts are dropped first, then answers."""


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


def template_variables(request: fp.QueryRequest) -> dict[str, Any]:
    """The built-in variables every template sees."""
    last = request.query[-1] if request.query else None
    return {
        "message": last.content if last else "",
        "conversation": [{"role": m.role, "content": m.content} for m in request.query],
        "params": dict(last.parameters) if last else {},
        "attachments": [
            {"name": a.name, "url": a.url, "content_type": a.content_type}
            for a in (last.attachments if last else [])
        ],
    }


def read_metadata(message: fp.ProtocolMessage) -> dict[str, dict[str, str]]:
    """The per-call record kept on one of our earlier replies, or {} when there is none."""
    if message.role != "bot" or not message.metadata:
        return {}
    try:
        data = json.loads(message.metadata)
    except ValueError:
        return {}
    calls = data.get("calls") if isinstance(data, dict) else None
    if not isinstance(calls, dict):
        return {}
    return {k: v for k, v in calls.items() if isinstance(v, dict) and isinstance(v.get("a"), str)}


def write_metadata(calls: dict[str, dict[str, str]]) -> str:
    """Encodes the calls of this reply, within METADATA_CAP."""
    kept = {key: dict(call) for key, call in calls.items()}

    def encoded() -> str:
        return json.dumps({"v": METADATA_VERSION, "calls": kept}, ensure_ascii=False)

    text = encoded()
    if len(text) > METADATA_CAP:
        for call in kept.values():
            call.pop("p", None)
        text = encoded()
    while len(text) > METADATA_CAP and kept:
        largest = max(kept, key=lambda k: len(kept[k]["a"]))
        del kept[largest]
        text = encoded()
    return text


def call_messages(
    request: fp.QueryRequest,
    key: str,
    *,
    prompt: str,
    system: str | None,
    parameters: dict[str, Any],
    history: bool,
    attachments: bool,
) -> list[fp.ProtocolMessage]:
    """The `query` of one dependency call: its own view of the conversation, then the prompt."""
    messages: list[fp.ProtocolMessage] = []
    if system:
        messages.append(fp.ProtocolMessage(role="system", content=system))
    if history:
        for message in request.query[:-1]:
            record = read_metadata(message).get(key)
            if record is not None:
                if "p" in record and messages and messages[-1].role == "user":
                    messages[-1] = messages[-1].model_copy(update={"content": record["p"]})
                message = message.model_copy(update={"content": record["a"], "metadata": None})
            if not attachments and message.attachments:
                message = message.model_copy(update={"attachments": []})
            messages.append(message)
    last = request.query[-1]
    messages.append(
        last.model_copy(
            update={
                "content": prompt,
                "parameters": parameters,
                "attachments": list(last.attachments) if attachments else [],
            }
        )
    )
    return messages
