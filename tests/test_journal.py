"""The journal: SQLite files written while pipelines really run, and read back."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_orchestrator.errors import JournalError
from ci_orchestrator.fingerprint import TreeState, step_fingerprint
from ci_orchestrator.journal import (
    MIGRATIONS,
    SCHEMA_VERSION,
    JournalEntry,
    JournalStore,
    WorkflowJournal,
    export_runs,
    import_runs,
    prune,
    run_from_json,
)
from ci_orchestrator.masking import Masker
from ci_orchestrator.records import RunRecord
from ci_orchestrator.runner import StepStatus, WorkflowRunner
from ci_orchestrator.shell import process_gone
from tests.conftest import cli

Write = Callable[[str, str], Path]


def test_in_memory_journal_records_a_runner(tmp_path: Path) -> None:
    journal = WorkflowJournal()
    runner = WorkflowRunner("mem", observers=[journal], state_dir=tmp_path)
    runner.add_step("a", "echo hi")
    runner.add_step("b", "exit 1", ["a"])
    result = runner.run()
    entries = journal.by_workflow_id(result.workflow_id)
    assert [(e.event_type, e.step_name, e.status) for e in entries] == [
        ("start", None, "failed"),
        ("step", "a", "completed"),
        ("step", "b", "failed"),
        ("complete", None, "failed"),
    ]
    assert journal.entry_count == 4
    assert [e.event_type for e in journal.by_event_type("step")] == ["step", "step"]
    assert journal.recent(2)[-1].event_type == "complete"
    run = journal.store.load_run(result.workflow_id)
    assert run is not None
    assert run.step("b").exit_code == 1
    assert run.step("a").log_tail == "hi\n"
    assert run.step("b").needs == ("a",)


def test_event_api_by_hand_and_clear() -> None:
    journal = WorkflowJournal()
    assert journal.entry_count == 0
    assert journal.recent() == []
    start = journal.on_workflow_start("w1", "deploy", timestamp=100.0, branch="main")
    step = journal.on_step_complete("w1", "build", StepStatus.COMPLETED, 250.0, timestamp=101.0)
    done = journal.on_workflow_complete("w1", True, timestamp=102.0)
    assert isinstance(start, JournalEntry)
    assert (step.status, step.duration_ms) == ("completed", 250.0)
    assert (done.status, done.duration_ms) == ("passed", 2000.0)
    assert [e.timestamp for e in journal.by_workflow_id("w1")] == [100.0, 101.0, 102.0]
    with pytest.raises(ValueError, match="event_type must be one of"):
        journal.by_event_type("finish")
    journal.clear()
    assert journal.entry_count == 0


def test_recent_medians_are_the_exact_medians_of_each_steps_last_passes() -> None:
    """The runner's weights: one query for every step, each sample read back exactly, the last
    `last` completed runs only (failed runs and other pipelines do not count)."""
    journal = WorkflowJournal()
    durations = [0.1 + 0.2, 1 / 3, 1e6 / 7, 2.5, 12.345678901234567]
    for number, duration in enumerate(durations):
        run = f"r{number}"
        journal.on_workflow_start(run, "deploy", timestamp=100.0 + number)
        journal.on_step_complete(run, "build", "completed", duration, timestamp=101.0 + number)
        journal.on_step_complete(run, "test", "failed", 9e9, timestamp=101.0 + number)
        journal.on_workflow_complete(run, True, timestamp=102.0 + number)
    journal.on_workflow_start("other", "lint", timestamp=200.0)
    journal.on_step_complete("other", "build", "completed", 9e9, timestamp=201.0)
    medians = journal.store.recent_medians("deploy", ["build", "test", "missing"], last=3)
    assert medians == {"build": sorted(durations[-3:])[1]}
    assert journal.store.recent_medians("deploy", ["build"]) == {"build": sorted(durations)[2]}


def test_record_full_workflow_after_the_fact(tmp_path: Path) -> None:
    runner = WorkflowRunner("later", state_dir=tmp_path)
    runner.add_step("x", lambda: 1)
    result = runner.run()
    journal = WorkflowJournal(tmp_path / "j.db")
    journal.record_full_workflow(runner, result)
    assert [e.event_type for e in journal.by_workflow_id(result.workflow_id)] == [
        "start",
        "step",
        "complete",
    ]


def test_file_journal_is_wal_and_versioned(tmp_path: Path) -> None:
    WorkflowJournal(tmp_path / "j.db").close()
    db = sqlite3.connect(tmp_path / "j.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_the_state_folder_ignores_itself(tmp_path: Path) -> None:
    JournalStore(Path(".ci-orchestrator") / "journal.db").close()
    assert (Path(".ci-orchestrator") / ".gitignore").read_text().splitlines()[-1] == "*"


def test_kill_9_mid_run_keeps_what_finished_and_the_next_run_marks_it_abandoned(
    write: Write, tmp_path: Path
) -> None:
    write(
        ".ci-orchestrator.yml",
        f"""
        name: killed
        steps:
          quick: {{run: 'echo done'}}
          hang: {{run: 'echo $$ > {tmp_path}/hang.pid; [ -e {tmp_path}/go ] || sleep 60', needs: [quick]}}
          after: {{run: 'echo after', needs: [hang]}}
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run"], stdout=subprocess.DEVNULL
    )
    pid_file = tmp_path / "hang.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned step: nobody else will
    (tmp_path / "go").touch()

    store = JournalStore(Path(".ci-orchestrator/journal.db"))
    run = store.latest_run("killed")
    assert run is not None
    assert run.status == "running"
    assert run.step("quick").status == "completed"
    assert run.step("hang").status == "running"

    rerun = cli("run", "--rerun-failed")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "quick" not in rerun.stdout
    assert "after" in rerun.stdout
    old = store.load_run(run.id)
    assert old is not None
    assert old.status == "abandoned"
    assert old.step("hang").status == "cancelled"
    assert old.step("hang").reason == "run abandoned: the runner died"


