"""Writing a file the tools made (an eval's results and report, the kept model catalog):
whole or not at all, and never into another file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_beside(path: Path, text: str) -> None:
    """Writes `text` to `path` through a new temporary file in the same folder, renamed over
    it: no other file is touched (a link or a leftover at any name is never written through),
    and a crash leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
