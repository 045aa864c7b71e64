"""The chat as a terminal program, driven through a pseudo-terminal (pexpect) as a person
types: line editing and history, local commands, Markdown drawn, Ctrl-C stopping a reply and
closing its upstream streams, Ctrl-D leaving."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pexpect

from standin.poe import Behavior, StandIn
from standin.serving import ROOT

PROMPT = "you>"  # (the space after it is drawn as a cursor move)


@contextmanager
def chat(*args: str, env: dict[str, str] | None = None) -> Iterator[pexpect.spawn]:
    environ = {k: v for k, v in os.environ.items() if k not in ("POE_API_KEY", "POE_BASE_URL")}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "bots", "chat", *args],
        cwd=str(ROOT),
        env={**environ, "TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", **(env or {})},
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    try:
        yield child
    finally:
        child.close(force=True)


def test_a_terminal_chat_edits_recalls_answers_commands_and_leaves_on_ctrl_d() -> None:
    with chat("router", "--dry-run", "--delay", "0.05", "--no-trace") as child:
        child.expect("/help for commands")
        child.expect(PROMPT)
        child.send("How do I reverse a lis")
        child.send("\x1b[D\x1b[D\x1b[C\x1b[C")  # the arrow keys move, and type nothing
        child.sendline("t?")
        child.expect(r"\(simulated\) was asked:\]")  # Markdown drawn: no '*' left of the italic
        assert "*[Gemini" not in child.before
        child.expect("How do I reverse a list\\?")
        child.expect(PROMPT)
        child.send("\x1b[A")  # Up: the last line again
        child.sendline("")
        child.expect("How do I reverse a list\\?")
        child.expect(PROMPT)
        child.sendline("/help")
        child.expect("/reset")
        child.expect(PROMPT)
        child.sendline("/oops")
        child.expect("unknown command '/oops'")
        child.expect(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0


async def test_ctrl_c_stops_the_reply_in_flight_and_closes_its_upstream_streams() -> None:
    behaviors = {"GPT-5-mini": Behavior(text="code", hang_at=0)}
    async with StandIn(behaviors) as standin:
        standin.allow_any_caller = True
        env = {"POE_API_KEY": "user-key", "POE_BASE_URL": standin.base_url}

        def drive() -> int | None:
            with chat("router", "--no-trace", env=env) as child:
                child.expect(PROMPT)
                child.sendline("How?")
                child.expect("Waiting for GPT-5-mini")  # the progress line, while it hangs
                child.sendcontrol("c")
                child.expect(r"\[stopped: the reply and every call in it were cancelled\]")
                child.expect(PROMPT)  # the chat goes on
                child.sendline("/quit")
                child.expect(pexpect.EOF)
            return child.exitstatus

        status = await asyncio.to_thread(drive)
        await standin.wait_until_idle()
        assert status == 0
        assert standin.closed_early == 1 and standin.open_streams == 0
