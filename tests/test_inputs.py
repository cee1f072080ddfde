"""Input fingerprints and the outputs cache, over real git repositories and real files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from ci_orchestrator.changes import PathFilter
from ci_orchestrator.inputs import InputTree, OutputCache, StepInputs, input_fingerprints
from tests.test_changes import _git_env, git  # noqa: F401 - _git_env: an autouse fixture

ODD = ("src/with space.py", "src/new\nline.py", "src/ünïcødé.py")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    git("init", "-q", "-b", "main", str(root), cwd=tmp_path)
    files = {
        ".gitignore": "*.log\ndist/\n",
        "src/app.py": "app",
        "src/util.py": "util",
        "docs/guide.md": "guide",
        "scripts/run.sh": "#!/bin/sh\n",
        **dict.fromkeys(ODD, "odd"),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git("add", "-A", cwd=root)
    git("commit", "-qm", "first", cwd=root)
    return root


STEPS = {
    "lint": StepInputs("ruff check .", {}, None, ("src/**",), ()),
    "docs": StepInputs("mkdocs build", {}, None, ("docs/**",), ()),
    "test": StepInputs(
        "pytest", {"PYTHONUNBUFFERED": "1"}, "src", ("src/**", "!**/util.py"), ("lint",)
    ),
    "deploy": StepInputs("./deploy", {}, None, (), ("test", "docs")),
}


def fingerprints(root: Path, steps: Mapping[str, StepInputs] = STEPS) -> dict[str, str]:
    return input_fingerprints(steps, InputTree.read(root))


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


# --- fingerprints ---


def test_an_unchanged_tree_gives_the_same_fingerprints(repo: Path) -> None:
    first = fingerprints(repo)
    assert first == fingerprints(repo)
    assert len(set(first.values())) == 4
    os.utime(repo / "src" / "app.py", (1, 1))  # touched, same content: same id
    assert fingerprints(repo) == first


def test_the_digest_counts_the_files_it_covers(repo: Path) -> None:
    tree = InputTree.read(repo)
    assert len(tree) == 8
    assert tree.digest(["src/**"])[1] == 5
    assert tree.digest(["src/**", "!src/*.py"])[1] == 0
    assert tree.digest(["**/*.md", "scripts/*"])[1] == 2
    assert tree.digest([]) == tree.digest(["nothing/**"])


def test_edits_change_the_steps_that_cover_them_and_their_dependents(repo: Path) -> None:
    first = fingerprints(repo)
    (repo / "src" / "app.py").write_text("edited")  # unstaged
    unstaged = fingerprints(repo)
    assert changed(first, unstaged) == {"lint", "test", "deploy"}
    git("add", "src/app.py", cwd=repo)
    assert fingerprints(repo) == unstaged  # staged: the same content, the same fingerprint
    git("commit", "-qm", "edit", cwd=repo)
    assert fingerprints(repo) == unstaged  # committed: still the same
    (repo / "src" / "util.py").write_text("edited")  # excluded from test's inputs
    assert changed(unstaged, fingerprints(repo)) == {"lint", "test", "deploy"}  # via `needs`


def test_untracked_and_ignored_files(repo: Path) -> None:
    first = fingerprints(repo)
    (repo / "debug.log").write_text("ignored")
    (repo / "dist").mkdir()
    (repo / "dist" / "app.js").write_text("ignored")
    (repo / "notes.txt").write_text("untracked, no step covers it")
    assert fingerprints(repo) == first
    (repo / "docs" / "new.md").write_text("untracked, covered")
    assert changed(first, fingerprints(repo)) == {"docs", "deploy"}
    git("add", "docs/new.md", cwd=repo)
    git("commit", "-qm", "add", cwd=repo)
    assert changed(first, fingerprints(repo)) == {"docs", "deploy"}  # the same once committed


def test_a_deleted_file_counts_as_absent(repo: Path) -> None:
    first = fingerprints(repo)
    (repo / "docs" / "guide.md").unlink()
    deleted = fingerprints(repo)
    assert changed(first, deleted) == {"docs", "deploy"}
    assert InputTree.read(repo).digest(["docs/**"])[1] == 0
    git("rm", "-q", "docs/guide.md", cwd=repo)
    git("commit", "-qm", "rm", cwd=repo)
    assert fingerprints(repo) == deleted


def test_mode_and_symlinks_count(repo: Path) -> None:
    first = fingerprints(repo)
    (repo / "src" / "app.py").chmod(0o755)
    executable = fingerprints(repo)
    assert changed(first, executable) == {"lint", "test", "deploy"}
    (repo / "src" / "link.py").symlink_to("app.py")
    linked = fingerprints(repo)
    assert changed(executable, linked) == {"lint", "test", "deploy"}
    (repo / "src" / "link.py").unlink()
    (repo / "src" / "link.py").symlink_to("util.py")
    assert changed(linked, fingerprints(repo)) == {"lint", "test", "deploy"}


def test_odd_file_names_are_fingerprinted(repo: Path) -> None:
    tree = InputTree.read(repo)
    assert tree.digest(list(ODD))[1] == 3
    before = tree.digest(["src/ü*"])
    (repo / ODD[2]).write_text("changed")
    (repo / ODD[1]).write_text("changed")
    after = InputTree.read(repo)
    assert after.digest(["src/ü*"]) != before
    assert after.digest(["src/new?line.py"]) != tree.digest(["src/new?line.py"])


def test_command_env_and_cwd_count(repo: Path) -> None:
    first = fingerprints(repo)
    test = STEPS["test"]
    for edited in (
        test._replace(command="pytest -x"),
        test._replace(env={"A": "1"}),
        test._replace(cwd="docs"),
    ):
        steps = {**STEPS, "test": edited}
        assert changed(first, fingerprints(repo, steps)) == {"test", "deploy"}, edited


def test_a_needed_steps_inputs_propagate(repo: Path) -> None:
    steps = {
        "build": StepInputs("make", {}, None, ("docs/**",), ()),
        "test": StepInputs("pytest", {}, None, ("src/**",), ("build",)),
        "e2e": StepInputs("e2e", {}, None, (), ("test",)),
        "other": StepInputs("x", {}, None, ("src/**",), ()),
    }
    first = fingerprints(repo, steps)
    (repo / "docs" / "guide.md").write_text("edited")
    assert changed(first, fingerprints(repo, steps)) == {"build", "test", "e2e"}


def test_a_cycle_is_refused(repo: Path) -> None:
    steps = {
        "a": StepInputs("a", {}, None, (), ("b",)),
        "b": StepInputs("b", {}, None, (), ("a",)),
    }
    with pytest.raises(ValueError, match="cycle"):
        fingerprints(repo, steps)


def test_the_same_checkout_elsewhere_has_the_same_fingerprints(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    git("clone", "-q", str(repo), str(other), cwd=tmp_path)
    assert fingerprints(other) == fingerprints(repo)


def test_a_subfolder_of_a_repository(repo: Path) -> None:
    tree = InputTree.read(repo / "src")
    (repo / "src" / "app.py").write_text("edited")
    assert len(tree) == 5
    assert tree.digest(["*.py"])[1] == 5
    assert InputTree.read(repo / "src").digest(["app.py"]) != tree.digest(["app.py"])


def test_outside_git_the_folder_is_walked(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    for name in ("a.py", ".env", "sub/b.py", ".venv/lib.py", ".ci-orchestrator/x", ".git/HEAD"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    tree = InputTree.read(root)
    assert len(tree) == 3  # dot-folders left out, dot-files kept
    assert tree.digest(["**"])[1] == 3
    first = input_fingerprints(STEPS, tree)
    (root / ".venv" / "lib.py").write_text("changed")
    assert input_fingerprints(STEPS, InputTree.read(root)) == first


def test_the_same_content_has_the_same_id_in_git_and_outside(repo: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    for path in ("src/app.py", "docs/guide.md"):
        (plain / path).parent.mkdir(parents=True, exist_ok=True)
        (plain / path).write_bytes((repo / path).read_bytes())
    globs = ["src/app.py", "docs/*"]
    assert InputTree.read(plain).digest(globs) == InputTree.read(repo).digest(globs)


def test_select_agrees_with_matching_over_a_tree(repo: Path) -> None:
    paths = sorted(git("ls-files", "-z", cwd=repo).split("\0")[:-1])
    for globs in (["**/*.py"], ["!src/**"], ["src/*", "!**/u*", "**/*.md"], ["*"], ["**"]):
        found = PathFilter(globs)
        assert [paths[i] for i in found.select(paths)] == found.matching(paths), globs


# --- the outputs cache ---


@pytest.fixture
def built(repo: Path) -> Path:
    """A build's outputs: a script, a read-only file, a link, a nested folder."""
    dist = repo / "dist"
    (dist / "js" / "deep").mkdir(parents=True)
    (dist / "run.sh").write_text("#!/bin/sh\n")
    (dist / "run.sh").chmod(0o755)
    (dist / "js" / "app.js").write_text("app")
    (dist / "js" / "app.js").chmod(0o444)
    (dist / "js" / "deep" / "x.map").write_text("map")
    (dist / "latest.js").symlink_to("js/app.js")
    (dist / "skip.tmp").write_text("excluded")
    return repo


