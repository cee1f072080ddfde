"""The journal kept in the Actions cache: keys, checking what was restored, merging before saving,
pruning. Real SQLite files; the cache itself is exercised under act in test_action_act.py."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from ci_orchestrator.github import cache
from ci_orchestrator.github.action_env import main as action_main
from ci_orchestrator.journal import JournalStore, WorkflowJournal
from ci_orchestrator.runner import WorkflowRunner
from tests.test_actions_mode import read_outputs


def record_run(journal: Path, name: str = "shop", command: str = "true") -> str:
    store = WorkflowJournal(journal)
    runner = WorkflowRunner(name, observers=[store], state_dir=journal.parent)
    runner.add_step("test", command)
    try:
        return runner.run().workflow_id
    finally:
        store.close()


def run_ids(journal: Path) -> set[str]:
    db = sqlite3.connect(journal)
    try:
        return {row[0] for row in db.execute("SELECT id FROM runs")}
    finally:
        db.close()


def event(tmp_path: Path, default_branch: str = "main") -> str:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"repository": {"default_branch": default_branch}}))
    return str(path)


# --- keys ---


def test_a_push_restores_its_branch_then_the_default_branch(tmp_path: Path) -> None:
    env = {
        "GITHUB_REF": "refs/heads/feature/x",
        "GITHUB_REF_NAME": "feature/x",
        "GITHUB_RUN_ID": "7",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_JOB": "ci",
        "GITHUB_EVENT_PATH": event(tmp_path),
    }
    keys = cache.cache_keys(env, ".ci-orchestrator/journal.db", "py3.13")
    prefix = "ci-orchestrator-journal-v1-py3.13-"
    assert keys.restore_keys == (f"{prefix}feature/x-", f"{prefix}main-")
    assert keys.key.startswith(f"{prefix}feature/x-7-2-ci-")
    assert keys.key != cache.cache_keys(env, "j", "py3.13").key  # unique per job run


def test_a_pull_request_restores_its_own_then_the_base_then_the_default(tmp_path: Path) -> None:
    env = {
        "GITHUB_REF": "refs/pull/42/merge",
        "GITHUB_HEAD_REF": "main",  # a fork's branch may have any name: it is not the key
        "GITHUB_BASE_REF": "release",
        "GITHUB_EVENT_PATH": event(tmp_path),
    }
    keys = cache.cache_keys(env, "j", "")
    prefix = "ci-orchestrator-journal-v1-default-"
    assert keys.restore_keys == (f"{prefix}pr-42-", f"{prefix}release-", f"{prefix}main-")


def test_the_cache_path_is_relative_to_the_workspace() -> None:
    assert cache.cache_path("", "app") == "app/.ci-orchestrator/journal.db"
    assert cache.cache_path("state/j.db", ".") == "state/j.db"
    assert cache.cache_path("/abs/j.db", "app") == "/abs/j.db"


# --- what was restored ---


def test_a_cache_miss_is_a_notice(tmp_path: Path) -> None:
    line = cache.adopt_restored(tmp_path / "journal.db")
    assert line.startswith("notice: no history restored")


def test_no_cache_service_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"CACHE_PRIMARY_KEY": "", "RUNNER_TEMP": str(tmp_path)}  # actions/cache looked nothing up
    assert action_main(["history-restored"], env) == 0
    out = capsys.readouterr().out
    assert out.startswith("::warning title=ci-orchestrator history::no history restored:")
    assert "no cache service" in out


def test_a_restored_journal_is_counted(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    record_run(journal)
    assert cache.adopt_restored(journal) == f"notice: history restored: 1 run in {journal}"


@pytest.mark.parametrize("damage", ["garbage", "newer"])
def test_an_unusable_journal_is_set_aside_and_a_new_one_starts(tmp_path: Path, damage: str) -> None:
    journal = tmp_path / "journal.db"
    if damage == "garbage":
        journal.write_bytes(b"this is not SQLite" * 100)
    else:
        record_run(journal)
        db = sqlite3.connect(journal)
        db.execute("PRAGMA user_version=999")
        db.close()
    line = cache.adopt_restored(journal)
    assert line.startswith("warning: the restored journal")
    assert ("newer" in line) == (damage == "newer")
    assert not journal.exists()
    [aside] = tmp_path.glob("journal.db.unusable-*")
    assert aside.stat().st_size > 0  # nothing lost
    record_run(journal)  # the run goes on with a fresh journal
    assert len(run_ids(journal)) == 1


# --- before saving: two jobs that restored the same journal ---


def test_two_jobs_saving_one_after_the_other_keep_both_runs(tmp_path: Path) -> None:
    saved = tmp_path / "cache" / "newest.db"  # what "restore the newest" would give back
    saved.parent.mkdir()
    first = record_run(saved)
    jobs = {}
    for job in ("a", "b"):
        journal = tmp_path / job / "journal.db"
        journal.parent.mkdir()
        shutil.copy(saved, journal)  # both restored the same cache
        jobs[job] = (journal, record_run(journal, command=f"echo {job}"))
    for journal, _ in jobs.values():  # a saves, then b
        stash = journal.parent / "stash.db"
        assert cache.stash(journal, stash)
        shutil.copy(saved, journal)  # the newest cache, restored again
        lines = cache.merge_for_save(journal, stash)
        assert lines[0] == "notice: history merged: 1 run of this job added to the newest cache"
        shutil.copy(journal, saved)  # saved: now the newest
    assert run_ids(saved) == {first, jobs["a"][1], jobs["b"][1]}


def test_with_nothing_restored_again_the_job_saves_its_own_journal(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    run = record_run(journal)
    stash = tmp_path / "stash" / "journal.db"
    assert cache.stash(journal, stash)
    assert not journal.exists()
    assert cache.merge_for_save(journal, stash) == []
    assert run_ids(journal) == {run}
    assert not Path(f"{journal}-wal").exists()  # one file for the cache


def test_a_journal_over_the_limit_loses_its_oldest_runs(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    runs = [record_run(journal, command="seq 1 3000") for _ in range(30)]
    assert cache.prune_for_save(journal, days=90, max_bytes=cache.MAX_JOURNAL_BYTES) == []
    full = journal.stat().st_size
    lines = cache.prune_for_save(journal, days=90, max_bytes=full * 3 // 4)
    assert any("oldest runs to keep the journal under" in line for line in lines)
    kept = run_ids(journal)
    assert runs[-1] in kept
    assert runs[0] not in kept
    assert journal.stat().st_size <= full * 3 // 4


def test_old_runs_are_pruned_before_saving(tmp_path: Path) -> None:
    journal = tmp_path / "journal.db"
    old, new = record_run(journal), record_run(journal)
    store = JournalStore(journal)
    with store.transaction() as db:
        db.execute("UPDATE runs SET started_at = ? WHERE id = ?", (time.time() - 100 * 86400, old))
    store.close()
    lines = cache.prune_for_save(journal, days=90, max_bytes=cache.MAX_JOURNAL_BYTES)
    assert lines == ["notice: history: removed 1 runs older than 90 days"]
    assert run_ids(journal) == {new}


# --- the action's steps ---


def test_the_keys_step_writes_outputs_and_off_writes_none(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    env = {
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_REF_NAME": "main",
        "INPUT_WORKING_DIRECTORY": "app",
        "GITHUB_EVENT_PATH": event(tmp_path),
    }
    assert action_main(["history-keys"], env) == 0
    values = read_outputs(outputs)
    assert values["path"] == "app/.ci-orchestrator/journal.db"
    assert values["restore-keys"] == "ci-orchestrator-journal-v1-default-main-"
    outputs.unlink()
    assert action_main(["history-keys"], {**env, "INPUT_HISTORY": "off"}) == 0
    assert not outputs.exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INPUT_HISTORY": "always"}, "history input: expected one of cache, off"),
        ({"INPUT_HISTORY_DAYS": "0"}, "history-days input: expected a whole number of days"),
        ({"INPUT_HISTORY_DAYS": "ninety"}, "history-days input"),
    ],
)
def test_bad_history_inputs_are_one_error_line(
    env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert action_main(["history-keys"], env) == 2
    out = capsys.readouterr().out
    assert out.startswith("::error title=ci-orchestrator::")
    assert message in out
    assert "Traceback" not in out
