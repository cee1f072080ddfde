"""History across runs, under a real runner: nektos/act in host mode (tests/act.py), offline, with
act's own cache server behind actions/cache (issue 12, "a journal that remembers across runs").

Two stories share act runs, nine act runs in all:

- On one cache folder, one after another: three pushes to main (the second with a step that fails
  once and passes on its retry, the third with a failing test), two runs of a pull request against
  main (comments on the fake GitHub), then the nightly health report (.github/workflows/
  nightly-health.yml, installing from the wheelhouse instead of PyPI) publishing its issue there.
- On another: a run that seeds a corrupt journal into the cache; a run of five jobs at once (history
  off, with failures too big for the job summary; no cache service; the corrupt journal; a matrix
  of two legs saving one history); and the run after it, which restores what they saved.

act gives every run GITHUB_RUN_ID 1; each run here gets its own, as on GitHub, so that a link to
"the run" names one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.act import (
    FIXTURES,
    REPOSITORY,
    ROOT,
    ActResult,
    ActSetup,
    Annotation,
    Job,
    act_fixture,  # noqa: F401 (the `act` fixture)
    run_workflow,
)
from tests.github_server import FakeGitHub

SERVER = "https://github.com"  # GITHUB_SERVER_URL as act sets it
PULL = 42  # the pull request in pull_request.json: base main, head `checkout`
PUSH_RUNS = (7001, 7002, 7003)
PULL_RUNS = (7101, 7102)
NIGHTLY_RUN = 7201
PREFIX = "ci-orchestrator-journal-v1"  # the action's cache keys: PREFIX-<history-key>-<branch>-...
HISTORY = "ci-orchestrator history"  # the title of the history steps' annotations
SUMMARY_LIMIT = 1024 * 1024  # GitHub's limit on a job summary

# The test repository's pipeline. `integration` is retried once: flaky when its first attempt
# fails. `test` reports its tests in a JUnit file.
PIPELINE = """\
version: 1
name: shop
steps:
  lint: {run: echo linting}
  integration:
    run: sh integration.sh
    retry: {attempts: 2}
  test:
    run: sh test.sh
    junit: reports/junit.xml
"""
INTEGRATION_PASSES = "echo integration ok\n"
# Fails on the run's first attempt only: the marker lives in this job's RUNNER_TEMP.
INTEGRATION_FAILS_ONCE = """\
marker="$RUNNER_TEMP/integration-attempted"
if [ ! -e "$marker" ]; then
  touch "$marker"
  echo "connection reset by peer" >&2
  exit 1
fi
echo integration ok
"""
INTEGRATION_FAILS = 'echo "connection reset by peer" >&2\nexit 1\n'
TESTS = ("test_total", "test_pay", "test_refund")  # in tests.test_cart


def junit_script(*failing: str) -> str:
    """test.sh: writes reports/junit.xml with TESTS, `failing` ones failed, and exits 1 if any."""
    cases = ""
    for name in TESTS:
        failure = f'<failure message="{name}: expected 3, got 4">AssertionError</failure>'
        cases += f'<testcase classname="tests.test_cart" name="{name}" time="0.01">'
        cases += f"{failure if name in failing else ''}</testcase>"
    suite = f'<testsuite name="cart" tests="{len(TESTS)}">{cases}</testsuite>'
    return f"mkdir -p reports\ncat > reports/junit.xml <<'XML'\n{suite}\nXML\nexit {int(bool(failing))}\n"


# --- the story of one repository: pushes, a pull request, the nightly report ---


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGitHub]:
    """The fake GitHub the pull request comments on and the nightly report publishes to (the
    `github` fixture is per test: these runs outlive a test)."""
    github = FakeGitHub().start()
    github.add_pull_request(PULL)
    yield github
    github.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """act's cache server folder, shared by every run of the story."""
    return tmp_path_factory.mktemp("history-cache")


def run_shop(
    act: ActSetup,
    workdir: Path,
    cache: Path,
    run_id: int,
    integration: str,
    failing: Sequence[str] = (),
    github: FakeGitHub | None = None,
) -> ActResult:
    """history.yml on a new commit: a push to main, or with `github` the pull request."""
    files = {
        ".ci-orchestrator.yml": PIPELINE,
        "integration.sh": integration,
        "test.sh": junit_script(*failing),
    }
    return run_workflow(
        act,
        workdir,
        FIXTURES / "history.yml",
        event="push" if github is None else "pull_request",
        # Without `after`, act takes GITHUB_SHA from the repository: each push its own commit.
        payload=FIXTURES / ("history_push.json" if github is None else "pull_request.json"),
        files=files,
        github=github,
        cache_server=cache,
        env={"GITHUB_RUN_ID": str(run_id)},
    )


