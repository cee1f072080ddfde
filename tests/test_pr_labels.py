"""The pull request comment says what is new: each failure labelled against the base branch's
recent runs in a real journal file, what the PR fixed, and links to the run's logs on GitHub."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ci_orchestrator.analytics import WorkflowAnalytics
from ci_orchestrator.journal import JournalStore, import_runs
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.markdown import COMMENT_BUDGET, render_markdown
from ci_orchestrator.report_records import BaseLabel, HealthReport
from ci_orchestrator.reporting import ReportOptions, build_report, render
from ci_orchestrator.state import STATE_DIR
from tests.conftest import assert_golden
from tests.github_server import FakeGitHub, github_fixture, invoke  # noqa: F401 (the fixture)

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
HOUR = 3600.0
MAIN_SHAS = ["1a2b3c4d5e", "2b3c4d5e6f", "3c4d5e6f70", "4d5e6f7081", "5e6f708192", "6f708192a3"]
PR_SHA = "9f2c1e7d4b"
RUN_URL = "https://github.com/octo/shop/actions/runs/9876543210/attempts/2"
ACTIONS = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo/shop",
    "GITHUB_RUN_ID": "9876543210",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_BASE_REF": "main",
    "GITHUB_SHA": PR_SHA,  # the comment job's commit: the run it reports, recorded without a URL
}
MARKER = "<!-- ci-orchestrator:comment pipeline=shop -->"


def passed(name: str, ms: float, **fields: Any) -> StepRecord:
    return StepRecord(
        name, "completed", duration_ms=ms, attempts=(AttemptRecord(1, 0, ms),)
    )._replace(**fields)


def flaky(name: str, ms: float) -> StepRecord:
    attempts = (AttemptRecord(1, 1, ms / 2), AttemptRecord(2, 0, ms / 2))
    return passed(name, ms, flaky=True, reason="passed on attempt 2", attempts=attempts)


def failed(name: str, ms: float, run_id: str, tail: str, **fields: Any) -> StepRecord:
    step = StepRecord(name, "failed", "exit code 1", ms, (AttemptRecord(1, 1, ms),), exit_code=1)
    log = f"{STATE_DIR}/runs/{run_id}/{name}.log"
    return step._replace(log_tail=tail, log_path=log, **fields)


def case(name: str, ok: bool, message: str = "") -> Case:
    module, test = name.rsplit(".", 1)
    return Case(module, module, test, "passed" if ok else "failed", 10, "" if ok else message)


def main_run(i: int) -> RunRecord:
    """Main, run `i` of 6: `e2e` flaky in runs 1 and 4; `test_migrate` failing since run 3,
    `test_expiry` since run 4; everything else passing."""
    run_id = f"main-{i}"
    tests = (
        case("tests.test_api.test_login", True),
        case("tests.test_api.test_logout", True),
        case("tests.test_db.test_migrate", i < 3, "OperationalError: no such table: users"),
        case("tests.test_cache.test_expiry", i < 4, "AssertionError: entry still cached"),
    )
    unit = (
        passed("unit", 30_000, needs=("build",), tests=tests)
        if i < 3
        else failed("unit", 30_000, run_id, "2 failed\n", needs=("build",), tests=tests)
    )
    e2e = flaky("e2e", 90_000) if i in (1, 4) else passed("e2e", 80_000)
    steps = (
        passed("lint", 400),
        passed("docs", 5_000),
        passed("build", 45_000, needs=("lint",)),
        unit,
        e2e._replace(needs=("build",)),
    )
    return record(
        run_id, i, "passed" if i < 3 else "failed", steps, branch="main", sha=MAIN_SHAS[i]
    )


def pr_run() -> RunRecord:
    """The pull request: a test failing only here, the flaky step failing, the test failing on
    main failing here too, the other one fixed; a step failing only here."""
    run_id = "pr-42"
    tests = (
        case("tests.test_api.test_login", True),
        case("tests.test_api.test_logout", False, "AssertionError: 401 != 200"),
        case("tests.test_db.test_migrate", False, "OperationalError: no such table: users"),
        case("tests.test_cache.test_expiry", True),
    )
    steps = (
        passed("lint", 420),
        failed("docs", 4_000, run_id, "docs/api.md:12: broken link\n"),
        passed("build", 46_000, needs=("lint",)),
        failed("unit", 31_000, run_id, "2 failed, 2 passed\n", needs=("build",), tests=tests),
        failed("e2e", 60_000, run_id, "Timeout waiting for the login form\n", needs=("build",)),
    )
    return record(run_id, 8, "failed", steps, branch="feature/login", sha=PR_SHA, pr=42)


def record(
    run_id: str, hour: int, status: str, steps: tuple[StepRecord, ...], *, branch: str, sha: str,
    pr: int | None = None,
) -> RunRecord:  # fmt: skip
    start = T0 + hour * HOUR
    total = sum(s.duration_ms for s in steps)
    steps = tuple(s._replace(started_at=start) for s in steps)
    event = "pull_request" if pr is not None else "push"
    return RunRecord(
        run_id, "shop", status, start, start + total / 1000, total, sha, branch, event, pr, "ci",
        steps,
    )  # fmt: skip


def other_runs() -> list[RunRecord]:
    """History that is not the base's: another pull request failing on main's flaky step, and
    a push to another branch."""
    other_pr = record(
        "pr-41", 6, "failed", (failed("e2e", 1_000, "pr-41", "boom\n"),), branch="main", sha="77",
        pr=41,
    )  # fmt: skip
    dev = record("dev-1", 7, "passed", (passed("e2e", 1_000),), branch="dev", sha="88")
    return [other_pr, dev]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A real journal file: six runs on main, two that are not main's, the pull request's run."""
    path = tmp_path / STATE_DIR / "journal.db"
    store = JournalStore(path)
    import_runs(store, [*map(main_run, range(6)), *other_runs(), pr_run()])
    store.close()
    return path


