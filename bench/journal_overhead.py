"""Section 5: what the journal costs per event. A `WorkflowRunner` of no-op Python steps (so no
process start-up is measured), with and without a `WorkflowJournal` on a file (WAL); the
difference over the number of step events (start, attempt, end: three per step)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.tables import Row, Table, ms, verdict
from ci_orchestrator.journal import WorkflowJournal
from ci_orchestrator.runner import WorkflowRunner

EVENT_LIMIT_MS = 1.0
EVENTS_PER_STEP = 3  # step started, attempt finished, step finished


@dataclass(frozen=True)
class OverheadSizes:
    steps: int
    rounds: int
    jobs: int = 2


FULL = OverheadSizes(steps=500, rounds=7)
QUICK = OverheadSizes(steps=50, rounds=2)


@dataclass(frozen=True)
class OverheadResult:
    steps: int
    events: int
    without_s: list[float]
    with_s: list[float]

    @property
    def per_event_ms(self) -> float:
        extra = statistics.median(self.with_s) - statistics.median(self.without_s)
        return extra * 1000 / self.events


def _noop() -> None:
    return None


def _runner(sizes: OverheadSizes, work: Path, journal: WorkflowJournal | None) -> WorkflowRunner:
    runner = WorkflowRunner(
        "overhead", jobs=sizes.jobs, state_dir=work, observers=[journal] if journal else []
    )
    for i in range(sizes.steps):
        runner.add_step(f"s{i:03d}", _noop)
    return runner


def _time_run(runner: WorkflowRunner) -> float:
    started = time.perf_counter()
    runner.run()
    return time.perf_counter() - started


def run(sizes: OverheadSizes, work: Path) -> OverheadResult:
    """Alternate runs with and without the journal; the journal file exists (and is migrated)
    before the clock starts, as a user's journal does."""
    work.mkdir(parents=True, exist_ok=True)
    journal = WorkflowJournal(work / "journal.db")
    without: list[float] = []
    with_journal: list[float] = []
    try:
        for number in range(1 + sizes.rounds):  # the first round warms up
            plain = _time_run(_runner(sizes, work, None))
            recorded = _time_run(_runner(sizes, work, journal))
            if number:
                without.append(plain)
                with_journal.append(recorded)
    finally:
        journal.close()
    return OverheadResult(sizes.steps, sizes.steps * EVENTS_PER_STEP, without, with_journal)


def table(result: OverheadResult, checked: bool) -> Table:
    rows = (
        Row((f"{result.steps} no-op steps, no journal", ms(statistics.median(result.without_s)))),
        Row((f"{result.steps} no-op steps, file journal", ms(statistics.median(result.with_s)))),
        Row(
            (f"per step event ({result.events} events)", f"{result.per_event_ms:.3f} ms"),
            f"≤ {EVENT_LIMIT_MS:g} ms",
            verdict(result.per_event_ms <= EVENT_LIMIT_MS, checked),
        ),
    )
    return Table(
        "Journal overhead (file journal, WAL; median of runs)",
        ("measure", "median"),
        rows,
        ("Events are step start, attempt end and step end; run start and end are not counted.",),
        short="journal overhead",
    )
