"""`ci-orchestrator import-github`: Actions history into the journal, against the fake GitHub."""

from __future__ import annotations

import time

import pytest

from ci_orchestrator.journal import JournalStore
from ci_orchestrator.records import RunRecord
from ci_orchestrator.state import STATE_DIR
from tests.github_server import (
    BAD_GATEWAY,
    FakeGitHub,
    Json,
    github_fixture,  # noqa: F401 (the `github` fixture)
    invoke,
)

HOUR = 3600.0
DAY = 24 * HOUR
RUNS = "/repos/octo/shop/actions/runs"
JOBS: list[Json] = [
    {"name": "lint", "seconds": 12},
    {"name": "test", "conclusion": "failure", "seconds": 95, "failed_step": "Run tests"},
    {"name": "deploy", "conclusion": "skipped"},
]


def journal_runs() -> dict[str, RunRecord]:
    store = JournalStore(STATE_DIR / "journal.db", read_only=True)
    try:
        ids = [row[0] for row in store.query("SELECT id FROM runs")]
        return {run_id: run for run_id in ids if (run := store.load_run(run_id)) is not None}
    finally:
        store.close()


def add_history(github: FakeGitHub) -> None:
    """104 finished CI runs over the last 4 days (one a 120-job matrix, one cancelled), one still
    running, and two runs from 40 days ago."""
    now = time.time()
    for n in range(101):
        github.add_run("CI", "success", created=now - HOUR - n * 900, jobs=JOBS[:1])
    github.add_run("CI", "failure", created=now - 2 * HOUR, pull=42, attempt=2, jobs=JOBS)
    matrix = [{"name": f"test (py3.{n % 4 + 9}, shard {n})"} for n in range(120)]
    github.add_run("CI", "success", created=now - 3 * HOUR, jobs=matrix)
    github.add_run(
        "CI",
        "cancelled",
        created=now - 4 * HOUR,
        jobs=[{"name": "lint", "conclusion": "cancelled"}],
    )
    github.add_run("CI", None, created=now - 60, jobs=[])
    for n in range(2):
        github.add_run("CI", "success", created=now - 40 * DAY - n, jobs=JOBS[:1])


def test_import_reads_every_page_of_runs_and_jobs_and_twice_adds_nothing(
    github: FakeGitHub,
) -> None:
    add_history(github)
    done = invoke("import-github")
    assert done.code == 0, done.stderr
    assert done.stdout == (
        "imported 104 runs (225 jobs) from octo/shop, 0 already present,"
        " 1 not finished (left for a later import)\n"
    )
    run_pages = [r.query.get("page") for r in github.requests_to("GET", RUNS)]
    assert run_pages == [None, "2"]  # the second page ends with the old runs: no third
    job_requests = github.requests_to("GET", f"{RUNS}/*/jobs")
    assert len(job_requests) == 104 + 1  # the matrix run has two pages of jobs

    runs = journal_runs()
    assert len(runs) == 104
    failed = next(r for r in runs.values() if r.status == "failed")
    assert failed.id.startswith("github-")
    assert failed.id.endswith("-2")  # the run's second attempt
    assert (failed.pipeline, failed.trigger, failed.event, failed.pr_number) == (
        "CI",
        "ci",
        "pull_request",
        42,
    )
    assert (failed.branch, len(failed.git_sha or "")) == ("feature", 40)
    assert failed.duration_ms == 120_000
    lint, test, deploy = failed.steps
    assert (lint.name, lint.status, lint.duration_ms) == ("lint", "completed", 12_000)
    assert (test.status, test.reason, test.duration_ms) == (
        "failed",
        "failed at step 'Run tests'",
        95_000,
    )
    assert (deploy.status, deploy.duration_ms, deploy.attempts) == ("skipped", 0, ())
    statuses = sorted(r.status for r in runs.values())
    assert statuses.count("interrupted") == 1
    assert max(len(r.steps) for r in runs.values()) == 120

    github.reset_log()
    again = invoke("import-github")
    assert again.stdout == (
        "imported 0 runs (0 jobs) from octo/shop, 104 already present,"
        " 1 not finished (left for a later import)\n"
    )
    assert not github.requests_to("GET", f"{RUNS}/*/jobs")  # known runs cost no job request
    assert len(journal_runs()) == 104


def test_only_one_workflow_and_only_since(github: FakeGitHub) -> None:
    now = time.time()
    github.add_run("CI", "success", created=now - HOUR, jobs=JOBS[:1])
    github.add_run("CI", "failure", created=now - 3 * DAY, jobs=JOBS[:2])
    github.add_run("Nightly", "success", file="nightly.yml", created=now - 2 * HOUR, jobs=JOBS[:1])
    done = invoke("import-github", "--workflow", "ci.yml", "--since", "2d")
    assert done.code == 0, done.stderr
    assert done.stdout == "imported 1 runs (1 jobs) from octo/shop (ci.yml), 0 already present\n"
    assert [str(r) for r in github.requests_to("GET", "*/runs")] == [
        "GET /repos/octo/shop/actions/workflows/ci.yml/runs"
    ]
    done = invoke("import-github", "--since", "7d")
    assert done.stdout == "imported 2 runs (3 jobs) from octo/shop, 1 already present\n"
    assert sorted(r.pipeline for r in journal_runs().values()) == ["CI", "CI", "Nightly"]


