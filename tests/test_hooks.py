"""The pre-push hook in a real git repository pushing to a real (bare, local) remote."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ci_orchestrator.errors import UsageError
from ci_orchestrator.hooks import install_hook, uninstall_hook
from tests.conftest import cli

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip


def git(*args: str, cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
        env={**os.environ, **GIT_ENV, **env},
    )  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with one commit, its pipeline, and a bare remote called origin."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / ".ci-orchestrator.yml").write_text(
        "steps:\n"
        "  check:\n"
        '    run: echo "range $CI_ORCHESTRATOR_FROM_REF..$CI_ORCHESTRATOR_TO_REF" > ../range;'
        " test ! -e FAIL\n"
    )
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    git("remote", "add", "origin", str(remote), cwd=work)
    return work


def commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git("add", name, cwd=repo)
    git("commit", "-qm", name, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def test_push_runs_the_pipeline_with_the_pushed_range(repo: Path) -> None:
    assert "pre-push hook installed" in install_hook(cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    git("push", "-q", "origin", "main", cwd=repo)  # a new branch on the remote: it goes through
    second = commit(repo, "b")
    git("push", "-q", "origin", "main", cwd=repo)
    assert (repo.parent / "range").read_text() == f"range {first}..{second}\n"


def test_a_failing_pipeline_refuses_the_push_and_no_verify_bypasses(repo: Path) -> None:
    install_hook(cwd=repo)
    commit(repo, "FAIL")
    refused = git("push", "origin", "main", cwd=repo, check=False)
    assert refused.returncode != 0
    assert "Failed" in refused.stderr + refused.stdout
    assert git("ls-remote", "origin", cwd=repo).stdout == ""
    git("push", "-q", "--no-verify", "origin", "main", cwd=repo)
    assert git("ls-remote", "origin", cwd=repo).stdout != ""
    commit(repo, "c")
    git("push", "-q", "origin", "main", cwd=repo, CI_ORCHESTRATOR_SKIP="1")


def test_a_deleted_branch_push_runs_nothing(repo: Path) -> None:
    git("push", "-q", "origin", "main:gone", cwd=repo)
    install_hook(cwd=repo)
    commit(repo, "FAIL")
    git("push", "-q", "origin", ":gone", cwd=repo)  # would fail if the pipeline ran


def test_an_existing_hook_is_chained_and_restored(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\necho legacy-ran >> ../legacy.log\n")
    hook.chmod(0o755)
    assert "kept as pre-push.pre-ci-orchestrator" in install_hook(cwd=repo)
    git("push", "-q", "origin", "main", cwd=repo)
    assert (repo.parent / "legacy.log").read_text() == "legacy-ran\n"
    assert (repo.parent / "range").exists()
    assert "restored" in uninstall_hook(cwd=repo)
    assert hook.read_text().startswith("#!/bin/sh\necho legacy-ran")
    assert "nothing changed" in uninstall_hook(cwd=repo)


def test_failing_legacy_hook_still_refuses(repo: Path) -> None:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    install_hook(cwd=repo)
    assert git("push", "origin", "main", cwd=repo, check=False).returncode != 0


def test_outside_a_repository_and_custom_hooks_path(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    with pytest.raises(UsageError, match="not inside a git repository"):
        install_hook(cwd=outside)
    git("config", "core.hooksPath", ".husky", cwd=repo)
    with pytest.raises(UsageError, match=r"core.hooksPath is '.husky'"):
        install_hook(cwd=repo)


def test_cli_outside_a_repository_exits_2(tmp_path: Path) -> None:
    done = cli("install-hook", cwd=tmp_path, GIT_CEILING_DIRECTORIES=str(tmp_path.parent))
    assert done.returncode == 2
    assert done.stderr.startswith("error: not inside a git repository")