@pytest.fixture(scope="module")
def pushes(
    act: ActSetup, tmp_path_factory: pytest.TempPathFactory, cache: Path
) -> tuple[ActResult, ActResult, ActResult]:
    """Three pushes to main in a row: all passing; `integration` flaky; `test_pay` failing."""
    folder = tmp_path_factory.mktemp("pushes")
    first = run_shop(act, folder / "first", cache, PUSH_RUNS[0], INTEGRATION_PASSES)
    second = run_shop(act, folder / "second", cache, PUSH_RUNS[1], INTEGRATION_FAILS_ONCE)
    third = run_shop(act, folder / "third", cache, PUSH_RUNS[2], INTEGRATION_PASSES, ["test_pay"])
    return first, second, third


@dataclass(frozen=True)
class PullRequestRuns:
    first: ActResult
    first_comment: dict[str, Any]  # as the first run left it (the second edits it in place)
    second: ActResult


@pytest.fixture(scope="module")
def pull_request(
    act: ActSetup,
    tmp_path_factory: pytest.TempPathFactory,
    cache: Path,
    server: FakeGitHub,
    pushes: tuple[ActResult, ...],
) -> PullRequestRuns:
    """After the pushes, two runs of pull request 42 against main. The first: `integration` fails
    every attempt (flaky on main), `test_pay` fails (as on main) and `test_refund` (new). The
    second: only `test_pay` fails."""
    folder = tmp_path_factory.mktemp("pull-request")
    first = run_shop(
        act, folder / "first", cache, PULL_RUNS[0], INTEGRATION_FAILS,
        ["test_pay", "test_refund"], server,
    )  # fmt: skip
    comments = server.comments.get(PULL, [])
    first_comment = dict(comments[0]) if comments else {}
    second = run_shop(
        act, folder / "second", cache, PULL_RUNS[1], INTEGRATION_PASSES, ["test_pay"], server
    )
    return PullRequestRuns(first, first_comment, second)


def nightly_workflow(dest: Path) -> Path:
    """.github/workflows/nightly-health.yml as it is, but for its install: the runner's python3
    instead of actions/setup-python (which would download one), and ci-orchestrator from this
    checkout's copy ($CI_ORCHESTRATOR_SOURCE) with the same pinned lock, into a venv on PATH."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly-health.yml").read_text())
    workflow["on"] = workflow.pop(True)  # YAML 1.1 reads the key `on` as true
    job = workflow["jobs"]["health"]
    steps = [s for s in job["steps"] if not str(s.get("uses", "")).startswith("actions/setup-")]
    [install] = [s for s in steps if s.get("name") == "Install ci-orchestrator"]
    install["run"] = (
        'venv="$RUNNER_TEMP/venv"\n'
        'python3 -m venv --without-pip "$venv"\n'
        'pip=(python3 -m pip --python "$venv/bin/python" install --quiet)\n'
        '"${pip[@]}" --require-hashes --no-deps'
        ' -r "$CI_ORCHESTRATOR_SOURCE/ci_orchestrator/github/action-requirements.lock"\n'
        '"${pip[@]}" --no-deps --no-build-isolation "$CI_ORCHESTRATOR_SOURCE"\n'
        'echo "$venv/bin" >> "$GITHUB_PATH"\n'
    )
    job["steps"] = steps
    dest.write_text(yaml.safe_dump(workflow, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def nightly(
    act: ActSetup,
    tmp_path_factory: pytest.TempPathFactory,
    cache: Path,
    server: FakeGitHub,
    pull_request: PullRequestRuns,
) -> ActResult:
    """The nightly report, scheduled, after the pull request's runs; the fake GitHub also has
    two runs of a workflow that does not use ci-orchestrator (Deploy) and one of ci.yml, which
    the nightly workflow leaves out of its import."""
    server.add_run("Deploy", "failure", file="deploy.yml",
                   jobs=[{"name": "deploy", "conclusion": "failure", "failed_step": "Push"}])  # fmt: skip
    server.add_run("Deploy", "success", file="deploy.yml", jobs=[{"name": "deploy"}])
    server.add_run("CI", "failure", file="ci.yml", jobs=[{"name": "pipeline"}])
    folder = tmp_path_factory.mktemp("nightly")
    return run_workflow(
        act,
        folder,
        nightly_workflow(folder / "nightly-health.yml"),
        event="schedule",
        github=server,
        cache_server=cache,
        env={"GITHUB_RUN_ID": str(NIGHTLY_RUN), "CI_ORCHESTRATOR_SOURCE": str(act.action)},
    )


def history_notices(job: Job) -> list[str]:
    return [a.message for a in job.annotations if a.properties.get("title") == HISTORY]


def problems(job: Job) -> list[Annotation]:
    return [a for a in job.annotations if a.level in ("error", "warning")]


def restored_keys(job: Job) -> list[str]:
    """The key each actions/cache restore of the action matched, in order (none on a miss)."""
    return [out["cache-matched-key"] for out in job.outputs.values() if "cache-matched-key" in out]


def commit(job: Job) -> str:
    """The short commit a run was on, from its summary's header (`main` @ `abc1234`)."""
    found = re.search(r"` @ `([0-9a-f]{7})`", job.summary)
    assert found, job.summary[:500]
    return found[1]


