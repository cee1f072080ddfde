"""One retry policy for shell steps and Python tasks, executed through tenacity.

A failed attempt is an exception: a shell step that exits non-zero raises `ExitFailure`, one that
runs out of time raises `StepTimeout`, and a Python action raises whatever it raises. The policy
decides from the exception whether another attempt is worth it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ci_orchestrator.durations import format_seconds

if TYPE_CHECKING:  # tenacity costs ~30 ms to import: only steps that retry pay for it
    from tenacity import AsyncRetrying, RetryCallState, Retrying


class AttemptError(Exception):
    """An attempt of a shell step that did not succeed."""

    exit_code: int | None = None


class ExitFailure(AttemptError):
    def __init__(self, exit_code: int) -> None:
        super().__init__(f"exit code {exit_code}")
        self.exit_code = exit_code


class StepTimeout(AttemptError, TimeoutError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {format_seconds(seconds)}")
        self.seconds = seconds


class Cancelled(Exception):
    """The run was stopped (fail-fast or interrupt) while the step was running or waiting."""


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, how long to wait between them, and which failures to retry.

    The delay before attempt n+1 is `initial_delay * exponential_base ** (n - 1)`, capped at
    `max_delay`, plus a random jitter of up to `jitter` seconds (still capped). `exit_codes`, when
    given, limits retried `ExitFailure`s to those codes.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    max_delay: float = 60.0
    exponential_base: float = 2.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    jitter: float = 0.0
    exit_codes: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.initial_delay, self.max_delay, self.jitter) < 0:
            raise ValueError("delays must not be negative")

    def get_delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1-based) failed, without jitter."""
        return min(self.max_delay, self.initial_delay * self.exponential_base ** (attempt - 1))

    def should_retry(self, error: BaseException) -> bool:
        if isinstance(error, Cancelled) or not isinstance(error, self.retry_on):
            return False
        if self.exit_codes and isinstance(error, ExitFailure):
            return error.exit_code in self.exit_codes
        return True

    def retries(self, attempt: int, error: BaseException) -> bool:
        """Whether attempt number `attempt` (1-based), failed with `error`, is followed by another:
        the decision tenacity takes with `retrying()`, for a runner that waits in its own loop."""
        return attempt < self.max_attempts and self.should_retry(error)

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` failed, jitter included."""
        import random  # only a retry needs it

        return min(self.max_delay, self.get_delay(attempt) + random.uniform(0, self.jitter))

    def wait(self, state: RetryCallState) -> float:
        return self.delay_after(state.attempt_number)

    def retrying(
        self,
        sleep: Callable[[float], None],
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> Retrying:
        from tenacity import Retrying, retry_if_exception, stop_after_attempt

        return Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            retry=retry_if_exception(self.should_retry),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )

    def async_retrying(
        self, before_sleep: Callable[[RetryCallState], Any] | None = None
    ) -> AsyncRetrying:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        return AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self.wait,
            retry=retry_if_exception(self.should_retry),
            before_sleep=before_sleep,
            reraise=True,
        )


NO_RETRY = RetryPolicy(max_attempts=1, initial_delay=0.0, max_delay=0.0)
