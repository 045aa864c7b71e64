"""The chat's terminal: lines read with editing and history, commands answered locally, and
each reply drawn as Poe's users see it, Markdown and live sections included.

On a terminal, lines are read with prompt_toolkit (arrow keys, history, Ctrl-C clears the line,
Ctrl-D leaves) and replies are drawn with rich: Markdown rendered, redrawn in place as the
reply grows or a section above it changes, a rule between turns. Through a pipe, lines are read
as they come and the final text of each reply is printed once, plain.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from prompt_toolkit import PromptSession
from prompt_toolkit.history import InMemoryHistory
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.rule import Rule

COMMANDS = {
    "/help": "this list",
    "/params": "the bot's control values; /params NAME=VALUE sets one for the next messages",
    "/reset": "start a new conversation (the bot forgets the earlier turns)",
    "/quit": "leave (so does Ctrl-D); Ctrl-C stops a reply in flight, and every call in it",
}
QUITS = frozenset({"/quit", "/exit"})


def help_text() -> str:
    return "\n".join(f"  {name:<8} {what}" for name, what in COMMANDS.items())


class Terminal:
    """Where the chat reads lines and shows replies: interactive on a terminal, plain through
    a pipe."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.interactive = out.isatty() and sys.stdin.isatty()
        self.console = Console(file=out, highlight=False, soft_wrap=False)
        self._session: PromptSession[str] | None = (
            PromptSession(history=InMemoryHistory()) if self.interactive else None
        )

    async def read(self) -> str | None:
        """The next non-empty line, or None at the end (Ctrl-D, the end of the pipe)."""
        while True:
            if self._session is not None:
                try:
                    line = await self._session.prompt_async("you> ")
                except KeyboardInterrupt:  # Ctrl-C at the prompt clears the line
                    continue
                except EOFError:
                    return None
            else:
                line = await asyncio.to_thread(sys.stdin.readline)
                if not line:
                    return None
            if line.strip():
                return line.rstrip("\n")

    def say(self, text: str) -> None:
        """A line of the chat's own (not the bot's)."""
        self.out.write(text + "\n")
        self.out.flush()

    def screen(self) -> PlainScreen:
        return Screen(self) if self.interactive else PlainScreen(self.out)

    def separate(self, title: str) -> None:
        """Ends a turn: a rule on a terminal, a blank line through a pipe."""
        if self.interactive:
            self.console.print(Rule(title, style="dim"))
        else:
            self.out.write("\n")


class PlainScreen:
    """A reply through a pipe: its final text, printed once."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def update(self, text: str) -> None:
        pass

    def done(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stop(self) -> None:
        pass


class Screen(PlainScreen):
    """A reply on a terminal: Markdown, redrawn in place as it grows (rich's Live)."""

    def __init__(self, terminal: Terminal) -> None:
        super().__init__(terminal.out)
        self._live = Live(
            Markdown(""),
            console=terminal.console,
            refresh_per_second=8,
            vertical_overflow="visible",
            transient=False,
        )
        self._live.start()

    def update(self, text: str) -> None:
        self._live.update(Markdown(text))

    def done(self, text: str) -> None:
        self._live.update(Markdown(text), refresh=True)
        self.stop()

    def stop(self) -> None:
        self._live.stop()
