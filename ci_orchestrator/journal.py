"""The journal: every run, step, attempt and test case, in SQLite, written as things happen.

`JournalStore` owns the database (WAL, a busy timeout, versioned migrations, clear errors for files
it cannot use). `WorkflowJournal` is the public API: a runner observer that records runs as they
happen, the event-style queries (`by_workflow_id`, `recent`, ...), and, with no store given, an
in-memory database with the same behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from ci_orchestrator.durations import median
from ci_orchestrator.errors import JournalError
from ci_orchestrator.fingerprint import TreeState, step_fingerprint
from ci_orchestrator.masking import Masker, mask_record
from ci_orchestrator.procfs import stat_fields
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord, TestCaseRecord, to_json
from ci_orchestrator.runner import (
    Attempt,
    RunInfo,
    RunObserver,
    StepStatus,
    WorkflowResult,
    WorkflowStep,
)
from ci_orchestrator.state import STATE_DIR, ensure_state_dir

if TYPE_CHECKING:
    from ci_orchestrator.gitinfo import RunContext
    from ci_orchestrator.runner import WorkflowRunner

DEFAULT_JOURNAL = STATE_DIR / "journal.db"
BUSY_TIMEOUT_S = 30.0
TAIL_CHARS = 8 * 1024  # of each step's log kept in the journal

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL,
        duration_ms REAL,
        git_sha TEXT,
        branch TEXT,
        event TEXT,
        pr_number INTEGER,
        trigger TEXT NOT NULL DEFAULT 'local',
        host TEXT,
        pid INTEGER,
        pid_started TEXT,
        source TEXT NOT NULL DEFAULT 'ci-orchestrator',
        details TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at);
    CREATE INDEX runs_by_started ON runs (started_at);
    CREATE INDEX runs_by_status ON runs (status) WHERE status = 'running';
    CREATE INDEX runs_by_sha ON runs (git_sha);
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        pipeline TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        started_at REAL,
        finished_at REAL,
        duration_ms REAL NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        flaky INTEGER NOT NULL DEFAULT 0,
        command TEXT,
        command_hash TEXT,
        needs TEXT NOT NULL DEFAULT '[]',
        log_tail TEXT NOT NULL DEFAULT '',
        log_path TEXT,
        junit_problems TEXT NOT NULL DEFAULT '[]',
        position INTEGER NOT NULL DEFAULT 0,
        lost_ms REAL NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID;
    -- One covering index serves the per-step aggregates (GROUP BY name in index order), the
    -- recent samples per step (ORDER BY finished_at DESC), and the --since and --pipeline scopes.
    CREATE INDEX steps_history ON steps
        (pipeline, name, finished_at, status, duration_ms, lost_ms, flaky, run_id);
    CREATE INDEX steps_failed ON steps (name) WHERE status = 'failed';
    CREATE INDEX steps_flaky ON steps (name) WHERE flaky = 1;
    CREATE TABLE attempts (
        run_id TEXT NOT NULL,
        step TEXT NOT NULL,
        number INTEGER NOT NULL,
        exit_code INTEGER,
        duration_ms REAL NOT NULL,
        timed_out INTEGER NOT NULL DEFAULT 0,
        started_at REAL,
        error TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, step, number),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE TABLE tests (
        run_id TEXT NOT NULL,
        step TEXT NOT NULL,
        suite TEXT NOT NULL,
        classname TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        duration_ms REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        flaky INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, step, suite, classname, name),
        FOREIGN KEY (run_id, step) REFERENCES steps (run_id, name) ON DELETE CASCADE
    ) WITHOUT ROWID;
    CREATE INDEX tests_by_name ON tests (classname, name);
    """,
    # Flaky or fixed: what code each run ran (HEAD's tree, and whether tracked files differed
    # from it: a row only when git could tell), and what each step ran (its fingerprint).
    # The partial indexes serve the flaky evidence and hotspots of tests without reading them all.
    """
    CREATE TABLE run_trees (
        run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
        tree TEXT NOT NULL,
        dirty INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX run_trees_clean ON run_trees (tree) WHERE dirty = 0;
    ALTER TABLE steps ADD COLUMN fingerprint TEXT;
    CREATE INDEX tests_failed ON tests (step, classname, name, duration_ms)
        WHERE status IN ('failed', 'error');
    CREATE INDEX tests_flaky ON tests (step, classname, name) WHERE flaky = 1;
    CREATE INDEX tests_skipped ON tests (step, classname, name) WHERE status = 'skipped';
    """,
    # Test-level truth (issue 14): a failure's type and body (traceback), the attempt whose JUnit
    # file told the outcome, and the failed runs before it (reruns, or a flaky test's failures).
    """
    ALTER TABLE tests ADD COLUMN type TEXT NOT NULL DEFAULT '';
    ALTER TABLE tests ADD COLUMN body TEXT NOT NULL DEFAULT '';
    ALTER TABLE tests ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tests ADD COLUMN reruns INTEGER NOT NULL DEFAULT 0;
    """,
    # The process group of each shell step while it runs (its leader's pid and start time), so
    # that a run whose runner was killed can have its leftover steps ended by the next run.
    """
    CREATE TABLE processes (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started TEXT,
        PRIMARY KEY (run_id, step, pid)
    ) WITHOUT ROWID;
    """,
    # Input fingerprints (issue 16): a step's inputs, and the time a skip on purpose saved. The
    # partial index finds the run in which a step passed with the same inputs.
    """
    ALTER TABLE steps ADD COLUMN inputs TEXT;
    ALTER TABLE steps ADD COLUMN saved_ms REAL NOT NULL DEFAULT 0;
    CREATE INDEX steps_inputs ON steps (pipeline, name, inputs, finished_at)
        WHERE inputs IS NOT NULL AND status = 'completed';
    CREATE INDEX steps_saved ON steps (pipeline, finished_at, saved_ms) WHERE saved_ms > 0;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
FINISHED = ("passed", "failed", "interrupted", "abandoned")


def journal_path(option: str | None, env: Mapping[str, str]) -> Path:
    """--journal PATH, else $CI_ORCHESTRATOR_JOURNAL, else .ci-orchestrator/journal.db."""
    return Path(option or env.get("CI_ORCHESTRATOR_JOURNAL") or DEFAULT_JOURNAL)


class JournalStore:
    """One SQLite database (a file, or memory when `path` is None)."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.label = str(self.path) if self.path else ":memory:"
        self.lock = threading.RLock()
        self.db = self._open(read_only)

    def _open(self, read_only: bool) -> sqlite3.Connection:
        if self.path is None:
            return self._prepared(sqlite3.connect(":memory:", check_same_thread=False))
        if self.path.is_dir():
            raise JournalError(f"journal {self.label} is a directory; pass --journal FILE")
        if read_only and not self.path.exists():
            raise JournalError(f"no journal at {self.label}: run a pipeline first, or --journal")
        try:
            folder = self.path.parent
            if not read_only and folder.name == STATE_DIR.name and folder.parent.is_dir():
                ensure_state_dir(folder)  # our folder: it ignores itself in git
            elif not read_only and not folder.is_dir():  # a typo must not make folders
                raise JournalError(
                    f"journal {self.label}: the folder {folder} does not exist; create it first"
                )
            return self._open_waiting(read_only)
        except (sqlite3.Error, OSError) as exc:
            raise self._explain(exc) from None

    def _open_waiting(self, read_only: bool) -> sqlite3.Connection:
        """Open and prepare, waiting out other processes doing the same: switching to WAL or
        migrating can answer 'locked' at once, without SQLite's busy handler."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        delay = 0.01
        while True:
            db = self._connect(read_only)
            try:
                return self._prepared(db)
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            except BaseException:
                db.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _connect(self, read_only: bool) -> sqlite3.Connection:
        if not read_only:
            return sqlite3.connect(self.path or "", timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        uri = f"{Path(self.label).resolve().as_uri()}?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:  # a read-only folder cannot hold the WAL index
            uri = f"{Path(self.label).resolve().as_uri()}?immutable=1"
            return sqlite3.connect(uri, uri=True, check_same_thread=False)

    def _prepared(self, db: sqlite3.Connection) -> sqlite3.Connection:
        db.isolation_level = None  # explicit transactions only
        db.row_factory = sqlite3.Row
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise JournalError(
                f"journal {self.label} was written by a newer ci-orchestrator (schema {version},"
                f" this one knows {SCHEMA_VERSION}): upgrade, or use another --journal"
            )
        if self.path is not None and not _read_only(db):
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            self._migrate(db, version)
        return db

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        if _read_only(db):
            raise JournalError(f"journal {self.label} needs an upgrade but is read-only")
        db.execute("BEGIN IMMEDIATE")
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]  # another process may won
            for script in MIGRATIONS[current:]:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _explain(self, exc: BaseException) -> JournalError:
        text = str(exc)
        way_out = "use another --journal (or CI_ORCHESTRATOR_JOURNAL), or --no-journal"
        if "not a database" in text or "malformed" in text:
            return JournalError(
                f"journal {self.label} is not a usable SQLite database ({text});"
                f" move it away (a new one is made), or {way_out}"
            )
        if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
            return JournalError(f"journal {self.label} is read-only ({text}); {way_out}")
        if "locked" in text or "busy" in text:
            return JournalError(
                f"journal {self.label} stayed locked by another process for"
                f" {BUSY_TIMEOUT_S:.0f}s; try again, or {way_out}"
            )
        return JournalError(f"journal {self.label} cannot be used: {text}; {way_out}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite errors become one-line `JournalError`s."""
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._explain(exc) from None

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with self.lock:
            try:
                return self.db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._explain(exc) from None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # --- writing ---

    def begin_run(self, run: RunRecord, *, host: str, pid: int, pid_started: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (id, pipeline, status, started_at, git_sha, branch, event,"
                " pr_number, trigger, host, pid, pid_started, details)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run.id, run.pipeline, run.started_at, run.git_sha, run.branch, run.event,
                 run.pr_number, run.trigger, host, pid, pid_started, _details(run)),
            )  # fmt: skip
            _insert_tree(db, run)

    def save_step(
        self, run_id: str, step: StepRecord, finished_at: float | None, position: int = 0
    ) -> None:
        with self.transaction() as db:
            _upsert_step(db, run_id, step, finished_at, position)

    def save_attempt(self, run_id: str, step: str, attempt: AttemptRecord, started: float) -> None:
        with self.transaction() as db:
            _insert_attempt(db, run_id, step, attempt, started)

    def save_batch(self, run_id: str, writes: Iterable[PendingWrite]) -> None:
        """Step records and attempts heard in one turn of the runner, in one transaction."""
        with self.transaction() as db:
            for write in writes:
                if isinstance(write, PendingStep):
                    _upsert_step(db, run_id, write.record, write.finished_at, write.position)
                elif isinstance(write, PendingProcess):
                    db.execute(
                        "INSERT OR REPLACE INTO processes VALUES (?, ?, ?, ?)",
                        (run_id, write.step, write.pid, write.started),
                    )
                else:
                    _insert_attempt(db, run_id, write.step, write.record, write.started_at)

    def finish_run(self, run_id: str, status: str, finished_at: float, duration_ms: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, duration_ms = ? WHERE id = ?",
                (status, finished_at, duration_ms, run_id),
            )
            db.execute("DELETE FROM processes WHERE run_id = ?", (run_id,))

    def mark_abandoned(self, host: str, alive: Any) -> list[str]:
        """Runs left 'running' on this host by a process that is gone: end the process groups
        their steps left behind, and mark them abandoned, lasting up to the last thing they did."""
        rows = self.query(
            "SELECT id, pid, pid_started FROM runs WHERE status = 'running' AND host = ?", (host,)
        )
        dead = [r["id"] for r in rows if not alive(r["pid"], r["pid_started"])]
        if dead:
            with self.transaction() as db:
                for run_id in dead:
                    end_leftovers(db, run_id)
                    _abandon(db, run_id, self.last_output(run_id))
        return dead

    def last_output(self, run_id: str) -> float | None:
        """When the run's step logs were last written (they outlive a killed runner's events)."""
        if self.path is None:
            return None
        folder = self.path.parent / "runs" / run_id
        try:
            return max((entry.stat().st_mtime for entry in os.scandir(folder)), default=None)
        except OSError:
            return None

    # --- reading ---

    def load_run(self, run_id: str) -> RunRecord | None:
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._records(rows)[0] if rows else None

    def latest_run(self, pipeline: str | None = None, finished: bool = False) -> RunRecord | None:
        where, params = ["1=1"], []
        if pipeline is not None:
            where.append("pipeline = ?")
            params.append(pipeline)
        if finished:
            where.append("status != 'running'")
        rows = self.query(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} ORDER BY started_at DESC LIMIT 1",
            params,
        )
        return self._records(rows)[0] if rows else None

    def recent_medians(
        self, pipeline: str, names: Iterable[str], last: int = 20
    ) -> dict[str, float]:
        """Each step's median over its last `last` completed runs: the runner's weights.

        One query per 500 steps, each step's samples read backwards from the history index
        (a query per step cost a 200-step run 10 ms before its first step)."""
        medians = {}
        wanted = list(names)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            rows = self.query(
                f"WITH wanted (name) AS (VALUES {', '.join(['(?)'] * len(chunk))})"
                # 17 significant digits (SQLite's `!` flag): each sample reads back exactly.
                " SELECT name, (SELECT group_concat(printf('%!.17g', duration_ms))"
                " FROM (SELECT duration_ms FROM steps"
                " WHERE pipeline = ? AND name = wanted.name AND status = 'completed'"
                " ORDER BY finished_at DESC LIMIT ?)) FROM wanted",
                (*chunk, pipeline, last),
            )
            for name, samples in rows:
                if samples:
                    medians[name] = median(float(sample) for sample in samples.split(","))
        return medians

    def steps_with_inputs(self, pipeline: str) -> set[str]:
        """The steps of `pipeline` that ever passed with an input fingerprint recorded (one
        query, so that a first run does not look each step up)."""
        rows = self.query(
            "SELECT DISTINCT name FROM steps WHERE pipeline = ? AND inputs IS NOT NULL"
            " AND status = 'completed'",
            (pipeline,),
        )
        return {row[0] for row in rows}

    def passed_with_inputs(
        self, pipeline: str, step: str, inputs: str, branches: Sequence[str] | None = None
    ) -> Reuse | None:
        """The latest run in which `step` passed with these input fingerprints; with `branches`,
        only a CI run on one of them (GitHub Actions trusts no run of a laptop)."""
        sql = (
            "SELECT s.run_id, r.git_sha, r.branch, s.duration_ms FROM steps s"
            " JOIN runs r ON r.id = s.run_id WHERE s.pipeline = ? AND s.name = ?"
            " AND s.inputs = ? AND s.status = 'completed'"
        )
        params: list[Any] = [pipeline, step, inputs]
        if branches is not None:
            sql += f" AND r.trigger = 'ci' AND r.branch IN ({','.join('?' * len(branches))})"
            params += list(branches)
        rows = self.query(sql + " ORDER BY s.finished_at DESC LIMIT 1", params)
        return Reuse(*rows[0]) if rows else None

    def _records(self, runs: list[sqlite3.Row]) -> list[RunRecord]:
        """Runs with their steps, attempts and tests (few queries, not one per step)."""
        ids = [r["id"] for r in runs]
        marks = ",".join("?" * len(ids))
        steps = self.query(
            f"SELECT * FROM steps WHERE run_id IN ({marks}) ORDER BY run_id, position", ids
        )
        attempts = self.query(
            f"SELECT * FROM attempts WHERE run_id IN ({marks}) ORDER BY number", ids
        )
        tests = self.query(f"SELECT * FROM tests WHERE run_id IN ({marks})", ids)
        trees = {
            r["run_id"]: TreeState(r["tree"], bool(r["dirty"]))
            for r in self.query(f"SELECT * FROM run_trees WHERE run_id IN ({marks})", ids)
        }
        by_step: dict[tuple[str, str], list[AttemptRecord]] = {}
        for a in attempts:
            by_step.setdefault((a["run_id"], a["step"]), []).append(_attempt(a))
        cases: dict[tuple[str, str], list[TestCaseRecord]] = {}
        for t in tests:
            cases.setdefault((t["run_id"], t["step"]), []).append(_test(t))
        grouped: dict[str, list[StepRecord]] = {}
        for s in steps:
            key = (s["run_id"], s["name"])
            grouped.setdefault(s["run_id"], []).append(
                _step(s, by_step.get(key, []), cases.get(key, []))
            )
        return [_run(r, grouped.get(r["id"], []), trees.get(r["id"])) for r in runs]


