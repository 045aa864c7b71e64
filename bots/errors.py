"""The project's exceptions.

PipelineError
├── ConfigError            pipelines.yaml is invalid (carries every problem found)
└── RunError               a pipeline could not finish a reply
    ├── StepFailed         a dependency call (after retries and fallbacks) or a template failed
    └── BudgetExceeded     a call beyond what the bot declared to Poe (a bug; never expected)
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi_poe.types import ErrorType


@dataclass(frozen=True)
class Problem:
    """One mistake in pipelines.yaml, located at a line and column (1-based)."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PipelineError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(PipelineError):
    """pipelines.yaml is invalid; `problems` lists every mistake found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


class RunError(PipelineError):
    """A reply could not be completed; the message is safe to show to the user, and
    `log_reason` to log (it holds nothing a user or a dependency wrote)."""

    def __init__(self, message: str, *, log_reason: str | None = None) -> None:
        super().__init__(message)
        self.log_reason = log_reason or message


class StepFailed(RunError):
    """A step failed; `bot` names the dependency at fault, when there is one, and
    `error_type` is Poe's name for the failure when it has one (e.g. insufficient_fund)."""

    def __init__(
        self,
        message: str,
        *,
        bot: str | None = None,
        error_type: ErrorType | None = None,
        log_reason: str | None = None,
    ) -> None:
        self.bot = bot
        self.error_type = error_type
        super().__init__(message, log_reason=log_reason)


class BudgetExceeded(RunError):
    """A call beyond the bot's declared `server_bot_dependencies` was about to be made."""
