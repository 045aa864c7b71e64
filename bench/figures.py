"""Figures from samples: percentiles, medians, rounding for the JSON, and how often each section
of a reply changed."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank; q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else math.nan


def rnd(x: float | None, digits: int = 4) -> float | None:
    """Rounded for the JSON; NaN (no sample) becomes null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, digits)


def section_refreshes(
    snapshots: Sequence[tuple[float, str]], names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """For each `### name` section of a reply: how often what the user sees of it changed,
    from its first text until it reached its final text."""
    changes: dict[str, list[float]] = {name: [] for name in names}
    seen: dict[str, str] = {}
    for at, text in snapshots:
        pieces = re.split(r"(?m)^### (\S+)$", text)
        current = {pieces[i]: pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}
        for name in names:
            value = current.get(name, "")
            if value and value != seen.get(name, ""):
                changes[name].append(at)
            seen[name] = value
    out = {}
    for name, times in changes.items():
        span = times[-1] - times[0] if len(times) > 1 else math.nan
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        out[name] = {
            "changes": len(times),
            "per_s": (len(times) - 1) / span if span else math.nan,
            "longest_gap_s": max(gaps, default=math.nan),
        }
    return out