def _read_only(db: sqlite3.Connection) -> bool:
    try:
        return bool(db.execute("PRAGMA query_only").fetchone()[0]) or _ro_probe(db)
    except sqlite3.Error:
        return True


def _ro_probe(db: sqlite3.Connection) -> bool:
    path = db.execute("PRAGMA database_list").fetchone()[2]
    return bool(path) and not os.access(path, os.W_OK)


def _upsert_step(
    db: sqlite3.Connection, run_id: str, step: StepRecord, finished: float | None, position: int
) -> None:
    db.execute(
        # An upsert, not INSERT OR REPLACE: a replace would delete (and cascade to) the attempts.
        "INSERT INTO steps (run_id, pipeline, name, status, reason, started_at,"
        " finished_at, duration_ms, attempts, exit_code, flaky, command, command_hash, needs,"
        " log_tail, log_path, junit_problems, position, lost_ms, fingerprint, inputs, saved_ms)"
        " VALUES (?, (SELECT pipeline FROM runs WHERE id = ?), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
        " ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (run_id, name) DO UPDATE SET status = excluded.status,"
        " reason = excluded.reason, started_at = excluded.started_at,"
        " finished_at = excluded.finished_at, duration_ms = excluded.duration_ms,"
        " attempts = excluded.attempts, exit_code = excluded.exit_code, flaky = excluded.flaky,"
        " log_tail = excluded.log_tail, log_path = excluded.log_path, command = excluded.command,"
        " junit_problems = excluded.junit_problems, lost_ms = excluded.lost_ms,"
        " fingerprint = excluded.fingerprint, inputs = excluded.inputs,"
        " saved_ms = excluded.saved_ms",
        (run_id, run_id, step.name, step.status, step.reason, step.started_at, finished,
         step.duration_ms, len(step.attempts), step.exit_code, int(step.flaky), step.command,
         command_hash(step.command), _json_list(tuple(step.needs)), step.log_tail[-TAIL_CHARS:],
         step.log_path, _json_list(tuple(step.junit_problems)), position, time_lost(step),
         step.fingerprint, step.inputs, step.saved_ms),
    )  # fmt: skip
    if not step.tests:
        return
    db.executemany(
        "INSERT OR REPLACE INTO tests (run_id, step, suite, classname, name, status,"
        " duration_ms, message, flaky, type, body, attempt, reruns)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run_id, step.name, test.suite, test.classname, test.name, test.status,
          test.duration_ms, test.message[:TAIL_CHARS], int(test.flaky), test.type,
          test.body[:TAIL_CHARS], test.attempt, test.reruns) for test in step.tests],
    )  # fmt: skip


