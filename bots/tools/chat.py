"""`python -m bots chat BOT`: run a bot's pipeline from the terminal, before deploying it.

The same engine and merging as on Poe. With POE_API_KEY it calls real Poe bots on your own
account (the key as bearer, fastapi_poe's client, as Poe's external-application guide says);
with --dry-run every dependency is simulated and costs nothing.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlparse
from urllib.request import url2pathname

import fastapi_poe as fp

from bots.errors import CallFailed, ChatError
from bots.run import client, trace
from bots.run.client import POE_BASE_URL, POE_UPLOAD_URL, Caller, PoeCaller, new_http_client
from bots.spec import controls
from bots.spec.loader import DEFAULT_PATH, BotPlan
from bots.tools import script, transcript
from bots.tools.script import Script
from bots.tools.simulator import SimulatedCaller
from bots.tools.terminal import QUITS, Terminal, help_text
from bots.tools.transcript import Transcript

if TYPE_CHECKING:
    from bots.serve.spans import SpanFile

KEY_HELP = (
    "POE_API_KEY is not set. Get your key at https://poe.com/api_key and run\n"
    "  export POE_API_KEY=...\n"
    "(calls then spend your own Poe points), or try the pipeline for free with --dry-run."
)


@dataclass
class Options:
    dry_run: bool = False
    files: list[Path] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    trace: bool = True
    simulated_delay: float = 0.4
    script: Script = field(default_factory=Script)  # scripted answers, for a dry run
    trace_file: Path | None = None  # where each message's spans go, as OTLP/JSON


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


def checked_params(
    plan: BotPlan, params: dict[str, Any], config: str = DEFAULT_PATH
) -> dict[str, Any]:
    """--param values checked against the bot's controls, as Poe's UI would allow them; the
    hint repeats the --config that was given."""
    try:
        return controls.checked(plan.spec.controls, params)
    except ValueError as e:
        given = f" --config {config}" if config != DEFAULT_PATH else ""
        hint = f"see python -m bots chat {plan.id}{given} --controls"
        raise ChatError(f"--param {e} ({hint})") from None


def checked_script(plan: BotPlan, path: str | None, pairs: Sequence[str], dry_run: bool) -> Script:
    """The scripted answers of --answers FILE and --answer KEY=TEXT (these win), checked
    against the bot's steps and bots. Raises ConfigError for a bad file."""
    if not (path or pairs):
        return Script()
    if not dry_run:
        raise ChatError("--answers and --answer script simulated bots: add --dry-run")
    found = script.read(path) if path else Script()
    found = found.merged(Script(script.parse_pairs(pairs), found.folder))
    for key, problem in found.problems(plan):
        raise ChatError(f"answer {key}: {problem}")
    return found


def checked_trace_file(path: str | None) -> Path | None:
    """--trace-file FILE, refused at once when FILE could not be written."""
    if path is None:
        return None
    file = Path(path)
    if file.is_dir() or not file.parent.is_dir():
        where = "is a folder" if file.is_dir() else f"is in {file.parent}, which does not exist"
        raise ChatError(f"--trace-file {path}: {where}; give a file path, e.g. trace.json")
    return file


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


