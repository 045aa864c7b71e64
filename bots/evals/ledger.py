"""An eval's results file (the ledger) and its report beside it: what is kept, and what is
never overwritten.

Every answer and verdict is saved the moment it is known, so the file holds paid results. So:
- `--out` names the results, which are JSON; the report is the same name with `.html`, so the
  two are always two files (an `--out` ending in `.html` is refused, with the name to use);
- a results file is read only when it is one (`version: 1`, and its parts of the right kinds);
  anything else there is left alone and the eval refuses to start;
- a report is written only over a report (it carries `REPORT_MARK`), or where none is;
- each save goes to a new temporary file beside it, then is renamed over: no other file is
  ever written, and a crash mid-save leaves the last good results.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bots.errors import Unreadable, UsageError
from bots.spec.reading import RESULTS, json_value
from bots.spec.writing import write_beside

REPORT_MARK = '<meta name="generator" content="poe-pipelines eval report">'
"""What every eval report carries in its head, so a later eval knows it may replace it."""
_PARTS = {"answers": dict, "judgements": dict, "points": dict, "summary": dict}


def results_and_report(out: str) -> tuple[Path, Path]:
    """The results file `--out` names and its report; raises UsageError when either name
    would overwrite what is not this eval's."""
    results = Path(out)
    if results.suffix.lower() in (".html", ".htm"):
        raise UsageError(
            f"--out {out}: --out names the results (JSON), and the report is written beside "
            f"them as .html; use --out {results.with_suffix('.json')}"
        )
    report = results.with_suffix(".html")
    if report.exists() and not _is_report(report):
        raise UsageError(
            f"{report} is not an eval's report, so it is not overwritten (the report goes "
            "beside --out, with .html); name another --out"
        )
    return results, report


def _is_report(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as file:
            return REPORT_MARK in file.read(4096)
    except OSError:
        return False


class Ledger:
    """What an eval has done so far, kept in its JSON file: each answer and each verdict,
    saved the moment it is known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = self._read() if path.exists() else {}
        self.answers: dict[str, dict[str, Any]] = dict(data.get("answers") or {})
        self.judgements: dict[str, dict[str, Any]] = dict(data.get("judgements") or {})
        self.points: dict[str, int] = dict(data.get("points") or {})
        self.summary: dict[str, Any] = dict(data.get("summary") or {})

    def _read(self) -> dict[str, Any]:
        """The results already in the file; never overwritten when they cannot be read as
        an eval's: they may hold paid answers, or be some other file."""
        path = self.path
        try:
            if path.is_dir():
                raise UsageError(f"{path} is a folder; --out names the results file")
            data = json_value(path.read_bytes(), RESULTS)
        except (OSError, Unreadable) as e:
            raise UsageError(
                f"{path} cannot be read as an eval's results ({e}); it is left as it is: move "
                "it, or name another file with --out"
            ) from None
        version = data.get("version") if isinstance(data, dict) else None
        if (
            type(version) is not int
            or version != 1
            or not all(isinstance(data.get(name, kind()), kind) for name, kind in _PARTS.items())
        ):
            raise UsageError(
                f"{path} is not an eval's results, so it is left as it is; name another "
                "file with --out"
            )
        return dict(data)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "version": 1,
            "summary": self.summary,
            "answers": self.answers,
            "judgements": self.judgements,
            "points": self.points,
        }
        text = json.dumps(data, indent=1, ensure_ascii=False)
        write_beside(self.path, text)