def _insert_attempt(
    db: sqlite3.Connection, run_id: str, step: str, attempt: AttemptRecord, started: float
) -> None:
    db.execute(
        "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, step, attempt.number, attempt.exit_code, attempt.duration_ms,
         int(attempt.timed_out), started, attempt.error),
    )  # fmt: skip


class Reuse(NamedTuple):
    """A recorded pass that makes a step up to date."""

    run_id: str
    sha: str | None
    branch: str | None
    duration_ms: float


class PendingStep(NamedTuple):
    record: StepRecord
    finished_at: float | None
    position: int


class PendingAttempt(NamedTuple):
    step: str
    record: AttemptRecord
    started_at: float


class PendingProcess(NamedTuple):
    step: str
    pid: int
    started: str | None


PendingWrite = PendingStep | PendingAttempt | PendingProcess


def end_leftovers(db: sqlite3.Connection, run_id: str) -> None:
    """Kill the process groups of a dead run's steps that still run (the same leader: same pid
    and start time, or members of its group started after it), then forget them."""
    rows = db.execute("SELECT pid, started FROM processes WHERE run_id = ?", (run_id,)).fetchall()
    for pid, started in rows:
        if process_alive(pid, started) or _group_members(pid, started):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
    db.execute("DELETE FROM processes WHERE run_id = ?", (run_id,))


