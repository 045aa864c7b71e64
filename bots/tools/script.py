"""Scripted answers: what a step or a bot answers in a dry run, as a creator writes it.

```yaml
answers:                              # keyed by step id (or place), else by bot name
  topic: code                         # every call of step `topic` answers "code"
  review: [Fix the intro., APPROVED]  # successive calls answer in turn; the last one repeats
  GPT-5: {fail: HTTP 500}             # every call to GPT-5 fails this way
  picture: {file: cat.png}            # answers with a file (a path from the answers file)
```

A failure is `HTTP <status>` (as Poe's API answers it; 429 is a rate limit), `timeout` (no
answer within the step's time), or any text (the bot's own error event, with an optional
`error_type` Poe knows and `retry: false` for a bot that asks not to be retried). Calls nobody
scripted keep echoing their prompt (`simulator`).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import fastapi_poe as fp
from fastapi_poe.types import ErrorType
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bots.errors import CallFailed, UsageError
from bots.run.client import http_reason
from bots.spec.document import Loc
from bots.spec.explanations import did_you_mean, validated
from bots.spec.format import CallStep, walk
from bots.spec.loader import BotPlan


def _as_text(value: Any) -> Any:
    """YAML reads `7`, `true` or `3.5` as numbers; a bot answers them as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


Text = Annotated[str, BeforeValidator(_as_text)]


class Answer(BaseModel):
    """One answer of a scripted bot: text, a file (with text, if any), or a failure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Text = ""
    file: str | None = Field(default=None, description="A file the bot answers with.")
    fail: Text | None = Field(
        default=None, description="HTTP <status>, timeout, or the text of the bot's error."
    )
    error_type: ErrorType | None = Field(
        default=None, description="With fail: Poe's name for the error (e.g. insufficient_fund)."
    )
    retry: bool = Field(default=True, description="With fail: false if the bot asks no retry.")

    @model_validator(mode="after")
    def _one_kind(self) -> Answer:
        if self.fail is not None and (self.text or self.file):
            raise ValueError("an answer either fails or says something: not both")
        if self.fail is None and (self.error_type or not self.retry):
            raise ValueError("error_type and retry describe a failure: add fail")
        return self


def _as_answer(value: Any) -> Any:
    if value is None:
        raise ValueError(
            "this answer is empty; write its text (inside { }, a ',' ends a text, so quote a "
            "text that holds one)"
        )
    return value if isinstance(value, (dict, Answer)) else {"text": _as_text(value)}


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


Said = Annotated[Answer, BeforeValidator(_as_answer)]
Answers = dict[str, Annotated[list[Said], BeforeValidator(_as_list), Field(min_length=1)]]
"""A mapping of step id, step place or bot name to one answer or a list of them."""


@dataclass
class Script:
    """Scripted answers, with the folder their file paths are relative to. Each call takes
    the next answer of its key; the last one repeats."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    folder: Path = field(default_factory=Path)
    used: Counter[str] = field(default_factory=Counter)

    @property
    def signature(self) -> str:
        """A short digest of the answers (an eval keeps each script's answers apart)."""
        data = {key: [a.model_dump() for a in answers] for key, answers in self.answers.items()}
        digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        return digest[:8]

    def merged(self, other: Script) -> Script:
        """This script with `other`'s keys added or replaced (a case's over its file's)."""
        return Script({**self.answers, **other.answers}, other.folder)

    def key_for(self, bot: str, step_id: str | None, step_path: str) -> str | None:
        """The key that scripts a call: its step's id, else its place, else its bot."""
        return next((k for k in (step_id, step_path, bot) if k and k in self.answers), None)

    def next(self, key: str) -> Answer:
        answers = self.answers[key]
        answer = answers[min(self.used[key], len(answers) - 1)]
        self.used[key] += 1
        return answer

    def problems(self, plan: BotPlan) -> Iterator[tuple[str, str]]:
        """(key, what is wrong) for each key that names no call step or bot of the plan, and
        each file that cannot be read."""
        for key in self.answers:
            problem = key_problem(key, plan)
            if problem is not None:
                yield key, problem
        yield from self.file_problems()

    def file_problems(self) -> Iterator[tuple[str, str]]:
        for key, answers in self.answers.items():
            for answer in answers:
                if answer.file is not None and not (self.folder / answer.file).is_file():
                    yield key, f"no file {answer.file!r} (looked in {self.folder.resolve()})"

    def attachment(self, answer: Answer) -> fp.Attachment | None:
        if answer.file is None:
            return None
        path = (self.folder / answer.file).resolve()
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return fp.Attachment(url=path.as_uri(), content_type=kind, name=path.name)


def key_problem(key: str, plan: BotPlan) -> str | None:
    """What is wrong with scripting `key` for the plan's bot, if anything: a key is the id or
    place of one of its call steps, or a bot it calls."""
    steps = list(walk(plan.spec.steps))
    calls = [step for step in steps if isinstance(step, CallStep)]
    if any(key in (step.id, step.path) for step in calls):
        return None
    if any(key in step.bots for step in calls):
        return None
    if any(key in (step.id, step.path) for step in steps):
        return f"step {key!r} of /{plan.id} calls no bot, so it has no answer"
    names = [*(s.id for s in calls if s.id), *sorted({b for s in calls for b in s.bots})]
    hint = did_you_mean(key, names)
    return (
        f"{key!r} is neither a step id, a step's place nor a bot of /{plan.id}; "
        f"{hint}it answers for: {', '.join(names) or 'none'}"
    )


def failure(answer: Answer) -> BaseException:
    """What a scripted failure raises: what the real client would for the same failure."""
    said = (answer.fail or "").strip()
    words = said.split()
    if said.lower() == "timeout":
        return TimeoutError()  # the engine says it as "no complete answer within N s"
    if len(words) == 2 and words[0].upper() == "HTTP" and words[1].isdigit():
        status = int(words[1])
        return CallFailed(
            f"HTTP {status} ({http_reason(status)})",
            retry=answer.retry,
            rate_limited=status == 429,
            wait=0.0 if status == 429 else None,  # a script's rate limit resets at once
        )
    return CallFailed(
        said, retry=answer.retry, error_type=answer.error_type, log_reason="it sent an error"
    )


def parse_pairs(pairs: Iterable[str]) -> dict[str, list[Answer]]:
    """--answer KEY=TEXT pairs (a key given twice answers in turn)."""
    answers: dict[str, list[Answer]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--answer {pair!r}: expected KEY=TEXT, e.g. --answer topic=code")
        answers.setdefault(key.strip(), []).append(Answer(text=text))
    return answers


class ScriptFile(BaseModel):
    """A file of scripted answers (`chat --dry-run --answers FILE`)."""

    model_config = ConfigDict(extra="forbid")

    answers: Answers


def answer_model(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model of the mapping at `loc` inside any `answers:` mapping (for error wording)."""
    inside = loc[loc.index("answers") + 1 :] if "answers" in loc else None
    return Answer if inside is not None and len(inside) in (1, 2) else None


def read(path: str) -> Script:
    """A file of scripted answers; raises ConfigError naming FILE:LINE:COL of each mistake."""

    def model_for(loc: Loc, data: Any) -> type[BaseModel] | None:
        return ScriptFile if not loc else answer_model(loc, data)

    found, _ = validated(path, ScriptFile, model_for)
    return Script(found.answers, Path(path).parent)