def test_excluded_workflows_cost_no_job_request(github: FakeGitHub) -> None:
    now = time.time()
    github.add_run("CI", "failure", created=now - HOUR, jobs=JOBS[:2])
    github.add_run("Docs", "success", file="docs.yml", created=now - HOUR, jobs=JOBS[:1])
    done = invoke("import-github", "--exclude", "ci.yml")
    assert done.code == 0, done.stderr
    assert done.stdout == (
        "imported 1 runs (1 jobs) from octo/shop, 0 already present, 1 of excluded workflows\n"
    )
    assert len(github.requests_to("GET", f"{RUNS}/*/jobs")) == 1
    assert [r.pipeline for r in journal_runs().values()] == ["Docs"]


def test_the_imported_history_feeds_the_health_report(github: FakeGitHub) -> None:
    now = time.time()
    for n in range(4):
        test: Json = {"name": "test", "seconds": 60}
        if n % 2:
            test |= {"conclusion": "failure", "failed_step": "pytest"}
        conclusion = "failure" if n % 2 else "success"
        github.add_run("CI", conclusion, created=now - n * HOUR, jobs=[JOBS[0], test])
    assert invoke("import-github").code == 0
    done = invoke("report", "--pipeline", "CI", "--format", "markdown")
    assert done.code == 0, done.stderr
    assert "CI health" in done.stdout
    assert "pass rate 50%" in done.stdout
    assert "| test | 2/4 | 50% |" in done.stdout  # the failure hotspot
    failed = next(r.id for r in journal_runs().values() if r.status == "failed")
    done = invoke("report", "--run-id", failed, "--format", "markdown")
    assert "failed at step 'pytest'" in done.stdout


def test_job_conclusions_become_step_statuses(github: FakeGitHub) -> None:
    jobs: list[Json] = [
        {"name": "slow", "conclusion": "timed_out", "failed_step": "Build"},
        {"name": "stopped", "conclusion": "cancelled"},
        {"name": "build", "seconds": 5},
        {"name": "build", "seconds": 7},
    ]
    github.add_run("CI", "failure", created=time.time() - HOUR, jobs=jobs)
    assert invoke("import-github").code == 0
    [run] = journal_runs().values()
    assert [(s.name, s.status, s.reason) for s in run.steps] == [
        ("slow", "failed", "timed out at step 'Build'"),
        ("stopped", "cancelled", "cancelled"),
        ("build", "completed", ""),
        ("build (2)", "completed", ""),
    ]
    assert run.steps[0].timed_out


def test_skipped_and_stale_runs_are_finished_and_not_imported(github: FakeGitHub) -> None:
    now = time.time()
    github.add_run("CI", "skipped", created=now - HOUR, jobs=[])
    github.add_run("CI", "stale", created=now - 2 * HOUR, jobs=[])
    github.add_run("CI", "success", created=now - 3 * HOUR, jobs=JOBS[:1])
    github.add_run("CI", None, created=now - 60, jobs=[])
    line = (
        "imported {} runs ({} jobs) from octo/shop, {} already present,"
        " 2 skipped or stale (nothing ran), 1 not finished (left for a later import)\n"
    )
    assert invoke("import-github").stdout == line.format(1, 1, 0)
    assert invoke("import-github").stdout == line.format(0, 0, 1)
    assert [r.status for r in journal_runs().values()] == ["passed"]
    assert len(github.requests_to("GET", f"{RUNS}/*/jobs")) == 1  # only the run imported


def test_a_run_without_a_workflow_name_is_named_after_its_file(github: FakeGitHub) -> None:
    now = time.time()
    github.add_run(None, "success", file="release.yml", ref="main", created=now - HOUR, jobs=[])
    github.add_run(None, "failure", file="nightly.yml", created=now - 2 * HOUR, jobs=JOBS[1:2])
    done = invoke("import-github", "--since", "1d")
    assert done.code == 0, done.stderr
    assert sorted(r.pipeline for r in journal_runs().values()) == ["nightly.yml", "release.yml"]
    again = invoke("import-github", "--workflow", "release.yml")
    assert (
        again.stdout == "imported 0 runs (0 jobs) from octo/shop (release.yml), 1 already present\n"
    )


def test_a_502_while_paging_is_retried(github: FakeGitHub) -> None:
    github.add_run("CI", "success", created=time.time() - HOUR, jobs=JOBS[:1])
    github.script("GET", RUNS, BAD_GATEWAY)
    github.script("GET", f"{RUNS}/*/jobs", BAD_GATEWAY, BAD_GATEWAY)
    done = invoke("import-github")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("imported 1 runs (1 jobs)")
    assert len(github.requests) == 5


def test_an_unknown_workflow_file_is_one_line(github: FakeGitHub) -> None:
    done = invoke("import-github", "--workflow", "nope.yml")
    assert done.code == 1
    assert done.stderr == (
        "error: GitHub answered 404 Not Found for GET"
        " /repos/octo/shop/actions/workflows/nope.yml/runs: check GITHUB_REPOSITORY, the number"
        " or file name, and that the token can see them\n"
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--since", "soon"], {}, "error: --since: expected a duration like 7d, 12h or 90m"),
        ([], {"GITHUB_TOKEN": ""}, "error: GITHUB_TOKEN is empty"),
        ([], {"GITHUB_REPOSITORY": "octo"}, "error: GITHUB_REPOSITORY: expected OWNER/NAME"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    github: FakeGitHub, args: list[str], env: dict[str, str], message: str
) -> None:
    done = invoke("import-github", *args, **env)
    assert done.code == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert not github.requests