def _group_members(pgid: int, started: str | None) -> bool:
    """Processes of group `pgid` started no earlier than its leader did (the leader itself may
    have exited, leaving its children running)."""
    if started is None or not os.path.isdir("/proc"):
        return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if (
            fields
            and fields[2] == str(pgid)
            and fields[0] != "Z"
            and int(fields[19]) >= int(started)
        ):
            return True
    return False


def _abandon(db: sqlite3.Connection, run_id: str, last_output: float | None = None) -> None:
    last = db.execute(
        "SELECT max(coalesce(finished_at, started_at)) FROM steps WHERE run_id = ?", (run_id,)
    ).fetchone()[0]
    if last_output is not None:
        last = max(last or last_output, last_output)
    db.execute(
        "UPDATE steps SET status = 'cancelled', reason = 'run abandoned: the runner died'"
        " WHERE run_id = ? AND status IN ('running', 'pending')",
        (run_id,),
    )
    db.execute(
        "UPDATE runs SET status = 'abandoned', finished_at = coalesce(?, started_at),"
        " duration_ms = (coalesce(?, started_at) - started_at) * 1000 WHERE id = ?",
        (last, last, run_id),
    )


def time_lost(step: StepRecord) -> float:
    """What a step cost in failure: all of a failed step, the failed attempts of a retried one."""
    if step.status == "failed":
        return step.duration_ms
    return sum(a.duration_ms for a in step.attempts if not a.ok)