def pr_report(journal: Path, env: dict[str, str] | None = None) -> HealthReport:
    store = JournalStore(journal, read_only=True)
    try:
        return build_report(store, ReportOptions(run_id="pr-42"), ACTIONS if env is None else env)
    finally:
        store.close()


# --- the labels, from the journal ---


def test_each_failure_is_labelled_against_main(journal: Path) -> None:
    base = pr_report(journal).base

    assert base is not None
    assert (base.base, base.runs, base.window) == ("main", 6, 20)
    assert set(base.labels) == {
        BaseLabel("docs", "new", None, 0, 6),
        BaseLabel("unit", "failing", None, 0, 6, MAIN_SHAS[3]),
        BaseLabel("unit", "new", "tests.test_api.test_logout"),
        BaseLabel("unit", "failing", "tests.test_db.test_migrate", 0, 6, MAIN_SHAS[3]),
        BaseLabel("unit", "fixed", "tests.test_cache.test_expiry", 0, 6, MAIN_SHAS[4]),
        BaseLabel("e2e", "flaky", None, 2, 6),
    }


def test_the_window_bounds_the_base_runs(journal: Path) -> None:
    store = JournalStore(journal, read_only=True)
    run = store.load_run("pr-42")
    assert run is not None
    base = WorkflowAnalytics(store).compare_with_base(run, "main", window=3)
    store.close()

    assert base is not None
    assert base.runs == 3
    labels = {(label.step, label.test): label for label in base.labels}
    assert labels["e2e", None].flaky_runs == 1  # run 4 only: run 1 is out of the window
    assert labels["e2e", None].runs == 3


def test_a_commit_that_failed_and_passed_on_main_is_flaky_not_failing() -> None:
    store = JournalStore()
    again = main_run(5)._replace(id="main-5-rerun", started_at=T0 + 5.5 * HOUR)
    again = again._replace(steps=tuple(s for s in again.steps if s.name != "unit"))
    rerun = (*again.steps, passed("unit", 30_000, needs=("build",)))
    import_runs(store, [*map(main_run, range(6)), again._replace(steps=rerun), pr_run()])
    run = store.load_run("pr-42")
    assert run is not None
    base = WorkflowAnalytics(store).compare_with_base(run, "main")

    assert base is not None
    unit = next(label for label in base.labels if label.step == "unit" and label.test is None)
    assert (unit.kind, unit.flaky_runs, unit.runs) == ("flaky", 1, 7)


def test_no_base_runs_means_no_labels(journal: Path) -> None:
    assert pr_report(journal, {**ACTIONS, "GITHUB_BASE_REF": "release"}).base is None


def test_the_default_branch_is_the_base_without_github_base_ref(
    journal: Path, tmp_path: Path
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"repository": {"default_branch": "main"}}))
    env = {k: v for k, v in ACTIONS.items() if k != "GITHUB_BASE_REF"}
    base = pr_report(journal, {**env, "GITHUB_EVENT_PATH": str(event)}).base

    assert base is not None
    assert base.base == "main"


def test_a_run_on_the_base_branch_is_not_labelled(journal: Path) -> None:
    store = JournalStore(journal, read_only=True)
    health = build_report(store, ReportOptions(run_id="main-5"), ACTIONS)
    store.close()
    assert health.base is None


# --- the comment ---


