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


# --- what analytics computes from many runs ---


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


def to_json(value: Any) -> Any:
    """Records (and tuples and dicts of them) as plain JSON-ready data."""
    if hasattr(value, "_asdict"):
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
