"""Poe's model catalog: which bots Poe lists publicly, what they take and make, and their prices.

Poe publishes its public models at `GET https://api.poe.com/v1/models` (no key). `python -m
bots models` keeps that list beside the pipelines file as `poe-models.json`, with the date it
was fetched; until then the snapshot shipped in this package stands in (built from Poe's
published docs, and said to be one). `validate` checks each call step against it (`problems`):
an unknown bot, files sent to a bot that takes only text, files expected from a bot that makes
only text. Private and community bots the public list lacks are named once under `known_bots:`
in the pipelines file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bots.errors import ConfigError, Problem, Unreadable
from bots.spec.document import Document, Loc, dotted
from bots.spec.loader import Config
from bots.spec.reading import json_value, read_source

POE_MODELS_URL = "https://api.poe.com/v1/models"
FILE_NAME = "poe-models.json"
SNAPSHOT = Path(__file__).with_name(FILE_NAME)
FILES = frozenset({"image", "video", "audio", "file"})
"""Modalities that are files: a bot taking (or making) none of them takes (or makes) text only."""
ASSUMED_TOKENS = (2_000, 1_000)
"""What one call is assumed to read and write, in tokens, to price a model priced per token."""


class _Open(BaseModel):
    """Poe adds fields as it goes: those this project does not read are kept out, not refused."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Architecture(_Open):
    input_modalities: list[str] | None = None
    output_modalities: list[str] | None = None


Price = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
"""USD; at most a million, a bound far above any price per token or request."""


class Pricing(_Open):
    """USD, as Poe gives it: per token (prompt, completion), per request, per image."""

    prompt: Price | None = None
    completion: Price | None = None
    request: Price | None = None
    image: Price | None = None

    def per_call(self) -> Decimal | None:
        """One call's price under ASSUMED_TOKENS, or None when nothing prices a call."""
        if self.prompt is None and self.completion is None and self.request is None:
            return None
        tokens_in, tokens_out = ASSUMED_TOKENS
        none = Decimal(0)
        return (
            (self.request or none)
            + (self.prompt or none) * tokens_in
            + (self.completion or none) * tokens_out
        )


class Model(_Open):
    """One entry of Poe's list."""

    id: Annotated[str, Field(min_length=1, max_length=200)]
    owned_by: str = ""
    description: str = ""
    architecture: Architecture | None = None
    pricing: Pricing | None = None

    def takes_files(self) -> bool | None:
        """Whether it takes any file (None: the catalog does not say)."""
        found = self.architecture and self.architecture.input_modalities
        return bool(FILES & set(found)) if found else None

    def makes_files(self) -> bool | None:
        found = self.architecture and self.architecture.output_modalities
        return bool(FILES & set(found)) if found else None


class CatalogFile(_Open):
    """poe-models.json: Poe's list (`data`, as Poe gives it) and where and when it came from."""

    source: str
    fetched: str = Field(description="The day it was fetched (or the snapshot built), ISO.")
    snapshot: bool = False
    note: str = ""
    data: Annotated[list[Model], Field(max_length=50_000)]


@dataclass(frozen=True)
class Catalog:
    """A catalog file, read: its models by name."""

    path: str
    file: CatalogFile

    @cached_property
    def models(self) -> dict[str, Model]:
        return {model.id: model for model in self.file.data}

    def described(self) -> str:
        """Which catalog this is, in a few words, for every message that relies on it."""
        if self.file.snapshot:
            return f"Poe's catalog (the snapshot shipped, of {self.file.fetched})"
        return f"Poe's catalog (fetched {self.file.fetched})"

    def closest(self, name: str) -> list[str]:
        lower = {model.lower(): model for model in self.models}
        found = difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.75)
        return [lower[f] for f in found]

    def search(self, words: Sequence[str]) -> list[Model]:
        """The models whose id, owner or description holds every word (any case)."""
        wanted = [w.lower() for w in words]

        def text(m: Model) -> str:
            return f"{m.id} {m.owned_by} {m.description}".lower()

        return [m for m in self.file.data if all(w in text(m) for w in wanted)]


def beside(config_path: str | Path) -> Path:
    """Where the catalog of a pipelines file is kept: beside it."""
    return Path(config_path).parent / FILE_NAME


def load(config_path: str | Path) -> Catalog:
    """The catalog kept beside the pipelines file, else the shipped snapshot; ConfigError when
    the file beside it cannot be used."""
    path = beside(config_path)
    return read(path if path.exists() else SNAPSHOT)


def read(path: Path) -> Catalog:
    """A catalog file; ConfigError saying how to replace it when it cannot be used."""
    name = str(path)
    fix = "move it away (or delete it), then run python -m bots models to fetch Poe's list"
    try:
        return Catalog(name, parsed(json_value(read_source(name))))
    except Unreadable as e:
        raise ConfigError([Problem(name, 1, 1, "", f"it is not a catalog: {e}; {fix}")]) from None
    except ConfigError as e:  # too big, or unreadable
        said = [Problem(name, 1, 1, "", f"{p.message}; {fix}") for p in e.problems]
        raise ConfigError(said) from None


def parsed(data: Any) -> CatalogFile:
    """A catalog file's content; Unreadable naming the first thing wrong in it."""
    if not isinstance(data, dict):
        raise Unreadable("expected a JSON object holding 'data': [the models]")
    try:
        return CatalogFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise Unreadable(f"{dotted(tuple(first['loc']))}: {first['msg']}") from None


