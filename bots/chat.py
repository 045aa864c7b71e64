"""`python -m bots chat BOT`: run a bot's pipeline from the terminal, before deploying it.

The same engine and merging as on Poe. With POE_API_KEY it calls real Poe bots on your own
account (the key as bearer, fastapi_poe's client, as Poe's external-application guide says);
with --dry-run every dependency is simulated and costs nothing.
"""

from __future__ import annotations

import asyncio
import math
import mimetypes
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse
from urllib.request import url2pathname

import fastapi_poe as fp
import httpx

from . import controls
from .calls import TraceEntry
from .client import POE_BASE_URL, Caller, PoeCaller, new_http_client
from .engine import Run
from .loader import BotPlan
from .reply import Pacing, Reply
from .simulator import SimulatedCaller

KEY_HELP = (
    "POE_API_KEY is not set. Get your key at https://poe.com/api_key and run\n"
    "  export POE_API_KEY=...\n"
    "(calls then spend your own Poe points), or try the pipeline for free with --dry-run."
)


class ChatError(Exception):
    """A problem to report in one line (bad --param, unreadable --file, refused key...)."""


@dataclass
class Options:
    dry_run: bool = False
    files: list[Path] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    trace: bool = True
    simulated_delay: float = 0.4


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """--param key=value pairs; numbers and true/false become JSON values."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ChatError(
                f"--param {pair!r}: expected key=value, e.g. --param thinking_budget=2048"
            )
        params[key.strip()] = _scalar(value.strip())
    return params


def checked_params(plan: BotPlan, params: dict[str, Any]) -> dict[str, Any]:
    """--param values checked against the bot's controls, as Poe's UI would allow them."""
    declared = {control.name: control for control in controls.flat(plan.spec.controls)}
    checked = {}
    for name, value in params.items():
        control = declared.get(name)
        if control is None:
            names = ", ".join(declared) or "none"
            raise ChatError(
                f"--param {name}: /{plan.id} has no control of that name; its controls: {names} "
                f"(python -m bots chat {plan.id} --controls)"
            )
        try:
            checked[name] = control.accept(value)
        except ValueError as e:
            raise ChatError(f"--param {name}={value}: {e}") from None
    return checked


def controls_table(plan: BotPlan) -> str:
    """The bot's controls, as `chat --controls` prints them."""
    declared = list(controls.flat(plan.spec.controls))
    if not declared:
        return f"/{plan.id} has no controls."
    lines = [f"/{plan.id} controls (set one with --param NAME=VALUE):"]
    width = max(len(control.name) for control in declared)
    for control in declared:
        kind = controls.control_kind(control) or ""
        lines.append(
            f"  {control.name:<{width}}  {kind:<12} {control.label}: {control.describe()}; "
            f"default {control.default_value!r}"
        )
    return "\n".join(lines)


