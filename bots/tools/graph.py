"""A bot's pipeline drawn as a Mermaid flowchart (`python -m bots graph BOT`)."""

from __future__ import annotations

from collections.abc import Sequence

from bots.spec.format import (
    CallStep,
    LoopStep,
    MapStep,
    ParallelStep,
    RouteStep,
    Sampling,
    StepBase,
    TextStep,
    branch_key,
)
from bots.spec.loader import BotPlan


def _safe(text: str) -> str:
    """Text that cannot end a Mermaid label early."""
    return text.replace('"', "#quot;").replace("\n", " ")


class _Drawing:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def node(self, label: str, shape: str = "[{}]") -> str:
        self.count += 1
        name = f"n{self.count}"
        safe = label.replace('"', "'")
        self.lines.append(f"    {name}{shape.format(chr(34) + safe + chr(34))}")
        return name

    def edge(self, sources: Sequence[str], target: str, label: str = "") -> None:
        arrow = f'-->|"{_safe(label)}"|' if label else "-->"
        for source in sources:
            self.lines.append(f"    {source} {arrow} {target}")

    def sequence(self, steps: Sequence[StepBase], sources: list[str], label: str = "") -> list[str]:
        for step in steps:
            ends = self.step(step, sources, label)
            if step.when:  # the path around it, taken when `when` is false
                join = self.node("", "(({}))")
                self.edge(ends, join)
                self.lines += [f'    {source} -.->|"skipped"| {join}' for source in sources]
                ends = [join]
            sources, label = ends, ""
        return sources

    def step(self, step: StepBase, sources: list[str], label: str) -> list[str]:
        title = f"{step.id}: " if step.id else ""
        extras = [f"when {step.when}"] if step.when else []
        if step.show:
            extras.append(f"show: {step.show}")
        suffix = "".join(f"<br/>{extra}" for extra in extras)
        if isinstance(step, CallStep):
            tries = f" x{1 + step.retries}" if step.retries else ""
            fallback = f"<br/>fallback: {', '.join(step.fallback)}" if step.fallback else ""
            repeat = ""
            if isinstance(step.repeat, Sampling):
                rule = step.repeat
                stop = f"{rule.agree} agree" if rule.agree else "until is true"
                repeat = f"<br/>repeat in waves of {rule.wave} up to {rule.max}; stop once {stop}"
            elif step.repeat:
                repeat = f"<br/>repeat {step.repeat}x at once"
            node = self.node(f"{title}{step.bot}{tries}{fallback}{repeat}{suffix}")
            self.edge(sources, node, label)
            return [node]
        if isinstance(step, TextStep):
            node = self.node(f"{title}text{suffix}", "[/{}/]")
            self.edge(sources, node, label)
            return [node]
        if isinstance(step, ParallelStep):
            fork = self.node(f"{title}parallel, wait {step.wait}{suffix}", "{{{{{}}}}}")
            self.edge(sources, fork, label)
            join = self.node("join", "(({}))")
            for i, branch in enumerate(step.parallel):
                self.edge(self.step(branch, [fork], branch_key(branch, i)), join)
            return [join]
        if isinstance(step, MapStep):
            each = f"{title}map {step.map} as {step.as_}<br/>up to {step.max_items} items"
            fork = self.node(f"{each}{suffix}", "[/{}\\]")
            self.edge(sources, fork, label)
            join = self.node("list of answers", "(({}))")
            self.edge(self.sequence(step.steps, [fork], "each item"), join)
            return [join]
        if isinstance(step, RouteStep):
            decide = self.node(f"{title}route {step.route}{suffix}", "{{{}}}")
            self.edge(sources, decide, label)
            ends: list[str] = []
            for value, case in step.cases.items():
                ends += self.sequence(case, [decide], value)
            ends += self.sequence(step.default, [decide], "default") if step.default else [decide]
            return ends
        assert isinstance(step, LoopStep)
        head = self.node(f"{title}loop up to {step.loop.max}x{suffix}", "[[{}]]")
        self.edge(sources, head, label)
        ends = self.sequence(step.loop.steps, [head])
        until = f"until {step.loop.until}" if step.loop.until else "next"
        self.lines.append(f'    {ends[-1]} -.->|"{_safe(until)}"| {head}')
        return ends


def mermaid(plan: BotPlan) -> str:
    """The bot's pipeline as a Mermaid `flowchart TD`."""
    drawing = _Drawing()
    start = drawing.node(f"/{plan.id}: user message", "([{}])")
    ends = drawing.sequence(plan.spec.steps, [start])
    done = drawing.node(f"reply ({plan.cost.total} calls at most)", "([{}])")
    drawing.edge(ends, done)
    return "\n".join(["flowchart TD", *drawing.lines]) + "\n"
