"""What the journal says about a pipeline: hotspots, flaky steps, reliability, durations, trends.

Aggregates run in SQL over the journal's covering index, so a journal of a million step records
reports in well under a second; only bounded samples (the last few hundred durations of each
step, for medians and percentiles) reach Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import takewhile
from math import ceil
from typing import Any, NamedTuple

from ci_orchestrator import graph
from ci_orchestrator.durations import median
from ci_orchestrator.errors import CycleError
from ci_orchestrator.journal import JournalStore, WorkflowJournal
from ci_orchestrator.records import RunRecord
from ci_orchestrator.report_records import (
    BaseComparison,
    BaseLabel,
    Change,
    Evidence,
    EvidenceCount,
    FailureMark,
    FlakeTrend,
    FlakyStep,
    HealthReport,
    Hotspot,
    Regression,
    RunRef,
    StepStats,
    Trend,
    TrendBucket,
)

SAMPLES = 200  # recent completed durations per step behind p50/p95 and medians
BASE_WINDOW = 20  # the base branch's runs a pull request's failures are held against
CHANGE_WINDOW = 50  # a branch's latest runs behind broken since / new failure / fixed at
EVIDENCE_SHOWN = 5  # evidence runs named per flaky step or test, most recent first
FLAKY_TESTS_SHOWN = 20  # flaky tests in a report (those with the most flaky runs)
TEST_HOTSPOTS_SHOWN = 10

TREND_POINTS = 30  # buckets per trend chart, at most
TREND_FLAKY_SHOWN = 3  # flaky steps and tests with a weekly flake-rate chart
TREND_MAX_BUCKET_DAYS = 7  # a duration or pass-rate bucket spans at most a week
DAY_S = 86_400.0
WEEK_S = 7 * DAY_S
MONDAY_S = 4 * DAY_S  # 1970-01-05, the first Monday after the epoch: weeks start on Mondays

TestKey = tuple[str, str, str]  # a test as the journal keys it: step, classname, name


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
            " sum(status = 'skipped'), sum(lost_ms),"
            " max(CASE WHEN status = 'failed' THEN finished_at END)"
            f" FROM steps s WHERE {where} AND status NOT IN ('running', 'pending')"
            " GROUP BY name",
            params,
        )
        if self._memo is not None:
            self._memo["aggregates"] = rows
        return rows

    def time_saved(self) -> tuple[float, int]:
        """The time steps skipped on purpose (nothing they depend on changed, inputs up to
        date) would have taken, by their recent medians; and how many step runs were skipped."""
        where, params = self.scope.steps_where()
        total, count = self._rows(
            f"SELECT sum(saved_ms), count(*) FROM steps s WHERE {where} AND saved_ms > 0", params
        )[0]
        return total or 0.0, count

    def _hotspot_rows(self) -> list[Hotspot]:
        return [Hotspot(r[0], r[3], r[2] + r[3], r[5] or 0.0, r[6]) for r in self._aggregates()]

    def trend(self) -> Trend:
        """Run duration (median, p95) and pass rate per day (or per a few days, so that the
        scope's span fits `TREND_POINTS` buckets, the latest ones), and the weekly flake rate of
        the steps and tests with the most flaky runs (failed, then passed in the run) over the
        last `TREND_POINTS` weeks. Only runs in those windows are read."""
        where, params = self.scope.runs_where()
        first, last = self._rows(
            f"SELECT min(started_at), max(started_at) FROM runs WHERE {where}", params
        )[0]
        if first is None:
            return Trend(1)
        days = ceil((_day_start(last) + DAY_S - _day_start(first)) / DAY_S)
        width = min(TREND_MAX_BUCKET_DAYS, max(1, ceil(days / TREND_POINTS)))
        origin = _day_start(last) + DAY_S - TREND_POINTS * width * DAY_S
        weeks = _week_start(last) + WEEK_S - TREND_POINTS * WEEK_S
        return Trend(
            width,
            tuple(self._duration_buckets(origin, width * DAY_S)),
            tuple(self._pass_rate_buckets(origin, width * DAY_S)),
            tuple(self._flake_trends(weeks)),
        )

    def _duration_buckets(self, origin: float, width: float) -> list[TrendBucket]:
        """Per bucket: the median (the mean of the middle two for an even count) and the
        nearest-rank p95 of run durations, ranked by a window function in SQL."""
        where, params = self.scope.runs_where()
        rows = self._rows(
            "WITH b AS (SELECT CAST((started_at - ?) / ? AS INTEGER) AS k, duration_ms AS d"
            f" FROM runs WHERE {where} AND started_at >= ? AND duration_ms IS NOT NULL),"
            " r AS (SELECT k, d, row_number() OVER (PARTITION BY k ORDER BY d) AS i,"
            " count(*) OVER (PARTITION BY k) AS n FROM b)"
            " SELECT k, n, avg(CASE WHEN i IN ((n + 1) / 2, (n + 2) / 2) THEN d END),"
            " max(CASE WHEN i = (n * 95 + 99) / 100 THEN d END) FROM r GROUP BY k ORDER BY k",
            [origin, width, *params, origin],
        )
        return [TrendBucket(origin + k * width, n, p50, p95) for k, n, p50, p95 in rows]

    def _pass_rate_buckets(self, origin: float, width: float) -> list[TrendBucket]:
        where, params = self.scope.runs_where()
        rows = self._rows(
            "SELECT CAST((started_at - ?) / ? AS INTEGER) AS k, count(*), sum(status = 'passed')"
            f" FROM runs WHERE {where} AND started_at >= ? GROUP BY k ORDER BY k",
            [origin, width, *params, origin],
        )
        return [TrendBucket(origin + k * width, n, passed / n) for k, n, passed in rows]

    def _flake_trends(self, origin: float) -> list[FlakeTrend]:
        """The steps and tests with the most flaky runs since `origin`, each with its weekly
        flake rate: flaky runs / runs where it ran (passed or failed), per Monday week."""
        steps = self._flaky_step_keys(origin)
        tests = self._flaky_test_keys(origin)
        ranked = sorted([*steps, *tests], key=lambda e: (-e[1], e[0]))[:TREND_FLAKY_SHOWN]
        return [
            FlakeTrend(key[0], None if len(key) == 1 else _test_id(key[1], key[2]),
                       tuple(self._weekly_flakes(key, origin)))
            for key, _ in ranked
        ]  # fmt: skip

    def _flaky_step_keys(self, origin: float) -> list[tuple[tuple[str, ...], int]]:
        where, params = self.scope.steps_where()
        rows = self._rows(
            "SELECT s.name, count(*) FROM steps s INDEXED BY steps_flaky WHERE s.flaky = 1"
            f" AND s.status = 'completed' AND {where} AND s.finished_at >= ?"
            " GROUP BY s.name ORDER BY 2 DESC, 1 LIMIT ?",
            [*params, origin, TREND_FLAKY_SHOWN],
        )
        return [((r[0],), r[1]) for r in rows]

    def _flaky_test_keys(self, origin: float) -> list[tuple[tuple[str, ...], int]]:
        where, params = self.scope.runs_where()
        rows = self._rows(
            "SELECT t.step, t.classname, t.name, count(DISTINCT t.run_id) FROM tests t"
            " INDEXED BY tests_flaky WHERE t.flaky = 1 AND t.run_id IN (SELECT id FROM runs"
            f" WHERE {where} AND started_at >= ?) GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2, 3"
            " LIMIT ?",
            [*params, origin, TREND_FLAKY_SHOWN],
        )
        return [((r[0], r[1], r[2]), r[3]) for r in rows]

    def _weekly_flakes(self, key: tuple[str, ...], origin: float) -> list[TrendBucket]:
        if len(key) == 1:
            where, params = self.scope.steps_where()
            if self.scope.pipeline is None:  # so that the history index serves: by pipeline
                where += " AND s.pipeline IN (SELECT DISTINCT pipeline FROM runs)"
            rows = self._rows(
                "SELECT CAST((s.finished_at - ?) / ? AS INTEGER) AS k, count(*), sum(s.flaky)"
                f" FROM steps s WHERE {where} AND s.name = ? AND s.finished_at >= ?"
                " AND s.status IN ('completed', 'failed') GROUP BY k ORDER BY k",
                [origin, WEEK_S, *params, key[0], origin],
            )
        else:
            where, params = self.scope.runs_where()
            rows = self._rows(
                "SELECT CAST((r.started_at - ?) / ? AS INTEGER) AS k, count(DISTINCT t.run_id),"
                " count(DISTINCT CASE WHEN t.flaky = 1 THEN t.run_id END)"
                " FROM tests t INDEXED BY tests_by_name JOIN runs r ON r.id = t.run_id"
                " WHERE t.classname = ? AND t.name = ? AND t.step = ? AND t.status != 'skipped'"
                f" AND t.run_id IN (SELECT id FROM runs WHERE {where} AND started_at >= ?)"
                " GROUP BY k ORDER BY k",
                [origin, WEEK_S, key[1], key[2], key[0], *params, origin],
            )
        return [TrendBucket(origin + k * WEEK_S, n, flaky / n) for k, n, flaky in rows if n]

    def step_stats(self) -> list[StepStats]:
        """Per step: runs, outcomes, reliability, p50/p95 (the recent runs where it passed or
        failed, so that a step that always fails has them too), time lost."""
        samples = self._recent(SAMPLES, "'completed', 'failed'")
        stats = []
        for name, runs, passed, failed, skipped, lost, _ in self._aggregates():
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

    def _recent(self, limit: int, statuses: str = "'completed'") -> dict[str, list[float]]:
        where, params = self.scope.steps_where()
        if self._memo is not None and "aggregates" in self._memo:  # the names are known
            names = [r[0] for r in self._memo["aggregates"]]
        else:
            query = f"SELECT DISTINCT name FROM steps s WHERE {where}"
            names = [r[0] for r in self._rows(query, params)]
        out = {}
        for name in names:
            rows = self._rows(
                f"SELECT duration_ms FROM steps s WHERE {where} AND name = ?"
                f" AND status IN ({statuses}) ORDER BY finished_at DESC LIMIT ?",
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
        """Steps with flaky evidence, highest flake rate first: runs where they failed and then
        passed on a retry, or failed where a run of the same code passed (`same-tree`). The rate
        is over the runs where the step ran (passed or failed)."""
        where, params = self.scope.steps_where()
        ran = {r[0]: r[2] + r[3] for r in self._aggregates()}
        evidence = (
            "SELECT s.name AS k1, 'retry' AS kind, s.run_id AS run_id, NULL AS other"
            " FROM steps s INDEXED BY steps_flaky WHERE s.flaky = 1 AND s.status = 'completed'"
            f" AND {where} UNION ALL SELECT k1, 'same-tree', run_id, other FROM flips"
        )
        found = self._evidence(_step_flips(where), evidence, 1, [*params, *params])
        flaky = [_flaky_entry(key[0], None, ran.get(key[0], 0), rows) for key, rows in found]
        return sorted(flaky, key=lambda f: (-f.flake_rate, -f.flaky_runs, f.step))

    def flaky_tests(
        self, limit: int = FLAKY_TESTS_SHOWN, include: Iterable[TestKey] = ()
    ) -> list[FlakyStep]:
        """Tests with flaky evidence: their runner reported them flaky (`reported`), or they
        failed where a run of the same code passed (`same-tree`). The `limit` with the most
        flaky runs (and those of `include`), highest flake rate first; the rate is over the runs
        where the test ran (not skipped)."""
        return self._flaky_tests(limit, include)[0]

    def _flaky_tests(
        self, limit: int = FLAKY_TESTS_SHOWN, include: Iterable[TestKey] = ()
    ) -> tuple[list[FlakyStep], int]:
        """`flaky_tests`, and how many tests have flaky evidence in all."""
        runs, params = self.scope.runs_where()
        scoped = f"t.run_id IN (SELECT id FROM runs WHERE {runs})"
        evidence = (
            "SELECT t.step AS k1, t.classname AS k2, t.name AS k3, 'reported' AS kind,"
            " t.run_id AS run_id, NULL AS other FROM tests t INDEXED BY tests_flaky"
            f" WHERE t.flaky = 1 AND {scoped}"
            " UNION ALL SELECT k1, k2, k3, 'same-tree', run_id, other FROM flips"
        )
        found = self._evidence(_test_flips(scoped), evidence, 3, [*params, *params])
        wanted = set(include)
        kept = [
            (key, rows)
            for rank, (key, rows) in enumerate(found)
            if rank < limit or (key[0], key[1], key[2]) in wanted
        ]
        ran = self._test_runs([(k[0], k[1], k[2]) for k, _ in kept])
        flaky = [
            _flaky_entry(k[0], _test_id(k[1], k[2]), ran.get((k[0], k[1], k[2]), 0), rows)
            for k, rows in kept
        ]
        flaky.sort(key=lambda f: (-f.flake_rate, -f.flaky_runs, f.step, f.test or ""))
        return flaky, len(found)

    def _evidence(
        self, flips: str, evidence: str, keys: int, params: Sequence[Any]
    ) -> list[tuple[tuple[str, ...], list[Ranked]]]:
        """Per key (most flaky runs first), a few of its evidence runs: the latest
        `EVIDENCE_SHOWN`, the earliest, and the latest of each kind, ranked (see `Ranked`).
        `evidence` yields key columns k1..k`keys`, kind, run_id, other."""
        part = ", ".join(f"k{i}" for i in range(1, keys + 1))
        rows = self._rows(
            f"WITH {flips}, evidence AS (SELECT {part}, min(kind) AS kind, run_id,"
            f" max(other) AS other FROM ({evidence}) GROUP BY {part}, run_id),"
            f" ranked AS (SELECT e.*, r.git_sha, r.started_at,"
            f" row_number() OVER (PARTITION BY {part} ORDER BY r.started_at DESC, e.run_id DESC)"
            f" AS rank, count(*) OVER (PARTITION BY {part}) AS total,"
            f" row_number() OVER (PARTITION BY {part}, e.kind ORDER BY r.started_at DESC) AS"
            f" kind_rank, count(*) OVER (PARTITION BY {part}, e.kind) AS kind_total"
            " FROM evidence e JOIN runs r ON r.id = e.run_id)"
            f" SELECT * FROM ranked WHERE rank <= ? OR rank = total OR kind_rank = 1"
            f" ORDER BY total DESC, {part}, rank",
            [*params, EVIDENCE_SHOWN],
        )
        found: dict[tuple[str, ...], list[Ranked]] = {}
        for row in rows:
            kind, run_id, other, sha, started, *ranks = row[keys:]
            ranked = Ranked(Evidence(kind, run_id, sha, started, other), *map(int, ranks))
            found.setdefault(tuple(row[:keys]), []).append(ranked)
        return list(found.items())

    def _test_runs(self, keys: Iterable[TestKey]) -> dict[TestKey, int]:
        """The runs in scope where each of a few tests ran (not skipped): the runs of its rows,
        less those where it was only skipped. Each is a walk of the test's index entries, with a
        scope check on each unless every run of the journal is in scope."""
        where, params = self.scope.runs_where()
        if self._whole_journal():
            where, params = "", []
        check = partial(_in_runs, where)
        sql = (
            "SELECT (SELECT count(DISTINCT t.run_id) FROM tests t INDEXED BY tests_by_name"
            f" WHERE t.classname = ?1 AND t.name = ?2 AND t.step = ?3{check('t')})"
            " - (SELECT count(DISTINCT k.run_id) FROM tests k WHERE k.status = 'skipped'"
            f" AND k.step = ?3 AND k.classname = ?1 AND k.name = ?2{check('k')}"
            " AND NOT EXISTS (SELECT 1 FROM tests o INDEXED BY tests_by_name"
            " WHERE o.classname = k.classname AND o.name = k.name AND o.run_id = k.run_id"
            " AND o.step = k.step AND o.status != 'skipped'))"
        )
        known: dict[TestKey, int] = {} if self._memo is None else self._memo.setdefault("ran", {})
        for step, classname, name in keys:
            if (step, classname, name) not in known:
                row = self._rows(sql, [classname, name, step, *params, *params])[0]
                known[step, classname, name] = int(row[0])
        return known

    def _whole_journal(self) -> bool:
        """Is every run of the journal in scope (then nothing needs a scope check)?"""
        if self._memo is not None and "whole" in self._memo:
            return bool(self._memo["whole"])
        where, params = self.scope.runs_where()
        row = self._rows(
            f"SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM runs WHERE {where})",
            params,
        )[0]
        if self._memo is not None:
            self._memo["whole"] = row[0] == row[1]
        return bool(row[0] == row[1])

    def test_hotspots(self, n: int = TEST_HOTSPOTS_SHOWN) -> list[Hotspot]:
        """Tests ranked like step hotspots: by failed runs, then by time lost (the durations of
        their failed executions); `runs` are the runs where they ran (not skipped)."""
        runs, params = self.scope.runs_where()
        rows = self._rows(
            "SELECT t.step, t.classname, t.name, count(DISTINCT t.run_id) AS failed,"
            " sum(t.duration_ms) AS lost, max(r.started_at) FROM tests t INDEXED BY tests_failed"
            " JOIN runs r ON r.id = t.run_id WHERE t.status IN ('failed', 'error')"
            f" AND t.run_id IN (SELECT id FROM runs WHERE {runs})"
            " GROUP BY t.step, t.classname, t.name"
            " ORDER BY failed DESC, lost DESC, t.step, t.classname, t.name LIMIT ?",
            [*params, n],
        )
        ran = self._test_runs([(r[0], r[1], r[2]) for r in rows])
        return [
            Hotspot(r[0], r[3], ran.get((r[0], r[1], r[2]), r[3]), r[4] or 0.0, r[5],
                    test=_test_id(r[1], r[2]))
            for r in rows
        ]  # fmt: skip

    def changes(self, run: RunRecord, window: int = CHANGE_WINDOW) -> list[Change]:
        """What broke, failed anew or was fixed on `run`'s branch, over its last `window` runs up
        to `run` (see `change_of`): broken first, then new failures, then fixes."""
        with self._snapshot():
            history = self._branch_history(run, window)
            flaky_tests = self.flaky_tests(include=history.tests)
            return _changes(history, self.flaky_steps(), flaky_tests)

    def _branch_history(self, run: RunRecord, window: int) -> BranchHistory:
        cte, params = self._branch_runs(run, window)
        read = self._rows(f"{cte} SELECT count(*) FROM picked", params)[0][0]
        rows = _outcome_rows(self, cte, params)
        tests = tuple(sorted({(r[0], r[1], r[2]) for r in rows if r[2] is not None and r[3]}))
        return BranchHistory(_histories(rows), tests, complete=read < window)

    def _branch_runs(self, run: RunRecord, window: int) -> tuple[str, list[Any]]:
        """A `picked` CTE: the last `window` runs of `run`'s pipeline and branch up to `run`
        (itself included), within the scope's period."""
        where = (
            "r.pipeline = ? AND r.branch IS ? AND (r.status != 'running' OR r.id = ?)"
            " AND r.started_at <= ?"
        )
        params: list[Any] = [run.pipeline, run.branch, run.id, run.started_at]
        if self.scope.since is not None:
            where += " AND r.started_at >= ?"
            params.append(self.scope.since)
        return _picked_runs(where, params, window)

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
        where = (
            "r.pipeline = ? AND r.branch = ? AND r.pr_number IS NULL AND r.status != 'running'"
            " AND r.id != ?"
        )
        cte, params = _picked_runs(where, [run.pipeline, base, run.id], window)
        runs = self._rows(f"{cte} SELECT count(*) FROM picked", params)[0][0]
        if not runs:
            return None
        histories = _histories(_outcome_rows(self, cte, params))
        states = {key: base_state(outcomes) for key, outcomes in histories.items()}
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
        report = HealthReport(
            title=title,
            runs_considered=count,
            since=self.scope.since,
            pass_rate=(passed or 0) / count if count else None,
            mean_duration_ms=mean,
            # a step that failed no run (flaky, retried) is under flaky steps, not hotspots
            hotspots=tuple(s for s in self.failure_hotspots(10) if s.failures),
            regressions=tuple(self.regressions()),
            stats=tuple(self.step_stats()),
            test_hotspots=tuple(self.test_hotspots()),
            trend=self.trend(),
        )
        saved_ms, saved = self.time_saved()
        report = report._replace(time_saved_ms=saved_ms, steps_saved=saved)
        flaky_steps = self.flaky_steps()
        history = self._branch_history(run, CHANGE_WINDOW) if run else BranchHistory({}, (), True)
        wanted = {*history.tests, *failed_tests(run)}  # their flake rates are needed
        flaky_tests, total = self._flaky_tests(include=wanted)
        report = report._replace(
            flaky=tuple(flaky_steps),
            flaky_tests=tuple(flaky_tests),
            notes=tuple(_left_out(len(flaky_tests), total)),
        )
        if run is None:
            return report
        changes = _changes(history, flaky_steps, flaky_tests)
        return report._replace(
            run=_with_medians(run, self.medians()),
            changes=tuple(changes),
            run_failures=tuple(run_failures(run, flaky_steps, flaky_tests, changes)),
            critical_path=tuple(self.critical_path(run)),
        )


# --- what SQL finds the same code with ---


def run_code(run: str, tree: str) -> str:
    """SQL for what code a run (alias `run`, its `run_trees` row `tree`) ran, as one value: its
    tree when the working tree was clean; for a CI run with no tree recorded (imported from
    GitHub, or from before trees were recorded) its commit, since a CI checkout is clean; else
    NULL: a dirty tree, or a local run of unknown tree, is never the same code as anything."""
    return (
        f"CASE WHEN {tree}.run_id IS NOT NULL THEN CASE WHEN {tree}.dirty = 0"
        f" THEN 'tree:' || {tree}.tree END WHEN {run}.trigger = 'ci'"
        f" THEN 'commit:' || {run}.git_sha END"
    )


def step_key(step: str) -> str:
    """SQL for what a step (alias `step`) ran: its fingerprint; for steps recorded before
    fingerprints, the hash of its command."""
    return f"coalesce({step}.fingerprint, {step}.command_hash, '')"


def _other_run(passed: Callable[[str], str]) -> str:
    """SQL for a run of the same code as row `f` of a `failed` CTE (run_id, sha, trig, tree,
    dirty) where `passed(other run id)` holds, or NULL: the first found through the clean-tree
    index when `f` ran on a clean tree; through the commit index for a CI run with no tree
    recorded. One is enough: the search stops there, however many runs share the code."""
    by_tree = (
        "SELECT o.run_id FROM run_trees o INDEXED BY run_trees_clean WHERE f.dirty = 0"
        " AND o.tree = f.tree AND o.dirty = 0 AND o.run_id != f.run_id"
        f" AND {passed('o.run_id')} LIMIT 1"
    )
    by_commit = (
        "SELECT o.id FROM runs o INDEXED BY runs_by_sha WHERE f.dirty IS NULL AND f.trig = 'ci'"
        " AND o.git_sha = f.sha AND o.trigger = 'ci' AND o.id != f.run_id"
        " AND NOT EXISTS (SELECT 1 FROM run_trees x WHERE x.run_id = o.id)"
        f" AND {passed('o.id')} LIMIT 1"
    )
    return f"coalesce(({by_tree}), ({by_commit}))"


def _step_flips(where: str) -> str:
    """CTEs ending in `flips(k1, run_id, other)`: each failed step (in scope: `where`, over
    alias `s`) with a run of the same code where the same step, same fingerprint, passed."""

    def passed(other: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM steps s2 WHERE s2.run_id = {other} AND s2.name = f.name"
            f" AND s2.status = 'completed' AND s2.pipeline = f.pipeline"
            f" AND {step_key('s2')} = f.fp)"
        )

    return (
        f"failed AS (SELECT s.name, s.run_id, s.pipeline, {step_key('s')} AS fp,"
        " r.git_sha AS sha, r.trigger AS trig, x.tree AS tree, x.dirty AS dirty"
        " FROM steps s INDEXED BY steps_failed CROSS JOIN runs r"
        " LEFT JOIN run_trees x ON x.run_id = s.run_id"
        f" WHERE s.status = 'failed' AND r.id = s.run_id AND {where}),"
        f" flips AS (SELECT * FROM (SELECT f.name AS k1, f.run_id AS run_id,"
        f" {_other_run(passed)} AS other FROM failed f) WHERE other IS NOT NULL)"
    )


def _test_flips(scoped: str) -> str:
    """CTEs ending in `flips(k1, k2, k3, run_id, other)`: each failed test (in scope: `scoped`,
    over alias `t`) with a run of the same code, its step of the same fingerprint, where it
    passed."""

    def passed(other: str) -> str:
        return (
            f"EXISTS (SELECT 1 FROM steps s2 CROSS JOIN tests t2 INDEXED BY tests_by_name"
            f" WHERE s2.run_id = {other} AND s2.name = f.step AND s2.pipeline = f.pipeline"
            f" AND {step_key('s2')} = f.fp AND t2.classname = f.classname AND t2.name = f.name"
            f" AND t2.run_id = {other} AND t2.step = f.step AND t2.status = 'passed')"
        )

    return (
        "failed AS (SELECT t.step, t.classname, t.name, t.run_id, r.pipeline,"
        f" {step_key('s')} AS fp, r.git_sha AS sha, r.trigger AS trig, x.tree AS tree,"
        " x.dirty AS dirty FROM tests t INDEXED BY tests_failed CROSS JOIN runs r"
        " CROSS JOIN steps s LEFT JOIN run_trees x ON x.run_id = t.run_id"
        " WHERE t.status IN ('failed', 'error') AND r.id = t.run_id AND s.run_id = t.run_id"
        f" AND s.name = t.step AND {scoped}),"
        " flips AS (SELECT * FROM (SELECT f.step AS k1, f.classname AS k2, f.name AS k3,"
        f" f.run_id AS run_id, {_other_run(passed)} AS other FROM failed f)"
        " WHERE other IS NOT NULL)"
    )


def _in_runs(where: str, alias: str) -> str:
    """` AND alias.run_id IN (runs matching where)`; nothing for no `where`."""
    return f" AND {alias}.run_id IN (SELECT id FROM runs WHERE {where})" if where else ""


def _picked_runs(where: str, params: list[Any], window: int) -> tuple[str, list[Any]]:
    """A `picked` CTE: the latest `window` runs matching `where` (over alias `r`), with the
    code each ran (`run_code`) and whether its working tree was dirty."""
    cte = (
        f"WITH picked AS (SELECT r.id, r.git_sha, r.started_at, {run_code('r', 'x')} AS code,"
        " coalesce(x.dirty, 0) AS dirty FROM runs r LEFT JOIN run_trees x ON x.run_id = r.id"
        f" WHERE {where} ORDER BY r.started_at DESC LIMIT ?)"
    )
    return cte, [*params, window]


def _outcome_rows(analytics: WorkflowAnalytics, cte: str, params: Sequence[Any]) -> list[Any]:
    """Outcomes in the `picked` runs, newest first: every step's, and those of the tests that
    failed or were flaky in one of them, as rows of (step, classname, name, failed, flaky, sha,
    code, fingerprint, run id, started, dirty); classname and name are NULL for steps."""
    picked = "p.git_sha, p.code, {key}, p.id, p.started_at, p.dirty"
    steps = analytics._rows(
        f"{cte} SELECT s.name, NULL, NULL, s.status = 'failed', s.flaky,"
        f" {picked.format(key=step_key('s'))} FROM picked p JOIN steps s ON s.run_id = p.id"
        " WHERE s.status IN ('completed', 'failed') ORDER BY p.started_at DESC",
        params,
    )
    tests = analytics._rows(
        f"{cte}, bad AS (SELECT DISTINCT t.step, t.classname, t.name FROM picked p"
        " JOIN tests t ON t.run_id = p.id WHERE t.status IN ('failed', 'error') OR t.flaky)"
        " SELECT t.step, t.classname, t.name, t.status != 'passed', t.flaky,"
        f" {picked.format(key=step_key('s'))} FROM picked p JOIN tests t ON t.run_id = p.id"
        " JOIN bad ON bad.step = t.step AND bad.classname = t.classname AND bad.name = t.name"
        " JOIN steps s ON s.run_id = t.run_id AND s.name = t.step"
        " WHERE t.status IN ('passed', 'failed', 'error') ORDER BY p.started_at DESC",
        params,
    )
    return steps + tests


# --- evidence, histories, changes ---


class Ranked(NamedTuple):
    """An evidence run of a flaky step or test, ranked among that one's evidence runs."""

    evidence: Evidence
    rank: int  # 1: the latest
    total: int  # runs with evidence
    kind_rank: int  # 1: the latest of its kind
    kind_total: int  # runs with evidence of its kind


def _flaky_entry(step: str, test: str | None, ran: int, rows: Sequence[Ranked]) -> FlakyStep:
    """A flaky step or test from its ranked evidence runs (`_evidence`)."""
    ordered = sorted(rows, key=lambda r: r.rank)
    total = ordered[0].total
    kinds = sorted(
        (EvidenceCount(r.evidence.kind, r.kind_total) for r in rows if r.kind_rank == 1),
        key=lambda k: (-k.runs, k.kind),
    )
    shown = tuple(r.evidence for r in ordered if r.rank <= EVIDENCE_SHOWN)
    return FlakyStep(
        step, total, max(ran, total), test, shown, tuple(kinds),
        _ref(ordered[-1].evidence), _ref(ordered[0].evidence),
    )  # fmt: skip


def _day_start(epoch: float) -> float:
    return epoch - epoch % DAY_S


def _week_start(epoch: float) -> float:
    return epoch - (epoch - MONDAY_S) % WEEK_S


def _ref(evidence: Evidence) -> RunRef:
    return RunRef(evidence.run_id, evidence.sha, evidence.started_at)


def _test_id(classname: str, name: str) -> str:
    return f"{classname}.{name}" if classname else name


class Outcome(NamedTuple):
    """A step's or test's outcome in one run."""

    failed: bool
    flaky: bool  # passed after failing
    sha: str | None
    code: str | None = None  # the same code: run code and step fingerprint; None: never the same
    run_id: str = ""
    started_at: float = 0.0
    fingerprint: str = ""  # what the step ran
    dirty: bool = False  # the working tree had uncommitted changes

    @property
    def ref(self) -> RunRef:
        return RunRef(self.run_id, self.sha, self.started_at)


class BaseState(NamedTuple):
    """A step or test on the base branch, from its outcomes there."""

    kind: str  # failing | flaky | passing
    flaky_runs: int
    runs: int
    failing_since: str | None = None


class BranchHistory(NamedTuple):
    """A branch's recent outcomes by (step, test id), newest first; the tests that failed in
    them, as (step, classname, name); `complete` when the window held every run of the branch."""

    outcomes: dict[tuple[str, str | None], list[Outcome]]
    tests: tuple[TestKey, ...]
    complete: bool


def base_state(outcomes: Sequence[Outcome]) -> BaseState:
    """Newest first. Failing when the latest outcome is a failure (unless the same code also
    passed: then flaky), since the first failure of that streak; flaky runs are those that
    failed then passed, or failed where the same code passed."""
    passed = _passed_codes(outcomes)
    flaky = sum(o.flaky or (o.failed and o.code in passed) for o in outcomes)
    if outcomes and outcomes[0].failed and outcomes[0].code not in passed:
        streak = failing_streak(outcomes)
        return BaseState("failing", flaky, len(outcomes), streak[-1].sha)
    return BaseState("flaky" if flaky else "passing", flaky, len(outcomes))


def _passed_codes(outcomes: Iterable[Outcome]) -> set[str]:
    return {o.code for o in outcomes if not o.failed and o.code}


def failing_streak(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The failures at the start of `outcomes` (newest first), up to the first pass."""
    return list(takewhile(lambda o: o.failed, outcomes))


def change_of(
    step: str, test: str | None, outcomes: Sequence[Outcome], known_flaky: bool,
    complete: bool = True,
) -> Change | None:  # fmt: skip
    """Outcomes newest first; only the clean runs of the step's latest fingerprint count (a run
    with uncommitted changes is on no commit; another command is another step). `broken` since
    the first commit of the failing streak when it spans two commits or more; else a `new`
    failure when an earlier run passed; `fixed` at the first pass after the latest streak. A
    streak where the same code also passed is flakiness, not a change; so is a one-commit
    streak of a known flaky one."""
    clean = [o for o in outcomes if not o.dirty]
    history = [o for o in clean if o.fingerprint == clean[0].fingerprint] if clean else []
    start = next((i for i, o in enumerate(history) if o.failed), None)
    if start is None:
        return None
    streak = failing_streak(history[start:])
    passed = _passed_codes(history)
    commits = len({o.sha for o in streak})
    if any(o.code in passed for o in streak) or (commits < 2 and known_flaky):
        return None
    oldest = start + len(streak) == len(history)  # nothing before the streak was read
    reaches = oldest and not complete
    first, last = streak[-1].ref, streak[0].ref
    if start > 0:
        fix = history[start - 1]
        return Change(step, "fixed", fix.sha, len(streak), commits, first, last, test, fix.ref,
                      reaches)  # fmt: skip
    if commits < 2 and oldest:
        return None  # no earlier run passed: nothing says it is new
    kind, sha = ("broken", first.sha) if commits > 1 else ("new", last.sha)
    return Change(step, kind, sha, len(streak), commits, first, last, test, None, reaches)


def _changes(
    history: BranchHistory, flaky_steps: Sequence[FlakyStep], flaky_tests: Sequence[FlakyStep]
) -> list[Change]:
    known = {(f.step, f.test) for f in [*flaky_steps, *flaky_tests]}
    found = [
        change
        for (step, test), outcomes in history.outcomes.items()
        if (change := change_of(step, test, outcomes, (step, test) in known, history.complete))
    ]
    order = {"broken": 0, "new": 1, "fixed": 2}
    return sorted(found, key=lambda c: (order[c.kind], -c.last_seen.started_at, c.step,
                                        c.test or ""))  # fmt: skip


def failed_tests(run: RunRecord | None) -> list[TestKey]:
    """(step, classname, name) of each test that failed in `run` (none without a run)."""
    return [
        (step.name, test.classname, test.name)
        for step in (run.steps if run else ())
        for test in step.tests
        if test.status in ("failed", "error")
    ]


def run_failures(
    run: RunRecord,
    flaky_steps: Sequence[FlakyStep],
    flaky_tests: Sequence[FlakyStep],
    changes: Sequence[Change],
) -> list[FailureMark]:
    """Each step and test that failed in `run`, marked known flaky (with its counts) or not,
    and broken or new when `changes` says so."""
    flaky = {(f.step, f.test): f for f in [*flaky_steps, *flaky_tests]}
    changed = {(c.step, c.test): c.kind for c in changes if c.kind != "fixed"}
    marks = []
    for step, test, failed in run_outcomes(run):
        if failed:
            known = flaky.get((step, test))
            runs = (known.flaky_runs, known.runs) if known else (0, 0)
            marks.append(FailureMark(step, test, known is not None, *runs,
                                     changed.get((step, test))))  # fmt: skip
    return marks


def run_outcomes(run: RunRecord) -> Iterator[tuple[str, str | None, bool]]:
    """(step, test id or None, failed) for every step and test of `run` with an outcome."""
    for step in run.steps:
        if step.status in ("completed", "failed"):
            yield step.name, None, step.status == "failed"
        for test in step.tests:
            if test.status != "skipped":
                yield step.name, test.id, test.status != "passed"


def _histories(rows: Sequence[Any]) -> dict[tuple[str, str | None], list[Outcome]]:
    """`_outcome_rows`, newest first, by (step, test id)."""
    found: dict[tuple[str, str | None], list[Outcome]] = {}
    for step, classname, name, failed, flaky, sha, code, key, run_id, started, dirty in rows:
        test = None if name is None else _test_id(classname, name)
        same = f"{code}|{key}" if code else None
        outcome = Outcome(bool(failed), bool(flaky), sha, same, run_id, started, key, bool(dirty))
        found.setdefault((step, test), []).append(outcome)
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


def _left_out(shown: int, total: int) -> list[str]:
    if total <= shown:
        return []
    return [f"{total - shown} more flaky tests are left out: those with the most flaky runs come"
            " first"]  # fmt: skip


def _with_medians(run: RunRecord, medians: dict[str, float]) -> RunRecord:
    steps = tuple(s._replace(median_ms=medians.get(s.name)) for s in run.steps)
    return run._replace(steps=steps)


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]
