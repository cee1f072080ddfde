"""Flaky, broken, new and fixed, with evidence (issue 14, items 4-6).

Real runs through the real CLI in a real git repository: a `--set` override or an uncommitted
change never makes a step look flaky, an amended commit with the same tree keeps the evidence.
A history seeded through the journal API into a real SQLite file: broken since, fixed at, new
failures, the latest run's failures marked known flaky or not, and every count in one unit."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options

from ci_orchestrator.analytics import (
    FLAKY_TESTS_SHOWN,
    Outcome,
    Scope,
    WorkflowAnalytics,
    change_of,
)
from ci_orchestrator.fingerprint import read_tree, step_fingerprint
from ci_orchestrator.journal import JournalStore, import_runs
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.markdown import render_markdown
from ci_orchestrator.render.report_text import render_text
from ci_orchestrator.report_records import (
    Change,
    Evidence,
    EvidenceCount,
    FailureMark,
    FlakyStep,
    HealthReport,
    Hotspot,
    RunRef,
)
from tests.conftest import cli

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a pipeline: `lint` runs the committed lint.sh; `flip` fails when a
    marker outside the repository is missing (and makes it), so its next run passes."""
    root = tmp_path / "repo"
    root.mkdir()
    marker = tmp_path / "marker"
    (root / ".ci-orchestrator.yml").write_text(
        "version: 1\nname: shop\nsteps:\n"
        "  lint: {run: sh lint.sh}\n"
        f"  flip: {{run: 'test -e {marker} || {{ touch {marker}; exit 1; }}'}}\n"
    )
    (root / "lint.sh").write_text("exit 0\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "start")
    return root


def run(repo: Path, run_id: str, *args: str) -> int:
    done = cli("run", "--run-id", run_id, *args, cwd=repo)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode


def report(repo: Path, fmt: str = "json") -> Any:
    done = cli("report", "--format", fmt, cwd=repo)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if fmt == "json" else done.stdout


def flaky_steps(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["step"]: entry for entry in data["flaky"]}


# --- real runs ---


def test_a_set_override_never_makes_a_step_flaky(repo: Path) -> None:
    (repo / "../marker").touch()  # `flip` passes throughout
    assert run(repo, "r1", "--set", "lint=exit 3") == 1
    assert run(repo, "r2") == 0
    assert run(repo, "r3", "--set", "lint=exit 3") == 1

    data = report(repo)
    assert "lint" not in flaky_steps(data)  # same clean tree, but another command
    store = JournalStore(repo / ".ci-orchestrator/journal.db", read_only=True)
    runs = [store.load_run(f"r{i}") for i in (1, 2, 3)]
    assert {(r.tree, r.dirty) for r in runs if r} == {
        (git(repo, "rev-parse", "HEAD^{tree}"), False)
    }
    prints = [r.step("lint").fingerprint for r in runs if r]
    assert prints[0] == prints[2] != prints[1]
    # The latest run's failure is a new one for the overridden command only: no earlier run of it
    # passed, so nothing is said to have broken or been fixed.
    assert data["changes"] == []
    assert data["run_failures"] == [
        {"step": "lint", "test": None, "known_flaky": False, "flaky_runs": 0, "runs": 0,
         "change": None},
    ]  # fmt: skip


def test_an_uncommitted_fix_is_no_evidence_and_its_commit_is_the_fix(repo: Path) -> None:
    (repo / "../marker").touch()
    (repo / "lint.sh").write_text("echo 'lint: 1 error'; exit 1\n")
    git(repo, "commit", "-qam", "break lint")
    broken = git(repo, "rev-parse", "HEAD")
    assert run(repo, "r1") == 1
    assert run(repo, "r2") == 1  # the same code fails again: broken, not flaky
    (repo / "lint.sh").write_text("exit 0\n")  # fixed, not committed
    assert run(repo, "r3") == 0
    data = report(repo)
    assert "lint" not in flaky_steps(data)
    assert data["changes"] == []  # a run with uncommitted changes is on no commit

    git(repo, "commit", "-qam", "fix lint")
    fixed = git(repo, "rev-parse", "HEAD")
    assert run(repo, "r4") == 0
    data = report(repo)
    assert "lint" not in flaky_steps(data)
    [change] = data["changes"]
    assert (change["step"], change["kind"], change["sha"]) == ("lint", "fixed", fixed)
    assert (change["failed_runs"], change["commits"]) == (2, 1)
    assert change["first_seen"]["run_id"] == "r1"
    assert change["first_seen"]["sha"] == broken
    assert (change["last_seen"]["run_id"], change["fixed_in"]["run_id"]) == ("r2", "r4")
    assert re.search(
        rf"fixed at\s+lint\s+-\s+{fixed[:7]}\s+2\s+1\s+r1\s+r2\s+r4", report(repo, "text")
    )


def test_an_amended_commit_with_the_same_tree_keeps_the_evidence(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    assert run(repo, "r1") == 1  # `flip` fails: no marker yet
    git(repo, "commit", "-q", "--amend", "-m", "start, reworded")
    amended = git(repo, "rev-parse", "HEAD")
    assert amended != first
    assert run(repo, "r2") == 0  # the same tree: `flip` passes now

    data = report(repo)
    flip = flaky_steps(data)["flip"]
    assert (flip["flaky_runs"], flip["runs"]) == (1, 2)
    assert flip["kinds"] == [{"kind": "same-tree", "runs": 1}]
    [evidence] = flip["evidence"]
    assert (evidence["kind"], evidence["run_id"], evidence["sha"]) == ("same-tree", "r1", first)
    assert evidence["other_run"] == "r2"
    assert flip["first_seen"]["run_id"] == flip["last_seen"]["run_id"] == "r1"
    assert "lint" not in flaky_steps(data)
    assert "same-tree flip" in report(repo, "markdown")


def test_the_tree_is_read_from_git_and_unknown_outside_a_repository(
    repo: Path, tmp_path: Path
) -> None:
    clean = read_tree(repo)
    assert clean is not None
    assert clean == (git(repo, "rev-parse", "HEAD^{tree}"), False)
    (repo / "untracked.txt").write_text("not part of the code\n")
    assert read_tree(repo) == clean
    (repo / "lint.sh").write_text("exit 2\n")
    dirty = read_tree(repo)
    assert dirty is not None
    assert dirty.dirty
    assert dirty.tree != clean.tree
    (repo / "lint.sh").write_text("exit 3\n")
    assert read_tree(repo) not in (clean, dirty)  # another change, another fingerprint
    outside = tmp_path / "plain"
    outside.mkdir()
    assert read_tree(outside) is None


def test_step_fingerprints_cover_command_env_and_cwd(tmp_path: Path) -> None:
    here = str(tmp_path)
    base = step_fingerprint("make", {"A": "1"}, None, here)
    assert base == step_fingerprint("make", {"A": "1"}, here, here)  # "." either way
    assert base != step_fingerprint("make -k", {"A": "1"}, None, here)
    assert base != step_fingerprint("make", {"A": "2"}, None, here)
    assert base != step_fingerprint("make", {"A": "1"}, f"{here}/sub", here)
    assert step_fingerprint(None, {}, None, here) is None
    # The same checkout in another folder runs the same step.
    assert step_fingerprint("make", {}, f"{here}/sub", here) == step_fingerprint(
        "make", {}, "/elsewhere/sub", "/elsewhere"
    )


# --- a seeded history ---

SHA = {i: f"{i:x}" * 40 for i in range(1, 9)}


def step(name: str, failed: bool = False, **fields: Any) -> StepRecord:
    status = "failed" if failed else "completed"
    attempts = (AttemptRecord(1, int(failed), 1000.0),)
    return StepRecord(name, status, duration_ms=1000.0, attempts=attempts,
                      fingerprint=f"fp-{name}")._replace(**fields)  # fmt: skip


def seeded_run(run_id: str, commit: int, hour: float, **behaviour: Any) -> RunRecord:
    """main, commit `commit` (clean tree t<commit> unless `dirty`): `lint` fails when asked,
    `build` too, then `deploy` is skipped; `unit` fails with any of its failed tests."""
    bad_tests = behaviour.get("tests", set())
    cases = tuple(
        Case("unit", "tests.test_shop", name, "failed" if name in bad_tests else "passed", 10.0,
             flaky=name in behaviour.get("reported", set()))
        for name in ("test_ok", "test_new", "test_flaky")
    )  # fmt: skip
    build_failed = behaviour.get("build", False)
    deploy = step("deploy", needs=("build",))
    if build_failed:
        deploy = StepRecord("deploy", "skipped", "dependency 'build' failed", needs=("build",))
    elif behaviour.get("deploy_retried"):
        retried = (AttemptRecord(1, 1, 500.0), AttemptRecord(2, 0, 500.0))
        deploy = step("deploy", attempts=retried, flaky=True, reason="passed on attempt 2")
    steps = (
        step("lint", behaviour.get("lint", False)),
        step("build", build_failed),
        step("unit", bool(bad_tests), tests=cases),
        deploy,
    )
    started = 1_714_564_800.0 + hour * 3600
    status = "failed" if any(s.status == "failed" for s in steps) else "passed"
    return RunRecord(
        run_id, "shop", status, started, started + 60, 60_000.0, SHA[commit], "main",
        steps=steps, tree=f"t{commit}", dirty=behaviour.get("dirty", False),
    )  # fmt: skip


def seeded_history() -> list[RunRecord]:
    return [
        seeded_run("r1", 1, 1),
        seeded_run("r2", 2, 2, deploy_retried=True, reported={"test_flaky"}),
        seeded_run("r3", 3, 3, lint=True),
        seeded_run("r4a", 4, 4, lint=True, tests={"test_flaky"}),
        seeded_run("r4b", 4, 4.5, lint=True),  # the same tree: test_flaky passed this time
        seeded_run("r5", 5, 5, lint=True),
        seeded_run("r6", 6, 6),
        seeded_run("r6d", 6, 6.5, lint=True, dirty=True),  # uncommitted changes: left out
        seeded_run("r7", 7, 7, build=True),
        seeded_run("r8", 8, 8, build=True, tests={"test_new", "test_flaky"}),
    ]


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    store = JournalStore(path)
    import_runs(store, seeded_history())
    store.close()
    return path


def seeded_report(path: Path, fmt: str) -> str:
    done = cli("report", "--journal", str(path), "--format", fmt)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_broken_since_new_and_fixed_at_in_the_json_report(seeded: Path) -> None:
    data = json.loads(seeded_report(seeded, "json"))
    changes = [(c["kind"], c["step"], c["test"], c["sha"]) for c in data["changes"]]
    assert changes == [
        ("broken", "build", None, SHA[7]),
        ("new", "unit", "tests.test_shop.test_new", SHA[8]),
        ("fixed", "lint", None, SHA[6]),
    ]
    broken, new, fixed = data["changes"]
    assert (broken["failed_runs"], broken["commits"]) == (2, 2)
    assert (broken["first_seen"]["run_id"], broken["last_seen"]["run_id"]) == ("r7", "r8")
    assert (new["failed_runs"], new["commits"], new["first_seen"]["run_id"]) == (1, 1, "r8")
    assert (fixed["failed_runs"], fixed["commits"]) == (4, 3)  # r3, r4a, r4b, r5
    assert (fixed["first_seen"]["run_id"], fixed["last_seen"]["run_id"]) == ("r3", "r5")
    assert fixed["fixed_in"]["run_id"] == "r6"


def test_the_latest_runs_failures_are_marked_known_flaky_or_not(seeded: Path) -> None:
    data = json.loads(seeded_report(seeded, "json"))
    marks = {(m["step"], m["test"]): m for m in data["run_failures"]}
    assert set(marks) == {
        ("build", None),
        ("unit", None),
        ("unit", "tests.test_shop.test_new"),
        ("unit", "tests.test_shop.test_flaky"),
    }
    assert marks["build", None]["known_flaky"] is False
    assert marks["build", None]["change"] == "broken"
    assert marks["unit", "tests.test_shop.test_new"]["change"] == "new"
    flaky = marks["unit", "tests.test_shop.test_flaky"]
    assert (flaky["known_flaky"], flaky["flaky_runs"], flaky["runs"]) == (True, 2, 10)
    assert flaky["change"] is None  # a known flaky test failing on one commit is not "new"
    assert (marks["unit", None]["known_flaky"], marks["unit", None]["flaky_runs"]) == (True, 1)


def test_flaky_sections_carry_their_evidence(seeded: Path) -> None:
    data = json.loads(seeded_report(seeded, "json"))
    steps = {f["step"]: f for f in data["flaky"]}
    assert set(steps) == {"deploy", "unit"}  # lint failed twice on commit 4: broken, not flaky
    deploy = steps["deploy"]
    assert (deploy["flaky_runs"], deploy["runs"]) == (1, 8)  # skipped in r7 and r8
    assert deploy["evidence"][0]["kind"] == "retry"
    [test] = data["flaky_tests"]
    assert test["test"] == "tests.test_shop.test_flaky"
    assert [(e["kind"], e["run_id"], e["other_run"]) for e in test["evidence"]] == [
        ("same-tree", "r4a", "r4b"),
        ("reported", "r2", None),
    ]
    assert (test["first_seen"]["run_id"], test["last_seen"]["run_id"]) == ("r2", "r4a")
    hot = [(h["test"], h["failed_runs"], h["runs"]) for h in data["test_hotspots"]]
    assert hot == [("tests.test_shop.test_flaky", 2, 10), ("tests.test_shop.test_new", 1, 10)]
    assert data["test_hotspots"][0]["time_lost_ms"] == 20.0


def test_test_counts_follow_the_scope(seeded: Path) -> None:
    store = JournalStore(seeded, read_only=True)
    last = WorkflowAnalytics(store, Scope(last=3))  # r6d, r7, r8
    hot = [(h.test, h.failed_runs, h.runs) for h in last.test_hotspots()]
    assert hot == [("tests.test_shop.test_flaky", 1, 3), ("tests.test_shop.test_new", 1, 3)]
    assert last.flaky_tests() == []  # no evidence in those runs
    since = WorkflowAnalytics(store, Scope(since=1_714_564_800.0 + 4 * 3600))  # from r4a on
    assert [(f.test, f.flaky_runs, f.runs) for f in since.flaky_tests()] == [
        ("tests.test_shop.test_flaky", 1, 7)
    ]
    assert [(f.step, f.flaky_runs, f.runs) for f in since.flaky_steps()] == [("unit", 1, 7)]


def test_every_count_says_its_unit(seeded: Path) -> None:
    data = json.loads(seeded_report(seeded, "json"))
    sections = ("flaky", "flaky_tests", "changes", "test_hotspots", "hotspots", "run_failures")
    counts: set[str] = set()
    for section in sections:
        for item in data[section]:
            counts |= {key for key, value in item.items() if type(value) is int}
            for nested in [*item.get("evidence", []), *item.get("kinds", [])]:
                counts |= {key for key, value in nested.items() if type(value) is int}
    assert counts == {"flaky_runs", "runs", "failed_runs", "commits"}


def test_text_and_markdown_show_the_same_facts(seeded: Path) -> None:
    text = seeded_report(seeded, "text")
    assert re.search(r"broken since\s+build\s+-\s+7777777\s+2\s+2\s+r7\s+r8", text)
    assert re.search(r"fixed at\s+lint\s+-\s+6666666\s+4\s+3\s+r3\s+r5\s+r6", text)
    assert re.search(r"unit\s+tests.test_shop.test_flaky\s+yes: 2/10 runs, 20%", text)
    assert "same-tree flip (passed in r4b)" in text
    markdown = seeded_report(seeded, "markdown")
    assert "- ❌ **build**: broken since `7777777` · failed in 2 runs on 2 commits" in markdown
    assert (
        "- ✅ **lint**: fixed at `6666666` (run `r6`) · failed in 4 runs on 3 commits" in markdown
    )
    assert "test `tests.test_shop.test_new` in **unit**: not known flaky · new failure" in markdown
    assert "known flaky, 2 of 10 runs (20%)" in markdown
    assert "<details><summary>Evidence: the runs that show each of these tests flaky" in markdown
    assert "  - run `r4a` @ `4444444` (2024-05-01): same-tree flip, passed in run `r4b`" in markdown


# --- the rules, as pure functions ---


def outcome(failed: bool, sha: str, code: str | None = None, **fields: Any) -> Outcome:
    return Outcome(failed, False, sha, code, sha, float(ord(sha[0])), "f")._replace(**fields)


def test_change_of_streaks_flips_and_fingerprints() -> None:
    ok, bad = outcome(False, "a", "ta"), outcome(True, "b", "tb")
    assert change_of("s", None, [bad, ok], known_flaky=False) == Change(
        "s", "new", "b", 1, 1, bad.ref, bad.ref
    )
    assert change_of("s", None, [bad], known_flaky=False) is None  # nothing passed before it
    assert change_of("s", None, [bad, ok], known_flaky=True) is None  # its flakiness
    older = outcome(True, "c", "tc")
    broken = change_of("s", None, [bad, older], known_flaky=True, complete=False)
    assert broken == Change("s", "broken", "c", 2, 2, older.ref, bad.ref, earlier_unknown=True)
    # The same code passed: a flip, not a change.
    assert change_of("s", None, [bad, outcome(False, "b", "tb"), ok], known_flaky=False) is None
    # Another command (fingerprint) ran last: only its own history counts.
    assert change_of("s", None, [ok._replace(fingerprint="g"), bad], known_flaky=False) is None
    fixed = change_of("s", None, [ok, bad, older], known_flaky=False)
    assert fixed == Change("s", "fixed", "a", 2, 2, older.ref, bad.ref, None, ok.ref)


def test_new_sections_are_inert_in_markdown() -> None:
    hostile = "see #12, octo/shop#7, GH-3, @admin, https://evil.example/x, www.evil.example"
    ref = RunRef(f"R1 {hostile}", f"sha {hostile}", 0.0)
    evidence = (Evidence("same-tree", ref.run_id, ref.sha, 0.0, f"R2 {hostile}"),)
    flaky = FlakyStep(f"unit {hostile}", 1, 2, f"test {hostile}", evidence,
                      (EvidenceCount("same-tree", 1),), ref, ref)  # fmt: skip
    change = Change(f"build {hostile}", "fixed", ref.sha, 1, 1, ref, ref, f"t {hostile}", ref)
    run = RunRecord(ref.run_id, "shop", "failed", 0.0)
    health = HealthReport(
        "shop", run, flaky=(flaky._replace(test=None),), flaky_tests=(flaky,), changes=(change,),
        test_hotspots=(Hotspot(f"unit {hostile}", 1, 2, 5.0, test=f"t {hostile}"),),
        run_failures=(FailureMark(f"unit {hostile}", f"t {hostile}", True, 1, 2, "new"),),
    )  # fmt: skip
    markdown = render_markdown(health)
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    assert "evil.example/x" in html
    assert "href" not in html
    text = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    assert (
        re.findall(r"(?<![\w/])#\d|[\w.-]+/[\w.-]+#\d|\bGH-\d|(?<![\w`])@[A-Za-z0-9]", text) == []
    )
    assert "\n" not in render_text(health).split("Failures in run", 1)[1].split("\n", 2)[0]


def test_a_report_says_how_many_flaky_tests_it_left_out() -> None:
    cases = tuple(Case("unit", "tests.test_many", f"test_{i:02d}", "passed", flaky=True)
                  for i in range(FLAKY_TESTS_SHOWN + 2))  # fmt: skip
    run = RunRecord("r1", "shop", "passed", 1.0, 2.0, steps=(step("unit", tests=cases),))
    store = JournalStore()
    import_runs(store, [run])
    health = WorkflowAnalytics(store).health_report("shop", store.load_run("r1"))
    assert len(health.flaky_tests) == FLAKY_TESTS_SHOWN
    assert health.notes == (
        "2 more flaky tests are left out: those with the most flaky runs come first",
    )
