"""Path globs, and the files changed in the range under test, in real git repositories: a bare
origin, clones of it (shallow ones too, over file://), real pushes and GitHub event payloads."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from ci_orchestrator.changes import (
    ChangeRange,
    PathFilter,
    _translate,
    change_range,
    repo_prefix,
    rooted,
    toplevel,
)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
}  # fmt: skip
ODD = ("with space.txt", "new\nline.txt", "ünïcødé.txt")


@pytest.fixture(autouse=True)
def _git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's own git commands see no host configuration either."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str | None]) -> str:
    """Write (or, for None, delete) files, commit them all; the new commit's id."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-qm", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository with main: two commits."""
    bare, seed = tmp_path / "origin.git", tmp_path / "seed"
    git("init", "-q", "--bare", "-b", "main", str(bare), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    commit(seed, "first", {"README.md": "hi", "src/app.py": "1", "docs/guide.md": "g"})
    commit(seed, "second", {"src/app.py": "2"})
    git("remote", "add", "origin", str(bare), cwd=seed)
    git("push", "-q", "origin", "main", cwd=seed)
    return bare


@pytest.fixture
def work(origin: Path, tmp_path: Path) -> Path:
    """A full clone of origin."""
    git("clone", "-q", str(origin), str(tmp_path / "work"), cwd=tmp_path)
    return tmp_path / "work"


def event(tmp_path: Path, name: str, payload: Mapping[str, object]) -> dict[str, str]:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload))
    return {"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": name, "GITHUB_EVENT_PATH": str(path)}


def known(change: ChangeRange | None) -> frozenset[str]:
    assert change is not None
    assert change.problem is None, change.problem
    assert change.files is not None
    return change.files


# --- globs ---

PATHS = [
    "README.md", ".env", "app.js", "docs/README.md", "docs/file.txt", "docs/mona/octocat.txt",
    "docs/a/b/c.md", "src/app.py", "src/test_app.py", "src/pkg/test_util.py", "src/pkg/util.py",
    "js/index.js", "src/js/app.js", "tests/x-post.md", "a/b/migrate-10.sql", "cat", "bat",
    "[x]", "a*b", "weird/new\nline", "ünï/cødé.py",
]  # fmt: skip

TABLE = [
    (["*"], {"README.md", ".env", "app.js", "cat", "bat", "[x]", "a*b"}),
    (["**"], set(PATHS)),
    (["*.js"], {"app.js"}),  # no `/`: the top only, as GitHub's rule (not .gitignore's)
    (["**.js"], {"app.js", "js/index.js", "src/js/app.js"}),
    (["**/*.js"], {"app.js", "js/index.js", "src/js/app.js"}),  # `**/`: no folder too
    (["docs/*"], {"docs/README.md", "docs/file.txt"}),
    (["docs/**"], {"docs/README.md", "docs/file.txt", "docs/mona/octocat.txt", "docs/a/b/c.md"}),
    (["docs/**/*.md"], {"docs/README.md", "docs/a/b/c.md"}),
    (["**/README.md"], {"README.md", "docs/README.md"}),
    (["src/**/test_*.py"], {"src/test_app.py", "src/pkg/test_util.py"}),
    (["**/*-post.md"], {"tests/x-post.md"}),
    (["**/migrate-*.sql"], {"a/b/migrate-10.sql"}),
    (["[cb]at"], {"cat", "bat"}),
    (["[!c]at"], {"bat"}),
    (["?at"], {"cat", "bat"}),
    (["\\[x]"], {"[x]"}),
    (["a\\*b"], {"a*b"}),
    (["src/app.py"], {"src/app.py"}),  # a literal path
    (["src"], set()),  # a folder's name is not its files
    (["*.md", "!README.md"], set()),  # `*.md` is the top only; the `!` then drops README.md
    (["**.md", "!README.md"], {"docs/README.md", "docs/a/b/c.md", "tests/x-post.md"}),
    (["docs/**", "!docs/**/*.md", "docs/a/**"], {"docs/file.txt", "docs/mona/octocat.txt", "docs/a/b/c.md"}),  # the last match decides
    (["!docs/**", "!src/**"], set(PATHS) - {p for p in PATHS if p.startswith(("docs/", "src/"))}),
    (["!**/*.py", "src/pkg/**"], (set(PATHS) - {"src/app.py", "src/test_app.py", "ünï/cødé.py"})),
    (["./src/../docs/*.txt"], {"docs/file.txt"}),  # `.` and `..` are applied
    (["weird/*"], {"weird/new\nline"}),
    (["ünï/*.py"], {"ünï/cødé.py"}),
    ([], set()),
]  # fmt: skip


