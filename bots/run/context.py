"""One reply's context: made once when a message arrives, then passed down to every step and
call of its run.

Nothing is copied out of it or patched into it after it is made: each piece has one owner that
writes it through its own methods (the answer's parts, the guard's count, the trace's entries).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import fastapi_poe as fp

from bots.run.answer import Answer
from bots.run.client import Caller
from bots.run.trace import TraceEntry
from bots.spec.budget import CallGuard
from bots.spec.loader import BotPlan

REPLY_SECONDS = 570.0
"""Seconds a whole reply may take; Poe drops replies after 600 s."""
CALL_SECONDS = 120.0
"""Seconds one try of a dependency call may take when its step sets no `timeout`."""


@dataclass(frozen=True, eq=False)
class Context:
    """What one reply's run shares: the bot's plan, the request, the answer being written, the
    caller to dependency bots, the budget guard every call passes, the trace, and the time
    limits (`deadline` in the event loop's time)."""

    plan: BotPlan
    request: fp.QueryRequest
    answer: Answer
    caller: Caller
    guard: CallGuard
    trace: list[TraceEntry]
    reply_seconds: float
    deadline: float
    call_seconds: float
    started: float  # wall clock, seconds since the epoch

    @classmethod
    def open(
        cls,
        plan: BotPlan,
        request: fp.QueryRequest,
        answer: Answer,
        caller: Caller,
        *,
        reply_seconds: float = REPLY_SECONDS,
        call_seconds: float = CALL_SECONDS,
    ) -> Context:
        """The context of a reply starting now (inside the event loop that runs it)."""
        return cls(
            plan=plan,
            request=request,
            answer=answer,
            caller=caller,
            guard=CallGuard(Counter(plan.dependencies), plan.cost.total),
            trace=[],
            reply_seconds=reply_seconds,
            deadline=asyncio.get_running_loop().time() + reply_seconds,
            call_seconds=call_seconds,
            started=time.time(),
        )
