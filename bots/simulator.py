"""Simulated dependency bots for `chat --dry-run`: no account, no points.

Each simulated bot streams back, after a short delay, exactly what the step would have sent it:
the system message, the prompt, its parameters and attachments, and how much history came
along. So an author sees the flow, the sections and the rendered templates for free.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import fastapi_poe as fp


class SimulatedCaller:
    """A `Caller` whose bots echo their request. Delays are in seconds."""

    def __init__(self, first_token_delay: float = 0.4, token_gap: float = 0.01) -> None:
        self.first_token_delay = first_token_delay
        self.token_gap = token_gap

    async def stream(self, request: fp.QueryRequest, bot: str) -> AsyncIterator[fp.PartialResponse]:
        await asyncio.sleep(self.first_token_delay)
        tokens = re.findall(r"\S+\s*|\s+", describe(request, bot))
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