@pytest.mark.parametrize(("globs", "expected"), TABLE)
def test_glob_semantics(globs: list[str], expected: set[str]) -> None:
    found = PathFilter(globs)
    assert set(found.matching(PATHS)) == expected
    assert {p for p in PATHS if found.matches(p)} == expected
    ordered = sorted(PATHS)
    assert [ordered[i] for i in found.select(ordered)] == sorted(expected)


def test_select_shares_the_matches_of_each_pattern() -> None:
    ordered = sorted(PATHS)
    memo: dict[str, frozenset[int]] = {}
    first = PathFilter(["docs/**", "!**/*.md"]).select(ordered, memo)
    again = PathFilter(["**/*.md", "src/**"]).select(ordered, memo)
    assert set(memo) == {"docs/**", "**/*.md", "src/**"}
    assert [ordered[i] for i in first] == ["docs/file.txt", "docs/mona/octocat.txt"]
    assert len(again) == 9


@pytest.mark.parametrize(
    ("glob", "problem"),
    [
        ("src/**", None),
        ("!src/**", None),
        ("sub/../src/*", None),
        ("", "empty"),
        ("!", "empty"),
        ("/etc/passwd", "absolute"),
        ("../outside/**", "outside the repository"),
        ("src/../../x", "outside the repository"),
        ("*/../x", "after the wildcard"),
        ("docs/", "docs/**"),
    ],
)
def test_check_says_why_a_glob_is_invalid(glob: str, problem: str | None) -> None:
    found = PathFilter.check(glob)
    if problem is None:
        assert found is None
        PathFilter([glob])
    else:
        assert found is not None
        assert problem in found
        with pytest.raises(ValueError, match=r"glob|absolute|outside|wildcard|docs"):
            PathFilter([glob])


def test_globs_relative_to_a_subfolder_are_rebased_onto_the_root(tmp_path: Path) -> None:
    git("init", "-q", str(tmp_path / "repo"), cwd=tmp_path)
    top = tmp_path / "repo"
    (top / "ci" / "sub").mkdir(parents=True)
    assert toplevel(top / "ci" / "sub") == top.resolve()
    assert toplevel(tmp_path) is None
    prefix = repo_prefix(top / "ci", top)
    assert (repo_prefix(top, top), prefix, repo_prefix(tmp_path, top)) == ("", "ci/", None)
    assert prefix is not None
    globs = [rooted(g, prefix) for g in ["**/*.py", "!tests/**", "../docs/*"]]
    assert globs == ["ci/**/*.py", "!ci/tests/**", "ci/../docs/*"]
    assert PathFilter(globs).matching(["ci/a.py", "ci/tests/t.py", "docs/x", "a.py"]) == [
        "ci/a.py",
        "docs/x",
    ]
    assert PathFilter.check(rooted("../../x", prefix)) is not None


# --- the range: locally ---


def test_changed_since_counts_commits_and_every_uncommitted_change(work: Path) -> None:
    base = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    (work / ".gitignore").write_text("*.log\n")
    commit(
        work,
        "rename, delete, odd names",
        {"src/app.py": None, "src/main.py": "2", "docs/guide.md": None, **dict.fromkeys(ODD, "x")},
    )
    (work / "README.md").write_text("unstaged")
    (work / "staged.txt").write_text("s")
    git("add", "staged.txt", cwd=work)
    (work / "untracked dir").mkdir()
    (work / "untracked dir" / "new.py").write_text("u")
    (work / "ignored.log").write_text("i")
    change = change_range({}, "main", work / "src")  # from a subfolder: paths from the top
    assert known(change) == {
        "src/app.py", "src/main.py", "docs/guide.md", ".gitignore", *ODD,
        "README.md", "staged.txt", "untracked dir/new.py",
    }  # fmt: skip
    assert change is not None
    assert change.base == base
    assert change.source == f"--changed-since main ({base[:7]}), plus uncommitted changes"


def test_changed_since_uses_the_merge_base_not_the_tip(work: Path) -> None:
    git("checkout", "-qb", "feature", cwd=work)
    commit(work, "feature", {"src/feature.py": "f"})
    git("checkout", "-q", "main", cwd=work)
    commit(work, "main moves on", {"docs/later.md": "l"})
    git("checkout", "-q", "feature", cwd=work)
    assert known(change_range({}, "main", work)) == {"src/feature.py"}


