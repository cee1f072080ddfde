"""The exception hierarchy and the exit codes they map to.

User mistakes are exceptions that know how to show themselves as one line; everything else is a bug
in ci-orchestrator and gets a traceback in a log file (see `error_handler.py`).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The documented exit codes of every command."""

    OK = 0
    STEP_FAILED = 1
    USAGE = 2
    BUG = 3
    INTERRUPTED = 130


class CIOrchestratorError(Exception):
    """Base of every error ci-orchestrator raises on purpose."""

    exit_code: ExitCode = ExitCode.USAGE

    def format_message(self) -> str:
        return str(self)


class ConfigError(CIOrchestratorError):
    """A pipeline file, template or option is wrong; the message names where and what was expected.

    `location` is `file:line` when it is known.
    """

    def __init__(self, message: str, location: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location
        self.key = key

    def format_message(self) -> str:
        parts = [p for p in (self.location, self.key) if p]
        return ": ".join([*parts, self.message])

    def __str__(self) -> str:
        return self.format_message()


class ConfigErrors(ConfigError):
    """Every mistake found in one file (up to `LIMIT`), one line each, in the order of the file."""

    LIMIT = 20

    def __init__(self, errors: list[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.message, first.location, first.key)
        self.errors = errors

    def format_message(self) -> str:
        lines = [e.format_message() for e in self.errors[: self.LIMIT]]
        if len(self.errors) > self.LIMIT:
            lines.append(f"... and {len(self.errors) - self.LIMIT} more errors")
        if len(self.errors) > 1:
            lines.append(f"{len(self.errors)} errors in {self.location_file()}")
        return "\nerror: ".join(lines)

    def location_file(self) -> str:
        return (self.location or "the file").rsplit(":", 1)[0]


class UsageError(CIOrchestratorError):
    """The command line or the environment asks for something that cannot be done."""


class WorkflowError(CIOrchestratorError):
    """A workflow cannot be built or run as described (bad graph, duplicate names, timeouts)."""


class CycleError(WorkflowError, ValueError):
    """The steps depend on each other in a circle; `cycle` is the path, first name repeated last."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__(f"dependency cycle: {' -> '.join(cycle)}")


class TaskFailedError(WorkflowError):
    """A step or task failed, and a caller asked for its result."""

    exit_code = ExitCode.STEP_FAILED

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name!r} failed: {reason}")


class JournalError(CIOrchestratorError):
    """The journal file cannot be used (not SQLite, corrupt, read-only, from a newer version)."""


class GitHubError(CIOrchestratorError):
    """Talking to GitHub failed in a way the user can act on (token, repository, permissions)."""
