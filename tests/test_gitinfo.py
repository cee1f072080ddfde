"""Where a run happens, read from real git repositories in temporary folders: `detect` and
`TreeReader` give what git gives (the reference is the three git commands `detect` used to run
one after another), and outside any repository they start no git process only to learn there is
none. A fake `git` first on PATH records every command the library starts, then runs the real
one."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_orchestrator.fingerprint import TreeReader, TreeState
from ci_orchestrator.gitdir import outside_repository
from ci_orchestrator.gitinfo import RunContext, detect
from tests.test_changes import GIT_ENV, commit, git

REAL_GIT = shutil.which("git") or "git"
CONFIG = "config init.defaultBranch"
HEAD = "rev-parse HEAD --abbrev-ref HEAD"
ORIGIN_HEAD = "symbolic-ref --short refs/remotes/origin/HEAD"

Calls = Callable[[], list[str]]


@pytest.fixture(autouse=True)
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Calls:
    """No git setting of the host (GIT_* variables, system or global config) leaks in; the global
    config is an empty file a test may write. Returns the git commands started since the last
    call, recorded by a fake `git` that runs the real one."""
    for name in [n for n in os.environ if n.startswith("GIT_")]:
        monkeypatch.delenv(name)
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    log, bin_dir = tmp_path / "git-calls.log", tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\nexec "{REAL_GIT}" "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def started() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return sorted(lines)

    return started


def real_git(*args: str, cwd: Path) -> list[str]:
    """As `detect` always read git: whitespace-separated stdout, nothing when git fails."""
    done = subprocess.run(
        [REAL_GIT, *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.split() if done.returncode == 0 else []


def reference(cwd: Path) -> RunContext:
    """What `detect` returned before it skipped or overlapped git: the commands one after
    another, the configured default asked only when origin/HEAD is unset."""
    head = real_git(*HEAD.split(), cwd=cwd)
    default = real_git(*ORIGIN_HEAD.split(), cwd=cwd)
    configured = [] if default else real_git(*CONFIG.split(), cwd=cwd)
    branch = head[1] if len(head) > 1 and head[1] != "HEAD" else None
    fallback = configured[0] if configured else "main"
    return RunContext(
        sha=head[0] if head else None,
        branch=branch,
        default_branch=default[0].split("/", 1)[-1] if default else fallback,
        ref=f"refs/heads/{branch}" if branch else None,
    )


def git_finds_a_repository(folder: Path) -> bool:
    return subprocess.run(
        [REAL_GIT, "rev-parse", "--git-dir"], cwd=folder, capture_output=True, check=False
    ).returncode == 0  # fmt: skip


def tree(folder: Path) -> TreeState | None:
    return TreeReader(folder).result()


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    folder = tmp_path / "plain" / "deep"
    folder.mkdir(parents=True)
    assert not git_finds_a_repository(folder), "the temporary folder is inside a repository"
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on main with two commits and no remote."""
    root = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(root), cwd=tmp_path)
    commit(root, "first", {"README.md": "hi", "src/app.py": "1"})
    commit(root, "second", {"src/app.py": "2"})
    return root


def test_outside_a_repository_no_git_process_reads_head_or_the_tree(
    plain: Path, calls: Calls
) -> None:
    assert outside_repository(plain)
    assert tree(plain) is None
    assert calls() == []
    context = detect({}, plain)
    assert calls() == [CONFIG]  # the user's configured default, which git reads anywhere
    assert context == reference(plain)
    assert (context.sha, context.branch, context.ref, context.default_branch) == (
        None,
        None,
        None,
        "main",
    )


def test_outside_a_repository_the_globally_configured_default_branch_still_counts(
    plain: Path, tmp_path: Path
) -> None:
    (tmp_path / "gitconfig").write_text("[init]\n\tdefaultBranch = trunk\n")
    context = detect({}, plain)
    assert context.default_branch == "trunk"
    assert context == reference(plain)


def test_the_current_folder_is_the_default(plain: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(plain)
    assert outside_repository()
    assert detect({}) == reference(plain)
    assert TreeReader().result() is None


def test_a_repository_and_its_subfolders(repo: Path, calls: Calls) -> None:
    sha = git("rev-parse", "HEAD", cwd=repo)
    clean = TreeState(git("rev-parse", "HEAD^{tree}", cwd=repo), False)
    for folder in (repo, repo / "src"):
        assert not outside_repository(folder)
        context = detect({}, folder)
        assert context == reference(folder)
        assert (context.sha, context.branch, context.ref) == (sha, "main", "refs/heads/main")
        assert context.default_branch == "main"  # nothing configured, no origin/HEAD
        assert tree(folder) == clean
    assert CONFIG in calls()  # asked, as origin/HEAD is unset


def test_in_a_repository_the_configured_default_applies_when_origin_head_is_unset(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "gitconfig").write_text("[init]\n\tdefaultBranch = trunk\n")
    git("config", "init.defaultBranch", "develop", cwd=repo)  # the repository's own wins
    context = detect({}, repo)
    assert context.default_branch == "develop"
    assert context == reference(repo)


def test_a_detached_head(repo: Path) -> None:
    first = git("rev-parse", "HEAD~1", cwd=repo)
    git("checkout", "-q", "--detach", first, cwd=repo)
    context = detect({}, repo)
    assert (context.sha, context.branch, context.ref) == (first, None, None)
    assert context == reference(repo)


def test_origin_head_names_the_default_branch_and_the_config_is_not_asked(
    repo: Path, tmp_path: Path, calls: Calls
) -> None:
    origin = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(repo), str(origin), cwd=tmp_path)
    git("branch", "develop", cwd=origin)
    git("symbolic-ref", "HEAD", "refs/heads/develop", cwd=origin)
    clone = tmp_path / "clone"
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    git("config", "init.defaultBranch", "trunk", cwd=clone)
    calls()
    context = detect({}, clone)
    assert calls() == sorted([HEAD, ORIGIN_HEAD])
    assert (context.branch, context.default_branch) == ("develop", "develop")
    assert context == reference(clone)


