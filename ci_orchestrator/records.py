"""Values that describe finished work: the runs, steps, attempts and tests the journal stores.

Immutable NamedTuples (cheap to define, which keeps start-up fast), so that renderers (JUnit,
Markdown, terminal) are pure functions of them and tests can build them by hand; change one with
`record._replace(field=value)`. The runner and the journal import this module on every run, so it
holds only what a run records: what analytics computes from many runs for a report (hotspots,
flaky steps, trends, `HealthReport`) is in `ci_orchestrator.report_records`.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class AttemptRecord(NamedTuple):
    number: int
    exit_code: int | None
    duration_ms: float
    timed_out: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out and self.exit_code in (0, None)


class TestCaseRecord(NamedTuple):
    """One test case read from a step's JUnit file (`junit:`)."""

    suite: str
    classname: str
    name: str
    status: str  # passed | failed | error | skipped
    duration_ms: float = 0.0
    message: str = ""
    output: str = ""
    flaky: bool = False  # failed, then passed: on a rerun in its file or on a later attempt
    type: str = ""  # the failure's, error's or skip's `type`, as the tool wrote it
    body: str = ""  # its text: the traceback (a long one keeps its start and its end)
    stderr: str = ""  # what the test wrote to stderr (system-err)
    attempt: int = 0  # the step's attempt whose JUnit file told the outcome (0: not known)
    reruns: int = 0  # failed runs before the outcome: a flaky test's, or a failed test's retries

    @property
    def id(self) -> str:
        return f"{self.classname}.{self.name}" if self.classname else self.name


class StepRecord(NamedTuple):
    name: str
    status: str  # completed | failed | skipped | cancelled | running | pending
    reason: str = ""
    duration_ms: float = 0.0
    attempts: tuple[AttemptRecord, ...] = ()
    exit_code: int | None = None
    flaky: bool = False
    command: str | None = None
    needs: tuple[str, ...] = ()
    log_tail: str = ""
    log_path: str | None = None
    started_at: float | None = None
    tests: tuple[TestCaseRecord, ...] = ()
    junit_problems: tuple[str, ...] = ()  # "reports/x.xml: not found", ...
    median_ms: float | None = None  # the step's historical median, when the journal knows it
    fingerprint: str | None = None  # what it ran: command, the env the pipeline sets, cwd
    inputs: str | None = None  # its input fingerprint: the above, its `inputs:` and its needs'
    saved_ms: float = 0.0  # skipped on purpose (unchanged, up to date): what running would take

    @property
    def timed_out(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].timed_out


class RunRecord(NamedTuple):
    id: str
    pipeline: str
    status: str  # running | passed | failed | interrupted | abandoned
    started_at: float
    finished_at: float | None = None
    duration_ms: float | None = None
    git_sha: str | None = None
    branch: str | None = None
    event: str | None = None
    pr_number: int | None = None
    trigger: str = "local"
    steps: tuple[StepRecord, ...] = ()
    tree: str | None = None  # the tracked tree it ran on (HEAD's tree id when clean); None: unknown
    dirty: bool | None = None  # tracked files differed from HEAD (then it is never flaky evidence)
    url: str | None = None  # where its logs are: the GitHub Actions run (attempt) that ran it

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    @property
    def failed_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def flaky_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.flaky]


def to_json(value: Any) -> Any:
    """Records (and tuples and dicts of them) as plain JSON-ready data."""
    if hasattr(value, "_asdict"):
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
