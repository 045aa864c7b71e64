"""`python -m bots models [WORDS]`: fetches Poe's model catalog, keeps it beside the pipelines
file (`poe-models.json`, with the day), and lists it, or the models matching every word.

The fetch is one GET of Poe's public list (no key, no points). When Poe cannot be reached the
catalog at hand is listed, and the message says which one and why. A file of that name that
is not a catalog is never overwritten: the creator is asked to move it.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import httpx

from bots.errors import ConfigError, Unreachable, Unreadable, UsageError
from bots.spec import catalog
from bots.spec.catalog import Catalog, CatalogFile, Model
from bots.spec.reading import BOUNDS, MiB, json_value
from bots.spec.writing import write_beside

URL_VARIABLE = "POE_MODELS_URL"
"""Where the list is fetched from, when set (a mirror, or the stand-in in tests)."""
MAX_BYTES = BOUNDS.bytes  # what the kept file may hold, too
TIMEOUT = 30.0


def url() -> str:
    return os.environ.get(URL_VARIABLE) or catalog.POE_MODELS_URL


def fetch(source: str, today: datetime.date | None = None) -> tuple[CatalogFile, list[str]]:
    """Poe's list, as a catalog file of today, and the entries left out (each with why);
    Unreachable saying why when it cannot be had."""
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client:
            with client.stream("GET", source, headers={"Accept": "application/json"}) as r:
                if r.status_code != 200:
                    raise Unreachable(f"{source} answered HTTP {r.status_code}")
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise Unreachable(f"{source} sent more than {MAX_BYTES // MiB} MiB")
    except httpx.HTTPError as e:
        why = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
        raise Unreachable(f"cannot reach {source} ({why[:200]})") from None
    try:
        data = json_value(bytes(body))
    except Unreadable as e:
        raise Unreachable(f"{source} did not send JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise Unreachable(f"{source} did not send a list of models ({{'data': [...]}})")
    models, skipped = catalog.usable(data["data"])
    if not models:
        raise Unreachable(f"{source} sent no model this project can read")
    day = (today or datetime.date.today()).isoformat()
    return CatalogFile(source=source, fetched=day, data=models), skipped


def keep(found: CatalogFile, path: Path) -> None:
    """Writes the catalog to `path`, whole or not at all, never over a file that is no catalog
    (nor through a link or a leftover file beside it: the new text goes to a fresh file)."""
    if path.exists() or path.is_symlink():
        try:
            catalog.read(path)
        except ConfigError:
            raise UsageError(
                f"{path} exists and is not a catalog this tool wrote: move it away, then run "
                "python -m bots models again"
            ) from None
    try:
        write_beside(path, found.model_dump_json(indent=1, exclude_none=True) + "\n")
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def refreshed(config_path: str, offline: bool) -> tuple[Catalog, str]:
    """The catalog to list, and a line saying which it is (fetched now, or why not)."""
    path = catalog.beside(config_path)
    if not offline:
        source = url()
        try:
            found, skipped = fetch(source)
        except Unreachable as e:
            at_hand = catalog.load(config_path)
            return at_hand, f"{e}; listing {at_hand.described()}"
        keep(found, path)
        said = f"fetched {len(found.data)} models from {source}; kept in {path}"
        if skipped:
            said += f"\nleft out {len(skipped)} this project cannot read: " + "; ".join(skipped[:5])
        return Catalog(str(path), found), said
    at_hand = catalog.load(config_path)
    return at_hand, f"listing {at_hand.described()}"


def listing(models: list[Model]) -> list[str]:
    """A header, then one line per model: its name, owner, what it takes and makes (? where
    the catalog does not say), and its price per call under the stated assumption."""
    tokens_in, tokens_out = catalog.ASSUMED_TOKENS

    def modalities(found: list[str] | None) -> str:
        return ",".join(found) if found else "?"

    rows = [
        (
            m.id,
            m.owned_by or "-",
            modalities(m.architecture.input_modalities if m.architecture else None),
            modalities(m.architecture.output_modalities if m.architecture else None),
            f"${price:.4f}"
            if m.pricing and (price := m.pricing.per_call()) is not None
            else "not given",
        )
        for m in models
    ]
    header = (
        "model",
        "owner",
        "takes",
        "makes",
        f"USD a call ({tokens_in:,} in, {tokens_out:,} out)",
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    return [
        "  ".join(f"{cell:<{width}}" for cell, width in zip(row[:4], widths, strict=True))
        + f"  {row[4]}"
        for row in [header, *rows]
    ]
