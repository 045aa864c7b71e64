"""Samples of one call step (`repeat`): N independent calls at once, or waves that stop as soon
as the answers are settled.

`repeat: N` asks N samples at once. `repeat: {max, wave, agree, key, until}` asks `wave`
samples at a time, up to `max`, and stops as soon as its rule holds: `agree` answers agree on
their `key` (what an answer says, e.g. its last line), or `until` is true of the answers so
far. The rule is looked at each time a sample answers, so a wave in flight when it holds is
cancelled at once, and its streams closed: no call is made past that moment (the calls it had
already made were counted by the guard, and the trace marks those samples cancelled). The
worst case declared to Poe is `max`, as for a loop. The output is the list of the answers
given, in sample order; with `on_error: continue` a failed sample answers "" (and never counts
towards agreement).

This is adaptive self-consistency (Aggarwal et al., "Let's Sample Step by Step", 2023; Li et
al., "Escape Sky-high Cost: Early-stopping Self-Consistency", 2024): an easy question settles
in its first wave, a hard one uses the samples it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections import ChainMap, Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bots.errors import StepFailed
from bots.run.branches import Runner, first_run_error, sample_slots
from bots.run.scope import Scope, Slot
from bots.run.trace import TraceEntry, inside
from bots.spec.filters import shorten
from bots.spec.format import CallStep, Sampling


async def samples(
    run: Runner, step: CallStep, slot: Slot, scope: Scope, entry: TraceEntry
) -> list[str]:
    """The step's samples, as its `repeat` says; the output lists their answers."""
    if isinstance(step.repeat, Sampling):
        return await _Waves(run, step, step.repeat, slot, scope, entry).take()
    count = step.samples
    slots = sample_slots(run, slot, step.bot, range(1, count + 1))
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(_sample(run, step, scope, k, slots[k - 1]))
                for k in range(1, count + 1)
            ]
    except BaseExceptionGroup as group_error:
        raise first_run_error(group_error) from None
    return [task.result() for task in tasks]


async def _sample(
    run: Runner,
    step: CallStep,
    scope: Scope,
    k: int,
    slot: Slot,
    said: Callable[[str], str] | None = None,
) -> str:
    """Sample `k`: one call of the step, in a trace entry of its own (which notes what the
    answer `said`, when that is asked)."""
    instance = f"{scope.instance}#{k}"
    entry = TraceEntry(f"{step.path}{instance}", "sample", step.bot, 0.0, 0, "ok")
    entry.facts["sample"] = k
    run.ctx.trace.append(entry)
    started = time.monotonic()
    part = slot.part()
    try:
        with inside(entry):
            answer = await run.calls.call(step, part, scope.variables, scope.files, instance)
        if said is not None and answer.strip():
            entry.content["key"] = key = said(answer)
            entry.detail = f"said {shorten(key, 40)!r}"
        return answer
    except StepFailed as e:
        return run.failed(entry, e, part, fail=step.on_error == "fail")
    except asyncio.CancelledError:
        entry.outcome = "cancelled"
        raise
    finally:
        entry.seconds = time.monotonic() - started
        slot.close()


@dataclass
class _Waves:
    """One step's sampling in waves: the answers so far, and whether the rule holds."""

    run: Runner
    step: CallStep
    rule: Sampling
    slot: Slot
    scope: Scope
    entry: TraceEntry
    answers: dict[int, str] = field(default_factory=dict)  # by sample number
    keys: Counter[str] = field(default_factory=Counter)
    stopped: str | None = None  # why sampling stopped, once it has

    async def take(self) -> list[str]:
        asked = wave = 0
        while asked < self.rule.max and self.stopped is None:
            wave += 1
            numbers = range(asked + 1, min(asked + self.rule.wave, self.rule.max) + 1)
            asked = numbers[-1]
            await self._wave(wave, numbers)
        why = self.stopped or f"reached the ceiling of {self.rule.max} samples"
        self.entry.facts.update(samples=asked, waves=wave, stopped=self._reason())
        self.entry.detail = f"{asked} samples in {wave} wave{'s' if wave != 1 else ''}: {why}"
        return [self.answers[k] for k in sorted(self.answers)]

    def _reason(self) -> str:
        """Why it stopped, in one word, for spans and tests: agreed, until or ceiling."""
        if self.stopped is None:
            return "ceiling"
        return "until" if self.stopped.startswith("until") else "agreed"

    async def _wave(self, number: int, samples: range) -> None:
        path = self.step.path + self.scope.instance
        wave = TraceEntry(path, "wave", self.step.bot, 0.0, 0, f"wave {number}")
        wave.facts.update(wave=number, samples=len(samples))
        self.run.ctx.trace.append(wave)
        started = time.monotonic()
        slots = sample_slots(self.run, self.slot, self.step.bot, samples)
        tasks: list[asyncio.Task[None]] = []

        said = self._key if self.rule.agree is not None else None

        async def sample(k: int, slot: Slot) -> None:
            answer = await _sample(self.run, self.step, self.scope, k, slot, said)
            self.answers[k] = answer
            if self.stopped is None and self._settled(answer):
                for task in tasks:  # the rest of the wave is not needed: cancelled at once
                    if task is not asyncio.current_task():
                        task.cancel()

        try:
            with inside(wave):
                async with asyncio.TaskGroup() as group:
                    tasks += [group.create_task(sample(k, slots[i])) for i, k in enumerate(samples)]
        except BaseExceptionGroup as group_error:
            raise first_run_error(group_error) from None
        finally:
            wave.seconds = time.monotonic() - started
        cancelled = sum(task.cancelled() for task in tasks)
        if cancelled:
            wave.facts["cancelled"] = cancelled
        wave.detail = f"{len(samples)} asked" + (f", {cancelled} cancelled" if cancelled else "")
        for i, slot in enumerate(slots):
            part = slot.part() if tasks[i].cancelled() else None
            if part is not None:
                part.note(f"stopped: {self.stopped}")

    def _settled(self, answer: str) -> bool:
        """Whether the rule holds now that `answer` is in (a failed sample's "" never counts
        towards agreement); sets `stopped` when it does."""
        rule = self.rule
        if rule.agree is not None and answer.strip():
            key = self._key(answer)
            self.keys[key] += 1
            if self.keys[key] >= rule.agree:
                self.stopped = f"{rule.agree} agreed on {shorten(key, 40)!r}"
                return True
        until = self.step.template("repeat.until")
        if until is not None:
            given = [self.answers[k] for k in sorted(self.answers)]
            if until.is_true(ChainMap({"answers": given}, self.scope.variables)):
                self.stopped = "until: true"
                return True
        return False

    def _key(self, answer: str) -> str:
        """What an answer says, compared trimmed and case-folded."""
        template = self.step.template("repeat.key")
        said = answer
        if template is not None:
            said = template.render(ChainMap({"answer": answer}, self.scope.variables))
        return said.strip().casefold()