def test_an_unborn_branch(tmp_path: Path) -> None:
    root = tmp_path / "new"
    git("init", "-q", "-b", "main", str(root), cwd=tmp_path)
    assert not outside_repository(root)
    context = detect({}, root)
    assert (context.sha, context.branch, context.ref, context.default_branch) == (
        None,
        None,
        None,
        "main",
    )
    assert context == reference(root)
    assert tree(root) is None


def test_a_linked_worktree(repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git("worktree", "add", "-q", "-b", "feature", str(linked), cwd=repo)
    assert (linked / ".git").is_file()
    assert not outside_repository(linked / "src")
    context = detect({}, linked / "src")
    assert (context.branch, context.sha) == ("feature", git("rev-parse", "HEAD", cwd=repo))
    assert context == reference(linked / "src")
    assert tree(linked) == tree(repo)


def test_a_submodule_whose_git_entry_is_a_gitdir_file(repo: Path, tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    git("init", "-q", "-b", "main", str(upper), cwd=tmp_path)
    git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(repo), "sub", cwd=upper)
    sub = upper / "sub"
    assert (sub / ".git").read_text().startswith("gitdir: ../.git/modules/sub")
    assert not outside_repository(sub / "src")
    context = detect({}, sub / "src")
    assert context.sha == git("rev-parse", "HEAD", cwd=repo)
    assert context == reference(sub / "src")
    assert tree(sub) == tree(repo)


def test_inside_a_bare_repository_git_is_asked(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(repo), str(bare), cwd=tmp_path)
    for folder in (bare, bare / "refs"):
        assert not outside_repository(folder)
        assert detect({}, folder) == reference(folder)


def test_a_git_entry_that_is_no_repository_is_left_to_git(plain: Path) -> None:
    (plain / ".git").mkdir()
    assert not outside_repository(plain)
    assert detect({}, plain) == reference(plain)
    assert tree(plain) is None


@pytest.mark.parametrize("name", ["GIT_DIR", "GIT_WORK_TREE"])
def test_git_dir_or_work_tree_set_means_git_decides(
    name: str, repo: Path, plain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    if name == "GIT_WORK_TREE":
        monkeypatch.delenv("GIT_DIR")
        monkeypatch.setenv("GIT_WORK_TREE", str(repo))
    assert not outside_repository(plain)
    context = detect({}, plain)
    assert context == reference(plain)
    if name == "GIT_DIR":
        assert context.sha == git("rev-parse", "HEAD", cwd=repo)
    assert outside_repository(plain, environ={})


def test_ceiling_directories_stop_the_search(
    repo: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    inner = repo / "src" / "inner"
    inner.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(repo))
    assert outside_repository(inner)
    calls()
    context = detect({}, inner)
    assert calls() == [CONFIG]
    assert context == reference(inner)
    assert context.sha is None
    assert tree(inner) is None
    assert calls() == []


@pytest.mark.parametrize(
    ("ceilings", "outside"),
    [
        pytest.param("{repo}", True, id="the repository's folder"),
        pytest.param("{repo}/src", True, id="a folder between"),
        pytest.param("{repo}/src/", True, id="a trailing slash"),
        pytest.param("{top}", False, id="above the repository"),
        pytest.param("{repo}/src/inner", False, id="the folder itself: not a ceiling"),
        pytest.param("relative:{repo}", True, id="a relative entry is ignored"),
        pytest.param("{top}/missing:{top}", False, id="a missing entry is ignored"),
        pytest.param(":{repo}", True, id="after an empty entry, as written"),
        pytest.param("{link}", True, id="a symlink is resolved"),
        pytest.param(":{link}", False, id="after an empty entry, not resolved"),
        pytest.param("{top}/repo/../repo", True, id="dot-dot is resolved"),
        pytest.param("", False, id="empty"),
        pytest.param("/", False, id="the root"),
    ],
)
def test_ceiling_directories_as_git_reads_them(
    ceilings: str, outside: bool, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inner = repo / "src" / "inner"
    inner.mkdir()
    top = tmp_path.resolve()
    (top / "link").symlink_to(top / "repo")
    value = ceilings.format(repo=top / "repo", top=top, link=top / "link")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", value)
    assert git_finds_a_repository(inner) is not outside
    assert outside_repository(inner) is outside
    assert detect({}, inner) == reference(inner)


def test_a_symlink_into_a_repository_is_followed(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "shortcut").symlink_to(repo / "src")
    assert not outside_repository(tmp_path / "shortcut")
    assert detect({}, tmp_path / "shortcut") == reference(tmp_path / "shortcut")


def test_a_missing_folder_is_left_to_git(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert not outside_repository(missing)
    assert detect({}, missing) == RunContext(default_branch="main")