def test_two_pipelines_at_once_lose_nothing(write: Write) -> None:
    for name in ("one", "two"):
        steps = "\n".join(f"  s{i}: {{run: 'echo {name}{i}'}}" for i in range(30))
        write(f"{name}.yml", f"name: {name}\nsteps:\n{steps}\n")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "ci_orchestrator", "run", f"{n}.yml", "-j", "4"],
            stdout=subprocess.DEVNULL,
        )
        for n in ("one", "two")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = JournalStore(Path(".ci-orchestrator/journal.db"))
    rows = store.query(
        "SELECT pipeline, status, (SELECT count(*) FROM steps WHERE run_id = id) FROM runs"
    )
    assert sorted(tuple(r) for r in rows) == [("one", "passed", 30), ("two", "passed", 30)]
    assert store.query("SELECT count(*) FROM attempts")[0][0] == 60


def test_export_then_import_twice_adds_once(tmp_path: Path) -> None:
    source = WorkflowJournal(tmp_path / "a.db")
    runner = WorkflowRunner("exp", observers=[source], state_dir=tmp_path)
    runner.add_step("a", "echo a")
    runner.add_step("b", "exit 2", ["a"])
    runner.run()
    lines = tmp_path / "runs.jsonl"
    with lines.open("w") as out:
        assert export_runs(source.store, out) == 1
    target = JournalStore(tmp_path / "b.db")
    runs = [run_from_json(json.loads(line)) for line in lines.read_text().splitlines()]
    first = import_runs(target, runs)
    second = import_runs(target, runs)
    assert (first.added, second.added, second.present) == (1, 0, 1)
    original = source.store.latest_run()
    copied = target.latest_run()
    assert original is not None
    assert copied is not None
    assert copied.steps == original.steps


def test_journal_commands_through_the_cli(write: Write) -> None:
    write("p.yml", "name: p\nsteps:\n  a: {run: 'echo a'}\n")
    assert cli("run", "p.yml").returncode == 0
    exported = cli("journal", "export")
    assert exported.returncode == 0
    Path("runs.jsonl").write_text(exported.stdout)
    first = cli("journal", "import", "runs.jsonl", "--journal", "other.db")
    again = cli("journal", "merge", "runs.jsonl", "--journal", "other.db")
    assert first.stdout == "imported 1 new run, updated 0, 0 already present\n"
    assert again.stdout == "imported 0 new runs, updated 0, 1 already present\n"
    info = cli("journal", "info", "--journal", "other.db")
    assert "1 run, 1 step" in info.stdout
    pruned = cli("journal", "prune", "--older-than", "90d", "--journal", "other.db")
    assert pruned.stdout == "removed 0 runs older than 90d\n"
    Path("bad.jsonl").write_text('{"format": "ci-orchestrator-run/1"}\nnot json\n')
    bad = cli("journal", "import", "bad.jsonl", "--journal", "other.db")
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: bad.jsonl:1: expected a run from `journal export`")


