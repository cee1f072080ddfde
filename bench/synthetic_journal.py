"""A large, realistic journal, written straight into SQLite with the journal's own schema.

The pipeline is ten stages of steps, each step needing two steps of the stage before. Step
durations are lognormal (most steps seconds, a few minutes) with some noise from run to run; a few
steps fail now and then (their dependents are then skipped), a few are flaky (a failed first
attempt, then a pass); three runs share each commit (and its clean tree), so the journal also sees
failures that pass on another run of the same code. With `tests`, the unit and integration steps
report that many test records per run between them: a failed step fails one of its tests, a
flaky one has a test its runner reported flaky, and a few tests are always skipped. Every column
the real writer fills is filled.

The database is made by `JournalStore(path)` (so migrations, indexes and pragmas are ours) and then
bulk-inserted with `executemany` in one transaction. Everything is seeded: the same shape always
gives the same file, so `cached` can keep it under bench/results/.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from ci_orchestrator.fingerprint import step_fingerprint
from ci_orchestrator.journal import SCHEMA_VERSION, JournalStore, command_hash

GENERATOR = 2  # bump when the data below changes, so that cached journals are made again
SEED = 7
PIPELINE = "synthetic"
BASE_TIME = 1_735_689_600.0  # 2025-01-01T00:00:00Z: fixed, so that a shape gives one file
RUN_INTERVAL_S = 900.0
RETRY_DELAY_MS = 1000.0
STAGES = ("setup", "lint", "build", "unit", "integration", "e2e", "package", "docs", "scan", "ship")
TEST_STAGES = ("unit", "integration")
SKIPPED_TESTS = 50  # one test in this many is always skipped
CHUNK_RUNS = 500  # runs per executemany batch (bounded memory, one transaction)

Rows = list[tuple[Any, ...]]
# Every column, in the order of the rows below; named, so that a later migration adding one
# fails loudly here rather than shifting values.
RUN_COLUMNS = (
    "id", "pipeline", "status", "started_at", "finished_at", "duration_ms", "git_sha", "branch",
    "event", "pr_number", "trigger", "host", "pid", "pid_started", "source", "details",
)  # fmt: skip
STEP_COLUMNS = (
    "run_id", "pipeline", "name", "status", "reason", "started_at", "finished_at", "duration_ms",
    "attempts", "exit_code", "flaky", "command", "command_hash", "needs", "log_tail", "log_path",
    "junit_problems", "position", "lost_ms", "fingerprint",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "run_id", "step", "number", "exit_code", "duration_ms", "timed_out", "started_at", "error",
)  # fmt: skip
TEST_COLUMNS = (
    "run_id", "step", "suite", "classname", "name", "status", "duration_ms", "message", "flaky",
)  # fmt: skip
TREE_COLUMNS = ("run_id", "tree", "dirty")


@dataclass(frozen=True)
class JournalShape:
    """How big the journal is: `runs` runs of `steps` steps, `runs_per_sha` runs per commit,
    `tests` test records per run."""

    runs: int
    steps: int
    runs_per_sha: int = 3
    seed: int = SEED
    tests: int = 0

    @property
    def records(self) -> int:
        return self.runs * self.steps

    @property
    def test_records(self) -> int:
        return self.runs * self.tests

    @property
    def filename(self) -> str:
        return (
            f"journal-{self.runs}x{self.steps}-sha{self.runs_per_sha}-seed{self.seed}"
            f"-tests{self.tests}-schema{SCHEMA_VERSION}-gen{GENERATOR}.db"
        )


@dataclass(frozen=True)
class StepModel:
    """One step of the synthetic pipeline, and how it tends to behave."""

    name: str
    needs: tuple[str, ...]
    median_ms: float
    fail_rate: float
    flake_rate: float

    tests: tuple[str, ...] = ()  # its test cases' names

    @property
    def command(self) -> str:
        return f"./ci/{self.name}.sh"

    @property
    def classname(self) -> str:
        return f"tests.test_{self.name.replace('-', '_')}"


def pipeline_model(steps: int, rng: random.Random, tests: int = 0) -> list[StepModel]:
    """`steps` steps over ten stages, in a topological order; 5% fragile, 3% flaky (at least 1);
    `tests` test cases spread over the unit and integration steps."""
    names = [f"{STAGES[i * len(STAGES) // steps]}-{i:03d}" for i in range(steps)]
    stage_of = {name: i * len(STAGES) // steps for i, name in enumerate(names)}
    fragile = set(rng.sample(names, max(1, steps // 20)))
    flaky = set(rng.sample(names, max(1, steps * 3 // 100)))
    model = []
    for name in names:
        before = [n for n in names if stage_of[n] == stage_of[name] - 1]
        model.append(
            StepModel(
                name,
                tuple(sorted(rng.sample(before, min(2, len(before))))),
                median_ms=rng.lognormvariate(8.5, 1.0),  # median ~5 s, a few minutes
                fail_rate=rng.uniform(0.01, 0.05) if name in fragile else 0.0,
                flake_rate=rng.uniform(0.02, 0.08) if name in flaky else 0.0,
            )
        )
    return _with_tests(model, tests)


def _with_tests(model: list[StepModel], tests: int) -> list[StepModel]:
    """`tests` test names dealt round the steps of the test stages (all steps when none is)."""
    testing = [m for m in model if m.name.split("-")[0] in TEST_STAGES] or model
    names: dict[str, list[str]] = {m.name: [] for m in testing}
    for i in range(tests):
        names[testing[i % len(testing)].name].append(f"test_case_{i:05d}")
    return [replace(m, tests=tuple(names[m.name])) if m.name in names else m for m in model]


class Outcome(NamedTuple):
    """How one step went in one run: the columns of its row that vary, and its attempts."""

    status: str
    reason: str
    started_at: float | None
    finished_at: float
    duration_ms: float
    exit_code: int | None
    flaky: int
    log_tail: str
    lost_ms: float
    attempts: tuple[tuple[int, int, float, float], ...] = ()  # number, exit code, ms, start


@dataclass
class _RunState:
    run_id: str
    started: float
    outcomes: dict[str, Outcome]


def _skipped(step: StepModel, state: _RunState) -> Outcome | None:
    """Skipped because a need did not complete (worded as the runner words it), or None."""
    for need in step.needs:
        before = state.outcomes[need]
        if before.status != "completed":
            ended = "failed" if before.status == "failed" else "was skipped"
            reason = f"dependency {need!r} {ended}"
            return Outcome("skipped", reason, None, before.finished_at, 0.0, None, 0, "", 0.0)
    return None


def _ran(step: StepModel, state: _RunState, rng: random.Random) -> Outcome:
    """It ran once its needs ended: passed, failed, or failed once and passed on its retry."""
    begin = 0.01 + max((state.outcomes[n].finished_at for n in step.needs), default=state.started)
    took = step.median_ms * rng.lognormvariate(0.0, 0.25)
    roll = rng.random()
    if roll < step.fail_rate:
        return _failed(begin, took)
    if roll < step.fail_rate + step.flake_rate:
        return _flaky(begin, took, first=took * rng.uniform(0.2, 1.0))
    return _passed(step, begin, took)


def _failed(begin: float, took: float) -> Outcome:
    return Outcome(
        "failed", "exit code 1", begin, begin + took / 1000, took, exit_code=1, flaky=0,
        log_tail="FAILED tests/test_api.py::test_login - AssertionError\n", lost_ms=took,
        attempts=((1, 1, took, begin),),
    )  # fmt: skip


def _flaky(begin: float, took: float, first: float) -> Outcome:
    """A failed first attempt, the retry delay, then a passing second attempt."""
    total = first + RETRY_DELAY_MS + took
    retry = begin + (first + RETRY_DELAY_MS) / 1000
    return Outcome(
        "completed", "passed on attempt 2", begin, begin + total / 1000, total, exit_code=0,
        flaky=1, log_tail="connection reset by peer\nretrying\nok\n", lost_ms=first,
        attempts=((1, 1, first, begin), (2, 0, took, retry)),
    )  # fmt: skip


def _passed(step: StepModel, begin: float, took: float) -> Outcome:
    return Outcome(
        "completed", "", begin, begin + took / 1000, took, exit_code=0, flaky=0,
        log_tail=f"{step.name}: ok\n", lost_ms=0.0, attempts=((1, 0, took, begin),),
    )  # fmt: skip


def _run_id(started: float, rng: random.Random) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{rng.getrandbits(24):06x}"


def _step_row(run_id: str, step: StepModel, outcome: Outcome, position: int) -> tuple[Any, ...]:
    ran = outcome.started_at is not None
    return (
        run_id, PIPELINE, step.name, outcome.status, outcome.reason, outcome.started_at,
        outcome.finished_at, outcome.duration_ms, len(outcome.attempts), outcome.exit_code,
        outcome.flaky, step.command, command_hash(step.command), json.dumps(list(step.needs)),
        outcome.log_tail, f".ci-orchestrator/runs/{run_id}/{step.name}.log" if ran else None,
        "[]", position, outcome.lost_ms, step_fingerprint(step.command, {}, None, here="/"),
    )  # fmt: skip


def _test_rows(
    run_id: str, step: StepModel, outcome: Outcome, rng: random.Random
) -> Iterator[tuple[Any, ...]]:
    """The step's test cases in one run (none when it did not run): the one it blames failed when
    it failed, or was reported flaky when it passed on a retry; a few always skipped."""
    if not step.tests or outcome.started_at is None:
        return
    blamed = step.tests[0] if rng.random() < 0.7 else rng.choice(step.tests)
    for name in step.tests:
        status, message, flaky = "passed", "", 0
        if int(name[-5:]) % SKIPPED_TESTS == SKIPPED_TESTS - 1:
            status = "skipped"
        elif name == blamed and outcome.status == "failed":
            status, message = "failed", "AssertionError: expected 200, got 503"
        elif name == blamed:
            flaky = outcome.flaky
        took = rng.lognormvariate(3.0, 1.0) if status != "skipped" else 0.0
        yield (run_id, step.name, step.name, step.classname, name, status, took, message, flaky)


def _commit(index: int, shape: JournalShape) -> int:
    return index // shape.runs_per_sha


def _tree_row(index: int, shape: JournalShape, run_id: str) -> tuple[Any, ...]:
    """Each commit has its own tree, clean in every run (CI checkouts)."""
    return (run_id, hashlib.sha1(b"tree %d" % _commit(index, shape)).hexdigest(), 0)


def _run_row(index: int, shape: JournalShape, state: _RunState) -> tuple[Any, ...]:
    """Runs of one commit come in threes; three commits in ten are on pull requests."""
    commit = _commit(index, shape)
    pull = commit % 10 >= 7
    finished = max(o.finished_at for o in state.outcomes.values())
    failed = any(o.status == "failed" for o in state.outcomes.values())
    return (
        state.run_id, PIPELINE, "failed" if failed else "passed", state.started, finished,
        (finished - state.started) * 1000, hashlib.sha1(b"%d" % commit).hexdigest(),
        f"feature-{commit // 10}" if pull else "main", "pull_request" if pull else "push",
        1000 + commit // 10 if pull else None, "ci", f"runner-{index % 8}", 1000 + index % 30000,
        str(100000 + index), "ci-orchestrator", "{}",
    )  # fmt: skip


class Chunk(NamedTuple):
    """Rows for each table, for some runs."""

    runs: Rows
    trees: Rows
    steps: Rows
    attempts: Rows
    tests: Rows


TABLES = (
    ("runs", RUN_COLUMNS),
    ("run_trees", TREE_COLUMNS),
    ("steps", STEP_COLUMNS),
    ("attempts", ATTEMPT_COLUMNS),
    ("tests", TEST_COLUMNS),
)


def run_rows(
    index: int, shape: JournalShape, model: Sequence[StepModel], rng: random.Random, into: Chunk
) -> None:
    """One run's rows, added to `into`."""
    started = BASE_TIME + index * RUN_INTERVAL_S
    state = _RunState(_run_id(started, rng), started, {})
    for position, step in enumerate(model):
        outcome = _skipped(step, state) or _ran(step, state, rng)
        state.outcomes[step.name] = outcome
        into.steps.append(_step_row(state.run_id, step, outcome, position))
        into.attempts.extend(
            (state.run_id, step.name, *a[:3], 0, a[3], "") for a in outcome.attempts
        )
        into.tests.extend(_test_rows(state.run_id, step, outcome, rng))
    into.runs.append(_run_row(index, shape, state))
    into.trees.append(_tree_row(index, shape, state.run_id))


