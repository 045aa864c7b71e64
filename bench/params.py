"""What a run is made of: its sizes (`FULL`, `QUICK`), the stand-in's dependency bots and the
pipelines the server under test serves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Params:
    """Everything that sizes a run. `QUICK` is the same run, shrunk to a few seconds."""

    quick: bool = False
    # 1. engine overhead: one dependency, one-step pipeline vs passthrough bots
    dep_tokens: int = 500
    dep_gap: float = 0.001
    overhead_levels: tuple[tuple[int, int], ...] = ((1, 4), (50, 100))  # (concurrency, messages)
    overhead_rounds: int = 2  # each server measured this many times, alternating
    # 2. fan-out: three branches, first tokens at these times
    fan_first: tuple[float, float, float] = (0.5, 1.0, 1.5)
    fan_tokens: int = 20
    fan_gap: float = 0.01
    fan_samples: int = 3
    # 3. live merge: three long branches, shown as sections
    merge_tokens: int = 1000
    merge_gap: float = 0.002
    merge_first: float = 0.05
    merge_samples: int = 2
    # 4. scale: concurrent three-way fan-outs, a fresh server per level
    scale_levels: tuple[int, ...] = (50, 200, 500)
    scale_first: float = 0.25
    scale_tokens: int = 20
    scale_gap: float = 0.025
    scale_messages_per_chat: tuple[int, ...] = (2, 1, 1)  # per level: messages each chat sends
    profile_level: int = 200
    fresh_scale_servers: bool = True  # False: reuse one server (memory figures are rougher)
    # bounds
    chat_timeout: float = 60.0
    phase_seconds: float = 60.0  # no new message is started after this long in one phase
    run_seconds: float = 600.0  # the whole run


FULL = Params()
QUICK = Params(
    quick=True,
    dep_tokens=20,
    overhead_levels=((1, 2), (4, 8)),
    overhead_rounds=1,
    fan_first=(0.05, 0.1, 0.15),
    fan_tokens=5,
    fan_gap=0.005,
    fan_samples=1,
    merge_tokens=60,
    merge_gap=0.003,
    merge_first=0.02,
    merge_samples=1,
    scale_levels=(5, 10, 20),
    scale_first=0.05,
    scale_tokens=5,
    scale_gap=0.01,
    scale_messages_per_chat=(1, 1, 1),
    profile_level=10,
    fresh_scale_servers=False,
    chat_timeout=20.0,
    phase_seconds=10.0,
    run_seconds=60.0,
)

FAN_BOTS = ("Fast", "Mid", "Slow")
MERGE_BOTS = ("Long1", "Long2", "Long3")
SCALE_BOTS = ("ScaleA", "ScaleB", "ScaleC")


def behaviors(p: Params) -> dict[str, dict[str, Any]]:
    """The stand-in's dependency bots (as `standin.poe.Behavior` keyword arguments)."""

    def words(name: str, n: int) -> str:
        return " ".join(f"{name.lower()}{i}" for i in range(n))

    out: dict[str, dict[str, Any]] = {
        "Dep": {"tokens": p.dep_tokens, "token_gap": p.dep_gap},
    }
    for name, first in zip(FAN_BOTS, p.fan_first, strict=True):
        out[name] = {
            "text": words(name, p.fan_tokens),
            "first_token_delay": first,
            "token_gap": p.fan_gap,
        }
    for name in MERGE_BOTS:
        out[name] = {
            "tokens": p.merge_tokens,
            "first_token_delay": p.merge_first,
            "token_gap": p.merge_gap,
        }
    for name in SCALE_BOTS:
        out[name] = {
            "text": words(name, p.scale_tokens),
            "first_token_delay": p.scale_first,
            "token_gap": p.scale_gap,
        }
    return out


def pipelines_config() -> dict[str, Any]:
    """The pipelines the server under test serves (JSON is YAML, so `loader.parse` reads it)."""

    def three(bots: Sequence[str], show: str) -> dict[str, Any]:
        return {"steps": [{"parallel": [{"id": b.lower(), "bot": b} for b in bots], "show": show}]}

    return {
        "version": 1,
        "bots": {
            "one": {"steps": [{"bot": "Dep"}]},
            "fan_sections": three(FAN_BOTS, "sections"),
            "fan_stream": three(FAN_BOTS, "stream"),
            "fast_alone": {"steps": [{"bot": FAN_BOTS[0]}]},
            "slow_alone": {"steps": [{"bot": FAN_BOTS[-1]}]},
            "merge": three(MERGE_BOTS, "sections"),
            "scale": three(SCALE_BOTS, "sections"),
        },
    }


def access_key(bot_id: str) -> str:
    """The access key the server under test gets for one of its bots (32 characters)."""
    return f"bench-{bot_id}-access-key".ljust(32, "k")[:32]