@lru_cache(maxsize=4096)  # a step is written when it starts and when it ends
def command_hash(command: str | None) -> str | None:
    if command is None:
        return None
    return hashlib.sha256(command.encode()).hexdigest()[:16]


@lru_cache(maxsize=4096)
def _json_list(items: tuple[str, ...]) -> str:
    return json.dumps(list(items))


def _attempt(row: sqlite3.Row) -> AttemptRecord:
    return AttemptRecord(
        row["number"], row["exit_code"], row["duration_ms"], bool(row["timed_out"]), row["error"]
    )


def _test(row: sqlite3.Row) -> TestCaseRecord:
    return TestCaseRecord(
        row["suite"], row["classname"], row["name"], row["status"], row["duration_ms"],
        row["message"], flaky=bool(row["flaky"]), type=row["type"], body=row["body"],
        attempt=row["attempt"], reruns=row["reruns"],
    )  # fmt: skip


def _step(
    row: sqlite3.Row, attempts: list[AttemptRecord], tests: list[TestCaseRecord]
) -> StepRecord:
    return StepRecord(
        name=row["name"],
        status=row["status"],
        reason=row["reason"],
        duration_ms=row["duration_ms"],
        attempts=tuple(attempts),
        exit_code=row["exit_code"],
        flaky=bool(row["flaky"]),
        command=row["command"],
        needs=tuple(json.loads(row["needs"])),
        log_tail=row["log_tail"],
        log_path=row["log_path"],
        started_at=row["started_at"],
        tests=tuple(tests),
        junit_problems=tuple(json.loads(row["junit_problems"])),
        fingerprint=row["fingerprint"],
        inputs=row["inputs"],
        saved_ms=row["saved_ms"],
    )


def _insert_tree(db: sqlite3.Connection, run: RunRecord) -> None:
    if run.tree is not None:
        db.execute(
            "INSERT OR IGNORE INTO run_trees VALUES (?, ?, ?)",
            (run.id, run.tree, int(bool(run.dirty))),
        )


