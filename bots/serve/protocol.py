"""Poe's requests, read as its spec asks: ignore what is unknown, refuse what is broken.

fastapi_poe's models accept only the roles, content types and feedback values of today and
reject omitted optional fields and `null` lists; since Poe resends the whole conversation every
turn, one such message would make every later request of that chat fail. Poe's spec asks
otherwise, and `read` follows it, parsing the body once into the model the bot receives:

- "Bot servers should ignore messages with roles they do not recognize" and "Bots should ignore
  messages with content types they do not understand": such messages are removed from the
  query, so no template and no dependency bot sees them;
- feedback: "More types may be added in the future and bot servers should ignore types they do
  not recognize", and its "`reason` ... may be omitted"; reactions likewise;
- a `null` where a list or mapping is expected means none;
- "Bot servers should ignore any request types they do not understand, ideally by sending a
  `501 Not Implemented` HTTP response."

What stays strict: a body that is not a JSON object, a missing or non-text `type`, and a
request whose known fields are missing or of the wrong type get a 4xx that names the problem.
"""

from __future__ import annotations

from typing import Any, get_args

import fastapi_poe as fp
from fastapi_poe.types import ContentType, FeedbackType, MessageType
from pydantic import BaseModel, ValidationError

from bots.errors import Refused, Unreadable
from bots.spec.reading import BOUNDS, MiB, json_value

REQUEST_MODELS: dict[str, type[fp.types.BaseRequest]] = {
    "query": fp.QueryRequest,
    "settings": fp.SettingsRequest,
    "report_feedback": fp.ReportFeedbackRequest,
    "report_reaction": fp.ReportReactionRequest,
    "report_error": fp.ReportErrorRequest,
}
BODY = BOUNDS.with_bytes(64 * MiB)
"""A request body: Poe resends the whole conversation (up to 1,000 messages) every turn: 500
replies of 8,000 CJK characters, escaped as JSON, are about 25 MB; this leaves room beyond
that."""
ROLES = frozenset(get_args(fp.ProtocolMessage.model_fields["role"].annotation))
CONTENT_TYPES = frozenset(get_args(ContentType))
FEEDBACK_TYPES = frozenset(get_args(FeedbackType))
MESSAGE_TYPES = frozenset(get_args(MessageType))
IGNORED = None
"""`read`'s answer for a request to acknowledge and drop (e.g. feedback of a new type)."""


Request = (
    fp.QueryRequest
    | fp.SettingsRequest
    | fp.ReportFeedbackRequest
    | fp.ReportReactionRequest
    | fp.ReportErrorRequest
)


def read(body: bytes, access_key: str | None) -> Request | None:
    """The request to hand to the bot, parsed and validated once (a query carries the bot's
    `access_key`, as fastapi_poe's own route gives it); IGNORED for a request to acknowledge
    and drop. Raises Refused."""
    try:
        data: Any = json_value(body, BODY)
    except Unreadable as e:
        raise Refused(400, f"the request body cannot be read: {e}") from None
    if not isinstance(data, dict):
        raise Refused(400, "the request body must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        allowed = ", ".join(REQUEST_MODELS)
        raise Refused(400, f"the request has no 'type'; expected one of: {allowed}")
    model = REQUEST_MODELS.get(kind)
    if model is None:
        raise Refused(501, f"request type {kind[:40]!r} is not implemented by this bot")
    _null_means_default(model, data)
    if kind == "query":
        _tolerate_query(data)
    elif kind == "report_feedback" and not _known(data.get("feedback_type"), FEEDBACK_TYPES):
        return IGNORED
    elif kind == "report_error" and not isinstance(data.get("metadata"), dict):
        data["metadata"] = {}  # it "May contain metadata": none is none
    elif kind == "report_reaction":
        if not isinstance(data.get("reaction"), str):
            return IGNORED
        if "user_id" not in data:  # who reacted is not needed to record a reaction
            data["user_id"] = ""
    if kind == "query":  # what fastapi_poe's own route would set: the bot's key, or none
        data["access_key"] = data["api_key"] = access_key or "<missing>"
    return _validate(model, data, kind)


def _tolerate_query(data: dict[str, Any]) -> None:
    """Drops the messages Poe says to ignore and repairs what may be omitted."""
    query = data.get("query")
    if not isinstance(query, list):
        return  # validation says what is wrong
    kept = [m for m in query if not _ignored(m)]
    for message in kept:
        if isinstance(message, dict):
            _tolerate_message(message)
    if not kept and query:
        raise Refused(
            422, "invalid query request: no message has a role or content type this bot understands"
        )
    data["query"] = kept


def _ignored(message: Any) -> bool:
    """A message of a role or content type Poe's spec tells bots to ignore."""
    if not isinstance(message, dict):
        return False
    role, content_type = message.get("role"), message.get("content_type")
    return (isinstance(role, str) and role not in ROLES) or (
        isinstance(content_type, str) and content_type not in CONTENT_TYPES
    )


def _known(value: Any, names: frozenset[str]) -> bool:
    return isinstance(value, str) and value in names


def _tolerate_message(message: dict[str, Any]) -> None:
    _null_means_default(fp.ProtocolMessage, message)
    feedback = message.get("feedback")
    if isinstance(feedback, list):
        known = [
            f for f in feedback if isinstance(f, dict) and _known(f.get("type"), FEEDBACK_TYPES)
        ]
        for item in known:
            item.setdefault("reason", None)
        message["feedback"] = known
    reactions = message.get("reactions")
    if isinstance(reactions, list):
        readable = [
            r for r in reactions if isinstance(r, dict) and isinstance(r.get("reaction"), str)
        ]
        for item in readable:
            if not isinstance(item.get("user_id"), str):
                item["user_id"] = ""
        message["reactions"] = readable
    if message.get("message_type") is not None and not _known(
        message["message_type"], MESSAGE_TYPES
    ):
        del message["message_type"]  # a kind of message this fastapi_poe does not know
    referenced = message.get("referenced_message")
    if isinstance(referenced, dict):
        if _ignored(referenced):
            message["referenced_message"] = None
        else:
            _tolerate_message(referenced)


def _null_means_default(model: type[BaseModel], data: dict[str, Any]) -> None:
    """Removes `null`s from fields that have a default but do not take None (lists, mappings,
    text with a default), so the default applies."""
    nulls = [
        name
        for name, info in model.model_fields.items()
        if name in data
        and data[name] is None
        and not info.is_required()
        and info.default is not None
    ]
    for name in nulls:
        del data[name]


def _validate(model: type[BaseModel], data: dict[str, Any], kind: str) -> Request:
    try:
        request: Request = model.model_validate(data)  # type: ignore[assignment]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in e.errors(include_input=False)[:5]
        )
        raise Refused(422, f"invalid {kind} request: {problems}") from None
    if isinstance(request, fp.QueryRequest) and not request.query:
        raise Refused(422, "invalid query request: 'query' has no messages")
    return request
