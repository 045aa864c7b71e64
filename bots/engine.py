"""The engine: runs one bot's pipeline for one user message, writing into a `Reply`.

Steps are typed objects from `format`; each runs with a `Slot`, the place its visible output
goes (nowhere for hidden steps). A sequence hands its slot to its last step; a parallel step
makes one part per branch (with headings for `sections`); an explicit `show` opens a new slot.
Parallel branches run in a TaskGroup, so a failure or a cancelled reply cancels every branch and
closes every upstream stream. A call step's tries are `calls`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

from . import controls, conversation
from .calls import DEFAULT_CALL_TIMEOUT, Calls, TraceEntry
from .client import Caller
from .errors import RunError, StepFailed
from .format import CallStep, LoopStep, ParallelStep, RouteStep, StepBase, TextStep, within
from .loader import BotPlan, branch_key, ids_in
from .reply import Part, Reply
from .templates import LOOP_VARIABLES, Branches

log = logging.getLogger(__name__)

REPLY_DEADLINE = 570.0
"""Seconds a whole reply may take; Poe drops replies after 600 s."""


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
    variables: dict[str, Any] = field(init=False)
    calls: Calls = field(init=False)
    trace: list[TraceEntry] = field(default_factory=list)
    failure: str | None = None  # why the pipeline stopped, fit for logs
    files: dict[str, list[fp.Attachment]] = field(default_factory=dict)  # per step id
    routes: dict[str, list[str]] = field(default_factory=dict)  # route path -> cases taken

    def __post_init__(self) -> None:
        self.calls = Calls(self.plan, self.request, self.reply, self.caller, self.call_timeout)
        self.calls.trace = self.trace
        given = self.request.query[-1].parameters if self.request.query else {}
        params, notes = controls.values(self.plan.spec.controls, given)
        for note in notes:  # a value the user set that its control does not allow
            self.trace.append(TraceEntry("params", "param", None, 0.0, 0, note))
        self.variables = conversation.template_variables(self.request, params)
        # every id is defined from the start ("" until its step runs): the loader has checked
        # the order, and steps in routes not taken or loops not yet run read as empty
        ids = list(ids_in(self.plan.spec.steps))
        self.variables.update(dict.fromkeys(ids, ""))
        self.variables["files"] = {step_id: [] for step_id in ids}  # and no files yet

    async def execute(self, deadline: float = REPLY_DEADLINE) -> None:
        """Runs the pipeline into the reply, then finishes the reply whatever happened."""
        top = Slot(self.reply, "stream")
        self.calls.deadline = asyncio.get_running_loop().time() + deadline
        try:
            async with asyncio.timeout_at(self.calls.deadline):
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
            if self.calls.records:
                records = self.calls.records
                self.reply.metadata = lambda shown: conversation.write_metadata(records, shown)
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
        calls_before = self.calls.made
        try:
            when = step.template("when")
            if when is not None and not when.is_true(self.variables):
                entry.outcome = "skipped"
                # a skipped step keeps its output ("" at first; in a loop, the last round's)
                return self.variables.get(step.id, "") if step.id else ""
            value: Any = await self._dispatch(step, slot, entry)
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
            files = self.calls.files_under(step.path, since=calls_before)
            self.files[step.id] = files
            self.variables["files"][step.id] = [conversation.describe(f) for f in files]
        return value

    def _tries_under(self, path: str) -> int:
        """Calls made so far by the step at `path` and the steps inside it."""
        return sum(n for p, n in self.calls.tries.items() if within(p, path))

    async def _dispatch(self, step: StepBase, slot: Slot, entry: TraceEntry) -> Any:
        if isinstance(step, CallStep):
            return await self.calls.call(step, slot.part(), self.variables, self.files)
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
            return await self.route(step, slot, entry)
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

    async def route(self, step: RouteStep, slot: Slot, entry: TraceEntry) -> Any:
        chosen = self._render(step, "route")
        key = _match(chosen, step.cases)
        case = step.cases[key] if key is not None else step.default
        name = key if key is not None else ("default" if case is not None else NO_CASE)
        self.routes.setdefault(step.path, []).append(name)
        entry.detail = f"compared {_shown(chosen)}: took {name}"
        if case is None:
            log.info("bot %s: %s: no case matched and there is no default", self.plan.id, step.path)
            return ""
        return await self.sequence(case, slot)

    async def loop(self, step: LoopStep, slot: Slot) -> Any:
        saved = {name: self.variables.get(name) for name in LOOP_VARIABLES}
        value: Any = ""
        try:
            rounds = step.loop.bound
            if step.loop.slider is not None:  # the user's choice, within the slider's range
                rounds = min(rounds, int(self.variables["params"][step.loop.slider]))
            until = step.template("until")
            for iteration in range(1, rounds + 1):
                self.variables["iteration"] = iteration
                entry = TraceEntry(step.path, "round", None, 0.0, 0, f"round {iteration}")
                started, tries_before = time.monotonic(), self._tries_under(step.path)
                value = await self.sequence(step.loop.steps, slot)
                done = until is not None and until.is_true(self.variables)
                entry.seconds = time.monotonic() - started
                entry.calls = self._tries_under(step.path) - tries_before
                if until is not None:
                    entry.detail = f"until: {str(done).lower()}, " + (
                        "so it stops" if done else
                        "and that was the last round" if iteration == rounds else "so another round"
                    )  # fmt: skip
                self.trace.append(entry)
                if done:
                    break
        finally:
            self.variables.update(saved)
        return value

    # --- calls -----------------------------------------------------------------------------


NO_CASE = "no case"
"""What a route took when no case matched and it has no default."""


def _match(value: str, cases: dict[str, list[Any]]) -> str | None:
    """The case whose key equals the value; failing that, equal once trimmed of spaces,
    punctuation, quotes and case (classifier bots often answer 'Code.' for `code`)."""
    if value in cases:
        return value

    def norm(text: str) -> str:
        return text.strip().strip(" \t\n.,;:!?\"'`*_()[]").casefold()

    wanted = norm(value)
    return next((key for key in cases if norm(key) == wanted), None)


def _shown(value: str, width: int = 60) -> str:
    """A compared value, quoted and shortened to one line for the trace."""
    flat = " ".join(value.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")


def _first_run_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a failed TaskGroup: the first RunError, else the group."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = _first_run_error(error)
        if isinstance(error, RunError):
            return error
    return group
