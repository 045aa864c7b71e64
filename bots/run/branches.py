"""Steps that run side by side: the branches of a `parallel` (all of them, the first to answer,
or the first k) and the items of a `map` (a call's samples are `sampling`'s).

Each runs in a TaskGroup, so a failure or a cancelled reply cancels every branch and closes
every upstream stream; a branch that is no longer needed (a race is won, k have answered) is
cancelled the same way.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from bots.errors import RunError, StepFailed
from bots.run.answer import Part
from bots.run.calls import Calls
from bots.run.context import Context
from bots.run.scope import HIDDEN, Scope, Slot, slots
from bots.run.trace import TraceEntry
from bots.spec.filters import items_of, shorten
from bots.spec.format import MapStep, ParallelStep, StepBase, branch_key
from bots.spec.templates import Branches


class Runner(Protocol):
    """What these steps need of the run (the engine's `Run`)."""

    ctx: Context
    calls: Calls

    async def step(
        self, step: StepBase, inherited: Slot, scope: Scope, *, strict: bool = False
    ) -> Any: ...

    async def sequence(self, steps: list[Any], slot: Slot, scope: Scope) -> Any: ...

    def failed(
        self, entry: TraceEntry, error: StepFailed, part: Part | None, *, fail: bool
    ) -> str: ...


def _slots(run: Runner, slot: Slot, headings: list[str], mode: str | None = None) -> list[Slot]:
    if slot.answer is None:
        return [HIDDEN] * len(headings)
    return slots(run.ctx.answer, mode or slot.mode, headings)


async def fan_out(run: Runner, step: ParallelStep, slot: Slot, scope: Scope) -> Branches:
    """`wait: all`: every branch; the output maps each branch's name to its answer."""
    names = [branch_key(branch, i) for i, branch in enumerate(step.parallel)]
    branch_slots = _slots(run, slot, names)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(run.step(branch, branch_slots[i], scope))
                for i, branch in enumerate(step.parallel)
            ]
    except BaseExceptionGroup as group_error:
        raise first_run_error(group_error) from None
    finally:
        for branch_slot in branch_slots:
            branch_slot.close()
    return Branches((names[i], task.result()) for i, task in enumerate(tasks))


async def first(run: Runner, step: ParallelStep, slot: Slot, scope: Scope, needed: int) -> Any:
    """`wait: first` or `wait: k`: done when `needed` branches have succeeded; the others are
    cancelled. `first` gives the winner's answer; k gives the mapping of the branches that
    finished, in branch order. Unless shown as sections, answers appear when they are known."""
    mode = "sections" if slot.mode == "sections" else "final"
    names = [branch_key(branch, i) for i, branch in enumerate(step.parallel)]
    branch_slots = _slots(run, slot, names, mode)
    finished: dict[int, Any] = {}
    failures: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def runner(i: int, branch: StepBase) -> None:
        try:
            value = await run.step(branch, branch_slots[i], scope, strict=True)
        except StepFailed as e:
            failures.append(str(e))
            return
        if len(finished) < needed:
            finished[i] = value
            branch_slots[i].close()
            if len(finished) == needed:
                for task in tasks:
                    if task is not asyncio.current_task():
                        task.cancel()

    try:
        async with asyncio.TaskGroup() as group:
            tasks += [group.create_task(runner(i, b)) for i, b in enumerate(step.parallel)]
    except BaseExceptionGroup as group_error:
        raise first_run_error(group_error) from None
    if len(finished) < needed:
        what = (
            "every branch of the race failed"
            if step.wait == "first"
            else (f"only {len(finished)} of the {needed} branches needed succeeded")
        )
        raise StepFailed(f"{what}: " + "; ".join(failures), log_reason=f"{step.path}: {what}")
    winners = ", ".join(names[i] for i in sorted(finished))
    for i, branch_slot in enumerate(branch_slots):
        part = branch_slot.part() if mode == "sections" and i not in finished else None
        if part is not None and tasks[i].cancelled():
            part.note(f"stopped: {winners} answered first")
    if step.wait == "first":
        return next(iter(finished.values()))
    return Branches((names[i], finished[i]) for i in sorted(finished))


async def map_items(
    run: Runner, step: MapStep, slot: Slot, scope: Scope, entry: TraceEntry
) -> list[Any]:
    """`map`: the steps once per item (at most `max_items`), concurrently (at most
    `concurrency` at once); the output lists each item's answer, in item order."""
    template = step.template("map")
    assert template is not None
    try:
        items = items_of(template.value(scope.variables))
    except ValueError as e:
        raise StepFailed(f"{step.path}: map: {e}") from None
    dropped = len(items) - step.max_items
    items = items[: step.max_items]
    entry.facts.update(items=len(items), dropped=max(0, dropped))
    entry.detail = f"{len(items)} item{'s' if len(items) != 1 else ''}" + (
        f"; {dropped} more dropped (max_items {step.max_items})" if dropped > 0 else ""
    )
    item_slots = _slots(run, slot, [shorten(item, 70) for item in items])
    limit = asyncio.Semaphore(step.concurrency or max(1, len(items)))

    async def one(index: int, item: Any) -> Any:
        async with limit:
            child = scope.child(index, {step.as_: item, "index": index})
            return await run.sequence(step.steps, item_slots[index - 1], child)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(i, item)) for i, item in enumerate(items, 1)]
    except BaseExceptionGroup as group_error:
        raise first_run_error(group_error) from None
    finally:
        for item_slot in item_slots:
            item_slot.close()
    return [task.result() for task in tasks]


def sample_slots(run: Runner, slot: Slot, bot: str, numbers: range) -> list[Slot]:
    """The slots of a step's samples (`repeat`), one a sample, headed "<bot> #k"."""
    return _slots(run, slot, [f"{bot} #{k}" for k in numbers])


def first_run_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to surface from a failed TaskGroup: the first RunError, else the group."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = first_run_error(error)
        if isinstance(error, RunError):
            return error
    return group
