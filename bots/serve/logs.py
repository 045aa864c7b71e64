"""Logging: one JSON object per line wherever the app runs, and the line each message makes.

On Modal nothing configures Python's logging, so without `configure` every log record of the
app (the per-message line, each failure's reason) would vanish; with it they go to stderr,
which `modal app logs` shows. `serve` and `main.py` use the same setup.

Two things never appear: access keys (`REDACTOR` blanks them from httpx's request lines, which
hold the settings-sync URL) and the user's text (the per-message line holds identifiers,
counts, times and reasons in the engine's own words, never a prompt, an answer or anything a
dependency wrote).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time, level, logger, message, and its `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class Redactor(logging.Filter):
    """Blanks access keys out of log records. httpx logs each request's URL at INFO, and Poe's
    settings-sync URL holds the bot's access key."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(secret in message for secret in self.secrets):
            for secret in self.secrets:
                message = message.replace(secret, "[redacted]")
            record.msg, record.args = message, ()
        return True


REDACTOR = Redactor()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(REDACTOR)


def configure() -> None:
    """This package logs at INFO; when the host has not set up logging (Modal, a bare ASGI
    server), records go to stderr as JSON lines, and other libraries only warn."""
    package = logging.getLogger("bots")
    if package.level == logging.NOTSET:
        package.setLevel(logging.INFO)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)


FIELD_CAP = 300
"""Longest text a field of a log line keeps (a request's identifiers are the sender's)."""


def record(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """Logs one structured record at INFO: `fields` become keys of its JSON line, each text
    cut at FIELD_CAP characters."""
    logger.info(message, extra={"fields": bounded(dict(fields))})


def bounded(value: Any, depth: int = 0) -> Any:
    """A field's value with every text cut at FIELD_CAP characters (and lists at 50 items)."""
    if isinstance(value, str):
        return value if len(value) <= FIELD_CAP else f"{value[:FIELD_CAP]}…({len(value):,} chars)"
    if depth > 3:
        return "…"
    if isinstance(value, dict):
        return {str(k)[:FIELD_CAP]: bounded(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [bounded(v, depth + 1) for v in value[:50]]
    return value
