"""The engine: runs one bot's pipeline for one user message, writing into a `Reply`.

Steps are typed objects from `format`; each runs with a `Slot`, the place its visible output
goes (nowhere for hidden steps). A sequence hands its slot to its last step; a parallel step
makes one part per branch (with headings for `sections`); an explicit `show` opens a new slot.
Parallel branches run in a TaskGroup, so a failure or a cancelled reply cancels every branch and
closes every upstream stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

from . import conversation
from .budget import CallGuard
from .client import Caller, CallFailed
from .errors import RunError, StepFailed
from .format import CallStep, LoopStep, ParallelStep, RouteStep, StepBase, TextStep
from .loader import BotPlan, branch_key, ids_in
from .reply import Part, Reply
from .templates import LOOP_VARIABLES, PROMPT_CHAR_CAP, Branches

log = logging.getLogger(__name__)

DEFAULT_CALL_TIMEOUT = 120.0
"""Seconds one try of a dependency call may take when its step sets no `timeout`."""
REPLY_DEADLINE = 570.0
"""Seconds a whole reply may take; Poe drops replies after 600 s."""


@dataclass
class TraceEntry:
    """What one step did, for the terminal chat's trace and the logs."""

    path: str
    kind: str
    bot: str | None
    seconds: float
    calls: int
    outcome: str


class Slot:
    """Where a step's visible output goes: a part of the reply made on first use, or nowhere."""

    def __init__(self, reply: Reply | None, mode: str, heading: str | None = None) -> None:
        self.reply = reply if mode != "hide" else None
        self.mode = mode
        self.heading = heading
        self._part: Part | None = None

    def part(self) -> Part | None:
        if self._part is None and self.reply is not None:
            self._part = self.reply.add_part(self.heading, deferred=self.mode == "final")
        return self._part

    def close(self) -> None:
        if self._part is not None:
            self._part.close()


HIDDEN = Slot(None, "hide")