def test_env_var_and_option_choose_the_journal(write: Write) -> None:
    write("p.yml", "steps:\n  a: {run: 'true'}\n")
    assert cli("run", "p.yml", CI_ORCHESTRATOR_JOURNAL="env.db").returncode == 0
    assert cli("run", "p.yml", "--journal", "opt.db").returncode == 0
    assert cli("run", "p.yml", "--no-journal").returncode == 0
    assert Path("env.db").exists()
    assert Path("opt.db").exists()
    assert not Path(".ci-orchestrator/journal.db").exists()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("text", "is not a usable SQLite database"),
        ("truncated", "is not a usable SQLite database"),
        ("newer", "was written by a newer ci-orchestrator (schema 99"),
        ("directory", "is a directory"),
    ],
)
def test_journals_that_cannot_be_used_stop_the_run_with_one_line(
    setup: str, expected: str, write: Write, tmp_path: Path
) -> None:
    write("p.yml", f"steps:\n  a: {{run: 'touch {tmp_path}/ran'}}\n")
    journal = tmp_path / "j.db"
    if setup == "text":
        journal.write_text("this is not a database\n" * 100)
    elif setup == "truncated":
        WorkflowJournal(journal).close()
        data = journal.read_bytes()
        journal.write_bytes(data[:100] + b"\x00garbage" * 500)
    elif setup == "newer":
        db = sqlite3.connect(journal)
        db.execute("PRAGMA user_version=99")
        db.close()
    else:
        journal.mkdir()
    done = cli("run", "p.yml", "--journal", str(journal))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert expected in lines[0]
    assert "--journal" in lines[0]
    assert not (tmp_path / "ran").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only permissions")
def test_read_only_journal(write: Write, tmp_path: Path) -> None:
    write("p.yml", "steps:\n  a: {run: 'true'}\n")
    journal = tmp_path / "ro.db"
    WorkflowJournal(journal).close()
    journal.chmod(0o444)
    done = cli("run", "p.yml", "--journal", str(journal))
    assert done.returncode == 2
    assert "read-only" in done.stderr


def test_read_only_journal_as_root_via_query_only(tmp_path: Path) -> None:
    """Root ignores file modes, so make SQLite itself refuse writes and check the message."""
    store = JournalStore(tmp_path / "j.db")
    store.db.execute("PRAGMA query_only=1")
    with pytest.raises(JournalError, match=r"is read-only .*--no-journal"):
        store.finish_run("x", "passed", 1.0, 1.0)


