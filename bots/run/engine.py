"""The engine: runs one bot's pipeline for one user message, writing into its `Answer`.

Steps are typed objects from `format`; each runs with a `Slot`, the place its visible output
goes (nowhere for hidden steps), and a `Scope`, what its templates see (`scope`). A sequence
hands its slot to its last step; an explicit `show` opens a new slot. Steps that run side by
side (parallel branches, map items, repeated samples) are `branches`'s; a call step's tries are
`calls`'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

from bots.errors import RunError, StepFailed
from bots.run import branches, conversation, sampling
from bots.run.answer import Ending, Part
from bots.run.calls import Calls
from bots.run.context import Context
from bots.run.delivery import Delivery
from bots.run.scope import HIDDEN, Scope, Slot
from bots.run.trace import TraceEntry, inside
from bots.spec import controls
from bots.spec.filters import shorten
from bots.spec.format import (
    CallStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouteStep,
    StepBase,
    TextStep,
    ids_in,
)
from bots.spec.templates import LOOP_VARIABLES

log = logging.getLogger("bots.engine")  # the name in the log, as creators grep it


@dataclass
class Run:
    """One user message being answered by one bot: the walk of its steps, in its context."""

    ctx: Context
    calls: Calls = field(init=False)
    variables: dict[str, Any] = field(init=False)  # what the top-level steps' templates see
    failure: str | None = None  # why the pipeline stopped, fit for logs
    files: dict[str, list[fp.Attachment]] = field(default_factory=dict)  # per step id
    routes: dict[str, list[str]] = field(default_factory=dict)  # route path -> cases taken

    def __post_init__(self) -> None:
        ctx = self.ctx
        self.calls = Calls(ctx)
        given = ctx.request.query[-1].parameters if ctx.request.query else {}
        params, notes = controls.values(ctx.plan.spec.controls, given)
        for note in notes:  # a value the user set that its control does not allow
            ctx.trace.append(TraceEntry("params", "param", None, 0.0, 0, note))
        self.variables = conversation.template_variables(ctx.request, params)
        # every id is defined from the start ("" until its step runs): the loader has checked
        # the order, and steps in routes not taken or loops not yet run read as empty
        ids = list(ids_in(ctx.plan.spec.steps))
        self.variables.update(dict.fromkeys(ids, ""))
        self.variables["files"] = {step_id: [] for step_id in ids}  # and no files yet

    @property
    def trace(self) -> list[TraceEntry]:
        return self.ctx.trace

    async def execute(self) -> None:
        """Runs the pipeline into the answer, then ends the answer whatever happened."""
        ctx = self.ctx
        top = Slot(ctx.answer, "stream")
        error: str | None = None
        error_type = None
        try:
            async with asyncio.timeout_at(ctx.deadline):
                await self.sequence(ctx.plan.spec.steps, top, Scope(self.variables, self.files))
        except RunError as e:
            error, self.failure = str(e), e.log_reason
            error_type = e.error_type if isinstance(e, StepFailed) else None
        except TimeoutError:
            seconds = ctx.reply_seconds
            error = (
                f"The reply ran out of time after {seconds:g} seconds (Poe allows 10 minutes), "
                "so it stopped here."
            )
            self.failure = f"out of time after {seconds:g} s"
        except Exception:
            log.exception("bot %s: unexpected error in the pipeline", ctx.plan.id)
            error = "Something went wrong inside this bot's pipeline; it has been logged."
            self.failure = "unexpected error (logged above)"
        finally:
            top.close()
            ending = Ending(error, error_type, self.calls.records, spent=ctx.guard.calls > 0)
            ctx.answer.finish(ending)

    def summary(self, seconds: float, delivery: Delivery) -> dict[str, Any]:
        """What happened, for the per-message log line and the message's span: identifiers,
        counts and the engine's own words (never the user's text, a prompt, an answer or a
        key)."""
        ctx = self.ctx
        ending = ctx.answer.ending
        outcome = "cancelled" if ending is None else "failed" if ending.error else "done"
        fields: dict[str, Any] = {
            "event": "reply",
            "bot": ctx.plan.id,
            "message_id": ctx.request.message_id,
            "conversation_id": ctx.request.conversation_id,
            "outcome": outcome,
            "seconds": round(seconds, 3),
            "calls": ctx.guard.calls,
            "calls_declared": ctx.plan.cost.total,
            "events": delivery.events,
            "characters": delivery.allowance.chars,
        }
        if delivery.cut:
            fields["cut"] = True  # at Poe's limit of 100,000 characters
        if self.failure:
            fields["failure"] = self.failure
        if ending is not None and ending.error_type:
            fields["error_type"] = ending.error_type
        if self.calls.failures:
            fields["failed_calls"] = self.calls.failures
        return fields

    def unexpected(self, step: StepBase, error: Exception) -> StepFailed:
        """A step that raised what no step should: logged whole for the creator, and a step
        failure like any other for the user (its `on_error` decides)."""
        where = f"bot {self.ctx.plan.id}: {step.path}"
        log.error("%s: unexpected %s inside the step", where, type(error).__name__, exc_info=error)
        return StepFailed(
            f"{step.path} failed unexpectedly ({type(error).__name__}); it has been logged",
            log_reason=f"{step.path}: unexpected {type(error).__name__} (logged above)",
        )

    def failed(self, entry: TraceEntry, error: StepFailed, part: Part | None, *, fail: bool) -> str:
        """A step (or one sample of it) that failed: its trace entry says so; the failure
        goes on up when `fail` (its `on_error` is fail, or a race needs every branch to
        succeed or fail cleanly), else its part notes it and its output is ""."""
        entry.outcome = f"failed: {error}"
        entry.facts["failure"] = error.log_reason
        if fail:
            raise error
        if part is not None:
            part.note(str(error))
        return ""

    # --- structure -------------------------------------------------------------------------

    async def sequence(self, steps: Sequence[StepBase], slot: Slot, scope: Scope) -> Any:
        value: Any = ""
        for i, step in enumerate(steps):
            value = await self.step(step, slot if i == len(steps) - 1 else HIDDEN, scope)
        return value

    async def step(
        self, step: StepBase, inherited: Slot, scope: Scope, *, strict: bool = False
    ) -> Any:
        """Runs any step: its `show`, `when` and `on_error`, and records its output."""
        slot = Slot(self.ctx.answer, step.show) if step.show else inherited
        path = step.path + scope.instance
        entry = TraceEntry(path, step.kind, getattr(step, "bot", None), 0.0, 0, "ok")
        if step.id:
            entry.facts["id"] = step.id
        self.trace.append(entry)
        started, calls_before = time.monotonic(), self.calls.made
        try:
            when = step.template("when")
            if when is not None:
                entry.facts["when"] = when.is_true(scope.variables)
            if entry.facts.get("when") is False:
                entry.outcome = "skipped"
                # a skipped step keeps its output ("" at first; in a loop, the last round's)
                return scope.variables.get(step.id, "") if step.id else ""
            with inside(entry):
                value: Any = await self._dispatch(step, slot, scope, entry)
        except StepFailed as e:
            value = self.failed(entry, e, slot.part(), fail=strict or step.on_error == "fail")
        except asyncio.CancelledError:
            entry.outcome = "cancelled"
            raise
        except RunError:
            raise  # the whole reply stops (a call past the budget)
        except Exception as e:  # anything else inside the step (a filter on hostile text...)
            failure = self.unexpected(step, e)
            value = self.failed(entry, failure, slot.part(), fail=strict or step.on_error == "fail")
        finally:
            if slot is not inherited:
                slot.close()
            entry.seconds = time.monotonic() - started
        if step.id:
            scope.variables[step.id] = value
            files = self.calls.files_under(step.path, scope.instance, since=calls_before)
            scope.files[step.id] = files
            scope.variables["files"][step.id] = [conversation.describe(f) for f in files]
        return value

    async def _dispatch(self, step: StepBase, slot: Slot, scope: Scope, entry: TraceEntry) -> Any:
        if isinstance(step, CallStep):
            if step.repeat:
                return await sampling.samples(self, step, slot, scope, entry)
            part = slot.part()
            return await self.calls.call(step, part, scope.variables, scope.files, scope.instance)
        if isinstance(step, TextStep):
            text = _render(step, "text", scope)
            part = slot.part()
            if part is not None:
                part.replace(text)
            return text
        if isinstance(step, ParallelStep):
            if step.wait == "all":
                return await branches.fan_out(self, step, slot, scope)
            needed = 1 if step.wait == "first" else step.wait
            return await branches.first(self, step, slot, scope, needed)
        if isinstance(step, RouteStep):
            return await self.route(step, slot, scope, entry)
        if isinstance(step, MapStep):
            return await branches.map_items(self, step, slot, scope, entry)
        assert isinstance(step, LoopStep)
        return await self.loop(step, slot, scope)

    async def route(self, step: RouteStep, slot: Slot, scope: Scope, entry: TraceEntry) -> Any:
        chosen = _render(step, "route", scope)
        key = _match(chosen, step.cases)
        case = step.cases[key] if key is not None else step.default
        name = key if key is not None else ("default" if case is not None else NO_CASE)
        self.routes.setdefault(step.path, []).append(name)
        entry.detail = f"compared {shorten(chosen, 60)!r}: took {name}"
        entry.facts["case"], entry.content["value"] = name, chosen
        if case is None:
            log.info(
                "bot %s: %s: no case matched and there is no default", self.ctx.plan.id, step.path
            )
            return ""
        return await self.sequence(case, slot, scope)

    async def loop(self, step: LoopStep, slot: Slot, scope: Scope) -> Any:
        variables = scope.variables
        saved = {name: variables.get(name) for name in LOOP_VARIABLES}
        value: Any = ""
        try:
            rounds = step.loop.bound
            if step.loop.slider is not None:  # the user's choice, within the slider's range
                rounds = min(rounds, int(variables["params"][step.loop.slider]))
            until = step.template("until")
            for iteration in range(1, rounds + 1):
                variables["iteration"] = iteration
                path = step.path + scope.instance
                entry = TraceEntry(path, "round", None, 0.0, 0, f"round {iteration}")
                started = time.monotonic()
                with inside(entry):
                    value = await self.sequence(step.loop.steps, slot, scope)
                done = until is not None and until.is_true(variables)
                entry.seconds = time.monotonic() - started
                entry.facts["round"] = iteration
                if until is not None:
                    entry.facts["until"] = done
                    entry.detail = f"until: {str(done).lower()}, " + (
                        "so it stops"
                        if done
                        else "and that was the last round"
                        if iteration == rounds
                        else "so another round"
                    )
                self.trace.append(entry)
                if done:
                    break
        finally:
            variables.update(saved)
        return value


def _render(step: StepBase, name: str, scope: Scope) -> str:
    template = step.template(name)
    return template.render(scope.variables) if template is not None else ""


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