@dataclass
class Run:
    """One user message being answered by one bot."""

    plan: BotPlan
    request: fp.QueryRequest
    reply: Reply
    caller: Caller
    call_timeout: float = DEFAULT_CALL_TIMEOUT
    guard: CallGuard = field(init=False)
    variables: dict[str, Any] = field(init=False)
    history: conversation.History = field(init=False)
    calls: dict[str, conversation.Record] = field(default_factory=dict)  # per call step
    trace: list[TraceEntry] = field(default_factory=list)
    # every failed try: its step, bot and a reason fit for logs (nothing a dependency wrote)
    failures: list[dict[str, str]] = field(default_factory=list)
    deadline: float = field(init=False, default=float("inf"))  # loop time the reply must end by
    failure: str | None = None  # why the pipeline stopped, fit for logs
    tries: Counter[str] = field(default_factory=Counter)  # calls made, per call step path

    def __post_init__(self) -> None:
        self.guard = CallGuard(Counter(self.plan.dependencies), self.plan.cost.total)
        self.variables = conversation.template_variables(self.request)
        self.history = conversation.History(self.request)
        # every id is defined from the start ("" until its step runs): the loader has checked
        # the order, and steps in routes not taken or loops not yet run read as empty
        self.variables.update(dict.fromkeys(ids_in(self.plan.spec.steps), ""))

    async def execute(self, deadline: float = REPLY_DEADLINE) -> None:
        """Runs the pipeline into the reply, then finishes the reply whatever happened."""
        top = Slot(self.reply, "stream")
        self.deadline = asyncio.get_running_loop().time() + deadline
        try:
            async with asyncio.timeout_at(self.deadline):
                await self.sequence(self.plan.spec.steps, top)
        except RunError as e:
            self.reply.error, self.failure = str(e), e.log_reason
            self.reply.error_type = e.error_type if isinstance(e, StepFailed) else None
        except TimeoutError:
            self.reply.error = (
                f"The reply ran out of time after {deadline:g} seconds (Poe allows 10 minutes), "
                "so it stopped here."
            )
            self.failure = f"out of time after {deadline:g} s"
        except Exception:
            log.exception("bot %s: unexpected error in the pipeline", self.plan.id)
            self.reply.error = (
                "Something went wrong inside this bot's pipeline; it has been logged."
            )
            self.failure = "unexpected error (logged above)"
        finally:
            top.close()
            if self.calls:
                calls = self.calls
                self.reply.metadata = lambda shown: conversation.write_metadata(calls, shown)
            self.reply.finish()

    # --- structure -------------------------------------------------------------------------

    async def sequence(self, steps: Sequence[StepBase], slot: Slot) -> Any:
        value: Any = ""
        for i, step in enumerate(steps):
            value = await self.step(step, slot if i == len(steps) - 1 else HIDDEN)
        return value

    async def step(self, step: StepBase, inherited: Slot, *, strict: bool = False) -> Any:
        """Runs any step: its `show`, `when` and `on_error`, and records its output."""
        slot = Slot(self.reply, step.show) if step.show else inherited
        entry = TraceEntry(step.path, step.kind, getattr(step, "bot", None), 0.0, 0, "ok")
        self.trace.append(entry)
        started, tries_before = time.monotonic(), self._tries_under(step.path)
        try:
            when = step.template("when")
            if when is not None and not when.is_true(self.variables):
                entry.outcome = "skipped"
                # a skipped step keeps its output ("" at first; in a loop, the last round's)
                return self.variables.get(step.id, "") if step.id else ""
            value: Any = await self._dispatch(step, slot)
        except StepFailed as e:
            entry.outcome = f"failed: {e}"
            if strict or step.on_error == "fail":
                raise
            part = slot.part()
            if part is not None:
                part.note(str(e))
            value = ""
        except asyncio.CancelledError:
            entry.outcome = "cancelled"
            raise
        finally:
            if slot is not inherited:
                slot.close()
            entry.seconds = time.monotonic() - started
            entry.calls = self._tries_under(step.path) - tries_before
        if step.id:
            self.variables[step.id] = value
        return value

    def _tries_under(self, path: str) -> int:
        """Calls made so far by the step at `path` and the steps inside it."""
        return sum(
            n for p, n in self.tries.items() if p == path or p.startswith((path + ".", path + "["))
        )

    async def _dispatch(self, step: StepBase, slot: Slot) -> Any:
        if isinstance(step, CallStep):
            return await self.call(step, slot)
        if isinstance(step, TextStep):
            text = self._render(step, "text")
            part = slot.part()
            if part is not None:
                part.replace(text)
            return text
        if isinstance(step, ParallelStep):
            return await (
                self.race(step, slot) if step.wait == "first" else self.fan_out(step, slot)
            )
        if isinstance(step, RouteStep):
            return await self.route(step, slot)
        assert isinstance(step, LoopStep)
        return await self.loop(step, slot)

    def _render(self, step: StepBase, name: str) -> str:
        template = step.template(name)
        return template.render(self.variables) if template is not None else ""

    def _branch_slots(self, step: ParallelStep, mode: str) -> list[Slot]:
        slots = []
        for i, branch in enumerate(step.parallel):
            heading = branch_key(branch, i) if mode == "sections" else None
            slot = Slot(self.reply, "final" if mode == "final" else mode, heading)
            if mode == "sections":
                slot.part()  # headings show at once, in branch order
            slots.append(slot)
        return slots

    async def fan_out(self, step: ParallelStep, slot: Slot) -> Branches:
        slots = self._branch_slots(step, slot.mode)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self.step(branch, slots[i]))
                    for i, branch in enumerate(step.parallel)
                ]
        except BaseExceptionGroup as group_error:
            raise _first_run_error(group_error) from None
        finally:
            for branch_slot in slots:
                branch_slot.close()
        return Branches(
            (branch_key(branch, i), task.result())
            for i, (branch, task) in enumerate(zip(step.parallel, tasks, strict=True))
        )

    async def race(self, step: ParallelStep, slot: Slot) -> Any:
        """`wait: first`: the first branch to succeed wins; the others are cancelled. Unless the
        branches are shown as sections, the winner's answer appears when it is known."""
        mode = "sections" if slot.mode == "sections" else ("final" if slot.reply else "hide")
        slots = self._branch_slots(step, mode)
        winner: list[tuple[int, Any]] = []
        failures: list[str] = []
        tasks: list[asyncio.Task[None]] = []

        async def runner(i: int, branch: StepBase) -> None:
            try:
                value = await self.step(branch, slots[i], strict=True)
            except StepFailed as e:
                failures.append(str(e))
                return
            if not winner:
                winner.append((i, value))
                for task in tasks:
                    if task is not asyncio.current_task():
                        task.cancel()

        try:
            async with asyncio.TaskGroup() as group:
                tasks += [group.create_task(runner(i, b)) for i, b in enumerate(step.parallel)]
        except BaseExceptionGroup as group_error:
            raise _first_run_error(group_error) from None
        if not winner:
            raise StepFailed(
                "every branch of the race failed: " + "; ".join(failures),
                log_reason=f"{step.path}: every branch of the race failed",
            )
        index, value = winner[0]
        name = branch_key(step.parallel[index], index)
        for i, branch_slot in enumerate(slots):
            part = branch_slot.part() if mode == "sections" else None
            if i == index:
                branch_slot.close()
            elif part is not None and tasks[i].cancelled():
                part.note(f"stopped: {name} answered first")
        return value

    async def route(self, step: RouteStep, slot: Slot) -> Any:
        chosen = self._render(step, "route")
        case = _match(chosen, step.cases)
        if case is None:
            case = step.default
        if case is None:
            log.info("bot %s: %s: no case matched and there is no default", self.plan.id, step.path)
            return ""
        return await self.sequence(case, slot)

    async def loop(self, step: LoopStep, slot: Slot) -> Any:
        saved = {name: self.variables.get(name) for name in LOOP_VARIABLES}
        value: Any = ""
        try:
            for iteration in range(1, step.loop.max + 1):
                self.variables["iteration"] = iteration
                value = await self.sequence(step.loop.steps, slot)
                until = step.template("until")
                if until is not None and until.is_true(self.variables):
                    break
        finally:
            self.variables.update(saved)
        return value

    # --- calls -----------------------------------------------------------------------------

    async def call(self, step: CallStep, slot: Slot) -> str:
        """One call step: every try of its bot, then of each fallback, until one succeeds."""
        prompt = (
            self._render(step, "prompt") if step.prompt is not None else self.variables["message"]
        )
        system = self._render(step, "system") if step.system is not None else None
        for name, text in (("prompt", prompt), ("system", system or "")):
            if len(text) > PROMPT_CHAR_CAP:
                too_long = len(self.variables["message"]) > PROMPT_CHAR_CAP
                raise StepFailed(
                    f"the {name} for {step.bot} would be {len(text):,} characters, over the "
                    f"{PROMPT_CHAR_CAP:,}-character cap on one prompt; nothing was sent",
                    bot=step.bot,
                    error_type="user_message_too_long" if too_long else None,
                )
        # the user's own message parameters pass through; the step's override them
        parameters = dict(self.variables["params"])
        for name, value in step.parameters.items():
            parameters[name] = (
                self._render(step, f"parameters.{name}") if isinstance(value, str) else value
            )
        messages = conversation.call_messages(
            self.request,
            self.history,
            step.path,
            prompt=prompt,
            system=system,
            parameters=parameters,
            use_history=step.history,
            attachments=step.attachments,
        )
        request = conversation.forward(self.request, messages)
        part = slot.part()
        timeout = step.timeout or self.call_timeout
        failures: list[CallFailed] = []
        tried: list[str] = []
        for bot in step.bots:
            for _ in range(1 + step.retries):
                if failures and failures[-1].rate_limited:
                    await self._back_off(step, bot, failures, timeout)
                self.guard.acquire(bot)
                self.reply.spent = True
                self.tries[step.path] += 1
                tried.append(bot)
                try:
                    with self._asking(bot):
                        text = await self._try(request, bot, part, timeout)
                except CallFailed as e:
                    failures.append(e)
                    self.failures.append({"step": step.path, "bot": bot, "reason": e.log_reason})
                    log.info(
                        "bot %s: %s: %s failed: %s", self.plan.id, step.path, bot, e.log_reason
                    )
                    if e.retry:
                        continue
                    break  # the bot asked not to be retried: on to the fallback, if any
                record = {"a": text}
                if prompt != self.variables["message"]:
                    record["p"] = prompt
                self.calls[step.path] = record
                return text
        error_type = next((f.error_type for f in reversed(failures) if f.error_type), None)
        raise StepFailed(
            _failure_message(list(zip(tried, failures, strict=True))),
            bot=step.bot,
            error_type=error_type,
            log_reason=f"{step.path}: {', '.join(dict.fromkeys(tried))} failed",
        )

    async def _back_off(
        self, step: CallStep, bot: str, failures: list[CallFailed], cap: float
    ) -> None:
        """Waits before trying again after Poe's 429: as long as its headers ask, else
        exponentially (1, 2, 4 s..., with jitter); never past the step's timeout or the
        reply's deadline. The wait is in the trace and in the progress line."""
        asked = failures[-1].wait
        streak = 0
        for failure in reversed(failures):
            if not failure.rate_limited:
                break
            streak += 1
        seconds = asked if asked is not None else 2.0 ** (streak - 1) * random.uniform(0.5, 1.0)
        remaining = self.deadline - asyncio.get_running_loop().time()
        seconds = max(0.0, min(seconds, cap, remaining - 1.0))
        how = "as Poe's headers asked" if asked is not None else "backing off"
        label = f"{bot} (rate limited: trying again in {seconds:.0f} s)"
        entry = TraceEntry(step.path, "wait", bot, seconds, 0, f"HTTP 429: waited {how}")
        self.trace.append(entry)
        with self._asking(label):
            await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def _asking(self, label: str) -> Iterator[None]:
        """Names what the reply waits for in its progress line, while it waits."""
        self.reply.asking[label] += 1
        try:
            yield
        finally:
            self.reply.asking[label] -= 1
            if self.reply.asking[label] <= 0:
                del self.reply.asking[label]

    async def _try(
        self, request: fp.QueryRequest, bot: str, part: Part | None, seconds: float
    ) -> str:
        text = ""
        suggestions: list[str] = []
        if part is not None:
            part.replace("")
        try:
            async with asyncio.timeout(seconds):
                async for event in self.caller.stream(request, bot):
                    if isinstance(event, fp.MetaResponse) or event.data is not None:
                        continue
                    if event.attachment is not None:
                        # at once: the text after it may show it inline by its inline_ref
                        if part is not None:
                            part.attach(event.attachment)
                    elif event.is_suggested_reply:
                        suggestions.append(event.text)
                    elif event.is_replace_response:
                        text = event.text
                        if part is not None:
                            part.replace(text)
                    else:
                        text += event.text
                        if part is not None:
                            part.write(event.text)
        except TimeoutError:
            raise CallFailed(f"no complete answer within {seconds:g} s") from None
        if part is not None:
            part.suggestions = suggestions
        return text


def _match(value: str, cases: dict[str, list[Any]]) -> list[Any] | None:
    """The case whose key equals the value; failing that, equal once trimmed of spaces,
    punctuation, quotes and case (classifier bots often answer 'Code.' for `code`)."""
    if value in cases:
        return cases[value]

    def norm(text: str) -> str:
        return text.strip().strip(" \t\n.,;:!?\"'`*_()[]").casefold()

    wanted = norm(value)
    for key, steps in cases.items():
        if norm(key) == wanted:
            return steps
    return None


def _failure_message(failures: list[tuple[str, CallFailed]]) -> str:
    """One sentence for a call step whose every try failed: (bot, failure) per try."""
    if len(failures) == 1:
        bot, failure = failures[0]
        return f"{bot} failed: {failure}"
    tried = ", ".join(dict.fromkeys(bot for bot, _ in failures))
    each = "; ".join(f"{bot}: {failure}" for bot, failure in failures)
    return f"{tried} failed after {len(failures)} tries ({each})"


def _first_run_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a failed TaskGroup: the first RunError, else the group."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = _first_run_error(error)
        if isinstance(error, RunError):
            return error
    return group