def test_a_first_run_is_a_cache_miss_notice_and_an_empty_history(
    pushes: tuple[ActResult, ActResult, ActResult],
) -> None:
    job = pushes[0].job("pipeline")
    assert job.result == "success", job.log
    assert history_notices(job) == [
        "no history restored (no cache yet for this branch, its base or the default branch):"
        " this run starts a new journal"
    ]
    assert problems(job) == []
    assert restored_keys(job) == []
    assert job.outputs["ci.history"]["restore-keys"] == f"{PREFIX}-default-main-"
    assert "History: 1 run ·" in job.summary


def test_a_step_that_passes_on_its_retry_is_flaky_in_outputs_and_summary(
    pushes: tuple[ActResult, ActResult, ActResult],
) -> None:
    first, second = pushes[0].job("pipeline"), pushes[1].job("pipeline")
    assert second.result == "success", second.log  # a flaky step passed: the job passes
    outputs = second.outputs["ci"]
    assert (outputs["success"], outputs["status"]) == ("true", "passed")
    assert (outputs["flaky-steps"], outputs["failed-steps"]) == ("integration", "")
    assert outputs["run-id"] not in ("", first.outputs["ci"]["run-id"])
    assert history_notices(second) == [
        "history restored: 1 run in .ci-orchestrator/journal.db",
        "history merged: 1 run of this job added to the newest cache",
    ]
    assert problems(second) == []  # a flaky pass is no error
    assert restored_keys(second)[0].startswith(f"{PREFIX}-default-main-{PUSH_RUNS[0]}-")
    assert "History: 2 runs ·" in second.summary
    assert "| ⚠️ | integration |" in second.summary
    assert "**integration** passed on attempt 2; failed before: exit code 1" in second.summary
    assert commit(first) != commit(second)  # two pushes, two commits


def test_the_third_push_reports_three_runs_the_flaky_step_and_the_failing_test(
    pushes: tuple[ActResult, ActResult, ActResult],
) -> None:
    result = pushes[2]
    job = result.job("pipeline")
    assert job.result == "failure"
    assert result.exit_code != 0
    assert job.steps["ci.run"] == "failure", job.log
    outputs = job.outputs["ci"]
    assert (outputs["success"], outputs["status"]) == ("false", "failed")
    assert (outputs["failed-steps"], outputs["flaky-steps"]) == ("test", "")
    summary = job.summary
    assert "## ❌ shop health: failed" in summary
    assert "History: 3 runs ·" in summary
    # The step flaky two runs ago, over the history; the test that failed in this one.
    assert re.search(r"^\| integration \| 1/3 \| 33\.3% \|", summary, re.M), summary
    assert "- `tests.test_cart.test_pay`: test\\_pay: expected 3, got 4" in summary
    assert re.search(r"^\| test \| tests\.test\\_cart\.test\\_pay \| 1/3 \|", summary, re.M)
    assert f"{SERVER}/{REPOSITORY}/actions/runs/{PUSH_RUNS[2]}/attempts/1" in summary
    assert ".ci-orchestrator/runs" not in summary  # a path on a runner that is gone


def test_a_failed_step_reaches_the_runner_as_one_error_annotation(
    pushes: tuple[ActResult, ActResult, ActResult],
) -> None:
    job = pushes[2].job("pipeline")
    assert [(a.level, a.properties.get("title"), a.step) for a in problems(job)] == [
        ("error", "test failed", "ci.run")
    ]
    assert problems(job)[0].message.startswith("exit code 1")
    assert history_notices(job) == [
        "history restored: 2 runs in .ci-orchestrator/journal.db",
        "history merged: 1 run of this job added to the newest cache",
    ]