def _run(row: sqlite3.Row, steps: list[StepRecord], tree: TreeState | None = None) -> RunRecord:
    return RunRecord(
        id=row["id"],
        pipeline=row["pipeline"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_ms=row["duration_ms"],
        git_sha=row["git_sha"],
        branch=row["branch"],
        event=row["event"],
        pr_number=row["pr_number"],
        trigger=row["trigger"],
        steps=tuple(steps),
        tree=tree.tree if tree else None,
        dirty=tree.dirty if tree else None,
        # `in row` would look at the values: a sqlite3.Row's names are its keys().
        url=_url(row["details"] if "details" in row.keys() else None),  # noqa: SIM118
    )


def _details(run: RunRecord) -> str:
    """The `details` column: what a run knows beyond the columns (its Actions run's page)."""
    return json.dumps({"url": run.url}) if run.url else "{}"


def _url(details: str | None) -> str | None:
    try:
        url = json.loads(details or "{}").get("url")
    except (ValueError, AttributeError):
        return None
    return url if isinstance(url, str) else None


# --- the public API ---


@dataclass(frozen=True)
class JournalEntry:
    """One event of the journal: a run started (`start`), a step ended (`step`), a run ended
    (`complete`). Entries are views of the runs and steps tables, so they are never out of step."""

    workflow_id: str
    event_type: str  # start | step | complete
    step_name: str | None
    status: str
    timestamp: float
    duration_ms: float
    details: dict[str, Any] = field(default_factory=dict)


EVENT_TYPES = ("start", "step", "complete")
_ENTRIES = """
    SELECT id AS workflow_id, 'start' AS event_type, NULL AS step_name, status,
           started_at AS timestamp, 0.0 AS duration_ms, pipeline AS detail, 0 AS ord
      FROM runs
    UNION ALL
    SELECT run_id, 'step', name, status, finished_at, duration_ms, reason, 1
      FROM steps WHERE finished_at IS NOT NULL
    UNION ALL
    SELECT id, 'complete', NULL, status, finished_at, coalesce(duration_ms, 0.0), pipeline, 2
      FROM runs WHERE finished_at IS NOT NULL
"""


def _entry(row: sqlite3.Row) -> JournalEntry:
    key = "reason" if row["event_type"] == "step" else "pipeline"
    return JournalEntry(
        row["workflow_id"], row["event_type"], row["step_name"], row["status"],
        row["timestamp"], row["duration_ms"], {key: row["detail"]},
    )  # fmt: skip


class WorkflowJournal(RunObserver):
    """Remembers every run. Subscribe it to a runner (`observers=[journal]`) to record runs as they
    happen, or call the `on_*` methods yourself. With no store it lives in memory."""

    def __init__(
        self, store: str | Path | JournalStore | None = None, *, context: RunContext | None = None
    ) -> None:
        self.store = store if isinstance(store, JournalStore) else JournalStore(store)
        self.context = context
        self.tree: TreeState | None = None  # the tracked tree the run starts from (fingerprint.py)
        self.run_id: str | None = None
        self.positions: dict[str, int] = {}
        self.fingerprints: dict[str, str | None] = {}  # by step, for this run
        self.mask: Callable[[str], str] = _unmasked  # secrets stay out of the journal
        self.problem: str | None = None  # set when a write failed mid-run (disk full, ...)
        # Once a runner announces its turns, step events wait for the end of the turn and are
        # written in one transaction; keyed so that a step's later record replaces its earlier one.
        self.batched = False
        self.pending: dict[tuple[str, int], PendingWrite] = {}
        # Set by `run` before the run (skipping.py): each step's input fingerprint, and what each
        # step skipped on purpose would have taken.
        self.inputs: Mapping[str, str] = {}
        self.saved: Mapping[str, float] = {}

    # --- the observer: written as things happen ---

    def run_started(self, run: RunInfo) -> None:
        self.run_id = run.run_id
        self.positions = {name: i for i, name in enumerate(run.steps)}
        self.fingerprints = {}
        ctx = self.context
        record = RunRecord(
            run.run_id, run.pipeline, "running", run.started_at,
            git_sha=ctx.sha if ctx else None, branch=ctx.branch if ctx else None,
            event=ctx.event if ctx else None, pr_number=ctx.pr_number if ctx else None,
            trigger=ctx.trigger if ctx else "local", url=ctx.url if ctx else None,
        )  # fmt: skip
        if self.tree is not None:
            record = record._replace(tree=self.tree.tree, dirty=self.tree.dirty)
        self._safely(
            self.store.begin_run, record, host=host_name(), pid=os.getpid(),
            pid_started=process_started(os.getpid()),
        )  # fmt: skip

    def step_started(self, step: WorkflowStep) -> None:
        if self.run_id is not None:
            position = self.positions.get(step.name, 0)
            self._write(PendingStep(self._record(step), None, position))

    def attempt_finished(self, step: WorkflowStep, attempt: Attempt) -> None:
        if self.run_id is not None:
            record = AttemptRecord(
                attempt.number, attempt.exit_code, attempt.duration_ms, attempt.timed_out,
                self.mask(attempt.error),
            )  # fmt: skip
            self._write(PendingAttempt(step.name, record, attempt.started_at))

    def process_started(self, step: WorkflowStep, pid: int) -> None:
        # With the turn's batch: the runner spawns a turn's processes before it ends the turn, so
        # they are recorded in the same transaction as the steps they run, right after the spawn.
        if self.run_id is not None:
            self._write(PendingProcess(step.name, pid, process_started(pid)))

    def step_finished(self, step: WorkflowStep) -> None:
        if self.run_id is not None:
            position = self.positions.get(step.name, 0)
            ended = step.started_at + step.duration_ms / 1000 if step.started_at else time.time()
            self._write(PendingStep(self._record(step), ended, position))

    def _record(self, step: WorkflowStep) -> StepRecord:
        # A step's fingerprint is what it was started with: worked out once, not per record.
        if step.name not in self.fingerprints:
            self.fingerprints[step.name] = masked_fingerprint(step, self.mask)
        record = step_record(step, self.mask, fingerprint=self.fingerprints[step.name])
        if self.inputs or self.saved:
            saved = self.saved.get(step.name, 0.0) if step.status.value == "skipped" else 0.0
            record = record._replace(inputs=self.inputs.get(step.name), saved_ms=saved)
        return record

    def turn_ended(self) -> None:
        self.batched = True
        self._flush()

    def run_finished(self, result: WorkflowResult) -> None:
        self._flush()
        self.batched = False
        self._safely(
            self.store.finish_run, result.workflow_id, result.status.value, result.finished_at,
            result.total_duration_ms,
        )  # fmt: skip

    def _write(self, write: PendingWrite) -> None:
        if not self.batched:
            self._safely(self.store.save_batch, self.run_id, (write,))
            return
        if isinstance(write, PendingStep):
            self.pending[(write.record.name, 0)] = write
        elif isinstance(write, PendingProcess):
            self.pending[(write.step, -1)] = write
        else:
            self.pending[(write.step, write.record.number)] = write

    def _flush(self) -> None:
        if self.pending and self.run_id is not None:
            writes, self.pending = list(self.pending.values()), {}
            self._safely(self.store.save_batch, self.run_id, writes)

    def _safely(self, write: Any, *args: Any, **kwargs: Any) -> None:
        """A failed write must not stop the run; it is remembered and reported at the end."""
        try:
            write(*args, **kwargs)
        except JournalError as exc:
            if self.problem is None:
                self.problem = exc.format_message()

    # --- the event-style API ---

    def on_workflow_start(
        self, workflow_id: str, name: str = "workflow", **details: Any
    ) -> JournalEntry:
        started = float(details.pop("timestamp", time.time()))
        record = RunRecord(workflow_id, name, "running", started, **_run_fields(details))
        self.store.begin_run(record, host=host_name(), pid=os.getpid(), pid_started=None)
        return JournalEntry(workflow_id, "start", None, "running", started, 0.0, {"pipeline": name})

    def on_step_complete(
        self, workflow_id: str, step_name: str, status: str | StepStatus, duration_ms: float = 0.0,
        **details: Any,
    ) -> JournalEntry:  # fmt: skip
        status = status.value if isinstance(status, StepStatus) else str(status)
        finished = float(details.pop("timestamp", time.time()))
        record = StepRecord(step_name, status, str(details.get("reason", "")), duration_ms,
                            exit_code=details.get("exit_code"), flaky=bool(details.get("flaky")),
                            command=details.get("command"))  # fmt: skip
        self.store.save_step(workflow_id, record, finished)
        return JournalEntry(workflow_id, "step", step_name, status, finished, duration_ms, details)

    def on_workflow_complete(
        self, workflow_id: str, status: str | bool = "passed", duration_ms: float | None = None,
        **details: Any,
    ) -> JournalEntry:  # fmt: skip
        text = ("passed" if status else "failed") if isinstance(status, bool) else str(status)
        finished = float(details.pop("timestamp", time.time()))
        if duration_ms is None:
            rows = self.store.query("SELECT started_at FROM runs WHERE id = ?", (workflow_id,))
            duration_ms = (finished - rows[0][0]) * 1000 if rows else 0.0
        self.store.finish_run(workflow_id, text, finished, duration_ms)
        return JournalEntry(workflow_id, "complete", None, text, finished, duration_ms, details)

    def record_full_workflow(self, runner: WorkflowRunner, result: WorkflowResult) -> None:
        """Record a run that already happened (when the journal was not subscribed to it)."""
        info = RunInfo(result.workflow_id, runner.name, result.started_at, result.steps,
                       runner.state_dir, runner.jobs)  # fmt: skip
        self.run_started(info)
        for step in result.steps.values():
            self.step_started(step)
            for attempt in step.attempts:
                self.attempt_finished(step, attempt)
            self.step_finished(step)
        self.run_finished(result)
        if self.problem:
            raise JournalError(self.problem)

    def by_workflow_id(self, workflow_id: str) -> list[JournalEntry]:
        return self._entries("WHERE workflow_id = ?", (workflow_id,))

    def by_event_type(self, event_type: str) -> list[JournalEntry]:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"event_type must be one of {', '.join(EVENT_TYPES)}")
        return self._entries("WHERE event_type = ?", (event_type,))

    def recent(self, n: int = 10) -> list[JournalEntry]:
        """The last `n` entries, oldest first."""
        rows = self.store.query(
            f"SELECT * FROM ({_ENTRIES}) ORDER BY timestamp DESC, ord DESC LIMIT ?", (n,)
        )
        return [_entry(r) for r in reversed(rows)]

    def _entries(self, where: str, params: Sequence[Any]) -> list[JournalEntry]:
        rows = self.store.query(
            f"SELECT * FROM ({_ENTRIES}) {where} ORDER BY timestamp, ord", params
        )
        return [_entry(r) for r in rows]

    @property
    def entry_count(self) -> int:
        return int(self.store.query(f"SELECT count(*) FROM ({_ENTRIES})")[0][0])

    def clear(self) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM runs")

    def close(self) -> None:
        self.store.close()


