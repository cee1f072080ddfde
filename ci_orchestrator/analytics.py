"""What the journal says about a pipeline: hotspots, flaky steps, reliability, durations, trends.

Aggregates run in SQL over the journal's covering index, so a journal of a million step records
reports in well under a second; only bounded samples (the last few hundred durations of each
step, for medians and percentiles) reach Python.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any, NamedTuple

from ci_orchestrator import graph
from ci_orchestrator.durations import median
from ci_orchestrator.errors import CycleError
from ci_orchestrator.journal import JournalStore, WorkflowJournal
from ci_orchestrator.records import (
    BaseComparison,
    BaseLabel,
    FlakyStep,
    HealthReport,
    Hotspot,
    Regression,
    RunRecord,
    StepStats,
)

SAMPLES = 200  # recent completed durations per step behind p50/p95 and medians
BASE_WINDOW = 20  # the base branch's runs a pull request's failures are held against


@dataclass(frozen=True)
class Scope:
    """Which runs count: one pipeline, since a time, on a branch, the last N."""

    pipeline: str | None = None
    since: float | None = None
    branch: str | None = None
    last: int | None = None

    def steps_where(self, alias: str = "s") -> tuple[str, list[Any]]:
        """A WHERE clause for the steps table (its own columns first, so the index serves)."""
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        if self.pipeline is not None:
            clauses.append(f"{alias}.pipeline = ?")
            params.append(self.pipeline)
        if self.since is not None:
            clauses.append(f"{alias}.finished_at >= ?")
            params.append(self.since)
        runs, run_params = self.runs_where()
        if self.branch is not None or self.last is not None:
            clauses.append(f"{alias}.run_id IN (SELECT id FROM runs WHERE {runs})")
            params.extend(run_params)
        return " AND ".join(clauses), params

    def runs_where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["status != 'running'"]
        params: list[Any] = []
        for column, value in (("pipeline", self.pipeline), ("branch", self.branch)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if self.last is not None:
            inner = " AND ".join(clauses)
            clauses = [
                f"id IN (SELECT id FROM runs WHERE {inner} ORDER BY started_at DESC LIMIT ?)"
            ]
            params = [*params, self.last]
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    started_at: float
    duration_ms: float
    moving_average_ms: float


@dataclass(frozen=True)
class WorkflowInsight:
    total_workflows: int
    total_steps: int
    overall_success_rate: float
    mean_duration_ms: float
    failure_hotspots: list[Hotspot] = field(default_factory=list)
    step_success_rates: dict[str, float] = field(default_factory=dict)


class WorkflowAnalytics:
    """Questions answered from a journal, within a `Scope` (default: every finished run)."""

    def __init__(self, journal: WorkflowJournal | JournalStore, scope: Scope | None = None):
        self.store = journal.store if isinstance(journal, WorkflowJournal) else journal
        self.scope = scope or Scope()
        self._memo: dict[str, Any] | None = None  # answers shared within one report

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Within one report, the per-step aggregates and samples are read once, not per section.
        (Between calls nothing is kept: the journal may have grown.)"""
        outer = self._memo is not None
        if not outer:
            self._memo = {}
        try:
            yield
        finally:
            if not outer:
                self._memo = None

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.store.query(sql, params)

    # --- the fixed API ---

    def failure_hotspots(self, n: int = 5) -> list[Hotspot]:
        """Steps ranked by failures, then by time lost to failures and retries."""
        spots = [s for s in self._hotspot_rows() if s.failures or s.time_lost_ms]
        spots.sort(key=lambda s: (-s.failures, -s.time_lost_ms, s.step))
        return spots[:n]

    def duration_trend(self, window: int = 10) -> list[TrendPoint]:
        """Each finished run's duration with the moving average of the last `window` runs."""
        where, params = self.scope.runs_where()
        rows = self._rows(
            f"SELECT id, started_at, duration_ms, avg(duration_ms) OVER (ORDER BY started_at"
            f" ROWS BETWEEN {max(0, window - 1)} PRECEDING AND CURRENT ROW) AS moving"
            f" FROM runs WHERE {where} AND duration_ms IS NOT NULL ORDER BY started_at",
            params,
        )
        return [TrendPoint(r[0], r[1], r[2], r[3]) for r in rows]

    def success_rate(self, step: str | None = None) -> float:
        """Passed / (passed + failed) for a step; for whole runs when `step` is None."""
        if step is None:
            where, params = self.scope.runs_where()
            row = self._rows(
                f"SELECT sum(status = 'passed'), sum(status IN ('passed', 'failed'))"
                f" FROM runs WHERE {where}",
                params,
            )[0]
        else:
            where, params = self.scope.steps_where()
            row = self._rows(
                f"SELECT sum(status = 'completed'), sum(status IN ('completed', 'failed'))"
                f" FROM steps s WHERE {where} AND s.name = ?",
                [*params, step],
            )[0]
        return row[0] / row[1] if row[1] else 0.0

    def generate_insight(self) -> WorkflowInsight:
        with self._snapshot():
            return self._insight()

    def _insight(self) -> WorkflowInsight:
        where, params = self.scope.runs_where()
        runs, mean = self._rows(
            f"SELECT count(*), avg(duration_ms) FROM runs WHERE {where}", params
        )[0]
        stats = self.step_stats()
        return WorkflowInsight(
            total_workflows=runs,
            total_steps=sum(s.runs for s in stats),
            overall_success_rate=self.success_rate(),
            mean_duration_ms=mean or 0.0,
            failure_hotspots=self.failure_hotspots(),
            step_success_rates={s.step: s.reliability for s in stats if s.reliability is not None},
        )

    # --- beyond ---

    def _aggregates(self) -> list[Any]:
        if self._memo is not None and "aggregates" in self._memo:
            return list(self._memo["aggregates"])
        where, params = self.scope.steps_where()
        rows = self._rows(
            "SELECT name, count(*), sum(status = 'completed'), sum(status = 'failed'),"
            " sum(status = 'skipped'), sum(lost_ms), sum(flaky),"
            " max(CASE WHEN status = 'failed' THEN finished_at END)"
            f" FROM steps s WHERE {where} AND status NOT IN ('running', 'pending')"
            " GROUP BY name",
            params,
        )
        if self._memo is not None:
            self._memo["aggregates"] = rows
        return rows

    def _hotspot_rows(self) -> list[Hotspot]:
        return [Hotspot(r[0], r[3], r[2] + r[3], r[5] or 0.0, r[7]) for r in self._aggregates()]

    def step_stats(self) -> list[StepStats]:
        """Per step: runs, outcomes, reliability, p50/p95 (recent samples), time lost."""
        samples = self.recent_durations()
        stats = []
        for name, runs, passed, failed, skipped, lost, _, _ in self._aggregates():
            durations = sorted(samples.get(name, []))
            stats.append(
                StepStats(
                    name,
                    runs,
                    passed,
                    failed,
                    skipped,
                    percentile(durations, 0.50),
                    percentile(durations, 0.95),
                    lost or 0.0,
                )
            )
        return stats

    def recent_durations(self, limit: int = SAMPLES) -> dict[str, list[float]]:
        """The latest `limit` completed durations of each step, newest first."""
        if self._memo is not None:
            known = self._memo.get("recent")
            if known is None or known[0] < limit:
                known = (max(limit, SAMPLES), self._recent(max(limit, SAMPLES)))
                self._memo["recent"] = known
            return {name: values[:limit] for name, values in known[1].items()}
        return self._recent(limit)

    def _recent(self, limit: int) -> dict[str, list[float]]:
        where, params = self.scope.steps_where()
        names = [
            r[0] for r in self._rows(f"SELECT DISTINCT name FROM steps s WHERE {where}", params)
        ]
        out = {}
        for name in names:
            rows = self._rows(
                f"SELECT duration_ms FROM steps s WHERE {where} AND name = ?"
                " AND status = 'completed' ORDER BY finished_at DESC LIMIT ?",
                [*params, name, limit],
            )
            out[name] = [r[0] for r in rows]
        return out

    def medians(self, limit: int = 20) -> dict[str, float]:
        """Each step's median duration over its last `limit` completed runs."""
        return {
            name: median(values) for name, values in self.recent_durations(limit).items() if values
        }

    def flaky_steps(self) -> list[FlakyStep]:
        """Steps that failed then passed in one run, or both failed and passed for one commit."""
        where, params = self.scope.steps_where()
        totals = {r[0]: r[1] for r in self._aggregates()}
        in_run = self._rows(
            f"SELECT name, count(*) FROM steps s INDEXED BY steps_flaky WHERE flaky = 1 AND {where}"
            " GROUP BY name",
            params,
        )
        by_commit = self._rows(
            f"WITH failed AS (SELECT s.name AS name, r.git_sha AS sha FROM steps s"
            f" INDEXED BY steps_failed JOIN runs r ON r.id = s.run_id"
            f" WHERE s.status = 'failed' AND r.git_sha IS NOT NULL AND {where}"
            f" GROUP BY s.name, r.git_sha)"
            f" SELECT f.name, count(DISTINCT f.sha) FROM failed f"
            f" CROSS JOIN runs r2 INDEXED BY runs_by_sha CROSS JOIN steps s2"
            f" WHERE r2.git_sha = f.sha AND s2.run_id = r2.id AND s2.name = f.name"
            f" AND s2.status = 'completed' GROUP BY f.name",
            params,
        )
        counts: dict[str, int] = {}
        for name, count in [*in_run, *by_commit]:
            counts[name] = counts.get(name, 0) + count
        flaky = [FlakyStep(n, c, totals.get(n, c)) for n, c in counts.items()]
        return sorted(flaky, key=lambda f: (-f.flake_rate, -f.flaky_runs, f.step))

    def flaky_tests(self) -> list[FlakyStep]:
        """Tests their runner reported flaky, or that both failed and passed for one commit."""
        runs, params = self.scope.runs_where()
        scoped = (
            "SELECT t.step, t.classname, t.name, t.status, t.flaky, r.git_sha FROM tests t"
            f" JOIN runs r ON r.id = t.run_id WHERE t.run_id IN (SELECT id FROM runs WHERE {runs})"
        )
        totals = {
            (r[0], r[1], r[2]): (int(r[3]), int(r[4]))
            for r in self._rows(
                f"SELECT step, classname, name, count(*), sum(flaky) FROM ({scoped})"
                " GROUP BY step, classname, name",
                params,
            )
        }
        both = self._rows(
            f"SELECT step, classname, name, count(*) FROM (SELECT step, classname, name FROM"
            f" ({scoped}) WHERE git_sha IS NOT NULL GROUP BY step, classname, name, git_sha"
            " HAVING max(status IN ('failed', 'error')) AND max(status = 'passed'))"
            " GROUP BY step, classname, name",
            params,
        )
        commits = {(r[0], r[1], r[2]): int(r[3]) for r in both}
        flaky = []
        for key, (runs_count, reported) in totals.items():
            count = reported + commits.get(key, 0)
            if count:
                step, classname, name = key
                test = f"{classname}.{name}" if classname else name
                flaky.append(FlakyStep(step, count, runs_count, test=test))
        return sorted(flaky, key=lambda f: (-f.flake_rate, -f.flaky_runs, f.test or ""))

    def regressions(
        self, recent: int = 5, earlier: int = 20, min_samples: int = 5, threshold: float = 0.2,
        min_delta_ms: float = 500.0,
    ) -> list[Regression]:  # fmt: skip
        """Steps whose median over the last `recent` runs exceeds the median of the `earlier` runs
        before them by more than `threshold` (and `min_delta_ms`), with enough samples on both."""
        found = []
        for name, values in self.recent_durations(recent + earlier).items():
            new, old = values[:recent], values[recent:]
            if len(new) < min_samples or len(old) < min_samples:
                continue
            now, before = median(new), median(old)
            if now > before * (1 + threshold) and now - before >= min_delta_ms:
                found.append(Regression(name, now, before, len(new), len(old)))
        return sorted(found, key=lambda r: -r.change)

    def critical_path(self, run: RunRecord) -> list[str]:
        """The chain of steps that decided the run's wall time (steps that never ran left out)."""
        ran = [s for s in run.steps if s.attempts or s.status in ("completed", "failed")]
        names = {s.name for s in ran}
        dag = {s.name: [n for n in s.needs if n in names] for s in ran}
        try:
            return graph.critical_path(dag, {s.name: s.duration_ms for s in ran})
        except CycleError:
            return []

    def compare_with_base(
        self, run: RunRecord, base: str, window: int = BASE_WINDOW
    ) -> BaseComparison | None:
        """Each step and test that failed in `run`, labelled by the last `window` finished runs
        of `base` (its pipeline; pull request runs left out): `failing` in the latest of them,
        `flaky` in them, else `new`; and what fails there but passed here, `fixed`. None when
        the base has no runs. Only those runs are read, and of their tests only the ones that
        failed or were flaky there: the cost does not grow with the journal."""
        cte, params = _base_runs(run, base, window)
        runs = self._rows(f"{cte} SELECT count(*) FROM base", params)[0][0]
        if not runs:
            return None
        steps = self._rows(
            f"{cte} SELECT s.name, NULL, NULL, s.status = 'failed', s.flaky, b.git_sha"
            " FROM base b JOIN steps s ON s.run_id = b.id"
            " WHERE s.status IN ('completed', 'failed') ORDER BY b.started_at DESC",
            params,
        )
        tests = self._rows(
            f"{cte}, bad AS (SELECT DISTINCT t.step, t.classname, t.name FROM base b"
            " JOIN tests t ON t.run_id = b.id WHERE t.status IN ('failed', 'error') OR t.flaky)"
            " SELECT t.step, t.classname, t.name, t.status != 'passed', t.flaky, b.git_sha"
            " FROM base b JOIN tests t ON t.run_id = b.id JOIN bad ON bad.step = t.step"
            " AND bad.classname = t.classname AND bad.name = t.name"
            " WHERE t.status IN ('passed', 'failed', 'error') ORDER BY b.started_at DESC",
            params,
        )
        states = {key: base_state(outcomes) for key, outcomes in _histories(steps + tests).items()}
        labels = [
            label
            for step, test, failed in run_outcomes(run)
            if (label := _label(step, test, failed, states.get((step, test))))
        ]
        return BaseComparison(base, runs, window, tuple(labels))

    def health_report(
        self, title: str, run: RunRecord | None = None, *, base: str | None = None
    ) -> HealthReport:
        """Everything the Markdown and text reports show, for `run` and the history in scope;
        with `base`, the run's failures labelled against that branch (`compare_with_base`)."""
        with self._snapshot():
            report = self._health_report(title, run)
        if run is None or base is None:
            return report
        return report._replace(base=self.compare_with_base(run, base))

    def _health_report(self, title: str, run: RunRecord | None) -> HealthReport:
        where, params = self.scope.runs_where()
        count, passed, mean = self._rows(
            f"SELECT count(*), sum(status = 'passed'), avg(duration_ms) FROM runs WHERE {where}",
            params,
        )[0]
        if run is not None:
            medians = self.medians()
            run = _with_medians(run, medians)
        return HealthReport(
            title=title,
            run=run,
            runs_considered=count,
            since=self.scope.since,
            pass_rate=(passed or 0) / count if count else None,
            mean_duration_ms=mean,
            hotspots=tuple(self.failure_hotspots(10)),
            flaky=tuple(self.flaky_steps() + self.flaky_tests()),
            regressions=tuple(self.regressions()),
            stats=tuple(self.step_stats()),
            critical_path=tuple(self.critical_path(run)) if run is not None else (),
        )


