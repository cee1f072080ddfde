"""What a report shows: the values analytics computes from many runs of the journal.

The run-level records (`RunRecord`, `StepRecord`, ...) are in `ci_orchestrator.records`, which
the runner and the journal import on every run; these are only built and read by `report`, the
GitHub comment and issue, and the renderers, so a run never pays for defining them. Immutable
NamedTuples, as there: renderers are pure functions of them and tests build them by hand.
"""

from __future__ import annotations

from typing import NamedTuple

from ci_orchestrator.records import RunRecord


class Hotspot(NamedTuple):
    """A step (or test, when `test` is set) that fails often or costs much time in failures and
    retries."""

    step: str
    failed_runs: int
    runs: int  # runs where it ran to an outcome (passed or failed)
    time_lost_ms: float
    last_failed_at: float | None = None
    test: str | None = None  # the test's id (`classname.name`)

    @property
    def failures(self) -> int:
        return self.failed_runs

    @property
    def failure_rate(self) -> float:
        return self.failed_runs / self.runs if self.runs else 0.0


class RunRef(NamedTuple):
    """A run, as a report points at it."""

    run_id: str
    sha: str | None
    started_at: float


class Evidence(NamedTuple):
    """One run that shows a step or test flaky: `retry` (the step failed, then passed on a retry
    in the run), `same-tree` (failed where another run, `other_run`, passed: the same clean tree
    and the same step fingerprint) or `reported` (a test its run recorded flaky: it failed, then
    passed on a rerun its test runner reported or on a later attempt of its step)."""

    kind: str  # retry | same-tree | reported
    run_id: str
    sha: str | None
    started_at: float
    other_run: str | None = None  # same-tree: a run of the same code where it passed


class EvidenceCount(NamedTuple):
    kind: str
    runs: int


class FlakyStep(NamedTuple):
    """A step (or test, when `test` is set) with flaky evidence: runs where it failed and passed
    on a retry, failed where the same code passed, or its test runner reported it flaky."""

    step: str
    flaky_runs: int  # runs with evidence
    runs: int  # runs where it ran (passed or failed; not skipped)
    test: str | None = None
    evidence: tuple[Evidence, ...] = ()  # a few of those runs, most recent first
    kinds: tuple[EvidenceCount, ...] = ()  # flaky runs by kind of evidence
    first_seen: RunRef | None = None  # the earliest run with evidence
    last_seen: RunRef | None = None  # the latest

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


class Change(NamedTuple):
    """What changed for a step (or test) on a branch: `broken` since `sha` (it failed in every
    run on consecutive commits up to the latest), a `new` failure at `sha` (the latest run fails,
    earlier runs passed), or `fixed` at `sha` (passing since that commit, after failing)."""

    step: str
    kind: str  # broken | new | fixed
    sha: str | None  # broken since / new failure at / fixed at
    failed_runs: int  # runs of the failing streak
    commits: int  # commits the failing streak spans
    first_seen: RunRef  # the streak's first failing run
    last_seen: RunRef  # its last failing run
    test: str | None = None
    fixed_in: RunRef | None = None  # fixed: the first passing run after the streak
    earlier_unknown: bool = False  # the streak reaches the oldest run read: it may be older


class FailureMark(NamedTuple):
    """A step or test that failed in the report's run, and what history says of it."""

    step: str
    test: str | None
    known_flaky: bool
    flaky_runs: int = 0  # runs with flaky evidence (as in FlakyStep)
    runs: int = 0  # runs where it ran
    change: str | None = None  # broken | new, when `changes` says so

    @property
    def flake_rate(self) -> float:
        return self.flaky_runs / self.runs if self.runs else 0.0


class RunLinks(NamedTuple):
    """Where a run's logs are for readers away from the runner (a PR comment in Actions)."""

    logs: str  # $GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID/...


class TrendBucket(NamedTuple):
    """One bucket of a trend chart: the runs (of a pipeline, or where a step or test ran) that
    started in [start, start + the trend's bucket width), and what they measured."""

    start: float  # the bucket's first second (UTC, aligned to days or Monday weeks)
    runs: int
    value: float  # a rate (0..1) or a median duration (ms)
    p95: float | None = None  # durations only: their 95th percentile (ms)


class FlakeTrend(NamedTuple):
    """A flaky step's (or test's, when `test` is set) flake rate per week."""

    step: str
    test: str | None
    points: tuple[TrendBucket, ...]


class Trend(NamedTuple):
    """What the trend charts plot, computed once so that every format shows the same numbers."""

    bucket_days: int  # width of a duration and pass-rate bucket (1: per day)
    durations: tuple[TrendBucket, ...] = ()  # run duration: median (value) and p95, in ms
    pass_rate: tuple[TrendBucket, ...] = ()  # passed runs / finished runs
    flake_rates: tuple[FlakeTrend, ...] = ()  # per week: flaky runs / runs where it ran


class HealthReport(NamedTuple):
    """Everything a report shows: one run in detail (optional) and history around it."""

    title: str
    run: RunRecord | None = None
    runs_considered: int = 0
    since: float | None = None
    pass_rate: float | None = None
    mean_duration_ms: float | None = None
    hotspots: tuple[Hotspot, ...] = ()
    flaky: tuple[FlakyStep, ...] = ()  # flaky steps (flaky tests: `flaky_tests`)
    regressions: tuple[Regression, ...] = ()
    stats: tuple[StepStats, ...] = ()
    critical_path: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    base: BaseComparison | None = None  # the run's failures labelled against its base branch
    links: RunLinks | None = None  # when set, failures link there instead of naming local logs
    flaky_tests: tuple[FlakyStep, ...] = ()
    changes: tuple[Change, ...] = ()  # broken, new, fixed on the run's branch
    test_hotspots: tuple[Hotspot, ...] = ()
    run_failures: tuple[FailureMark, ...] = ()  # the run's failed steps and tests, marked
    trend: Trend | None = None  # what the trend charts plot; None: not computed
    last: int | None = None  # the history is the last N runs (`report --last N`)
    time_saved_ms: float = 0.0  # what the steps skipped on purpose (unchanged, up to date) saved
    steps_saved: int = 0  # how many step runs were skipped so
