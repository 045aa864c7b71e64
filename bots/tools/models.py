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

URL_VARIABLE = "POE_MODELS_URL"
"""Where the list is fetched from, when set (a mirror, or the stand-in in tests)."""
MAX_BYTES = BOUNDS.bytes  # what the kept file may hold, too
TIMEOUT = 30.0


def url() -> str:
    return os.environ.get(URL_VARIABLE) or catalog.POE_MODELS_URL


def fetch(source: str, today: datetime.date | None = None) -> CatalogFile:
    """Poe's list, as a catalog file of today; Unreachable saying why when it cannot be had."""
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
        raise Unreachable(f"cannot reach {source}: {e.__class__.__name__}") from None
    try:
        data = json_value(bytes(body))
    except Unreadable as e:
        raise Unreachable(f"{source} did not send JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise Unreachable(f"{source} did not send a list of models ({{'data': [...]}})")
    day = (today or datetime.date.today()).isoformat()
    try:
        return catalog.parsed({**data, "source": source, "fetched": day, "snapshot": False})
    except Unreadable as e:
        raise Unreachable(f"{source} sent models this project cannot read: {e}") from None


def keep(found: CatalogFile, path: Path) -> None:
    """Writes the catalog to `path`, whole or not at all, never over a file that is no catalog."""
    if path.exists():
        try:
            catalog.read(path)
        except ConfigError:
            raise UsageError(
                f"{path} exists and is not a catalog this tool wrote: move it away, then run "
                "python -m bots models again"
            ) from None
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(found.model_dump_json(indent=1, exclude_none=True) + "\n")
        partial.replace(path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


def refreshed(config_path: str, offline: bool) -> tuple[Catalog, str]:
    """The catalog to list, and a line saying which it is (fetched now, or why not)."""
    path = catalog.beside(config_path)
    if not offline:
        source = url()
        try:
            found = fetch(source)
        except Unreachable as e:
            at_hand = catalog.load(config_path)
            return at_hand, f"{e}; listing {at_hand.described()}"
        keep(found, path)
        kept = Catalog(str(path), found)
        return kept, f"fetched {len(found.data)} models from {source}; kept in {path}"
    at_hand = catalog.load(config_path)
    return at_hand, f"listing {at_hand.described()}"


def listing(models: list[Model]) -> list[str]:
    """One line per model: its name, owner, what it takes and makes, and its price per call."""
    width = max((len(m.id) for m in models), default=0)
    lines = []
    for m in models:
        arch = m.architecture
        takes = ",".join(arch.input_modalities or ["?"]) if arch else "?"
        makes = ",".join(arch.output_modalities or ["?"]) if arch else "?"
        price = m.pricing.per_call() if m.pricing else None
        cost = f"${price:.4f}/call" if price is not None else "no price given"
        lines.append(f"{m.id:<{width}}  {m.owned_by or '-':<12}  {takes} -> {makes:<12}  {cost}")
    return lines