def state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file and link under dist/: its content or target, and its mode."""
    found = {}
    for path in sorted((root / "dist").rglob("*")):
        if path.is_symlink():
            found[path.relative_to(root).as_posix()] = ("-> " + os.readlink(path), 0)
        elif path.is_file():
            found[path.relative_to(root).as_posix()] = (path.read_text(), path.stat().st_mode)
    return found


def cache(root: Path, limit: int | None = None) -> OutputCache:
    if limit is None:
        return OutputCache(root, root / ".ci-orchestrator")
    return OutputCache(root, root / ".ci-orchestrator", limit_bytes=limit)


def wipe(root: Path) -> None:
    subprocess.run(["chmod", "-R", "u+w", str(root / "dist")], check=True)
    subprocess.run(["rm", "-rf", str(root / "dist")], check=True)


def test_outputs_round_trip(built: Path) -> None:
    before = state(built)
    outputs = cache(built)
    stored = outputs.store("build", "f1", ["dist/**", "!**/*.tmp"])
    assert stored.ok, stored.message
    assert (stored.files, stored.message) == (4, "stored 4 files (0.0 kB)")
    assert outputs.has("build", "f1")
    assert not outputs.has("build", "f2")
    wipe(built)
    (built / "dist").mkdir()
    (built / "dist" / "run.sh").write_text("stale")
    restored = outputs.restore("build", "f1")
    assert restored.ok, restored.message
    assert restored.message == "restored 4 files"
    before.pop("dist/skip.tmp")
    assert state(built) == before  # contents, modes, the link as a link


def test_restoring_never_writes_through_a_link(built: Path, tmp_path: Path) -> None:
    outputs = cache(built)
    assert outputs.store("build", "f1", ["dist/js/app.js"]).ok
    victim = tmp_path / "victim"
    victim.write_text("mine")
    (built / "dist" / "js" / "app.js").unlink()
    (built / "dist" / "js" / "app.js").symlink_to(victim)
    assert outputs.restore("build", "f1").ok
    assert victim.read_text() == "mine"
    assert (built / "dist" / "js" / "app.js").read_text() == "app"


def test_a_missing_entry(built: Path) -> None:
    missing = cache(built).restore("build", "nope")
    assert (missing.ok, missing.message) == (False, "no cached outputs for these inputs")


def test_nothing_matched_stores_nothing(built: Path) -> None:
    result = cache(built).store("build", "f1", ["out/**"])
    assert (result.ok, result.message) == (False, "outputs not stored: out/** matched no file")
    assert not cache(built).has("build", "f1")


def test_too_large_is_not_stored(built: Path) -> None:
    (built / "dist" / "big.bin").write_bytes(b"x" * 200_000)
    result = cache(built, limit=100_000).store("build", "f1", ["dist/**"])
    assert not result.ok
    assert result.message == (
        "outputs not stored: 6 files of 0.2 MB, over the cache's limit of 0.1 MB"
    )
    assert not cache(built).has("build", "f1")
    assert not list((built / ".ci-orchestrator").rglob("*.tar*"))


def test_outputs_outside_the_repository_are_refused(built: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    refused = cache(built).store("build", "f1", ["../secret"])
    assert (refused.ok, refused.message) == (
        False,
        "outputs not stored: '../secret': `..` leads outside the repository",
    )
    (built / "dist" / "escape").symlink_to(tmp_path / "secret")
    refused = cache(built).store("build", "f1", ["dist/**"])
    assert refused.message == "outputs not stored: dist/escape links outside the repository"


def test_a_corrupt_entry_is_dropped(built: Path) -> None:
    outputs = cache(built)
    assert outputs.store("build", "f1", ["dist/**"]).ok
    entry = outputs.entry("build", "f1")
    data = bytearray(entry.read_bytes())
    at = next(i for i in range(0, len(data), 512) if data[i : i + 4] == b"app\0")
    data[at] = ord("A")  # a flipped byte inside a file's data, not in a header
    entry.write_bytes(bytes(data))
    result = outputs.restore("build", "f1")
    assert not result.ok
    assert result.message.startswith("the cached outputs were corrupt (cut short or altered")
    assert not entry.exists()
    assert outputs.store("build", "f1", ["dist/**"]).ok  # rebuilt after the step runs
    entry.write_bytes(entry.read_bytes()[:1000])  # cut short
    result = outputs.restore("build", "f1")
    assert (result.ok, entry.exists()) == (False, False)
    assert "corrupt" in result.message
    entry.write_bytes(b"not a tar file")
    assert not outputs.restore("build", "f1").ok
    assert not entry.exists()


def test_an_entry_leading_outside_the_repository_is_refused(built: Path, tmp_path: Path) -> None:
    outputs = cache(built)
    entry = outputs.entry("build", "f1")
    entry.parent.mkdir(parents=True)
    for name, link in (("../escaped", None), ("dist/link", "../../escaped")):
        with tarfile.open(entry, "w") as archive:
            info = tarfile.TarInfo(name)
            if link is None:
                info.size = 1
                archive.addfile(info, io.BytesIO(b"x"))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            manifest = json.dumps({"files": 1, "sha256": "whatever"}).encode()
            info = tarfile.TarInfo(".ci-orchestrator-outputs.json")
            info.size = len(manifest)
            archive.addfile(info, io.BytesIO(manifest))
        result = outputs.restore("build", "f1")
        assert not result.ok
        assert "corrupt" in result.message
        assert not entry.exists()
        assert not (tmp_path / "escaped").exists()


def test_only_the_newest_entries_are_kept(built: Path) -> None:
    outputs = cache(built)
    for number in range(5):
        assert outputs.store("build", f"f{number}", ["dist/run.sh"]).ok
        os.utime(outputs.entry("build", f"f{number}"), (number, number))
    assert outputs.restore("build", "f2").ok  # used: now the newest
    assert outputs.store("build", "f5", ["dist/run.sh"]).ok
    kept = sorted(p.stem for p in outputs.entry("build", "f5").parent.iterdir())
    assert kept == ["f2", "f4", "f5"]
