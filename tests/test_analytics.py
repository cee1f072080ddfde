"""Analytics over a journal built by really running pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ci_orchestrator.analytics import (
    BaseState,
    Outcome,
    Scope,
    WorkflowAnalytics,
    base_state,
    percentile,
)
from ci_orchestrator.gitinfo import RunContext
from ci_orchestrator.journal import JournalStore, WorkflowJournal, import_runs
from ci_orchestrator.records import RunRecord, StepRecord, TestCaseRecord
from ci_orchestrator.report_records import EvidenceCount, RunRef
from ci_orchestrator.retry import RetryPolicy
from ci_orchestrator.runner import WorkflowRunner

RETRY = RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0)


def run_once(
    journal: WorkflowJournal, tmp_path: Path, index: int, *, breaks: bool, sha: str
) -> str:
    """One real run of a small pipeline; `flaky` fails its first attempt in every third run."""
    journal.context = RunContext(sha=sha, branch="main" if index % 2 else "dev", trigger="ci")
    runner = WorkflowRunner("shop", observers=[journal], state_dir=tmp_path, fail_fast=False)
    runner.add_step("setup", "true")
    runner.add_step("breaks", "exit 3" if breaks else "true", ["setup"])
    counter = tmp_path / f"flaky-{index}"
    first_fails = index % 3 == 0
    flaky = f"[ -e {counter} ] || {{ touch {counter}; exit {1 if first_fails else 0}; }}"
    runner.add_step("flaky", flaky, ["setup"], retry=RETRY)
    runner.add_step("slow", "sleep 0.15" if index >= 6 else "true", ["setup"])
    runner.add_step("deploy", "true", ["breaks", "flaky", "slow"])
    return runner.run().workflow_id


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorkflowJournal, list[str]]:
    tmp_path = tmp_path_factory.mktemp("history")
    journal = WorkflowJournal(tmp_path / "journal.db")
    # Runs 0-7; `breaks` fails in runs 2 and 3 (3 shares run 2's commit with a passing run 4).
    plan = [(False, "a"), (False, "a"), (True, "b"), (True, "c"), (False, "b")]
    plan += [(False, "d"), (False, "e"), (False, "f")]
    ids = [run_once(journal, tmp_path, i, breaks=b, sha=sha) for i, (b, sha) in enumerate(plan)]
    return journal, ids


def test_hotspots_rank_failures_and_time_lost(history: tuple[WorkflowJournal, list[str]]) -> None:
    journal, _ = history
    spots = WorkflowAnalytics(journal).failure_hotspots(5)
    assert [s.step for s in spots] == ["breaks", "flaky"]
    assert (spots[0].failures, spots[0].runs) == (2, 8)
    assert spots[0].failure_rate == 0.25
    assert spots[1].failures == 0
    assert spots[1].time_lost_ms > 0  # the failed first attempts


def test_success_rates_and_reliability(history: tuple[WorkflowJournal, list[str]]) -> None:
    journal, _ = history
    analytics = WorkflowAnalytics(journal)
    assert analytics.success_rate("breaks") == 6 / 8
    assert analytics.success_rate("flaky") == 1.0
    assert analytics.success_rate() == 6 / 8
    stats = {s.step: s for s in analytics.step_stats()}
    assert stats["breaks"].reliability == 0.75
    assert stats["deploy"].skipped == 2
    assert stats["deploy"].reliability == 1.0
    assert stats["slow"].p95_ms is not None
    assert stats["slow"].p50_ms is not None
    assert stats["slow"].p95_ms >= stats["slow"].p50_ms


def test_retries_are_evidence_and_a_changed_command_is_not(
    history: tuple[WorkflowJournal, list[str]],
) -> None:
    journal, ids = history
    flaky = {f.step: f for f in WorkflowAnalytics(journal).flaky_steps()}
    entry = flaky["flaky"]
    assert (entry.flaky_runs, entry.runs) == (3, 8)  # runs 0, 3 and 6 needed a second attempt
    assert entry.kinds == (EvidenceCount("retry", 3),)
    assert [e.run_id for e in entry.evidence] == [ids[6], ids[3], ids[0]]  # latest first
    first, last = entry.evidence[-1], entry.evidence[0]
    assert entry.first_seen == RunRef(ids[0], first.sha, first.started_at)
    assert entry.last_seen == RunRef(ids[6], last.sha, last.started_at)
    # Commit b: `exit 3` failed in run 2, `true` passed in run 4: another command, no evidence.
    assert "breaks" not in flaky
    assert "setup" not in flaky


def test_regressions_need_enough_samples(history: tuple[WorkflowJournal, list[str]]) -> None:
    journal, _ = history
    analytics = WorkflowAnalytics(journal)
    found = analytics.regressions(recent=2, earlier=6, min_samples=2, min_delta_ms=100)
    assert [r.step for r in found] == ["slow"]
    assert found[0].change > 1
    assert analytics.regressions(recent=2, earlier=6, min_samples=7) == []


def test_trend_insight_and_scope(history: tuple[WorkflowJournal, list[str]]) -> None:
    journal, ids = history
    analytics = WorkflowAnalytics(journal)
    trend = analytics.duration_trend(window=2)
    assert [p.run_id for p in trend] == ids
    assert trend[1].moving_average_ms == pytest.approx(
        (trend[0].duration_ms + trend[1].duration_ms) / 2
    )
    insight = analytics.generate_insight()
    assert insight.total_workflows == 8
    assert insight.total_steps == 40
    assert insight.overall_success_rate == 0.75
    assert insight.step_success_rates["breaks"] == 0.75
    assert insight.failure_hotspots[0].step == "breaks"
    main_only = WorkflowAnalytics(journal, Scope(branch="main"))
    assert main_only.generate_insight().total_workflows == 4
    assert WorkflowAnalytics(journal, Scope(last=3)).generate_insight().total_workflows == 3
    assert (
        WorkflowAnalytics(journal, Scope(pipeline="other")).generate_insight().total_workflows == 0
    )


def test_critical_path_and_health_report(history: tuple[WorkflowJournal, list[str]]) -> None:
    journal, ids = history
    analytics = WorkflowAnalytics(journal)
    run = journal.store.load_run(ids[-1])
    assert run is not None
    assert analytics.critical_path(run) == ["setup", "slow", "deploy"]
    report = analytics.health_report("shop health", run)
    assert report.runs_considered == 8
    assert report.pass_rate == 0.75
    assert report.run is not None
    assert report.run.step("slow").median_ms is not None
    assert report.critical_path == ("setup", "slow", "deploy")


def test_empty_journal() -> None:
    analytics = WorkflowAnalytics(WorkflowJournal())
    assert analytics.failure_hotspots() == []
    assert analytics.success_rate() == 0.0
    assert analytics.success_rate("x") == 0.0
    assert analytics.duration_trend() == []
    insight = analytics.generate_insight()
    assert (insight.total_workflows, insight.total_steps, insight.mean_duration_ms) == (0, 0, 0.0)
    assert analytics.flaky_steps() == []
    assert analytics.flaky_tests() == []
    assert analytics.regressions() == []


def test_flaky_tests_from_junit_results() -> None:
    store = JournalStore()

    def run(run_id: str, tree: str, status: str, flaky: bool = False, **run: Any) -> RunRecord:
        case = TestCaseRecord("suite", "tests.test_api", "test_login", status, flaky=flaky)
        other = TestCaseRecord("suite", "tests.test_api", "test_logout", "passed")
        step = StepRecord("test", "completed", tests=(case, other), duration_ms=5, command="pytest")
        started = float(int(run_id[1:]))
        return RunRecord(run_id, "shop", "passed", started, started + 1, git_sha=tree,
                         steps=(step,), tree=tree, dirty=False)._replace(**run)  # fmt: skip

    runs = [
        run("r1", "x", "failed"),
        run("r2", "x", "passed"),  # the same clean tree: r1's failure is evidence
        run("r3", "y", "passed", True),  # reported flaky by the test runner
        run("r4", "z", "failed", dirty=True),
        run("r5", "z", "passed", dirty=True),  # uncommitted changes: never evidence
        run("r6", "w", "skipped"),
    ]
    import_runs(store, runs)
    (flaky,) = WorkflowAnalytics(store).flaky_tests()
    assert (flaky.step, flaky.test, flaky.flaky_runs) == ("test", "tests.test_api.test_login", 2)
    assert flaky.runs == 5  # ran in five runs: skipped in r6
    assert [(e.kind, e.run_id, e.other_run) for e in flaky.evidence] == [
        ("reported", "r3", None),
        ("same-tree", "r1", "r2"),
    ]
    assert flaky.kinds == (EvidenceCount("reported", 1), EvidenceCount("same-tree", 1))


def test_percentile() -> None:
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == 5.0


def test_base_state_from_outcomes_newest_first() -> None:
    ok, bad = Outcome(False, False, "c1"), Outcome(True, False, "c2", code="tree:t2|f")
    assert base_state([]) == BaseState("passing", 0, 0)
    assert base_state([ok, ok]) == BaseState("passing", 0, 2)
    assert base_state([ok, Outcome(False, True, "c0")]) == BaseState("flaky", 1, 2)
    streak = [bad, Outcome(True, False, "c3"), Outcome(True, False, None), ok]
    assert base_state(streak) == BaseState("failing", 0, 4, None)
    assert base_state([*streak[:2], ok]) == BaseState("failing", 0, 3, "c3")
    # The latest failure's code (tree and step fingerprint) also passed: flaky, not failing.
    assert base_state([bad, Outcome(False, False, "c9", "tree:t2|f")]) == BaseState("flaky", 1, 2)
    # The same commit passed, but with another command (or a dirty tree: no code): failing.
    assert base_state([bad, Outcome(False, False, "c2", "tree:t2|g")]).kind == "failing"
    assert base_state([bad, Outcome(False, False, "c2")]).kind == "failing"
