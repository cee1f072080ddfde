"""History across GitHub Actions runs: the journal kept in the Actions cache by `action.yml`.

Every job starts on a fresh machine, so the action restores the journal before the run
(`actions/cache/restore`) and saves it after (`actions/cache/save`). This module is the Python
side of those steps; it touches only the journal file, never the network.

Keys. A cache is saved once per job run, under a key no other job uses
(`ci-orchestrator-journal-v1-<history-key>-<branch>-<run>-<attempt>-<job>-<random>`), so
concurrent jobs never overwrite each other. It is restored by prefix: this branch's newest, else
the pull request's base branch's, else the default branch's (GitHub lets a branch read its own
caches, its base's and the default branch's). A pull request's branch part is `pr-<number>`: its
caches belong to the pull request's merge ref, not to the head branch.

Several jobs, one history. Restoring by prefix takes the newest cache only. So that the runs of a
job that saved a little earlier are not lost, the job's journal is set aside before saving, the
newest cache is restored again, and the job's runs are merged into it (`journal import` rules:
idempotent) before it is saved: each save holds the runs of every job that saved before it.
Jobs that save in the same second can still miss each other's runs; their own caches keep them.

A restored journal that cannot be used (corrupt, or written by a newer ci-orchestrator) is set
aside under a new name with one warning, and the run goes on with a fresh journal. Before saving,
runs older than `history-days` are pruned, then the oldest runs until the file is under
`MAX_JOURNAL_BYTES`, with a notice.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ci_orchestrator.errors import JournalError

if TYPE_CHECKING:
    from ci_orchestrator.journal import JournalStore

KEY_PREFIX = "ci-orchestrator-journal-v1"
MAX_JOURNAL_BYTES = 50 * 1024 * 1024  # a cache per job run: keep each one small
DEFAULT_DAYS = 90
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9._/-]+")


class CacheKeys(NamedTuple):
    path: str  # the journal, as actions/cache sees it (relative to the workspace)
    key: str  # this job's save key: unique
    restore_keys: tuple[str, ...]  # newest first: this branch, the base branch, the default


def cache_keys(env: Mapping[str, str], journal: str, history_key: str = "") -> CacheKeys:
    """The keys for this job, from the variables GitHub sets and the event payload's default
    branch. `journal` is relative to the workspace (or absolute)."""
    prefix = f"{KEY_PREFIX}-{_part(history_key) or 'default'}-"
    branches = [branch_part(env)]
    if env.get("GITHUB_BASE_REF"):
        branches.append(_part(env["GITHUB_BASE_REF"]))
    default = default_branch(env)
    if default:
        branches.append(_part(default))
    job = "-".join(
        _part(env.get(name, "")) or "0" for name in ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT")
    )
    unique = f"{job}-{_part(env.get('GITHUB_JOB', 'job'))}-{os.urandom(4).hex()}"
    restore = tuple(dict.fromkeys(f"{prefix}{branch}-" for branch in branches))
    return CacheKeys(journal, f"{restore[0]}{unique}", restore)


def branch_part(env: Mapping[str, str]) -> str:
    """The key's branch part: `pr-<n>` on a pull request, else the branch (or tag) name."""
    ref = env.get("GITHUB_REF", "")
    match = re.fullmatch(r"refs/pull/(\d+)/(?:merge|head)", ref)
    if match:
        return f"pr-{match[1]}"
    return _part(env.get("GITHUB_REF_NAME") or ref.rpartition("/")[2]) or "unknown"


def default_branch(env: Mapping[str, str]) -> str:
    """The repository's default branch, from the event payload ('' when it does not say)."""
    from ci_orchestrator.gitinfo import read_event

    repository = read_event(env).get("repository")
    if isinstance(repository, dict) and isinstance(repository.get("default_branch"), str):
        return str(repository["default_branch"])
    return ""


def _part(text: str) -> str:
    return _UNSAFE_KEY.sub("_", text.strip())[:100]


def cache_path(journal_input: str, working_directory: str) -> str:
    """Where the journal is, relative to the workspace: the path actions/cache is given must be
    the same string at every restore and save."""
    journal = journal_input or ".ci-orchestrator/journal.db"
    if os.path.isabs(journal):
        return journal
    return os.path.normpath(os.path.join(working_directory or ".", journal))


# --- after the restore ---


