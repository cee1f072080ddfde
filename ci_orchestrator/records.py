"""Values that describe finished work: what the journal stores and what the reports render.

Immutable NamedTuples (cheap to define, which keeps start-up fast), so that renderers (JUnit,
Markdown, terminal) are pure functions of them and tests can build them by hand; change one with
`record._replace(field=value)`.
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
    flaky: bool = False  # failed, then passed on a rerun (Surefire flakyFailure/flakyError)

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

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.steps if s.name == name)

    @property
    def failed_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def flaky_steps(self) -> list[StepRecord]:
        return [s for s in self.steps if s.flaky]


# --- what analytics computes from many runs ---


class Hotspot(NamedTuple):
    """A step that fails often or costs much time in failures and retries."""

    step: str
    failures: int
    runs: int
    time_lost_ms: float
    last_failed_at: float | None = None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.runs if self.runs else 0.0


class FlakyStep(NamedTuple):
    """A step (or test, when `test` is set) that both failed and passed for the same code."""

    step: str
    flaky_runs: int
    runs: int
    test: str | None = None

    @property
    def flake_rate(self) -> float:
        return self.flaky_runs / self.runs if self.runs else 0.0


class StepStats(NamedTuple):
    step: str
    runs: int
    passed: int
    failed: int
    skipped: int
    p50_ms: float | None
    p95_ms: float | None
    time_lost_ms: float = 0.0

    @property
    def reliability(self) -> float | None:
        """passed / (passed + failed); None when it never ran to an outcome."""
        done = self.passed + self.failed
        return self.passed / done if done else None


class Regression(NamedTuple):
    """A step whose recent median duration grew against its earlier median."""

    step: str
    recent_median_ms: float
    earlier_median_ms: float
    recent_runs: int
    earlier_runs: int

    @property
    def change(self) -> float:
        return self.recent_median_ms / self.earlier_median_ms - 1 if self.earlier_median_ms else 0.0


class BaseLabel(NamedTuple):
    """What the base branch's recent runs say about a step (or a test, when `test` is set) that
    failed in a pull request's run, or that failed on the base and passed in it (`fixed`)."""

    step: str
    kind: str  # new | flaky | failing | fixed
    test: str | None = None  # the test's id (`classname.name`)
    flaky_runs: int = 0  # base runs where it was flaky (failed then passed, or both for one commit)
    runs: int = 0  # base runs where it ran to an outcome
    failing_since: str | None = None  # the commit that started its failing streak on the base


class BaseComparison(NamedTuple):
    """A run's failures held against the last runs (at most `window`) of its base branch."""

    base: str
    runs: int  # base-branch runs compared with
    window: int
    labels: tuple[BaseLabel, ...] = ()

    @property
    def fixed(self) -> list[BaseLabel]:
        return [label for label in self.labels if label.kind == "fixed"]


class RunLinks(NamedTuple):
    """Where a run's logs are for readers away from the runner (a PR comment in Actions)."""

    logs: str  # $GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID/...


class HealthReport(NamedTuple):
    """Everything a report shows: one run in detail (optional) and history around it."""

    title: str
    run: RunRecord | None = None
    runs_considered: int = 0
    since: float | None = None
    pass_rate: float | None = None
    mean_duration_ms: float | None = None
    hotspots: tuple[Hotspot, ...] = ()
    flaky: tuple[FlakyStep, ...] = ()
    regressions: tuple[Regression, ...] = ()
    stats: tuple[StepStats, ...] = ()
    critical_path: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    base: BaseComparison | None = None  # the run's failures labelled against its base branch
    links: RunLinks | None = None  # when set, failures link there instead of naming local logs


def to_json(value: Any) -> Any:
    """Records (and tuples and dicts of them) as plain JSON-ready data."""
    if hasattr(value, "_asdict"):
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
