"""The static worst case, against an independent brute-force count; the run-time guard."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bots.errors import BudgetExceeded
from bots.spec import loader
from bots.spec.budget import CallGuard
from standin.poe import Behavior
from standin.served import serve_pipelines

BOTS = ["A", "B", "C", "D"]
SLIDER_MAX = 2
SLIDER_BOUND = "{{ params.rounds }}"  # a loop whose rounds the user sets, up to SLIDER_MAX
CONTROLS = [
    {"slider": "rounds", "label": "Rounds", "min": 0, "max": SLIDER_MAX, "default": SLIDER_MAX}
]


def steps_strategy(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    call = st.builds(
        lambda bot, retries, fallback, when, repeat: {
            "bot": bot,
            "retries": retries,
            "fallback": fallback,
            **({"when": "{{ message }}"} if when else {}),
            **({"repeat": repeat} if repeat else {}),
        },
        st.sampled_from(BOTS),
        st.integers(0, 2),
        st.lists(st.sampled_from(BOTS), max_size=2),
        st.booleans(),
        st.one_of(
            st.none(),
            st.integers(2, 3),
            st.builds(  # waves that stop once answers agree: the worst case is their max
                lambda most, wave, agree: {"max": most, "wave": min(wave, most), "agree": agree},
                st.integers(2, 4),
                st.integers(1, 3),
                st.just(2),
            ),
        ),
    )
    text = st.just({"text": "hi"})
    if depth == 0:
        leaf = st.one_of(call, call, text)
        return st.lists(leaf, min_size=1, max_size=3)
    inner = steps_strategy(depth - 1)
    parallel = st.builds(
        lambda branches, wait: {
            "parallel": [dict(b) for b in branches],
            "wait": wait if isinstance(wait, str) else min(wait, len(branches)),
        },
        st.lists(st.one_of(call, text), min_size=1, max_size=3),
        st.sampled_from(["all", "first", 1, 2]),
    )
    mapped = st.builds(
        lambda most, body: {"map": "{{ message | lines }}", "max_items": most, "steps": body},
        st.integers(1, 3),
        inner,
    )
    route = st.builds(
        lambda cases, default: {
            "route": "{{ message }}",
            "cases": {f"c{i}": case for i, case in enumerate(cases)},
            **({"default": default} if default else {}),
        },
        st.lists(inner, min_size=1, max_size=3),
        st.one_of(st.none(), inner),
    )
    loop = st.builds(
        lambda max_, body: {"loop": {"max": max_, "steps": body}},
        st.one_of(st.integers(1, 3), st.just(SLIDER_BOUND)),
        inner,
    )
    return st.lists(st.one_of(call, text, parallel, route, loop, mapped), min_size=1, max_size=3)


def name_branches(steps: list[dict[str, Any]], counter: itertools.count[int]) -> None:
    """Gives every parallel branch a unique id (ids must be unique within a bot)."""
    for step in steps:
        if "parallel" in step:
            for branch in step["parallel"]:
                branch["id"] = f"b{next(counter)}"
        for inner in [
            *step.get("cases", {}).values(),
            step.get("default") or [],
            step.get("loop", {}).get("steps", []),
            step.get("steps", []),  # a map's
        ]:
            name_branches(inner, counter)


def paths(steps: list[dict[str, Any]]) -> list[Counter[str]]:
    """Every possible run of these steps (each route choice), as calls per bot when every try
    fails (the worst case: all retries and fallbacks are used)."""
    runs: list[Counter[str]] = [Counter()]
    for step in steps:
        options = step_paths(step)
        runs = distinct([a + b for a, b in itertools.product(runs, options)])
    return runs


def distinct(runs: list[Counter[str]]) -> list[Counter[str]]:
    """The runs, each different count once (the search stays small; the maximum is kept)."""
    return [Counter(dict(k)) for k in {frozenset(run.items()): None for run in runs}]


def step_paths(step: dict[str, Any]) -> list[Counter[str]]:
    if "bot" in step:
        tries = 1 + step["retries"]
        calls: Counter[str] = Counter()
        for bot in [step["bot"], *step["fallback"]]:
            repeat = step.get("repeat", 1)
            calls[bot] += tries * (repeat["max"] if isinstance(repeat, dict) else repeat)
        return [calls]
    if "text" in step:
        return [Counter()]
    if "parallel" in step:
        return paths(step["parallel"])
    if "route" in step:
        options = [run for case in step["cases"].values() for run in paths(case)]
        options += paths(step["default"]) if "default" in step else [Counter()]
        return options
    if "map" in step:  # every item may take any path of the body
        body, rounds = paths(step["steps"]), step["max_items"]
    else:
        body, rounds = paths(step["loop"]["steps"]), step["loop"]["max"]
    runs: list[Counter[str]] = [Counter()]
    for _ in range(SLIDER_MAX if rounds == SLIDER_BOUND else rounds):
        runs = distinct([a + b for a, b in itertools.product(runs, body)])
    return runs


@settings(max_examples=150, deadline=None)
@given(steps_strategy(2))
def test_worst_case_matches_an_independent_count(steps: list[dict[str, Any]]) -> None:
    name_branches(steps, itertools.count())
    bot = {"controls": CONTROLS, "steps": steps}
    text = yaml.safe_dump({"version": 1, "call_budget": 100, "bots": {"x": bot}})
    runs = paths(steps)
    expected_total = max(sum(run.values()) for run in runs)
    expected_per_bot = {bot: max(run[bot] for run in runs) for bot in BOTS}
    expected_per_bot = {bot: n for bot, n in expected_per_bot.items() if n}
    if expected_total > 100:
        with pytest.raises(Exception, match="over call_budget 100"):
            loader.parse(text)
        return
    plan = loader.parse(text).bots["x"]
    assert plan.cost.total == expected_total
    assert plan.dependencies == expected_per_bot
    assert sum(calls for _, _, calls in plan.cost.parts) == expected_total


def test_guard_refuses_beyond_the_declared_count_per_bot() -> None:
    guard = CallGuard(Counter({"A": 2, "B": 1}), total=3)
    guard.acquire("A")
    guard.acquire("A")
    with pytest.raises(BudgetExceeded, match="tried to call A more often"):
        guard.acquire("A")
    guard.acquire("B")
    assert guard.calls == 3


def test_guard_refuses_undeclared_bots_and_the_total() -> None:
    guard = CallGuard(Counter({"A": 5}), total=2)
    with pytest.raises(BudgetExceeded):
        guard.acquire("Z")
    guard.acquire("A")
    guard.acquire("A")
    with pytest.raises(BudgetExceeded):
        guard.acquire("A")


BEHAVIORS = {
    "ok": Behavior(text="fine answer"),
    "fail": Behavior(error_at=0, error_text="down"),
    "hang": Behavior(text="stuck", hang_at=0),
}


def with_timeouts(steps: list[dict[str, Any]]) -> None:
    """A short timeout on every call, so hanging bots cost a fraction of a second."""
    for step in steps:
        if "bot" in step:
            step["timeout"] = 0.15
        for inner in [
            *step.get("cases", {}).values(),
            step.get("default") or [],
            step.get("loop", {}).get("steps", []),
            step.get("parallel", []),
            step.get("steps", []),
        ]:
            with_timeouts(inner)


@settings(max_examples=12, deadline=None)
@given(steps_strategy(1), st.lists(st.sampled_from(list(BEHAVIORS)), min_size=4, max_size=4))
def test_calls_seen_by_poe_never_exceed_the_declared_dependencies(
    steps: list[dict[str, Any]], behaviors: list[str]
) -> None:
    name_branches(steps, itertools.count())
    with_timeouts(steps)
    for step in steps:
        step.setdefault("on_error", "continue")
    pipeline = {
        "version": 1,
        "call_budget": 100,
        "bots": {"x": {"controls": CONTROLS, "steps": steps}},
    }
    if sequence_total(steps) > 100:
        return
    scripted = {bot: BEHAVIORS[kind] for bot, kind in zip(BOTS, behaviors, strict=True)}

    async def run() -> None:
        async with serve_pipelines(yaml.safe_dump(pipeline), scripted) as s:
            reply = await s.ask("x", "go")
            await s.standin.wait_until_idle(timeout=10)
            declared = s.config.bots["x"].dependencies
            total = s.config.bots["x"].cost.total
            assert reply.done
            assert not s.standin.refused
            for calls in s.standin.attempts.values():
                assert all(calls[bot] <= declared.get(bot, 0) for bot in calls), (calls, declared)
                assert sum(calls.values()) <= total

    asyncio.run(run())


def sequence_total(steps: list[dict[str, Any]]) -> int:
    return max(sum(run.values()) for run in paths(steps))
