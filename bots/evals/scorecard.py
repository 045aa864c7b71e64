"""An eval's results, shown: a table for the terminal, and a self-contained HTML report with a
chart of quality (win rate against the baseline) against cost (calls per message).

The HTML is a Jinja2 template, `scorecard.html` (autoescaped: answers and names are the user's
text), with the chart drawn as inline SVG, so the file needs nothing else to open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def _record(row: dict[str, Any]) -> str:
    """Won/tied/lost, and the items the judge gave no clear verdict on."""
    record = f"{row['wins']}/{row['ties']}/{row['losses']}" if "wins" in row else ""
    unclear = row.get("unclear", 0)
    return f"{record} ({unclear} unclear)".lstrip() if unclear else record


def rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One row of display texts per candidate (the baseline last)."""
    out = []
    for name, row in summary["candidates"].items():
        interval = row.get("interval")
        win = "baseline" if row["baseline"] else _pct(row.get("win_rate"))
        out.append(
            {
                "name": name,
                "win": win,
                "interval": f"{_pct(interval[0])}-{_pct(interval[1])}" if interval else "",
                "record": _record(row),
                "score": _num(row.get("mean_score")),
                "calls": _num(row["mean_calls"]),
                "worst": str(row["worst_case_calls"]),
                "first": _num(row["mean_first_text_s"], 2, " s"),
                "done": _num(row["mean_done_s"], 2, " s"),
                "failures": f"{row['failures']}/{row['answered']}",
                "points": "-" if row["points"] is None else str(row["points"]),
            }
        )
    return out


COLUMNS = [
    ("name", "bot"),
    ("win", "win rate"),
    ("interval", "95% interval"),
    ("record", "won/tied/lost"),
    ("score", "rubric"),
    ("calls", "calls/msg"),
    ("worst", "worst case"),
    ("first", "first text"),
    ("done", "done"),
    ("failures", "failed"),
    ("points", "points"),
]


def table(summary: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    shown = rows(summary)
    widths = {key: max(len(title), *(len(r[key]) for r in shown)) for key, title in COLUMNS}
    lines = ["  ".join(title.ljust(widths[key]) for key, title in COLUMNS).rstrip()]
    lines += ["  ".join(r[key].ljust(widths[key]) for key, _ in COLUMNS).rstrip() for r in shown]
    judge = summary.get("judge_points")
    lines.append(
        f"{summary['items']} items; judge {summary['judge']}"
        + (f" ({judge} points)" if judge is not None else "")
        + f"; win rate against {summary['baseline']}, ties counting half"
    )
    return "\n".join(lines)


def _chart(summary: dict[str, Any]) -> dict[str, Any]:
    """Points of the quality-against-calls chart, in SVG coordinates."""
    width, height, left, bottom, top, right = 640, 360, 60, 40, 20, 20
    candidates = summary["candidates"]
    most = max([1.0, *(row["mean_calls"] or 0 for row in candidates.values())])
    span = most * 1.15

    def x(calls: float) -> float:
        return left + (width - left - right) * calls / span

    def y(rate: float) -> float:
        return top + (height - top - bottom) * (1 - rate)

    dots = []
    for name, row in candidates.items():
        rate = 0.5 if row["baseline"] else row.get("win_rate")
        if rate is None or row["mean_calls"] is None:
            continue
        low, high = row.get("interval") or (rate, rate)
        dots.append(
            {
                "name": name,
                "baseline": row["baseline"],
                "cx": x(row["mean_calls"]),
                "cy": y(rate),
                "low": y(low),
                "high": y(high),
            }
        )
    ticks = [{"y": y(r), "label": f"{int(r * 100)}%"} for r in (0, 0.25, 0.5, 0.75, 1)]
    steps = max(1, round(span / 5))
    xticks = [{"x": x(c), "label": str(c)} for c in range(0, int(span) + 1, steps)]
    return {
        "width": width,
        "height": height,
        "left": left,
        "bottom": height - bottom,
        "top": top,
        "right": width - right,
        "dots": dots,
        "ticks": ticks,
        "xticks": xticks,
    }


HTML = _ENV.from_string((Path(__file__).parent / "scorecard.html").read_text(encoding="utf-8"))


def html(summary: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """The self-contained report. `items`: each with `message` and `answers`, a list of
    (bot, its result on the item, its answer)."""
    return HTML.render(
        summary=summary,
        names=", ".join(summary["candidates"]),
        columns=COLUMNS,
        rows=rows(summary),
        chart=_chart(summary),
        items=items,
    )
