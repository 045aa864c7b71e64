"""A bot's pipeline as the page draws it: each step a box (named by its id, else its kind and
bot), a sequence a column, the branches of a parallel, route, map or loop side by side. Each
box carries its step's place, so the page lights up the steps its run's trace says are running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bots.spec.format import (
    CallStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouteStep,
    Sampling,
    StepBase,
    branch_key,
)
from bots.spec.loader import BotPlan


def outline(plan: BotPlan) -> dict[str, Any]:
    """The bot's steps as nested boxes, with its worst case."""
    return {"bot": plan.id, "worst_case": plan.cost.total, "steps": _sequence(plan.spec.steps)}


def _sequence(steps: Sequence[StepBase]) -> list[dict[str, Any]]:
    return [_box(step) for step in steps]


def _box(step: StepBase) -> dict[str, Any]:
    notes = [f"when {step.when}"] if step.when else []
    if step.show:
        notes.append(f"shows {step.show}")
    box: dict[str, Any] = {"path": step.path, "id": step.id, "kind": step.kind, "notes": notes}
    branches: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(step, CallStep):
        box["bot"] = step.bot
        if step.fallback:
            notes.append(f"fallback {', '.join(step.fallback)}")
        if step.retries:
            notes.append(f"{1 + step.retries} tries")
        if isinstance(step.repeat, Sampling):
            notes.append(f"waves of {step.repeat.wave} up to {step.repeat.max}")
        elif step.repeat:
            notes.append(f"{step.repeat} samples")
    elif isinstance(step, ParallelStep):
        notes.append(f"wait {step.wait}")
        branches = [(branch_key(b, i), [_box(b)]) for i, b in enumerate(step.parallel)]
    elif isinstance(step, RouteStep):
        notes.append(f"on {step.route}")
        branches = [(value, _sequence(case)) for value, case in step.cases.items()]
        if step.default:
            branches.append(("default", _sequence(step.default)))
    elif isinstance(step, MapStep):
        notes.append(f"each {step.as_} of {step.map}, up to {step.max_items}")
        branches = [("each item", _sequence(step.steps))]
    elif isinstance(step, LoopStep):
        until = f", until {step.loop.until}" if step.loop.until else ""
        notes.append(f"up to {step.loop.max} rounds{until}")
        branches = [("each round", _sequence(step.loop.steps))]
    box["branches"] = [{"name": name, "steps": steps} for name, steps in branches]
    return box
