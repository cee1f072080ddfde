"""Skipping what cannot have changed (`paths:`, `inputs:`, `outputs:`), in real git repositories
through the real command and the real pre-push hook."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from pathlib import Path

import pytest

from ci_orchestrator.hooks import install_hook
from tests.conftest import cli
from tests.test_hooks import git

# Each step says it ran in ../ran (outside the repository: nothing a step writes there is an input).
PIPELINE = """\
version: 1
name: shop
steps:
  docs:
    run: echo docs >> ../ran
    paths: [docs/**]
  build:
    run: mkdir -p dist && cp src/app.py dist/app.py && echo build >> ../ran
    inputs: [src/**]
    outputs: [dist/**]
  test:
    run: test -f dist/app.py && echo test >> ../ran
    needs: [build]
    paths: [src/**, tests/**]
    inputs: [tests/**]
  lint:
    run: echo lint >> ../ran
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on main with src/, tests/ and docs/, its pipeline, and a bare origin that
    already has main."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    files = {
        ".ci-orchestrator.yml": PIPELINE,
        ".gitignore": ".ci-orchestrator/\ndist/\n",
        "src/app.py": "print('shop')\n",
        "tests/test_app.py": "def test(): pass\n",
        "docs/index.md": "# shop\n",
    }
    for name, text in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    git("remote", "add", "origin", str(remote), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    git("remote", "set-head", "origin", "main", cwd=work)
    return work


def ran(repo: Path) -> list[str]:
    """The steps that ran since the last call, in order."""
    marker = repo.parent / "ran"
    names = marker.read_text().split() if marker.exists() else []
    marker.unlink(missing_ok=True)
    return sorted(names)


def change(repo: Path, name: str, text: str, message: str = "") -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    if message:
        git("add", name, cwd=repo)
        git("commit", "-qm", message, cwd=repo)


def run(repo: Path, *args: str) -> str:
    done = cli("run", *args, cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def steps(repo: Path) -> dict[str, tuple[str, str]]:
    """The latest run's steps in the journal: name -> (status, reason)."""
    with sqlite3.connect(repo / ".ci-orchestrator" / "journal.db") as db:
        rows = db.execute(
            "SELECT name, status, reason FROM steps WHERE run_id ="
            " (SELECT id FROM runs ORDER BY started_at DESC LIMIT 1)"
        ).fetchall()
    return {name: (status, reason) for name, status, reason in rows}


# --- paths: through the real pre-push hook ---


def test_a_docs_only_push_skips_test_and_a_src_push_runs_it(repo: Path) -> None:
    install_hook(cwd=repo)
    change(repo, "docs/index.md", "# shop, documented\n", "docs only")
    git("push", "-q", "origin", "main", cwd=repo)
    # docs changed; build has no paths (it runs: no earlier pass); test has no change under its
    # paths, and lint has no filter.
    assert ran(repo) == ["build", "docs", "lint"]
    status, reason = steps(repo)["test"]
    assert (status, reason) == ("skipped", "no changes under src/**, tests/**")

    change(repo, "src/app.py", "print('shop 2')\n", "src")
    git("push", "-q", "origin", "main", cwd=repo)
    assert ran(repo) == ["build", "lint", "test"]  # docs: nothing under docs/ in this push
    assert steps(repo)["docs"] == ("skipped", "no changes under docs/**")


def test_a_new_branch_is_compared_with_where_it_left_main(repo: Path) -> None:
    install_hook(cwd=repo)
    git("switch", "-qc", "feature", cwd=repo)
    change(repo, "tests/test_app.py", "def test(): assert True\n", "a test")
    change(repo, "README.md", "shop\n", "readme")
    git("push", "-q", "origin", "feature", cwd=repo)
    assert ran(repo) == ["build", "lint", "test"]  # tests/ changed on the branch: test runs
    assert steps(repo)["docs"] == ("skipped", "no changes under docs/**")


# --- inputs: and outputs: ---


def test_a_second_run_with_nothing_changed_skips_what_declares_inputs_and_restores_outputs(
    repo: Path,
) -> None:
    run(repo)
    assert ran(repo) == ["build", "docs", "lint", "test"]  # a plain run: no path filter
    first = steps(repo)
    (repo / "dist" / "app.py").unlink()
    output = run(repo)
    assert ran(repo) == ["docs", "lint"]  # no inputs: they always run
    second = steps(repo)
    assert second["build"][0] == "skipped"
    assert second["build"][1].startswith("up to date (passed in run ")
    assert second["test"][0] == "skipped"
    assert (repo / "dist" / "app.py").read_text() == "print('shop')\n"  # put back from the cache
    assert first["build"][0] == "completed"
    assert "up to date" in output


def test_an_edit_reruns_exactly_the_steps_whose_fingerprint_changed(repo: Path) -> None:
    run(repo)
    ran(repo)
    change(repo, "tests/test_app.py", "def test(): assert 1\n")  # uncommitted: still an input
    run(repo)
    assert ran(repo) == ["docs", "lint", "test"]  # build's inputs did not change
    change(repo, "src/app.py", "print('shop 3')\n")
    run(repo)
    assert ran(repo) == ["build", "docs", "lint", "test"]  # test needs build: it reruns too
    assert (repo / "dist" / "app.py").read_text() == "print('shop 3')\n"
    run(repo)
    assert ran(repo) == ["docs", "lint"]
    run(repo, "--set", "test=test -f dist/app.py && echo test >> ../ran # v2")
    assert ran(repo) == ["docs", "lint", "test"]  # its command changed


def test_an_untracked_input_counts_and_an_ignored_file_does_not(repo: Path) -> None:
    run(repo)
    ran(repo)
    change(repo, "src/extra.py", "x = 1\n")  # untracked, not ignored
    run(repo)
    assert ran(repo) == ["build", "docs", "lint", "test"]
    (repo / ".gitignore").write_text(".ci-orchestrator/\ndist/\nsrc/*.log\n")
    run(repo)
    ran(repo)
    change(repo, "src/debug.log", "noise\n")  # ignored
    run(repo)
    assert ran(repo) == ["docs", "lint"]


def test_force_runs_every_step_or_the_one_named(repo: Path) -> None:
    run(repo)
    ran(repo)
    run(repo, "--force", "build")
    assert ran(repo) == ["build", "docs", "lint"]  # build's fingerprint is the same: test stays
    run(repo, "--force", "test")
    assert ran(repo) == ["docs", "lint", "test"]
    run(repo, "--force")
    assert ran(repo) == ["build", "docs", "lint", "test"]
    bad = cli("run", "--force", "tset", cwd=repo)
    assert bad.returncode == 2
    assert "--force: no step named 'tset'" in bad.stderr
    assert "'test'" in bad.stderr


def test_dry_run_says_what_would_run_and_why(repo: Path) -> None:
    run(repo)
    ran(repo)
    change(repo, "src/app.py", "print('dry')\n", "src change")
    plan = cli("run", "--dry-run", "--changed-since", "HEAD~1", cwd=repo)
    assert plan.returncode == 0, plan.stderr
    lines = {line.split()[1]: line for line in plan.stdout.splitlines()[1:]}
    assert "skip (no changes under docs/**)" in lines["docs"]
    assert "changed: src/app.py" in lines["test"]
    assert "skip (" not in lines["build"]  # its input changed
    assert ran(repo) == []  # nothing ran
    change(repo, "src/app.py", "print('shop')\n", "back")  # the content of the first run
    plan = cli("run", "--dry-run", cwd=repo)
    assert "skip (up to date (passed in run " in plan.stdout


def test_rerun_failed_does_not_rerun_steps_skipped_as_unchanged(repo: Path) -> None:
    change(repo, "tests/test_app.py", "def test(): assert 0\n", "break the lint")
    pipeline = (repo / ".ci-orchestrator.yml").read_text()
    (repo / ".ci-orchestrator.yml").write_text(pipeline.replace("echo lint >> ../ran", "exit 1"))
    failed = cli("run", "--keep-going", "--changed-since", "HEAD", cwd=repo)
    assert failed.returncode == 1
    assert steps(repo)["docs"][0] == "skipped"
    ran(repo)
    (repo / ".ci-orchestrator.yml").write_text(pipeline)
    run(repo, "--rerun-failed")
    assert ran(repo) == ["lint"]


def test_the_report_counts_the_time_saved(repo: Path) -> None:
    run(repo)
    run(repo)
    report = cli("report", "--format", "json", cwd=repo)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    reports = data.get("reports", [data])
    assert reports[0]["steps_saved"] == 2
    text = cli("report", cwd=repo).stdout
    assert "saved by 2 skipped steps" in text


def test_graph_marks_the_steps_a_run_would_skip(repo: Path) -> None:
    change(repo, "docs/index.md", "# more\n", "docs")
    text = cli("graph", "--changed-since", "HEAD~1", cwd=repo)
    assert text.returncode == 0, text.stderr
    assert "skip: no changes under src/**, tests/**" in text.stdout
    mermaid = cli("graph", "--format", "mermaid", "--changed-since", "HEAD~1", cwd=repo).stdout
    assert "classDef unchanged" in mermaid


# --- bad input ---


def test_a_glob_that_matches_nothing_is_a_validate_warning(repo: Path) -> None:
    pipeline = (repo / ".ci-orchestrator.yml").read_text()
    (repo / ".ci-orchestrator.yml").write_text(
        pipeline.replace("paths: [docs/**]", "paths: [dcos/**]")
    )
    done = cli("validate", cwd=repo)
    assert done.returncode == 0
    assert "steps.docs.paths: 'dcos/**' matches no file of the repository" in done.stderr
    assert cli("validate", "--strict", cwd=repo).returncode == 2


def test_a_path_outside_the_repository_is_an_error_naming_the_step(repo: Path) -> None:
    pipeline = (repo / ".ci-orchestrator.yml").read_text()
    (repo / ".ci-orchestrator.yml").write_text(
        pipeline.replace("inputs: [src/**]", "inputs: [../secrets/**]")
    )
    done = cli("run", cwd=repo)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert ".ci-orchestrator.yml:9: steps.build.inputs" in done.stderr


def test_a_range_whose_commits_are_missing_runs_the_steps_and_says_why(repo: Path) -> None:
    missing = "0123456789abcdef0123456789abcdef01234567"
    done = cli(
        "run",
        cwd=repo,
        CI_ORCHESTRATOR_TRIGGER="pre-push",
        CI_ORCHESTRATOR_FROM_REF=missing,
        CI_ORCHESTRATOR_TO_REF=git("rev-parse", "HEAD", cwd=repo).stdout.strip(),
    )
    assert done.returncode == 0, done.stderr
    assert ran(repo) == ["build", "docs", "lint", "test"]
    assert "steps with `paths:` run:" in done.stderr
    assert missing[:7] in done.stderr


def test_a_corrupt_cache_entry_is_ignored_and_rebuilt(repo: Path) -> None:
    run(repo)
    ran(repo)
    entries = list((repo / ".ci-orchestrator" / "cache").rglob("*.tar"))
    assert len(entries) == 1, entries
    entries[0].write_bytes(b"not a tar archive")
    (repo / "dist" / "app.py").unlink()
    output = run(repo)
    assert ran(repo) == ["build", "docs", "lint"]  # build runs again; test is still up to date
    assert (repo / "dist" / "app.py").exists()
    assert "build" in output
    with tarfile.open(entries[0]) as rebuilt:
        assert "dist/app.py" in rebuilt.getnames()


def test_outputs_too_large_for_the_cache_warn_and_leave_the_result(repo: Path) -> None:
    env = {"CI_ORCHESTRATOR_OUTPUT_CACHE_LIMIT": "10"}
    done = cli("run", cwd=repo, **env)
    assert done.returncode == 0, done.stderr
    assert "warning: outputs of build:" in done.stderr
    assert steps(repo)["build"][0] == "completed"
    assert not list((repo / ".ci-orchestrator" / "cache").rglob("*.tar"))


def test_an_up_to_date_step_still_passes_its_values_on(repo: Path) -> None:
    (repo / ".ci-orchestrator.yml").write_text(
        "steps:\n"
        "  version:\n"
        '    run: echo "number=1.2" >> "$CI_ORCHESTRATOR_OUTPUT"\n'
        "    inputs: [src/**]\n"
        "  release:\n"
        '    run: echo "release-$CIO_VERSION_NUMBER" >> ../ran\n'
        "    needs: [version]\n"
    )
    run(repo)
    assert ran(repo) == ["release-1.2"]
    run(repo)
    assert steps(repo)["version"][0] == "skipped"
    assert ran(repo) == ["release-1.2"]


def test_changed_since_a_ref_that_is_no_commit_is_one_usage_line(
    repo: Path, tmp_path: Path
) -> None:
    done = cli("run", "--changed-since", "mian", cwd=repo)
    assert done.returncode == 2
    assert done.stderr.startswith("error: --changed-since: 'mian' is not a commit")
    assert done.stderr.count("\n") == 1
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "p.yml").write_text("steps: {a: {run: 'true'}}\n")
    done = cli("run", "p.yml", "--changed-since", "main", cwd=outside)
    assert done.returncode == 2
    assert "is not in a git repository" in done.stderr
    assert ran(repo) == []