class Chat:
    """A multi-turn conversation with one bot."""

    def __init__(self, plan: BotPlan, caller: Caller, options: Options, terminal: Terminal) -> None:
        self.plan = plan
        self.caller = caller
        self.options = options
        self.terminal = terminal
        self.out = terminal.out
        self.history: list[fp.ProtocolMessage] = []
        self.conversation_id = uuid.uuid4().hex
        self.spans: SpanFile | None = None
        if options.trace_file is not None:
            from bots.serve.spans import SpanFile  # OpenTelemetry's SDK, loaded only when asked for

            self.spans = SpanFile(content=trace.content_wanted(os.environ))

    async def send(self, text: str, attachments: list[fp.Attachment]) -> Transcript:
        request = transcript.query(
            text,
            history=self.history,
            params=self.options.params,
            attachments=attachments,
            conversation_id=self.conversation_id,
        )
        screen = self.terminal.screen()

        def show_file(file: fp.Attachment) -> None:
            self.out.write(f"\n[file: {file.name} at {where(file.url)}]\n")

        try:
            said = await transcript.answer(
                self.plan, request, self.caller, on_text=screen.update, on_file=show_file
            )
        finally:
            screen.stop()
        screen.done(said.text)
        for suggestion in said.suggestions:
            self.out.write(f"[suggested: {suggestion}]\n")
        self.history += [
            request.query[-1],
            fp.ProtocolMessage(role="bot", content=said.text, metadata=said.metadata),
        ]
        if self.options.trace:
            self.out.write(said.trace_table(self.plan.cost.total) + "\n")
            for step_id, files in said.run.files.items():
                for file in files:
                    self.out.write(f"  files of {step_id}: {file.name} at {where(file.url)}\n")
        if self.spans is not None and self.options.trace_file is not None:
            self.spans.spans.message(said.run, said.run.summary(said.seconds, said.delivery))
            count = self.spans.write(self.options.trace_file)
            self.out.write(f"  spans: {count} so far, in {self.options.trace_file} (OTLP/JSON)\n")
        self.terminal.separate(f"/{self.plan.id}")
        if said.error:
            raise ChatError(explain(said.error))
        return said

    def reset(self) -> None:
        """A new conversation: the bot sees none of the earlier turns."""
        self.history = []
        self.conversation_id = uuid.uuid4().hex

    def command(self, line: str) -> bool:
        """Answers a chat command (/help, /params, /reset, /quit); False to leave."""
        name, _, rest = line.strip().partition(" ")
        terminal = self.terminal
        if name in QUITS:
            return False
        if name == "/reset":
            self.reset()
            terminal.say("new conversation: the bot forgets the earlier turns")
        elif name == "/params" and rest.strip():
            try:
                changed = checked_params(self.plan, parse_params(rest.split()))
            except ChatError as e:
                terminal.say(f"error: {e}")
            else:
                self.options.params.update(changed)
                terminal.say(f"params: {self.options.params}")
        elif name == "/params":
            values, _ = controls.values(self.plan.spec.controls, self.options.params)
            terminal.say(f"params: {values or 'none (the bot has no controls)'}")
        elif name == "/help":
            terminal.say(help_text())
        else:
            terminal.say(f"unknown command {name!r}; the commands:\n{help_text()}")
        return True


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


async def upload(paths: list[Path], live: bool, api_key: str) -> list[fp.Attachment]:
    attachments = []
    for path in paths:
        if not path.is_file():
            raise ChatError(f"--file {path}: no such file")
        if not live:  # dry run: nothing leaves the machine
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            attachments.append(
                fp.Attachment(url=path.resolve().as_uri(), content_type=kind, name=path.name)
            )
            continue
        where = os.environ.get("POE_UPLOAD_URL") or POE_UPLOAD_URL
        try:
            attachments.append(await client.upload(path.read_bytes(), path.name, api_key, where))
        except CallFailed as e:
            raise ChatError(f"--file {path}: {e}") from e
    return attachments


async def run_chat(plan: BotPlan, options: Options, messages: list[str] | None, out: TextIO) -> int:
    """Chats with `plan`'s bot: the given messages, else lines read from the terminal (or a
    pipe), where /commands are answered locally. Returns an exit status."""
    api_key = os.environ.get("POE_API_KEY", "")
    if not options.dry_run and not api_key:
        print(KEY_HELP, file=sys.stderr)
        return 2
    terminal = Terminal(out)
    async with new_http_client() as http:
        caller: Caller
        if options.dry_run:
            caller = SimulatedCaller(options.simulated_delay, script=options.script)
        else:
            base_url = os.environ.get("POE_BASE_URL") or POE_BASE_URL
            caller = PoeCaller(http, base_url, api_key=api_key)
        chat = Chat(plan, caller, options, terminal)
        mode = (
            "dry run: dependencies simulated"
            if options.dry_run
            else "live: calls spend your points"
        )
        terminal.say(
            f"chatting with /{plan.id} ({mode}); worst case {plan.cost.total} calls per message"
            + ("; /help for commands" if terminal.interactive else "")
        )
        status = 0
        try:
            attachments = await upload(options.files, not options.dry_run, api_key)
            for given in messages or []:
                status |= await _send(chat, given, attachments)
                attachments = []
            while messages is None and (line := await terminal.read()) is not None:
                if line.startswith("/"):
                    if not chat.command(line):
                        break
                    continue
                status |= await _send(chat, line, attachments)
                attachments = []
        except ChatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return status


async def _send(chat: Chat, text: str, attachments: list[fp.Attachment]) -> int:
    """One message: 0 when it was answered, 1 when the reply failed. On a terminal, Ctrl-C
    stops the reply in flight (every call in it is cancelled, its stream closed) and the chat
    goes on."""
    reply = asyncio.ensure_future(chat.send(text, attachments))
    loop = asyncio.get_running_loop()
    interactive = chat.terminal.interactive
    if interactive:
        loop.add_signal_handler(signal.SIGINT, reply.cancel)
    try:
        await asyncio.wait({reply})
    finally:
        if interactive:
            loop.remove_signal_handler(signal.SIGINT)
    if reply.cancelled():
        chat.terminal.say("\n[stopped: the reply and every call in it were cancelled]")
        return 0
    try:
        reply.result()
    except ChatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