def test_a_pull_request_comment_labels_its_failures_against_main(
    pull_request: PullRequestRuns, pushes: tuple[ActResult, ActResult, ActResult]
) -> None:
    job = pull_request.first.job("pipeline")
    assert job.steps["ci.run"] == "failure", job.log
    assert job.outputs["ci"]["failed-steps"] == "integration,test"
    # refs/pull/42/merge's own history first, then the base branch's (also the default one).
    assert job.outputs["ci.history"]["restore-keys"] == (
        f"{PREFIX}-default-pr-{PULL}-\n{PREFIX}-default-main-"
    )
    assert restored_keys(job)[0].startswith(f"{PREFIX}-default-main-{PUSH_RUNS[2]}-")
    assert pull_request.first_comment, job.log
    assert pull_request.first_comment["user"]["login"] == "github-actions[bot]"
    body = pull_request.first_comment["body"]
    assert "History: 4 runs (3 on main)" in body
    assert "<b>integration</b>: exit code 1 · <i>known flaky on main</i> (1 of 3 runs)" in body
    assert "- `tests.test_cart.test_refund` · *new*:" in body
    since = commit(pushes[2].job("pipeline"))
    assert f"- `tests.test_cart.test_pay` · *also failing on main* (failing since {since}):" in body
    assert f"Log: [on GitHub]({SERVER}/{REPOSITORY}/actions/runs/{PULL_RUNS[0]}/attempts/1)" in body
    assert ".ci-orchestrator/runs" not in body
    assert "connection reset by peer" not in body  # a public repository: no log tails


def test_the_pull_requests_next_run_restores_its_own_history_and_edits_the_comment(
    pull_request: PullRequestRuns, server: FakeGitHub
) -> None:
    job = pull_request.second.job("pipeline")
    assert job.steps["ci.run"] == "failure", job.log
    assert restored_keys(job)[0].startswith(f"{PREFIX}-default-pr-{PULL}-{PULL_RUNS[0]}-")
    [comment] = server.comments[PULL]
    assert comment["id"] == pull_request.first_comment["id"]
    assert "History: 5 runs (3 on main)" in comment["body"]
    assert "test_refund" not in comment["body"].partition("### Failures")[2].partition("###")[0]
    assert f"/actions/runs/{PULL_RUNS[1]}/attempts/1" in comment["body"]
    assert len(server.requests_to("POST", f"/repos/*/issues/{PULL}/comments")) == 1
    assert len(server.requests_to("PATCH", "/repos/*/issues/comments/*")) == 1
    assert all(a.level != "warning" for a in job.annotations)  # a failed comment would be one


def test_the_nightly_report_publishes_step_and_test_history_of_main(
    nightly: ActResult, server: FakeGitHub
) -> None:
    job = nightly.job("health")
    assert job.result == "success", job.log
    assert problems(job) == []
    [issue] = [i for i in server.issues.values() if i["title"] == "Pipeline health"]
    assert issue["user"]["login"] == "github-actions[bot]"
    body = issue["body"]
    # One row per pipeline: main's three pushes, and Deploy's two runs imported (ci.yml's not).
    assert re.search(r"^\| ❌ \| shop \| failing \|.* \| 3 \|", body, re.M), body
    assert re.search(r"^\| ⚠️ \| Deploy \| unstable \|.* \| 2 \|", body, re.M), body
    assert "| CI |" not in body
    shop = body.partition("## ❌ shop health: failed")[2].partition("\n## ")[0]
    assert "History: 3 runs since" in shop
    assert "PR #" not in shop  # the pull request's runs are in its own cache, not main's
    assert re.search(r"^\| integration \| 1/3 \| 33\.3% \|", shop, re.M), shop
    assert "- `tests.test_cart.test_pay`: test\\_pay: expected 3, got 4" in shop
    assert re.search(r"^\| test \| tests\.test\\_cart\.test\\_pay \| 1/3 \|", shop, re.M), shop
    assert "## ❌ shop health: failed" in job.summary  # the same report, in the job summary


def test_the_nightly_report_links_failures_to_the_run_that_had_them(nightly: ActResult) -> None:
    assert nightly.job("health").result == "success"
    summary = nightly.job("health").summary
    assert f"/actions/runs/{NIGHTLY_RUN}/" not in summary
    assert f"/actions/runs/{PUSH_RUNS[2]}/" in summary


