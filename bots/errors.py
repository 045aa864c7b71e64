"""The project's exceptions, every one of them.

PipelineError
├── ConfigError            a file is invalid (carries every problem found, each located)
├── TemplateProblem        a template does not compile or reaches for something unsafe
├── Unreadable             YAML or JSON past a bound (size, nesting, values, numbers), or not JSON
├── UsageError             a command's argument, or a file named by one, cannot be used
│   └── ChatError          the terminal chat cannot go on (a refused key, an unreadable file)
├── Unreachable            Poe's model catalog could not be fetched (the catalog at hand is used)
├── Refused                a request answered with an HTTP error (status and one-line detail)
├── CallFailed             one try of a dependency call failed (retried, or on to a fallback)
└── RunError               a pipeline could not finish a reply
    ├── StepFailed         a dependency call (after retries and fallbacks) or a template failed
    └── BudgetExceeded     a call beyond what the bot declared to Poe (a bug; never expected)

Each command reports a `UsageError` or a `ConfigError` in one style (`bots.cli`) and exits 2;
anything else is a bug and keeps its traceback.
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


class TemplateProblem(PipelineError, ValueError):
    """A template that does not compile or that reaches for something unsafe (a ValueError
    too, so the format's pydantic validators report it where the template is)."""


class Unreadable(PipelineError, ValueError):
    """A YAML or JSON text past one of the reading bounds, or not JSON at all; `line` and
    `column` say where, when that is known (a ValueError too, for the readers that fall back
    when a text is not what they hoped for)."""

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class UsageError(PipelineError):
    """A command's argument, or a file it names, cannot be used; the message says which and
    what would do."""


class ChatError(UsageError):
    """A problem the terminal chat reports in one line (bad --param, unreadable --file,
    refused key...)."""


class Unreachable(PipelineError):
    """Poe's model catalog could not be fetched, or what came is no catalog; the message
    says which."""


class Refused(PipelineError):
    """A request answered with an HTTP error: `status` and a one-line `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class CallFailed(PipelineError):
    """One try of a dependency call failed; the message says why in a few words.

    `retry` is False when the bot asked not to be retried (its error had allow_retry false);
    `error_type` is Poe's name for the error, when the bot gave one Poe knows; `rate_limited`
    says Poe answered 429, and `wait` how many seconds its headers asked to wait, if they said.
    `log_reason` is the reason without anything the dependency wrote (which may quote the
    user), for the logs."""

    def __init__(
        self,
        message: str,
        *,
        retry: bool = True,
        error_type: ErrorType | None = None,
        rate_limited: bool = False,
        wait: float | None = None,
        log_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry = retry
        self.error_type = error_type
        self.rate_limited = rate_limited
        self.wait = wait
        self.log_reason = log_reason or message


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