def test_changed_since_an_unknown_ref_or_outside_git_is_unknown(work: Path, tmp_path: Path) -> None:
    change = change_range({}, "no-such-branch", work)
    assert change is not None
    assert change.files is None
    assert change.problem == "'no-such-branch' is not a commit in this repository"
    outside = tmp_path / "plain"
    outside.mkdir()
    change = change_range({}, "main", outside)
    assert change is not None
    assert (change.files, change.problem) == (None, "not inside a git work tree")


def test_a_plain_local_run_and_other_events_apply_no_filter(work: Path, tmp_path: Path) -> None:
    assert change_range({}, None, work) is None
    assert change_range(event(tmp_path, "schedule", {}), None, work) is None
    assert change_range(event(tmp_path, "workflow_dispatch", {"ref": "x"}), None, work) is None


# --- the range: the pre-push hook ---


def pre_push(from_ref: str, to_ref: str) -> dict[str, str]:
    return {
        "CI_ORCHESTRATOR_TRIGGER": "pre-push",
        "CI_ORCHESTRATOR_FROM_REF": from_ref,
        "CI_ORCHESTRATOR_TO_REF": to_ref,
    }


def test_pre_push_range(work: Path) -> None:
    before = git("rev-parse", "HEAD", cwd=work)
    after = commit(work, "rename", {"src/app.py": None, "src/renamed.py": "2"})
    change = change_range(pre_push(before, after), None, work)
    assert known(change) == {"src/app.py", "src/renamed.py"}  # a rename: both paths
    assert change is not None
    assert change.source == f"pushed range {before[:7]}..{after[:7]}"
    assert (change.base, change.head) == (before, after)


def test_pre_push_of_a_new_branch_from_its_fork_point(work: Path) -> None:
    fork = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    commit(work, "one", {"docs/new.md": "n"})
    head = commit(work, "two", {"docs/guide.md": "changed"})
    change = change_range(pre_push("", head), None, work)  # the hook found no fork point
    assert known(change) == {"docs/new.md", "docs/guide.md"}
    assert change is not None
    assert change.base == fork
    assert "a new branch, from origin/HEAD" in change.source


def test_pre_push_of_a_new_branch_with_nothing_to_compare_with(tmp_path: Path) -> None:
    """The first push of a repository's main: main itself is no fork point."""
    repo = tmp_path / "fresh"
    git("init", "-q", "-b", "main", str(repo), cwd=tmp_path)
    head = commit(repo, "first", {"a.txt": "a"})
    change = change_range(pre_push("", head), None, repo)
    assert change is not None
    assert change.files is None
    assert change.problem is not None
    assert "no fork point" in change.problem
    empty = change_range(pre_push("", ""), None, repo)
    assert empty is not None
    assert empty.problem == "the hook did not say what it pushes"


# --- the range: GitHub Actions ---


def test_actions_push(work: Path, tmp_path: Path) -> None:
    before = git("rev-parse", "HEAD", cwd=work)
    after = commit(work, "docs", {"docs/guide.md": "new", ODD[0]: "x"})
    change = change_range(event(tmp_path, "push", {"before": before, "after": after}), None, work)
    assert known(change) == {"docs/guide.md", ODD[0]}
    assert change is not None
    assert change.source == f"push {before[:7]}..{after[:7]}"


def test_actions_push_of_a_new_branch(work: Path, tmp_path: Path) -> None:
    fork = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    after = commit(work, "feature", {"src/feature.py": "f"})
    payload = {"before": "0" * 40, "after": after, "repository": {"default_branch": "main"}}
    change = change_range(event(tmp_path, "push", payload), None, work)
    assert known(change) == {"src/feature.py"}
    assert change is not None
    assert change.base == fork
    payload["repository"] = {"default_branch": "trunk"}  # no origin/trunk here
    unknown = change_range(event(tmp_path, "push", payload), None, work)
    assert unknown is not None
    assert unknown.files is None
    assert unknown.problem == "a new branch, and no fork point with origin/trunk in this clone"


def test_actions_pull_request_from_the_merge_base(work: Path, tmp_path: Path) -> None:
    fork = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-qb", "feature", cwd=work)
    head = commit(work, "feature", {"src/feature.py": "f"})
    git("checkout", "-q", "main", cwd=work)
    base = commit(work, "main moves on", {"docs/later.md": "l"})
    payload = {"number": 7, "pull_request": {"number": 7, "base": {"sha": base}, "head": {"sha": head}}}  # fmt: skip
    for name in ("pull_request", "pull_request_target"):
        change = change_range(event(tmp_path, name, payload), None, work)
        assert known(change) == {"src/feature.py"}
        assert change is not None
        assert change.source == f"pull request #7: merge base {fork[:7]}..{head[:7]}"