def adopt_restored(path: Path, looked_up: bool = True) -> str:
    """Check a restored journal; one line to print. An unusable one is set aside. `looked_up`:
    False when actions/cache looked no key up (it found no cache service: it says so in an info
    line only, and saving will fail the same way), which deserves a warning, not a notice."""
    if not path.exists() and not looked_up:
        return (
            "warning: no history restored: actions/cache found no cache service on this runner,"
            " so this run starts a new journal and its history cannot be saved"
        )
    if not path.exists():
        return (
            "notice: no history restored (no cache yet for this branch, its base or the default"
            " branch): this run starts a new journal"
        )
    problem = _unusable(path)
    if problem is None:
        runs = _count_runs(path)
        return f"notice: history restored: {runs} run{'' if runs == 1 else 's'} in {path}"
    aside = set_aside(path)
    return (
        f"warning: the restored journal {path} {problem}; set aside as {aside.name}, this run"
        " starts a new journal"
    )


def _unusable(path: Path) -> str | None:
    from ci_orchestrator.journal import JournalStore

    try:
        store = JournalStore(path)
        try:
            check = store.query("PRAGMA quick_check")[0][0]
        finally:
            store.close()
    except JournalError as exc:
        reason = exc.format_message()
        return "was written by a newer ci-orchestrator" if "newer" in reason else "is not usable"
    return None if check == "ok" else "is corrupt"


def _count_runs(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        db.close()


def set_aside(path: Path) -> Path:
    """Rename the journal (and its WAL files) out of the way; returns the new name."""
    aside = path.with_name(f"{path.name}.unusable-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        part = Path(f"{path}{suffix}")
        if part.exists():
            part.rename(Path(f"{aside}{suffix}"))
    return aside


# --- before the save ---


def stash(path: Path, stash_path: Path) -> bool:
    """Move this job's journal aside (whole: WAL checkpointed), so that the newest cache can be
    restored in its place; False when there is no journal to save."""
    if not path.exists():
        return False
    checkpoint(path)
    stash_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), stash_path)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return True


def merge_for_save(
    path: Path, stash_path: Path, days: int = DEFAULT_DAYS, max_bytes: int = MAX_JOURNAL_BYTES
) -> list[str]:
    """Merge the stashed journal into the newest restored one (or put it back when nothing was
    restored or it cannot be used), prune, and leave one compact file at `path`; the lines to
    print."""
    lines = []
    if not stash_path.exists():
        return ["notice: no journal to save"]
    if path.exists() and _unusable(path) is None:
        added = merge(path, stash_path)
        stash_path.unlink()
        runs = f"{added} run{'' if added == 1 else 's'}"
        lines.append(f"notice: history merged: {runs} of this job added to the newest cache")
    else:
        if path.exists():
            set_aside(path)
        shutil.move(str(stash_path), path)
    lines += prune_for_save(path, days, max_bytes)
    return lines


def merge(path: Path, other: Path) -> int:
    """Import every run of `other` into the journal at `path`; how many were new or updated."""
    from ci_orchestrator.journal import JournalStore, import_runs

    source, target = JournalStore(other, read_only=True), JournalStore(path)
    try:
        runs = source._records(source.query("SELECT * FROM runs ORDER BY started_at"))
        result = import_runs(target, runs, source="cache")
    finally:
        source.close()
        target.close()
    return result.added + result.updated


def prune_for_save(path: Path, days: int, max_bytes: int) -> list[str]:
    """Runs older than `days`, then the oldest runs while the file is over `max_bytes`."""
    from ci_orchestrator.journal import JournalStore, prune

    lines = []
    store = JournalStore(path)
    try:
        removed = prune(store, time.time() - days * 86400)
        if removed:
            lines.append(f"notice: history: removed {removed} runs older than {days} days")
        removed = 0
        while _compacted_size(store) > max_bytes:
            dropped = _drop_oldest(store, fraction=0.1)
            if not dropped:
                break
            removed += dropped
        if removed:
            lines.append(
                f"notice: history: removed the {removed} oldest runs to keep the journal under"
                f" {max_bytes // (1024 * 1024)} MB"
            )
    finally:
        store.close()
    checkpoint(path)
    return lines


def _compacted_size(store: JournalStore) -> int:
    assert store.path is not None
    with store.lock:
        store.db.execute("VACUUM")
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store.path.stat().st_size


def _drop_oldest(store: JournalStore, fraction: float) -> int:
    total = store.query("SELECT count(*) FROM runs")[0][0]
    if total == 0:
        return 0
    count = max(1, int(total * fraction))
    with store.transaction() as db:
        db.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY started_at LIMIT ?)",
            (count,),
        )
    return count


def checkpoint(path: Path) -> None:
    """Fold the WAL into the database file: the cache saves one file."""
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