class Outcome(NamedTuple):
    """A step's or test's outcome in one base-branch run."""

    failed: bool
    flaky: bool  # passed after failing
    sha: str | None


class BaseState(NamedTuple):
    """A step or test on the base branch, from its outcomes there."""

    kind: str  # failing | flaky | passing
    flaky_runs: int
    runs: int
    failing_since: str | None = None


def base_state(outcomes: Sequence[Outcome]) -> BaseState:
    """Newest first. Failing when the latest outcome is a failure (unless that commit also
    passed: then flaky), since the first failure of that streak; flaky runs are those that
    failed then passed, or failed at a commit that also passed."""
    passed = {o.sha for o in outcomes if not o.failed and o.sha}
    flaky = sum(o.flaky or (o.failed and o.sha in passed) for o in outcomes)
    if outcomes and outcomes[0].failed and outcomes[0].sha not in passed:
        streak = list(takewhile(lambda o: o.failed, outcomes))
        return BaseState("failing", flaky, len(outcomes), streak[-1].sha)
    return BaseState("flaky" if flaky else "passing", flaky, len(outcomes))


def run_outcomes(run: RunRecord) -> Iterator[tuple[str, str | None, bool]]:
    """(step, test id or None, failed) for every step and test of `run` with an outcome."""
    for step in run.steps:
        if step.status in ("completed", "failed"):
            yield step.name, None, step.status == "failed"
        for test in step.tests:
            if test.status != "skipped":
                yield step.name, test.id, test.status != "passed"