def _run_fields(details: Mapping[str, Any]) -> dict[str, Any]:
    allowed = ("git_sha", "branch", "event", "pr_number", "trigger", "tree", "dirty")
    return {k: details[k] for k in allowed if k in details}


def _unmasked(text: str) -> str:
    return text


def step_record(
    step: WorkflowStep, mask: Callable[[str], str] = _unmasked, *, fingerprint: str | None = None
) -> StepRecord:
    """What the journal keeps of a runner step (`mask` hides secrets in the texts); its
    fingerprint is worked out unless given."""
    return StepRecord(
        name=step.name,
        status=step.status.value,
        reason=mask(step.reason),
        duration_ms=step.duration_ms,
        attempts=tuple(
            AttemptRecord(a.number, a.exit_code, a.duration_ms, a.timed_out, mask(a.error))
            for a in step.attempts
        ),
        exit_code=step.exit_code,
        flaky=step.flaky,
        command=mask(step.command) if step.command is not None else None,
        needs=tuple(step.depends_on),
        log_tail=mask(step.tail[-TAIL_CHARS:]),
        log_path=step.log_path,
        started_at=step.started_at,
        tests=tuple(_masked_case(case, mask) for case in step.tests),
        junit_problems=tuple(mask(problem) for problem in step.junit_problems),
        fingerprint=fingerprint or masked_fingerprint(step, mask),
    )


def masked_fingerprint(step: WorkflowStep, mask: Callable[[str], str]) -> str | None:
    """The step's fingerprint (fingerprint.py) from its masked command and env: a secret's
    value never decides whether two runs ran the same step. None for a Python action."""
    if step.command is None:
        return None
    return step_fingerprint(
        mask(step.command),
        {name: mask(value) for name, value in step.env.items()},
        step.cwd,
    )


def _masked_case(case: TestCaseRecord, mask: Callable[[str], str]) -> TestCaseRecord:
    if mask is _unmasked or (isinstance(mask, Masker) and not mask):  # no secrets: no copies
        return case
    return case._replace(
        suite=mask(case.suite),
        classname=mask(case.classname),
        name=mask(case.name),
        message=mask(case.message),
        output=mask(case.output),
        type=mask(case.type),
        body=mask(case.body),
        stderr=mask(case.stderr),
    )


# --- which process wrote a run ---


def host_name() -> str:
    return os.uname().nodename