def usable(models: list[Any]) -> tuple[list[Model], list[str]]:
    """The entries of Poe's list this project can read, and what is wrong with the others
    (one bad entry does not cost the creator the rest of the list)."""
    kept, skipped = [], []
    for i, entry in enumerate(models):
        try:
            kept.append(Model.model_validate(entry))
        except ValidationError as e:
            first = e.errors()[0]
            name = entry.get("id") if isinstance(entry, dict) else None
            where = dotted(tuple(first["loc"])) or "the entry"
            skipped.append(f"{name or f'data[{i}]'}: {where}: {first['msg']}")
    return kept, skipped


# --- the checks ------------------------------------------------------------------------------


def checked(path: str) -> tuple[Catalog | None, list[Problem]]:
    """The catalog beside the file (else the snapshot) and what it doubts about the file, as
    `validate` warns; a catalog file that cannot be used is itself the doubt (and no catalog)."""
    try:
        models = load(path)
    except ConfigError as unusable:
        return None, unusable.problems
    return models, problems(path, models)


def problems(path: str, catalog: Catalog) -> list[Problem]:
    """What the catalog says is wrong with a pipelines file's call steps, each at its place:
    an unknown bot (with did you mean), files sent to a bot that takes only text, files
    expected from a bot that makes only text. It reads the file as written, not as validated,
    so that these come out with the file's other mistakes, all at once."""
    try:
        document = Document(read_source(path))
    except ConfigError:
        return []  # an unreadable file: the loader says so
    data = document.data if isinstance(document.data, dict) else {}
    known = data.get("known_bots")
    known = {name for name in known if isinstance(name, str)} if isinstance(known, list) else set()
    bots = data.get("bots")
    models = catalog.models
    found: list[Problem] = []

    def add(loc: Loc, message: str) -> None:
        found.append(Problem(path, *document.position(loc), dotted(loc), message))

    for bot_id, bot in bots.items() if isinstance(bots, dict) else []:
        steps = bot.get("steps") if isinstance(bot, dict) else None
        calls = list(_calls(("bots", bot_id, "steps"), steps))
        by_id = {step["id"]: names for _, step, names in calls if isinstance(step.get("id"), str)}
        for loc, step, names in calls:
            for where, name in names:
                if name not in models and name not in known:
                    add(where, _unknown(name, catalog))
            sources = _sources(step.get("attachments", False))
            for i, (_, name) in enumerate(names):
                if sources and name in models and models[name].takes_files() is False:
                    role, other = ("its bot", "a bot") if i == 0 else ("its fallback", "a fallback")
                    add(
                        (*loc, "attachments"),
                        f"files are sent to {role} {name!r}, which takes only text "
                        f"({catalog.described()}); choose {other} that takes images or files, "
                        "or set attachments: false",
                    )
            for source in sources:
                for _, name in by_id.get(source, []):
                    if name in models and models[name].makes_files() is False:
                        add(
                            (*loc, "attachments"),
                            f"it takes the files of step {source!r}, but its bot {name!r} "
                            f"makes only text ({catalog.described()}): that step makes none",
                        )
    return found


Named = list[tuple[Loc, str]]


def _calls(loc: Loc, value: Any) -> Iterator[tuple[Loc, dict[str, Any], Named]]:
    """Every call step (a mapping with a `bot`) in a bot's steps as written, however nested,
    with its place and the bots it names (its bot, then its fallbacks), each at its place."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _calls((*loc, i), item)
    elif isinstance(value, dict):
        if isinstance(value.get("bot"), str):
            names: Named = [((*loc, "bot"), value["bot"])]
            fallback = value.get("fallback")
            if isinstance(fallback, list):
                names += [
                    ((*loc, "fallback", i), n) for i, n in enumerate(fallback) if isinstance(n, str)
                ]
            yield loc, value, names
        for key, inner in value.items():
            if isinstance(inner, list | dict) and key not in ("parameters", "controls"):
                yield from _calls((*loc, key), inner)


def _sources(attachments: Any) -> list[str]:
    """Where a step's files come from, when it writes `attachments:` out (the default, the
    user's files if any, is not warned of)."""
    if attachments is True:
        return ["user"]
    if isinstance(attachments, list):
        return [source for source in attachments if isinstance(source, str)]
    return []


def _unknown(name: str, catalog: Catalog) -> str:
    close = catalog.closest(name)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{name!r} is not in {catalog.described()}; {hint}a private or community bot the "
        "public list lacks goes under known_bots: in this file, and python -m bots models "
        "fetches Poe's list of today"
    )


def price_lines(config: Config, catalog: Catalog) -> list[str]:
    """Each bot's per-call prices beside its worst-case calls, and its worst case a message;
    nothing made up where the catalog gives no price."""
    models = catalog.models
    tokens_in, tokens_out = ASSUMED_TOKENS
    priced = {
        name: price
        for name, model in models.items()
        if model.pricing and (price := model.pricing.per_call()) is not None
    }
    if not priced:
        return [
            f"prices: none in {catalog.described()}; python -m bots models fetches Poe's list, "
            "with prices where Poe gives them"
        ]
    lines = [
        f"prices (USD, from {catalog.described()}; one call assumed to read {tokens_in:,} "
        f"tokens and write {tokens_out:,}; Poe charges the user in points):"
    ]
    width = max(len(bot_id) for bot_id in config.bots)
    for bot_id, plan in config.bots.items():
        parts, total, missing = [], Decimal(0), []
        for name, count in plan.cost.per_bot.items():
            if name in priced:
                parts.append(f"{name} ${priced[name]:.4f} x{count}")
                total += priced[name] * count
            else:
                missing.append(name)
        worst = f"worst case ${total:.4f} a message" if parts else "no price known"
        if parts and missing:
            worst = f"worst case at least ${total:.4f} a message"
        unknown = f"; no price for {', '.join(missing)}" if missing else ""
        lines.append(f"{bot_id:<{width}}  {', '.join(parts) or '-'}  {worst}{unknown}")
    return lines
