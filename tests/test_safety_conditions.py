"""Deploy-like steps never run for a pull request, a pre-push hook or a local run (issue 11).

The templates' `deploy` and `merge` and the demo's `publish` run only for a push to
`refs/heads/<default branch>` in GitHub Actions. Each case runs the real CLI in a real git repository
with the gated step set by `--set`, and the environment GitHub's runner (or the hook) would give it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.conftest import cli

ROOT = Path(__file__).parent.parent
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip
# (pipeline argument, the gated step)
GATED = [
    ("ci_cd", "deploy"),
    ("code_review", "merge"),
    (str(ROOT / "examples/demo.yml"), "publish"),
]
SHIP = 'echo "$CI_ORCHESTRATOR_EVENT $CI_ORCHESTRATOR_REF" > shipped'


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on `main` with one commit."""
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / "README").write_text("hello\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    return work


def actions_env(
    tmp_path: Path, event: str, payload: Mapping[str, object], **variables: str
) -> dict[str, str]:
    """What GitHub's runner sets for a step, with the event payload in a file."""
    path = tmp_path / f"{event}.json"
    path.write_text(json.dumps(payload))
    return {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_EVENT_NAME": event,
        "GITHUB_EVENT_PATH": str(path),
        "GITHUB_SHA": "0" * 40,
        "GITHUB_REPOSITORY": "octo/shop",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        **variables,
    }


def pull_request_env(tmp_path: Path, event: str = "pull_request") -> dict[str, str]:
    """A pull request from a head branch its author named `main`, into `main`."""
    payload = {
        "number": 7,
        "pull_request": {"number": 7, "head": {"ref": "main"}, "base": {"ref": "main"}},
        "repository": {"default_branch": "main"},
    }
    # pull_request runs for the merge ref; pull_request_target for the base branch.
    ref = "refs/pull/7/merge" if event == "pull_request" else "refs/heads/main"
    return actions_env(
        tmp_path, event, payload,
        GITHUB_HEAD_REF="main", GITHUB_BASE_REF="main", GITHUB_REF=ref,
        GITHUB_REF_NAME="7/merge" if event == "pull_request" else "main",
    )  # fmt: skip


def push_env(tmp_path: Path, branch: str = "main", default: str | None = "main") -> dict[str, str]:
    repository = {} if default is None else {"default_branch": default}
    payload = {"ref": f"refs/heads/{branch}", "repository": repository}
    return actions_env(
        tmp_path, "push", payload,
        GITHUB_REF=f"refs/heads/{branch}", GITHUB_REF_NAME=branch, GITHUB_HEAD_REF="",
    )  # fmt: skip


def run_gated(
    repo: Path, pipeline: str, step: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    done = cli("run", pipeline, "--set", f"{step}={SHIP}", "--no-journal", cwd=repo, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def assert_not_run(done: subprocess.CompletedProcess[str], repo: Path, step: str) -> None:
    assert not (repo / "shipped").exists()
    # In GitHub Actions the line opens a ::group:: of the log.
    assert re.search(rf"\b{re.escape(step)}\.{{3,}}Skipped \(condition not met", done.stdout)


@pytest.mark.parametrize(("pipeline", "step"), GATED)
@pytest.mark.parametrize("event", ["pull_request", "pull_request_target"])
def test_a_pull_request_from_a_branch_named_main_ships_nothing(
    repo: Path, tmp_path: Path, pipeline: str, step: str, event: str
) -> None:
    done = run_gated(repo, pipeline, step, pull_request_env(tmp_path, event))
    assert_not_run(done, repo, step)


@pytest.mark.parametrize(("pipeline", "step"), GATED)
def test_a_push_to_the_default_branch_ships(
    repo: Path, tmp_path: Path, pipeline: str, step: str
) -> None:
    run_gated(repo, pipeline, step, push_env(tmp_path))
    assert (repo / "shipped").read_text() == "push refs/heads/main\n"


@pytest.mark.parametrize(
    ("branch", "default"),
    [("feature", "main"), ("main", "trunk"), ("main", None)],
    ids=["other-branch", "default-is-trunk", "event-without-default-branch"],
)
def test_a_push_elsewhere_ships_nothing(
    repo: Path, tmp_path: Path, branch: str, default: str | None
) -> None:
    done = run_gated(repo, "ci_cd", "deploy", push_env(tmp_path, branch, default))
    assert_not_run(done, repo, "deploy")


def test_the_default_branch_comes_from_the_event(repo: Path, tmp_path: Path) -> None:
    run_gated(repo, "ci_cd", "deploy", push_env(tmp_path, "trunk", "trunk"))
    assert (repo / "shipped").read_text() == "push refs/heads/trunk\n"


@pytest.mark.parametrize(("pipeline", "step"), GATED)
def test_a_local_run_on_the_default_branch_ships_nothing(
    repo: Path, pipeline: str, step: str
) -> None:
    # The runner's own environment cannot stand in for what ci-orchestrator detected.
    spoofed = {
        "CI_ORCHESTRATOR_EVENT": "push",
        "CI_ORCHESTRATOR_REF": "refs/heads/main",
        "CI_ORCHESTRATOR_DEFAULT_BRANCH": "main",
    }
    done = run_gated(repo, pipeline, step, spoofed)
    assert_not_run(done, repo, step)


@pytest.mark.parametrize(("pipeline", "step"), GATED)
def test_the_pre_push_hook_ships_nothing(repo: Path, pipeline: str, step: str) -> None:
    done = run_gated(repo, pipeline, step, {"CI_ORCHESTRATOR_TRIGGER": "pre-push"})
    assert_not_run(done, repo, step)


def test_a_real_push_through_the_hook_ships_nothing(repo: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    (repo / ".ci-orchestrator.yml").write_text(
        f"version: 1\nname: web\nextends: ci_cd\nsteps:\n  deploy:\n    run: {json.dumps(SHIP)}\n"
    )
    git("add", ".", cwd=repo)
    git("commit", "-qm", "pipeline", cwd=repo)
    assert cli("install-hook", cwd=repo).returncode == 0
    pushed = subprocess.run(
        ["git", "push", "origin", "main"], cwd=repo, capture_output=True, text=True, check=False,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    assert "deploy" in pushed.stderr + pushed.stdout  # the hook ran the pipeline
    assert not (repo / "shipped").exists()


def step_sees(repo: Path, env: dict[str, str]) -> list[str]:
    show = 'echo "$CI_ORCHESTRATOR_EVENT|$CI_ORCHESTRATOR_REF|$CI_ORCHESTRATOR_PR" > seen'
    done = cli("run", "ci_cd", "--set", f"lint={show}", "--no-journal", cwd=repo, **env)
    assert done.returncode == 0, done.stdout + done.stderr
    return (repo / "seen").read_text().strip().split("|")


def test_steps_see_event_ref_and_pull_request(repo: Path, tmp_path: Path) -> None:
    assert step_sees(repo, pull_request_env(tmp_path)) == ["pull_request", "refs/pull/7/merge", "7"]
    assert step_sees(repo, push_env(tmp_path)) == ["push", "refs/heads/main", ""]
    assert step_sees(repo, {}) == ["local", "refs/heads/main", ""]
    assert step_sees(repo, {"CI_ORCHESTRATOR_TRIGGER": "pre-push"})[0] == "pre-push"