# --- the edges: a run of many jobs at once; before it, a run that seeds the cache; after it, a
# --- run that restores what it saved


@dataclass(frozen=True)
class EdgeRuns:
    run: ActResult  # history_edges.yml
    after: ActResult  # history_after.yml
    saved: dict[str, int]  # when history_edges.yml had run: keys in the cache, by history-key
    entries: int  # when history_edges.yml had run: entries in the cache


def small_pipeline(name: str, command: str) -> str:
    return f"version: 1\nname: {name}\nsteps:\n  build: {{run: '{command}'}}\n"


# wait-for.sh NAME: until $SYNC_DIR/NAME exists (a minute at most).
WAIT_FOR = """\
i=0
until [ -e "$SYNC_DIR/$1" ]; do
  i=$((i + 1)); [ "$i" -gt 600 ] && { echo "no $1 after a minute" >&2; exit 1; }
  sleep 0.1
done
"""
HUGE_STEPS = 250
# Each step of huge.yml prints 80 lines of 105 characters and fails: their log tails, at the 6 KB
# the summary shows of each at most, would be 1.5 MB.
FAIL_LOUDLY = f'i=0; while [ $i -lt 80 ]; do echo "$CI_ORCHESTRATOR_STEP {"x" * 100}"; i=$((i+1)); done; exit 1\n'
HISTORY_KEYS = ("off", "absent", "corrupt", "matrix")  # the history-key of each job of the run


@pytest.fixture(scope="module")
def edges(act: ActSetup, tmp_path_factory: pytest.TempPathFactory) -> EdgeRuns:
    folder = tmp_path_factory.mktemp("edges")
    cache, sync = folder / "cache", folder / "sync"
    sync.mkdir()
    seeded = run_workflow(act, folder / "seed", FIXTURES / "history_seed.yml", cache_server=cache)
    assert seeded.job("seed").result == "success", seeded.log
    huge = "".join(f"  s{i:03d}: {{run: sh fail.sh}}\n" for i in range(HUGE_STEPS))
    files = {
        "huge.yml": f"version: 1\nname: huge\nsteps:\n{huge}",
        "fail.sh": FAIL_LOUDLY,
        "small.yml": small_pipeline("small", "echo built"),
        # The matrix legs: the quick one ends once the slow one has started (so both restored
        # before either saves); the slow one ends a second after the quick one saved
        # (`quick-saved`: written by the step after its action).
        "quick.yml": small_pipeline("legs", "sh wait-for.sh slow-started"),
        "slow.yml": small_pipeline(
            "legs", 'touch "$SYNC_DIR/slow-started" && sh wait-for.sh quick-saved && sleep 1'
        ),
        "wait-for.sh": WAIT_FOR,
        "legs.yml": small_pipeline("legs", "echo built"),  # the run after
    }
    env = {"SYNC_DIR": str(sync), "GITHUB_RUN_ID": "7301"}
    run = run_workflow(
        act, folder / "run", FIXTURES / "history_edges.yml", payload=FIXTURES / "history_push.json",
        files=files, cache_server=cache, env=env,
    )  # fmt: skip
    saved = {key: saved_keys(cache, key) for key in HISTORY_KEYS}
    entries = len(cache_entries(cache))
    after = run_workflow(
        act, folder / "after", FIXTURES / "history_after.yml", payload=FIXTURES / "history_push.json",
        files=files, cache_server=cache, env={**env, "GITHUB_RUN_ID": "7302"},
    )  # fmt: skip
    return EdgeRuns(run, after, saved, entries)


def cache_entries(cache: Path) -> list[Path]:
    """The entries act's cache server holds: one file each, under cache/<nn>/."""
    return [path for path in (cache / "cache").glob("*/*") if path.parent.name != "tmp"]


def saved_keys(cache: Path, history_key: str) -> int:
    """How many keys act's cache server holds for `history_key` on main (its index is a BoltDB
    file, keys in it as plain bytes, each in several places)."""
    index = (cache / "bolt.db").read_bytes()
    pattern = rb"%s-%s-main-[\w-]+" % (PREFIX.encode(), history_key.encode())
    return len(set(re.findall(pattern, index)))


