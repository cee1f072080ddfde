"""The composite action under a real runner: nektos/act in host mode (tests/act.py), offline.

act runs are the slow part of the suite (each job installs ci-orchestrator into a new venv, as the
action does on GitHub), so scenarios share runs: one push runs three jobs at once (a passing
pipeline, a failing step, a bad input), and the pull request scenario is two runs.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.act import (
    FIXTURES,
    ActResult,
    ActSetup,
    act_fixture,  # noqa: F401 (the `act` fixture)
    pinned_actions,
    run_workflow,
)
from tests.github_server import (
    FakeGitHub,
    github_fixture,  # noqa: F401 (the `github` fixture)
)

TOKEN = f"tok-{secrets.token_hex(8)}"  # made up per session: it appears nowhere but token.txt
PULL = 42  # the pull request in pull_request.json


@pytest.fixture(scope="module")
def push(act: ActSetup, tmp_path_factory: pytest.TempPathFactory) -> ActResult:
    """push.yml, once for the module: a push to main (push.json) with jobs passing, failing and
    bad-input."""
    return run_workflow(
        act,
        tmp_path_factory.mktemp("push"),
        FIXTURES / "push.yml",
        payload=FIXTURES / "push.json",
        files={"token.txt": f"{TOKEN}\n"},
    )


def test_a_passing_pipeline_sets_outputs_summary_and_junit(push: ActResult) -> None:
    job = push.job("passing")
    assert job.result == "success", job.log
    outputs = job.outputs["ci"]
    assert outputs["success"] == "true"
    assert outputs["status"] == "passed"
    assert outputs["failed-steps"] == ""
    assert outputs["flaky-steps"] == ""
    assert outputs["run-id"] != ""
    assert Path(outputs["junit-path"]).is_absolute()
    assert Path(outputs["junit-path"]).name == "ci-orchestrator-junit.xml"
    # The runner's workspace is gone after the job: the file reached the next step, which
    # uploaded it (with if-no-files-found: error).
    junit = ET.parse(push.artifacts / "junit" / "ci-orchestrator-junit.xml").getroot()
    assert {case.get("name") for case in junit.iter("testcase")} >= {"lint", "build", "test"}
    assert [a for a in job.annotations if a.level in ("error", "warning")] == []
    assert "ci\\_cd health: passed" in job.summary
    assert "|  | Step | Duration |" in job.summary
    for step in ("lint", "build", "test"):
        assert f"| ✅ | {step} |" in job.summary
    # A push to the default branch is the one event that deploys.
    assert "| ✅ | deploy |" in job.summary


def test_a_value_masked_by_a_step_never_reaches_the_log(push: ActResult) -> None:
    assert push.job("passing").result == "success", push.job("passing").log
    assert "built with ***" in push.log  # the step printed it, and the runner masked it
    assert TOKEN not in push.log
    assert push.leaks(TOKEN) == []


def test_a_failing_step_fails_the_job_with_an_annotation_and_outputs(push: ActResult) -> None:
    job = push.job("failing")
    assert job.result == "failure"
    assert job.steps["ci"] == "failure"
    assert job.steps["ci.run"] == "failure", job.log
    errors = [a for a in job.annotations if a.level == "error"]
    assert len(errors) == 1, job.log
    assert "test" in errors[0].properties.get("title", "")
    assert "expected 3, got 4" in errors[0].message
    outputs = job.outputs["ci"]
    assert outputs["success"] == "false"
    assert outputs["status"] == "failed"
    assert outputs["failed-steps"] == "test"
    assert outputs["run-id"] != ""
    assert "ci\\_cd health: failed" in job.summary


def test_a_bad_input_is_one_error_line_and_no_traceback(push: ActResult) -> None:
    job = push.job("bad-input")
    assert job.result == "failure"
    assert job.steps["ci"] == "failure"
    assert [a.message for a in job.annotations if a.level == "error"] == [
        "jobs input: expected a whole number of at least 1, got 'zero'"
    ]
    assert job.outputs["ci"]["run-id"] == ""  # nothing ran
    assert job.summary == ""
    assert "Traceback" not in push.log


def test_a_pull_request_gets_one_comment_that_later_runs_edit(
    act: ActSetup, github: FakeGitHub, tmp_path: Path
) -> None:
    github.add_pull_request(PULL)

    def run(name: str, test_script: str) -> ActResult:
        return run_workflow(
            act,
            tmp_path / name,
            FIXTURES / "pull_request.yml",
            event="pull_request",
            payload=FIXTURES / "pull_request.json",
            files={"test.sh": test_script},
            github=github,
            cache_server=tmp_path / "cache-server",  # the second run restores the first's history
        )

    first = run("first", "echo all good\n")
    assert first.job("pipeline").result == "success", first.job("pipeline").log
    assert first.exit_code == 0
    assert len(github.comments.get(PULL, [])) == 1, first.job("pipeline").log
    [comment] = [dict(c) for c in github.comments[PULL]]  # a copy: an edit changes the original
    assert comment["user"]["login"] == "github-actions[bot]"
    assert "passed" in comment["body"]

    second = run("second", "echo 'expected 3, got 4'; exit 1\n")
    assert second.job("pipeline").steps["ci.run"] == "failure", second.job("pipeline").log
    assert second.job("pipeline").result == "failure"
    assert second.exit_code != 0
    [edited] = github.comments[PULL]
    assert edited["id"] == comment["id"]
    assert edited["body"] != comment["body"]
    assert "failed" in edited["body"]
    assert "History: 2 runs" in edited["body"]  # actions/cache restored the first run's journal
    assert len(github.requests_to("POST", f"/repos/*/issues/{PULL}/comments")) == 1
    assert len(github.requests_to("PATCH", "/repos/*/issues/comments/*")) == 1
    # A comment that fails is a warning; there was none.
    assert all(a.level != "warning" for a in second.job("pipeline").annotations)


def test_every_action_the_project_pins_runs_offline(act: ActSetup) -> None:
    if not act.offline:
        pytest.skip("online: act fetches the pinned actions from GitHub")
    missing = pinned_actions() - set(act.local_repositories)
    assert not missing, f"{sorted(missing)}: no local copy or stand-in (tests/fixtures/workflows)"


def test_a_run_that_outlives_its_timeout_is_stopped_with_every_process(
    act: ActSetup, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(pytest.fail.Exception, match="act ran longer than 3s"):
        run_workflow(act, tmp_path, FIXTURES / "hang.yml", env={"PIDS": str(pids)}, timeout=3)
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 3  # bash, a sleep in its own session, a sleep in bash's group
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []


def test_the_artifact_stand_ins_carry_files_between_jobs(act: ActSetup, tmp_path: Path) -> None:
    files = {"data/lint.txt": "lint journal\n", "data/test.txt": "test journal\n"}
    result = run_workflow(act, tmp_path, FIXTURES / "artifacts.yml", files=files)
    assert result.job("download").result == "success", result.log
    assert (result.artifacts / "journal-lint" / "lint.txt").read_text() == "lint journal\n"
    assert "| lint journal" in result.log
    assert "| test journal" in result.log
    assert result.job("download").outputs["download"]["download-path"].endswith("/journals")
