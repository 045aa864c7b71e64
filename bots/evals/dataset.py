"""An eval's dataset: the messages to ask, each with an optional reference answer or rubric.

YAML (a list, or a mapping with `items:`) or JSONL (one JSON object or string per line). An
item is a message, or a mapping with `message` and optionally `reference`, `rubric` and `id`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from bots.errors import ConfigError, Problem, Unreadable
from bots.spec.document import Loc
from bots.spec.explanations import located, validated
from bots.spec.reading import json_value, read_source


def _as_item(value: Any) -> Any:
    return {"message": value} if isinstance(value, str) else value


class Item(BaseModel):
    """One message of the dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: Annotated[str, Field(min_length=1)]
    reference: str | None = Field(default=None, description="A good answer, for the judge.")
    rubric: str | None = Field(default=None, description="What a good answer does (scored).")
    id: str | None = None

    @property
    def key(self) -> str:
        """Stable across runs while the item is unchanged: what a resumed eval looks up."""
        body = json.dumps([self.message, self.reference, self.rubric])
        return self.id or hashlib.sha256(body.encode()).hexdigest()[:12]


class Dataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[Annotated[Item, BeforeValidator(_as_item)]], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _a_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and "items" not in data:
            raise ValueError(
                "a dataset is a list of messages, one item each (or items: holding that list)"
            )
        return data


def _model_for(loc: Loc, data: Any) -> type[BaseModel] | None:
    return Dataset if not loc else Item if len(loc) == 2 else None


def read(path: str) -> list[Item]:
    """The dataset's items; raises ConfigError naming FILE:LINE:COL of each mistake."""
    if path.endswith((".jsonl", ".ndjson")):
        return _read_jsonl(path)
    found, document = validated(path, Dataset, _model_for, wrap="items")
    wrapped = isinstance(document.data, list)
    where = [document.position((i,) if wrapped else ("items", i)) for i in range(len(found.items))]
    if problems := _duplicates(path, found.items, where):
        raise ConfigError(problems)
    return found.items


def _read_jsonl(path: str) -> list[Item]:
    lines = read_source(path).splitlines()
    items: list[Item] = []
    where: list[tuple[int, int]] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json_value(line)
            items.append(Item.model_validate(_as_item(data)))
            where.append((number, 1))
        except Unreadable as e:
            problems.append(Problem(path, number, e.column or 1, "", str(e)))
        except ValidationError as e:
            for loc, message in located(e, _as_item(data), (), lambda loc, data: Item):
                problems.append(Problem(path, number, 1, ".".join(map(str, loc)), message))
    if not items and not problems:
        problems.append(Problem(path, 1, 1, "", "no items: write one message per line"))
    problems += _duplicates(path, items, where)  # with the other mistakes, all at once
    if problems:
        raise ConfigError(problems)
    return items


def _duplicates(path: str, items: list[Item], where: list[tuple[int, int]]) -> list[Problem]:
    """Each item once: a resumed eval finds an item's answers by its id or its text."""
    seen: dict[str, int] = {}
    found = []
    for item, (line, column) in zip(items, where, strict=True):
        if item.key in seen:
            what = f"id {item.id!r}" if item.id else f"message {item.message[:60]!r}"
            message = f"the {what} is there twice (first at line {seen[item.key]})"
            found.append(Problem(path, line, column, "", message + "; once is enough"))
        else:
            seen[item.key] = line
    return found