def _scalar(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class Screen:
    """Shows a reply as it grows. On a terminal, re-renders in place; elsewhere (a pipe, a
    test) prints the final reply once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.shown = ""

    def update(self, text: str) -> None:
        if not self.live:
            self.shown = text
            return
        if text.startswith(self.shown):
            self.out.write(text[len(self.shown) :])
        else:
            rows = self._rows(self.shown)
            if rows >= shutil.get_terminal_size().lines - 1:
                return  # taller than the screen: cannot redraw; the final text follows
            self.out.write(("\r" + (f"\x1b[{rows - 1}A" if rows > 1 else "")) + "\x1b[J" + text)
        self.out.flush()
        self.shown = text

    def done(self, text: str) -> None:
        if (
            self.live
            and text != self.shown
            and self._rows(self.shown) >= shutil.get_terminal_size().lines - 1
        ):
            self.out.write("\n\n" + text)
        elif self.live:
            self.update(text)
        else:
            self.out.write(text)
        self.out.write("\n")
        self.out.flush()

    @staticmethod
    def _rows(text: str) -> int:
        width = max(20, shutil.get_terminal_size().columns)
        return sum(max(1, math.ceil(len(line) / width)) for line in text.split("\n"))


def trace_table(trace: list[TraceEntry], calls: int, budget: int) -> str:
    lines = ["trace:"]
    for entry in trace:
        who = f" {entry.bot}" if entry.bot else ""
        lines.append(
            f"  {entry.path:<28} {entry.kind:<8}{who:<20} {entry.seconds:6.2f}s  "
            f"{entry.calls} call{'s' if entry.calls != 1 else ''}  {entry.outcome}"
        )
    lines.append(f"  calls used: {calls} of {budget} (worst case)")
    return "\n".join(lines)


class Chat:
    """A multi-turn conversation with one bot."""

    def __init__(self, plan: BotPlan, caller: Caller, options: Options, out: TextIO) -> None:
        self.plan = plan
        self.caller = caller
        self.options = options
        self.out = out
        self.history: list[fp.ProtocolMessage] = []
        self.conversation_id = uuid.uuid4().hex

    async def send(self, text: str, attachments: list[fp.Attachment]) -> Reply:
        message = fp.ProtocolMessage(
            role="user", content=text, parameters=self.options.params, attachments=attachments
        )
        request = fp.QueryRequest(
            version="1.2",
            type="query",
            query=[*self.history, message],
            user_id="terminal",
            conversation_id=self.conversation_id,
            message_id=uuid.uuid4().hex,
            access_key="",
        )
        reply = Reply(Pacing(status_delay=0.5))
        run = Run(self.plan, request, reply, self.caller)
        screen = Screen(self.out)
        shown = ""
        metadata: str | None = None
        async with asyncio.TaskGroup() as group:
            group.create_task(run.execute())
            async for event in reply.stream():
                if isinstance(event, fp.DataResponse):
                    metadata = event.metadata  # as Poe keeps it: the last data event
                elif isinstance(event, fp.PartialResponse) and not (
                    event.is_suggested_reply
                    or event.attachment
                    or isinstance(event, fp.ErrorResponse)
                ):
                    shown = event.text if event.is_replace_response else shown + event.text
                    screen.update(shown)
                elif isinstance(event, fp.PartialResponse) and event.attachment:
                    file = event.attachment
                    self.out.write(f"\n[file: {file.name} at {where(file.url)}]\n")
                elif isinstance(event, fp.PartialResponse) and event.is_suggested_reply:
                    self.out.write(f"\n[suggested: {event.text}]")
        screen.done(shown)
        self.history += [
            message,
            fp.ProtocolMessage(role="bot", content=shown, metadata=metadata),
        ]
        if self.options.trace:
            self.out.write(
                trace_table(run.trace, run.calls.guard.calls, self.plan.cost.total) + "\n"
            )
            for step_id, files in run.files.items():
                for file in files:
                    self.out.write(f"  files of {step_id}: {file.name} at {where(file.url)}\n")
        if reply.error:
            raise ChatError(explain(reply.error))
        return reply


def where(url: str) -> str:
    """Where a file is: a local path for the dry run's files, else its URL."""
    return url2pathname(urlparse(url).path) if url.startswith("file:") else url


def explain(error: str) -> str:
    """A failed reply in one line, with what to do for the usual causes."""
    if "HTTP 401" in error:
        return f"{error}. Poe refused POE_API_KEY: check it at https://poe.com/api_key"
    if "HTTP 429" in error:
        return f"{error}. Poe allows 500 requests a minute per key: wait a minute and retry"
    if "HTTP 404" in error or "does not exist" in error:
        return f"{error}. Check the bot name in pipelines.yaml (names are as on poe.com)"
    return error


async def upload(
    paths: list[Path], http: httpx.AsyncClient | None, api_key: str
) -> list[fp.Attachment]:
    attachments = []
    for path in paths:
        if not path.is_file():
            raise ChatError(f"--file {path}: no such file")
        if http is None:  # dry run: nothing leaves the machine
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            attachments.append(
                fp.Attachment(url=path.resolve().as_uri(), content_type=kind, name=path.name)
            )
            continue
        try:
            with path.open("rb") as handle:
                attachments.append(
                    await fp.upload_file(
                        handle, file_name=path.name, api_key=api_key, session=http, num_tries=1
                    )
                )
        except Exception as e:  # fastapi_poe raises several kinds; the user needs one line
            raise ChatError(f"--file {path}: upload to Poe failed ({type(e).__name__})") from e
    return attachments


async def run_chat(plan: BotPlan, options: Options, messages: list[str] | None, out: TextIO) -> int:
    """Chats with `plan`'s bot: the given messages, else lines read from stdin. Returns an
    exit status."""
    api_key = os.environ.get("POE_API_KEY", "")
    if not options.dry_run and not api_key:
        print(KEY_HELP, file=sys.stderr)
        return 2
    async with new_http_client() as http:
        caller: Caller
        if options.dry_run:
            caller = SimulatedCaller(first_token_delay=options.simulated_delay)
        else:
            base_url = os.environ.get("POE_BASE_URL") or POE_BASE_URL
            caller = PoeCaller(http, base_url, api_key=api_key)
        chat = Chat(plan, caller, options, out)
        mode = (
            "dry run: dependencies simulated"
            if options.dry_run
            else "live: calls spend your points"
        )
        out.write(
            f"chatting with /{plan.id} ({mode}); worst case {plan.cost.total} calls per message\n"
        )
        status = 0
        try:
            attachments = await upload(options.files, None if options.dry_run else http, api_key)
            for text in messages if messages is not None else _read_lines(out):
                try:
                    await chat.send(text, attachments)
                except ChatError as e:
                    print(f"error: {e}", file=sys.stderr)
                    status = 1
                attachments = []
        except ChatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return status


def _read_lines(out: TextIO) -> Iterator[str]:
    while True:
        if sys.stdin.isatty():
            out.write("\nyou> ")
            out.flush()
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.rstrip("\n")