def test_history_off_restores_and_saves_nothing(edges: EdgeRuns) -> None:
    job = edges.run.job("off")
    assert job.result == "failure"  # its pipeline fails; see the summary test
    assert "ci.history" not in job.steps
    assert "ci.history" not in job.outputs
    assert restored_keys(job) == []
    assert [o for o in job.outputs.values() if "cache-primary-key" in o] == []
    assert history_notices(job) == []
    assert "History: 1 run ·" in job.summary
    # The jobs with history on saved what they could: the corrupt one and both legs (and the
    # seed before them); `absent` had no cache service.
    assert edges.saved == {"off": 0, "absent": 0, "corrupt": 2, "matrix": 2}
    assert edges.entries == 4


def test_no_cache_service_is_a_warning_never_a_failed_job(edges: EdgeRuns) -> None:
    job = edges.run.job("absent")
    assert job.result == "success", job.log
    assert job.outputs["ci"]["success"] == "true"
    assert "An internal error has occurred in cache backend" in job.log  # actions/cache's info line
    [warning] = problems(job)
    assert (warning.level, warning.properties.get("title")) == ("warning", HISTORY)
    assert warning.message == (
        "no history restored: actions/cache found no cache service on this runner, so this run"
        " starts a new journal and its history cannot be saved"
    )
    assert history_notices(job) == [warning.message]
    assert "History: 1 run ·" in job.summary


def test_a_corrupt_journal_from_the_cache_is_set_aside_with_one_warning(edges: EdgeRuns) -> None:
    job = edges.run.job("corrupt")
    assert job.result == "success", job.log
    assert restored_keys(job)[0] == f"{PREFIX}-corrupt-main-seed"
    [warning] = problems(job)
    assert (warning.level, warning.properties.get("title")) == ("warning", HISTORY)
    assert re.fullmatch(
        r"the restored journal \.ci-orchestrator/journal\.db is not usable; set aside as"
        r" journal\.db\.unusable-\d{8}T\d{6}, this run starts a new journal",
        warning.message,
    ), warning.message
    assert "History: 1 run ·" in job.summary
    aside = warning.message.split("set aside as ")[1].split(",")[0]
    assert re.search(rf"\| {re.escape(aside)}$", job.log, re.M), job.log  # `ls` after the action
    # What it saved is a journal again: the next run restores its run.
    after = edges.after.job("corrupt")
    assert history_notices(after)[0] == "history restored: 1 run in .ci-orchestrator/journal.db"
    assert "History: 2 runs ·" in after.summary


def test_two_legs_saving_at_once_leave_the_next_run_both_runs(edges: EdgeRuns) -> None:
    """Both legs restore an empty history (a cache miss: a notice); the quick one saves its run;
    the slow one restores that again, merges its own and saves both. The legs' pipelines make
    them save in that order, a second apart: act's cache server, like GitHub's, orders entries
    by when they were saved, to the second, and two saves in the same second may each miss the
    other's run (docs/action.md, History), which is not what this test is about."""
    legs = edges.run.job("legs")  # both legs: the harness names them by their job's id
    assert legs.result == "success", legs.log
    miss = (
        "no history restored (no cache yet for this branch, its base or the default branch):"
        " this run starts a new journal"
    )
    assert history_notices(legs) == [
        miss, miss, "history merged: 1 run of this job added to the newest cache"
    ]  # fmt: skip
    assert problems(legs) == []
    assert legs.summary.count("History: 1 run ·") == 2
    after = edges.after.job("legs")
    assert history_notices(after)[0] == "history restored: 2 runs in .ci-orchestrator/journal.db"
    assert "History: 3 runs ·" in after.summary


def test_a_huge_failure_log_is_cut_to_fit_the_job_summary(edges: EdgeRuns) -> None:
    job = edges.run.job("off")
    failed = [f"s{i:03d}" for i in range(HUGE_STEPS)]
    assert job.outputs["ci"]["failed-steps"] == ",".join(failed), job.log[-3000:]
    summary = job.summary
    assert 512 * 1024 < len(summary.encode()) <= SUMMARY_LIMIT
    assert "_Cut to fit GitHub's 1 MiB job summary limit: log tails shortened." in summary
    assert all(f"<b>{name}</b>" in summary for name in failed)  # every failure still named


def test_a_run_with_many_failures_sends_no_more_errors_than_github_shows(
    edges: EdgeRuns,
) -> None:
    job = edges.run.job("off")
    assert job.outputs["ci"]["failed-steps"].count(",") == HUGE_STEPS - 1
    errors = [a for a in job.annotations if a.level == "error"]
    assert len(errors) == 10  # GitHub shows 10 per step: 9 failures, then one naming the rest
    assert errors[-1].message.startswith(f"{HUGE_STEPS - 9} more steps failed: ")