def generate(shape: JournalShape) -> Iterator[Chunk]:
    """Chunks of rows, oldest runs first."""
    rng = random.Random(shape.seed)
    model = pipeline_model(shape.steps, rng, shape.tests)
    for first in range(0, shape.runs, CHUNK_RUNS):
        chunk = Chunk([], [], [], [], [])
        for index in range(first, min(first + CHUNK_RUNS, shape.runs)):
            run_rows(index, shape, model, rng, chunk)
        yield chunk


def write(shape: JournalShape, path: Path) -> None:
    """A new journal at `path` (which must not exist), filled in one transaction."""
    store = JournalStore(path)
    try:
        with store.transaction() as db:
            for chunk in generate(shape):
                for (table, columns), rows in zip(TABLES, chunk, strict=True):
                    db.executemany(_insert(table, columns), rows)
    finally:
        store.close()


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def cached(shape: JournalShape, folder: Path) -> tuple[Path, float | None]:
    """The journal for `shape` under `folder`, made if missing; and the seconds it took to make
    (None when it was already there). Made under a temporary name, so a half-written file is
    never mistaken for a cached one."""
    path = folder / shape.filename
    if path.exists():
        return path, None
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    started = time.perf_counter()
    write(shape, partial)
    os.replace(partial, path)
    return path, time.perf_counter() - started
