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
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bots.errors import ConfigError, Problem, Unreadable
from bots.spec.document import Document, Loc, dotted
from bots.spec.format import CallStep, StepBase
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


Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


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

    @property
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
    try:
        return Catalog(name, parsed(json_value(read_source(name))))
    except Unreadable as e:
        fix = f"run python -m bots models to fetch Poe's list again, or delete {name}"
        raise ConfigError([Problem(name, 1, 1, "", f"it is not a catalog: {e}; {fix}")]) from None


def parsed(data: Any) -> CatalogFile:
    """A catalog file's content; Unreadable naming the first thing wrong in it."""
    try:
        return CatalogFile.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        raise Unreadable(f"{dotted(tuple(first['loc']))}: {first['msg']}") from None


# --- the checks ------------------------------------------------------------------------------


def problems(config: Config, catalog: Catalog) -> list[Problem]:
    """What the catalog says is wrong with the file's call steps, each at its place: an
    unknown bot (with did you mean), files sent to a bot that takes only text, files expected
    from a bot that makes only text."""
    document = Document(read_source(config.path))
    models = catalog.models
    found: list[Problem] = []

    def add(loc: Loc, message: str) -> None:
        found.append(Problem(config.path, *document.position(loc), dotted(loc), message))

    for bot_id, plan in config.bots.items():
        steps = {
            loc: step
            for i, top in enumerate(plan.spec.steps)
            for loc, step in _located(("bots", bot_id, "steps", i), top)
        }
        by_id = {step.id: step for step in steps.values() if step.id}
        for loc, step in steps.items():
            if not isinstance(step, CallStep):
                continue
            for where, name in _names(loc, step):
                if name not in models and name not in config.known_bots:
                    add(where, _unknown(name, catalog))
            if "attachments" in step.model_fields_set and step.sources:
                for name in step.bots:
                    if name in models and models[name].takes_files() is False:
                        add(
                            (*loc, "attachments"),
                            f"files are sent to {name!r}, which takes only text "
                            f"({catalog.described()}); set attachments: false, or call a bot "
                            "that takes images or files",
                        )
            for source in step.sources:
                made_by = by_id.get(source)
                if not isinstance(made_by, CallStep):
                    continue
                for name in made_by.bots:
                    if name in models and models[name].makes_files() is False:
                        add(
                            (*loc, "attachments"),
                            f"it takes the files of step {source!r}, but its bot {name!r} "
                            f"makes only text ({catalog.described()}): that step makes none",
                        )
    return found


def _located(loc: Loc, step: StepBase) -> Iterator[tuple[Loc, StepBase]]:
    """A step and every step nested in it, each with its place in the file."""
    yield loc, step
    for inner, nested in step.nested():
        yield from _located((*loc, *inner), nested)


def _names(loc: Loc, step: CallStep) -> Iterator[tuple[Loc, str]]:
    yield (*loc, "bot"), step.bot
    for i, name in enumerate(step.fallback):
        yield (*loc, "fallback", i), name


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