def test_the_comment_golden(journal: Path) -> None:
    text = render_markdown(pr_report(journal), budget=COMMENT_BUDGET, marker=MARKER)
    assert_golden("markdown_pr_labels.md", text)


def test_the_comment_labels_every_failure(journal: Path) -> None:
    text = render_markdown(pr_report(journal), budget=COMMENT_BUDGET, marker=MARKER)

    assert "History: 9 runs (6 on main) · " in text
    assert "❌ <b>docs</b>: exit code 1 · <i>new</i></summary>" in text
    assert "<b>e2e</b>: exit code 1 · <i>known flaky on main</i> (2 of 6 runs)</summary>" in text
    assert "· <i>also failing on main</i> (failing since 4d5e6f7)</summary>" in text
    assert "- `tests.test_api.test_logout` · *new*: AssertionError: 401" in text
    assert "- `tests.test_db.test_migrate` · *also failing on main* (failing since 4d5e6f7)" in text
    assert "### Fixed by this PR" in text
    assert (
        "- ✅ test `tests.test_cache.test_expiry` in **unit**: failing on main since 5e6f708"
        in text
    )


def test_failures_link_to_the_actions_run_not_to_the_runner(journal: Path) -> None:
    text = render_markdown(pr_report(journal), budget=COMMENT_BUDGET, marker=MARKER)

    assert text.count(f"Log: [on GitHub]({RUN_URL})") == 3
    assert ".ci-orchestrator/runs" not in text
    assert "e2e.log" not in text


def test_outside_actions_the_local_log_path_is_shown(journal: Path) -> None:
    text = render_markdown(pr_report(journal, {"GITHUB_BASE_REF": "main"}))

    assert "Log: `.ci-orchestrator/runs/pr-42/e2e.log`" in text
    assert "actions/runs" not in text
    assert "<i>known flaky on main</i>" in text


def test_a_job_id_links_to_the_job(journal: Path) -> None:
    links = pr_report(journal, {**ACTIONS, "CI_ORCHESTRATOR_JOB_ID": "271828"}).links

    assert links is not None
    assert links.logs == "https://github.com/octo/shop/actions/runs/9876543210/job/271828"


def test_labels_and_links_stay_within_the_comment_budget(journal: Path) -> None:
    health = pr_report(journal)
    assert health.run is not None
    assert health.base is not None
    tail = "".join(f"error line {i}\n" for i in range(400))
    many = tuple(failed(f"fail-{i:03d}", 1_000, "pr-42", tail) for i in range(300))
    labels = tuple(
        BaseLabel(f"fail-{i:03d}", "failing", None, 0, 6, "abcdef123") for i in range(300)
    )
    report = health._replace(
        run=health.run._replace(steps=health.run.steps + many),
        base=health.base._replace(labels=health.base.labels + labels),
    )
    text = render_markdown(report, budget=COMMENT_BUDGET, marker=MARKER)

    assert len(text.encode()) <= COMMENT_BUDGET
    assert (
        "- ❌ **fail-299**: exit code 1 · *also failing on main* (failing since abcdef1)\n" in text
    )
    assert f"\n\nLogs: [on GitHub]({RUN_URL})\n\n" in text
    assert f"Full logs: [on GitHub]({RUN_URL})._" in text
    assert ".ci-orchestrator/runs" not in text


def test_the_real_comment_command_posts_the_labels(journal: Path, github: FakeGitHub) -> None:
    github.add_pull_request(42)
    done = invoke("comment", "--pr", "42", "--run-id", "pr-42", **ACTIONS)

    assert done.code == 0, done.stderr
    [body] = [c["body"] for c in github.comments[42]]
    assert "· <i>known flaky on main</i> (2 of 6 runs)</summary>" in body
    assert f"Log: [on GitHub]({RUN_URL})" in body
    assert ".ci-orchestrator/runs" not in body


# --- JSON ---


def test_report_json_carries_the_labels_and_the_link(journal: Path) -> None:
    data = json.loads(render(pr_report(journal), "json"))

    assert data["links"] == {"logs": RUN_URL}
    assert data["base"]["base"] == "main"
    assert data["base"]["runs"] == 6
    assert {
        "step": "e2e",
        "kind": "flaky",
        "test": None,
        "flaky_runs": 2,
        "runs": 6,
        "failing_since": None,
    } in data["base"]["labels"]


def test_report_json_outside_actions_has_labels_but_no_link(journal: Path) -> None:
    data = json.loads(render(pr_report(journal, {"GITHUB_BASE_REF": "main"}), "json"))

    assert data["links"] is None
    assert len(data["base"]["labels"]) == 6