def test_a_locked_journal_waits_then_explains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ci_orchestrator.journal as journal_module

    path = tmp_path / "j.db"
    WorkflowJournal(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT_S", 0.2)
    store = JournalStore(path)
    with pytest.raises(JournalError, match="stayed locked by another process"):
        store.finish_run("x", "passed", 1.0, 1.0)
    holder.rollback()
    store.finish_run("x", "passed", 1.0, 1.0)  # works once the lock is gone


def test_reused_or_zombie_pids_count_as_dead() -> None:
    from ci_orchestrator.journal import process_alive, process_started

    me = os.getpid()
    assert process_alive(me, process_started(me))
    assert not process_alive(me, "1")  # same pid, another start time: a reused pid
    child = subprocess.Popen(["true"])
    while not process_gone(child.pid):
        time.sleep(0.01)
    assert not process_alive(child.pid, None)  # a zombie (not yet reaped) is gone
    child.wait()


def test_jobs_that_share_a_run_id_merge_into_one_run(write: Write) -> None:
    """What an exported workflow does: each job runs one step under one run id, the last job
    imports every job's journal."""
    write("p.yml", "name: split\nsteps:\n  a: {run: 'echo a'}\n  b: {run: 'exit 1', needs: [a]}\n")
    for step in ("a", "b"):
        cli(
            "run",
            "p.yml",
            "--only",
            step,
            "--no-deps",
            "--journal",
            f"{step}.db",
            "--run-id",
            "gh-7-1",
        )
        Path(f"{step}.jsonl").write_text(cli("journal", "export", "--journal", f"{step}.db").stdout)
    merged = cli("journal", "import", "a.jsonl", "b.jsonl", "--journal", "all.db")
    assert merged.stdout == "imported 1 new run, updated 1, 0 already present\n"
    again = cli("journal", "import", "a.jsonl", "b.jsonl", "--journal", "all.db")
    assert again.stdout == "imported 0 new runs, updated 0, 2 already present\n"
    run = JournalStore(Path("all.db")).load_run("gh-7-1")
    assert run is not None
    assert [(s.name, s.status) for s in run.steps] == [("a", "completed"), ("b", "failed")]
    assert run.status == "failed"


def test_run_ids_are_checked(write: Write) -> None:
    write("p.yml", "steps:\n  a: {run: 'true'}\n")
    bad = cli("run", "p.yml", "--run-id", "../escape")
    assert bad.returncode == 2
    assert "--run-id: expected letters, digits" in bad.stderr
    assert cli("run", "p.yml", "--run-id", "r1").returncode == 0
    again = cli("run", "p.yml", "--run-id", "r1")
    assert again.returncode == 2
    assert "run 'r1' is already in" in again.stderr


# --- what code each run ran (flaky or fixed) ---


def test_runs_keep_their_tree_and_steps_their_fingerprint_through_export(tmp_path: Path) -> None:
    source = WorkflowJournal(tmp_path / "a.db")
    source.tree = TreeState("4b825dc642cb6eb9a060e54bf8d69288fbee4904", dirty=True)
    runner = WorkflowRunner("exp", observers=[source], state_dir=tmp_path)
    runner.add_step("a", "echo $A", env={"A": "1"})
    runner.add_step("b", lambda: 1)
    result = runner.run()
    run = source.store.load_run(result.workflow_id)
    assert run is not None
    assert (run.tree, run.dirty) == (source.tree.tree, True)
    assert run.step("a").fingerprint == step_fingerprint("echo $A", {"A": "1"}, None)
    assert run.step("b").fingerprint is None  # not a shell command
    lines = tmp_path / "runs.jsonl"
    with lines.open("w") as out:
        export_runs(source.store, out)
    target = JournalStore(tmp_path / "b.db")
    import_runs(
        target, [run_from_json(json.loads(line)) for line in lines.read_text().splitlines()]
    )
    assert target.load_run(result.workflow_id) == run


def test_secrets_in_a_steps_env_stay_out_of_its_fingerprint(tmp_path: Path) -> None:
    prints = []
    for token in ("s3cret-one", "s3cret-two"):
        journal = WorkflowJournal()
        journal.mask = Masker([token])
        runner = WorkflowRunner("sec", observers=[journal], state_dir=tmp_path)
        runner.add_step("deploy", "true", env={"TOKEN": token, "REGION": "eu"})
        result = runner.run()
        run = journal.store.load_run(result.workflow_id)
        assert run is not None
        prints.append(run.step("deploy").fingerprint)
    assert (
        prints[0] == prints[1] == step_fingerprint("true", {"TOKEN": "***", "REGION": "eu"}, None)
    )


def test_a_first_version_journal_is_migrated_and_its_runs_have_no_tree(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO runs (id, pipeline, status, started_at, git_sha) VALUES ('r1', 'p', 'passed',"
        " 1.0, 'abc')"
    )
    db.execute(
        "INSERT INTO steps (run_id, pipeline, name, status, command, command_hash)"
        " VALUES ('r1', 'p', 'lint', 'completed', 'true', 'h')"
    )
    db.commit()
    db.close()
    store = JournalStore(path)
    run = store.load_run("r1")
    assert run is not None
    assert (run.tree, run.dirty, run.step("lint").fingerprint) == (None, None, None)
    assert store.query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    store.begin_run(
        RunRecord("r2", "p", "running", 2.0, tree="t", dirty=False), host="h", pid=1,
        pid_started=None,
    )  # fmt: skip
    again = store.load_run("r2")
    assert again is not None
    assert (again.tree, again.dirty) == ("t", False)
    assert prune(store, 3.0) == 2
    assert store.query("SELECT count(*) FROM run_trees")[0][0] == 0  # went with its run


def test_a_run_remembers_the_actions_run_that_ran_it(tmp_path: Path) -> None:
    from ci_orchestrator.gitinfo import detect

    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "octo/shop",
        "GITHUB_RUN_ID": "7003",
        "GITHUB_RUN_ATTEMPT": "2",
    }
    journal = WorkflowJournal(tmp_path / "journal.db", context=detect(env))
    runner = WorkflowRunner("shop", observers=[journal], state_dir=tmp_path)
    runner.add_step("test", "true")
    run_id = runner.run().workflow_id
    url = "https://github.com/octo/shop/actions/runs/7003/attempts/2"
    assert journal.store.load_run(run_id).url == url  # type: ignore[union-attr]
    exported = io.StringIO()
    export_runs(journal.store, exported)
    other = JournalStore(tmp_path / "other.db")
    import_runs(other, [run_from_json(json.loads(exported.getvalue()))])
    assert other.load_run(run_id).url == url  # type: ignore[union-attr]
    journal.close()
    other.close()
