"""The call budget: the static worst case of a pipeline, and the run-time guard that enforces it.

The worst case is exact. A sequence adds, a parallel adds its branches (a `wait: first` race
starts them all, as does `wait: k`), a route takes the most expensive case, a loop multiplies by
`max`, a map by `max_items`, a step with `when` counts as if it runs, and a call counts
(1 + retries) tries for its bot and for each fallback bot, because every try is a call Poe
counts, times `repeat` when it repeats (for waves that stop early, their `max`). Per
dependency bot, the figure is the most calls one run can make to it (what the bot declares as
`server_bot_dependencies`); the total is the most calls one run can make, which is what
`call_budget` bounds.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from bots.errors import BudgetExceeded
from bots.spec.format import CallStep, LoopStep, MapStep, ParallelStep, RouteStep, StepBase

log = logging.getLogger("bots.budget")  # the name in the log, as creators grep it


@dataclass
class Cost:
    """Worst-case calls of a piece of pipeline."""

    total: int = 0
    per_bot: Counter[str] = field(default_factory=Counter)
    # The calls making up `total` on the worst path: (step path, bot, calls).
    parts: list[tuple[str, str, int]] = field(default_factory=list)

    def then(self, other: Cost) -> Cost:
        """Both, one after (or beside) the other."""
        return Cost(
            self.total + other.total, self.per_bot + other.per_bot, self.parts + other.parts
        )

    def either(self, other: Cost) -> Cost:
        """One or the other, whichever costs more."""
        worst = self if self.total >= other.total else other
        return Cost(worst.total, self.per_bot | other.per_bot, list(worst.parts))

    def times(self, n: int) -> Cost:
        return Cost(
            self.total * n,
            Counter({b: c * n for b, c in self.per_bot.items()}),
            [(p, b, c * n) for p, b, c in self.parts],
        )

    def describe(self) -> str:
        """e.g. 'GPT-5 x1, Gemini-2.5-Pro x2'."""
        return ", ".join(f"{bot} x{n}" for bot, n in self.per_bot.items())


def step_cost(step: StepBase) -> Cost:
    if isinstance(step, CallStep):
        tries = 1 + step.retries
        cost = Cost()
        for bot in step.bots:
            cost = cost.then(Cost(tries, Counter({bot: tries}), [(step.path, bot, tries)]))
        return cost.times(step.samples)  # waves that stop early: their ceiling
    if isinstance(step, ParallelStep):
        return sequence_cost(step.parallel)
    if isinstance(step, RouteStep):
        cost = Cost()  # when no case matches and there is no default, nothing runs
        for case in [*step.cases.values(), step.default or []]:
            cost = cost.either(sequence_cost(case))
        return cost
    if isinstance(step, LoopStep):
        return sequence_cost(step.loop.steps).times(step.loop.bound)
    if isinstance(step, MapStep):
        return sequence_cost(step.steps).times(step.max_items)
    return Cost()


def sequence_cost(steps: Sequence[StepBase]) -> Cost:
    cost = Cost()
    for step in steps:
        cost = cost.then(step_cost(step))
    return cost


def largest(steps: Sequence[StepBase], most: int = 3) -> list[str]:
    """The steps that cost the most, dearest first, each with what makes its count (a fan-out's
    width, a map's max_items, a loop's rounds, retries, fallbacks, samples)."""
    found = []
    for step in steps:
        total = step_cost(step).total
        if total:
            found.append((total, f"{step.id or step.path} ({_shape(step)}: {total})"))
    found.sort(key=lambda item: -item[0])
    return [text for _, text in found[:most]]


def _shape(step: StepBase) -> str:
    if isinstance(step, CallStep):
        tries = [f"{1 + step.retries} tries"] if step.retries else []
        bots = [f"{len(step.bots)} bots"] if step.fallback else []
        samples = [f"{step.samples} samples"] if step.repeat else []
        return " x ".join([*samples, *tries, *bots]) or "one call"
    if isinstance(step, ParallelStep):
        return f"a parallel of {len(step.parallel)} branches"
    if isinstance(step, MapStep):
        return f"a map of up to {step.max_items} items x {sequence_cost(step.steps).total} calls"
    if isinstance(step, LoopStep):
        inner = sequence_cost(step.loop.steps).total
        return f"a loop of up to {step.loop.bound} rounds x {inner} calls"
    if isinstance(step, RouteStep):
        return "a route, by its dearest case"
    return step.kind


class CallGuard:
    """Counts one reply's calls and refuses any beyond the declared worst case.

    By construction the engine never needs more; reaching the limit means a bug, so it is logged
    as one and the reply stops with a clear message instead of making a call Poe would refuse.
    """

    def __init__(self, declared: Counter[str], total: int) -> None:
        self.declared = declared
        self.total = total
        self.used: Counter[str] = Counter()

    def acquire(self, bot: str) -> None:
        if self.used[bot] >= self.declared[bot] or sum(self.used.values()) >= self.total:
            log.error(
                "BUG: call budget guard refused a call to %s (used %s of declared %s, total %d/%d)",
                bot,
                self.used[bot],
                self.declared[bot],
                sum(self.used.values()),
                self.total,
            )
            raise BudgetExceeded(
                f"this bot tried to call {bot} more often than it declared to Poe; the reply "
                "stopped here (a bug in the pipeline engine, which has been logged)"
            )
        self.used[bot] += 1

    @property
    def calls(self) -> int:
        return sum(self.used.values())