def process_started(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), to tell a reused pid apart."""
    fields = stat_fields(pid)
    return fields[19] if fields else None


def process_alive(pid: int | None, started: str | None) -> bool:
    """Is the process that wrote a run still running (zombies and reused pids count as gone)?"""
    if pid is None:
        return False
    from ci_orchestrator.shell import process_gone

    if os.path.isdir("/proc"):
        return not process_gone(pid) and (started is None or process_started(pid) == started)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- export, import, prune ---


def export_runs(
    store: JournalStore,
    out: IO[str],
    since: float | None = None,
    mask: Callable[[str], str] | None = None,
) -> int:
    """Every run as one JSON line (steps, attempts and tests inside), with `mask` applied to every
    text; returns the count."""
    rows = store.query(
        "SELECT * FROM runs WHERE started_at >= ? ORDER BY started_at", (since or 0.0,)
    )
    count = 0
    for start in range(0, len(rows), 500):
        for run in store._records(rows[start : start + 500]):
            masked = mask_record(run, mask) if mask else run
            out.write(json.dumps(run_to_json(masked), separators=(",", ":")) + "\n")
            count += 1
    return count


def run_to_json(run: RunRecord) -> dict[str, Any]:
    return {"format": "ci-orchestrator-run/1", **to_json(run)}


def run_from_json(data: Mapping[str, Any]) -> RunRecord:
    steps = tuple(
        StepRecord(
            **{
                **s,
                "attempts": tuple(AttemptRecord(**a) for a in s.get("attempts", ())),
                "tests": tuple(TestCaseRecord(**t) for t in s.get("tests", ())),
                "needs": tuple(s.get("needs", ())),
                "junit_problems": tuple(s.get("junit_problems", ())),
            }
        )
        for s in data.get("steps", ())
    )
    fields = {k: v for k, v in data.items() if k not in ("format", "steps")}
    return RunRecord(**fields, steps=steps)


class ImportResult(NamedTuple):
    added: int
    updated: int
    present: int


def import_runs(
    store: JournalStore, runs: Iterable[RunRecord], source: str = "import"
) -> ImportResult:
    """Add runs. A run already there is replaced if it is still 'running' and the new one is
    done; otherwise the steps it lacks are merged in (the parts of one run recorded by separate
    jobs, `run --run-id`), so importing the same file twice adds nothing."""
    added = updated = present = 0
    with store.transaction() as db:
        for run in runs:
            row = db.execute("SELECT status FROM runs WHERE id = ?", (run.id,)).fetchone()
            if row is None:
                _insert_run(db, run, source)
                added += 1
            elif row[0] == "running" and run.status != "running":
                db.execute("DELETE FROM runs WHERE id = ?", (run.id,))
                _insert_run(db, run, source)
                updated += 1
            elif _merge_steps(db, run):
                updated += 1
            else:
                present += 1
    return ImportResult(added, updated, present)


_WORST = ("failed", "interrupted", "abandoned", "running", "passed")


def _merge_steps(db: sqlite3.Connection, run: RunRecord) -> bool:
    """Add the steps of `run` that its stored copy lacks; False when it lacks none."""
    known = {r[0] for r in db.execute("SELECT name FROM steps WHERE run_id = ?", (run.id,))}
    new = [(i, s) for i, s in enumerate(run.steps) if s.name not in known]
    if not new:
        return False
    for position, step in new:
        _insert_step(db, run, step, position)
    _insert_tree(db, run)  # when the stored part did not know it
    status, started, finished = db.execute(
        "SELECT status, started_at, finished_at FROM runs WHERE id = ?", (run.id,)
    ).fetchone()
    status = min(status, run.status, key=lambda s: _WORST.index(s) if s in _WORST else 0)
    started = min(started, run.started_at)
    finished = max(f for f in (finished, run.finished_at, started) if f is not None)
    db.execute(
        "UPDATE runs SET status = ?, started_at = ?, finished_at = ?, duration_ms = ? WHERE id = ?",
        (status, started, finished, (finished - started) * 1000, run.id),
    )
    return True


def _insert_run(db: sqlite3.Connection, run: RunRecord, source: str) -> None:
    db.execute(
        "INSERT INTO runs (id, pipeline, status, started_at, finished_at, duration_ms, git_sha,"
        " branch, event, pr_number, trigger, source, details)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run.id, run.pipeline, run.status, run.started_at, run.finished_at, run.duration_ms,
         run.git_sha, run.branch, run.event, run.pr_number, run.trigger, source, _details(run)),
    )  # fmt: skip
    _insert_tree(db, run)
    for position, step in enumerate(run.steps):
        _insert_step(db, run, step, position)


def _insert_step(db: sqlite3.Connection, run: RunRecord, step: StepRecord, position: int) -> None:
    finished = (step.started_at or run.started_at) + step.duration_ms / 1000
    done = step.status not in ("running", "pending")
    _upsert_step(db, run.id, step, finished if done else None, position)
    for attempt in step.attempts:
        db.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run.id, step.name, attempt.number, attempt.exit_code, attempt.duration_ms,
             int(attempt.timed_out), None, attempt.error),
        )  # fmt: skip


def prune(store: JournalStore, before: float) -> int:
    with store.transaction() as db:
        return db.execute("DELETE FROM runs WHERE started_at < ?", (before,)).rowcount


def run_record(
    result: WorkflowResult,
    context: RunContext | None = None,
    mask: Callable[[str], str] = _unmasked,
) -> RunRecord:
    """A finished runner result as the record reports are made from."""
    return RunRecord(
        id=result.workflow_id,
        pipeline=result.pipeline,
        status=result.status.value,
        started_at=result.started_at,
        finished_at=result.finished_at,
        duration_ms=result.total_duration_ms,
        git_sha=context.sha if context else None,
        branch=context.branch if context else None,
        event=context.event if context else None,
        pr_number=context.pr_number if context else None,
        trigger=context.trigger if context else "local",
        steps=tuple(step_record(step, mask) for step in result.steps.values()),
        url=context.url if context else None,
    )
