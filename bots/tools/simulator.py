"""Simulated dependency bots for `chat --dry-run`: no account, no points.

Each simulated bot streams back, after a short delay, exactly what the step would have sent it:
the system message, the prompt, its parameters and attachments, and how much history came
along. So an author sees the flow, the sections and the rendered templates for free. A bot
whose files a later step uses also makes a small picture (a real PNG, written to a folder of
the machine's temporary files), so the flow of files can be seen too; so does a bot that Poe's
catalog says makes files, when asked to (`file_makers`, as the studio does). A `Script` answers for
the steps and bots it names instead (`script`), so a dry run can take real decisions.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import tempfile
import uuid
import zlib
from collections.abc import AsyncGenerator
from pathlib import Path

import fastapi_poe as fp

from bots.run.client import ANYWHERE, CallSite
from bots.tools.script import Script, failure

FILES = Path(tempfile.gettempdir()) / "poe-pipelines-dry-run"
"""Where simulated bots put the pictures they make."""


class SimulatedCaller:
    """A `Caller` whose bots answer as `script` says, or else echo their request. Delays are in
    seconds."""

    def __init__(
        self,
        first_token_delay: float = 0.4,
        token_gap: float = 0.01,
        script: Script | None = None,
        file_makers: frozenset[str] = frozenset(),
    ) -> None:
        self.first_token_delay = first_token_delay
        self.token_gap = token_gap
        self.script = script or Script()
        self.file_makers = file_makers  # bots that answer with a file, as Poe's catalog says

    async def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]:
        await asyncio.sleep(self.first_token_delay)
        key = self.script.key_for(bot, site.step_id, site.path)
        if key is None:
            text = describe(request, bot)
            file = picture(bot) if site.files_used or bot in self.file_makers else None
        else:
            answer = self.script.next(key)
            if answer.fail is not None:
                raise failure(answer)
            text, file = answer.text, self.script.attachment(answer)
        if file is not None:
            yield fp.PartialResponse(text="", attachment=file)
        tokens = re.findall(r"\S+\s*|\s+", text)
        gap = min(self.token_gap, 1.0 / max(1, len(tokens)))  # long echoes stream within ~1 s
        for i, token in enumerate(tokens):
            if i and gap:
                await asyncio.sleep(gap)
            yield fp.PartialResponse(text=token)


def describe(request: fp.QueryRequest, bot: str) -> str:
    """What a simulated bot answers: the request it got, in readable form."""
    last = request.query[-1]
    system = next((m.content for m in request.query if m.role == "system"), None)
    earlier = [m for m in request.query[:-1] if m.role != "system"]
    lines = [f"*[{bot} (simulated) was asked:]*", "", last.content.strip() or "(empty prompt)"]
    extras = []
    if system:
        extras.append(f"system: {system.strip()}")
    if last.parameters:
        extras.append(f"parameters: {json.dumps(last.parameters, sort_keys=True)}")
    if last.attachments:
        extras.append(f"attachments: {', '.join(a.name for a in last.attachments)}")
    if earlier:
        extras.append(f"history: {len(earlier)} earlier messages")
    if extras:
        lines += ["", *[f"*{extra}*" for extra in extras]]
    return "\n".join(lines)


def picture(bot: str) -> fp.Attachment:
    """A small PNG in a colour of the bot's name, written locally: a simulated bot's file."""
    red, green, blue = zlib.crc32(bot.encode()).to_bytes(4, "big")[:3]
    width = height = 32
    row = b"\x00" + bytes((red, green, blue)) * width  # each row: no filter, then RGB pixels

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    png += chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")
    FILES.mkdir(parents=True, exist_ok=True)
    path = FILES / f"{bot}-{uuid.uuid4().hex[:8]}.png"
    path.write_bytes(png)
    return fp.Attachment(url=path.as_uri(), content_type="image/png", name=path.name)