def test_an_explicit_changed_since_wins_over_the_environment(work: Path, tmp_path: Path) -> None:
    (work / "untracked.txt").write_text("u")
    env = event(tmp_path, "push", {"before": "1" * 40, "after": "2" * 40})
    assert known(change_range(env, "HEAD", work)) == {"untracked.txt"}


# --- shallow clones: what the range lacks is fetched once ---


def shallow_clone(origin: Path, tmp_path: Path, branch: str = "main") -> Path:
    clone = tmp_path / f"shallow-{branch}"
    git("clone", "-q", "--depth", "1", "-b", branch, origin.as_uri(), str(clone), cwd=tmp_path)
    assert git("rev-parse", "--is-shallow-repository", cwd=clone) == "true"
    return clone


def test_a_shallow_push_fetches_the_missing_before(origin: Path, tmp_path: Path) -> None:
    before = git("rev-parse", "main~1", cwd=origin)
    after = git("rev-parse", "main", cwd=origin)
    clone = shallow_clone(origin, tmp_path)
    assert git("cat-file", "-t", after, cwd=clone) == "commit"
    change = change_range(event(tmp_path, "push", {"before": before, "after": after}), None, clone)
    assert known(change) == {"src/app.py"}
    assert git("rev-parse", "--is-shallow-repository", cwd=clone) == "true"  # still shallow


def test_a_shallow_pull_request_fetches_enough_history(origin: Path, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    fork = git("rev-parse", "HEAD", cwd=seed)
    git("checkout", "-qb", "feature", cwd=seed)
    commit(seed, "f1", {"src/f1.py": "1"})
    head = commit(seed, "f2", {"src/f2.py": "2"})
    git("checkout", "-q", "main", cwd=seed)
    base = commit(seed, "main moves on", {"docs/later.md": "l"})
    git("push", "-q", "origin", "main", "feature", cwd=seed)
    clone = shallow_clone(origin, tmp_path)  # like actions/checkout: one commit, not the head
    payload = {"pull_request": {"number": 3, "base": {"sha": base}, "head": {"sha": head}}}
    change = change_range(event(tmp_path, "pull_request", payload), None, clone)
    assert known(change) == {"src/f1.py", "src/f2.py"}
    assert change is not None
    assert change.base == fork


def test_a_commit_that_cannot_be_fetched_leaves_the_range_unknown(
    origin: Path, tmp_path: Path
) -> None:
    after = git("rev-parse", "main", cwd=origin)
    clone = shallow_clone(origin, tmp_path)
    gone = "1234567" + "0" * 33  # on no remote
    change = change_range(event(tmp_path, "push", {"before": gone, "after": after}), None, clone)
    assert change is not None
    assert change.files is None
    assert change.problem is not None
    assert change.problem.startswith("commit 1234567 is not in this clone (a shallow checkout?):")
    assert "fetching it from origin failed" in change.problem
    assert change.source == f"push 1234567..{after[:7]}"


def test_without_a_reachable_origin_the_range_is_unknown(origin: Path, tmp_path: Path) -> None:
    before = git("rev-parse", "main~1", cwd=origin)
    after = git("rev-parse", "main", cwd=origin)
    clone = shallow_clone(origin, tmp_path)
    git("remote", "set-url", "origin", (tmp_path / "nowhere").as_uri(), cwd=clone)
    change = change_range(event(tmp_path, "push", {"before": before, "after": after}), None, clone)
    assert change is not None
    assert change.files is None
    assert change.problem is not None
    assert "fetching it from origin failed" in change.problem


@pytest.mark.parametrize(
    "glob",
    ["*", "**", "*.md", "docs/*", "docs/*.md", "**.js", "**/*.js", "src/**/*.py", "src/**.py",
     "**/README.md", "s*/app.py", "docs/**/c.md", "*/*", "a*b", "src/*app.py", "**/*"],
)  # fmt: skip
def test_string_tests_agree_with_the_regular_expression(glob: str) -> None:
    """The common shapes skip the regular expression; they must mean the same."""
    expected = re.compile(_translate(glob), re.DOTALL)
    assert PathFilter([glob]).matching(PATHS) == [p for p in PATHS if expected.fullmatch(p)]