def _base_runs(run: RunRecord, base: str, window: int) -> tuple[str, list[Any]]:
    """A `base` CTE: the last `window` finished runs of `run`'s pipeline on branch `base`."""
    cte = (
        "WITH base AS (SELECT id, git_sha, started_at FROM runs WHERE pipeline = ?"
        " AND branch = ? AND pr_number IS NULL AND status != 'running' AND id != ?"
        " ORDER BY started_at DESC LIMIT ?)"
    )
    return cte, [run.pipeline, base, run.id, window]


def _histories(rows: Sequence[Any]) -> dict[tuple[str, str | None], list[Outcome]]:
    """Rows of (step, classname, name, failed, flaky, sha), newest first, by (step, test id)."""
    found: dict[tuple[str, str | None], list[Outcome]] = {}
    for step, classname, name, failed, flaky, sha in rows:
        test = None if name is None else f"{classname}.{name}" if classname else name
        found.setdefault((step, test), []).append(Outcome(bool(failed), bool(flaky), sha))
    return found


def _label(step: str, test: str | None, failed: bool, state: BaseState | None) -> BaseLabel | None:
    """A failure's label (new, flaky, failing), `fixed` for a pass of what fails on the base."""
    if state is None:
        return BaseLabel(step, "new", test) if failed else None
    if failed:
        kind = state.kind if state.kind != "passing" else "new"
    elif state.kind == "failing":
        kind = "fixed"
    else:
        return None
    return BaseLabel(step, kind, test, state.flaky_runs, state.runs, state.failing_since)


def _with_medians(run: RunRecord, medians: dict[str, float]) -> RunRecord:
    steps = tuple(s._replace(median_ms=medians.get(s.name)) for s in run.steps)
    return run._replace(steps=steps)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]
