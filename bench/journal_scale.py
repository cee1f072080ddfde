"""Section 4: `ci-orchestrator report` over a journal of a million step records, every format, as
whole processes with their peak memory, against the floor: one plain SQLite GROUP BY over the same
file in a fresh Python process."""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.synthetic_journal import JournalShape, cached
from bench.tables import Row, Table, secs, verdict
from bench.timing import Contender, alternate, memory_method
from bench.tools import OURS, find

SECONDS_LIMIT = 1.0
MEMORY_LIMIT_MB = 200.0
FORMATS = ("text", "json", "markdown")
MEMORY_NOTE = (
    "The report reads the journal through SQLite's page cache (no memory map), so its resident"
    " set stays small whatever the journal's size."
)
FLOOR = "floor: SQLite GROUP BY (fresh Python)"
FLOOR_SCRIPT = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)\n"
    "db.execute('SELECT name, count(*), avg(duration_ms) FROM steps GROUP BY name').fetchall()\n"
)


@dataclass(frozen=True)
class ScaleSizes:
    shape: JournalShape
    rounds: int


FULL = ScaleSizes(JournalShape(runs=10_000, steps=100), rounds=5)
QUICK = ScaleSizes(JournalShape(runs=200, steps=20), rounds=2)


@dataclass(frozen=True)
class Measured:
    seconds: list[float]
    peak_mb: float

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class ScaleResult:
    records: int
    runs: int
    file_mb: float
    synthesis_s: float | None  # None: the journal was already cached
    reports: dict[str, Measured]  # label -> measurements
    memory_method: str


def report_label(fmt: str) -> str:
    return f"{OURS} report --format {fmt}"


def contenders(journal: Path, work: Path) -> list[Contender]:
    exe = find("ci-orchestrator")
    if exe is None:
        raise RuntimeError("ci-orchestrator is not installed: pip install -e .")
    reports = [
        Contender(report_label(f), (exe, "report", "--journal", str(journal), "--format", f), work)
        for f in FORMATS
    ]
    floor = Contender(FLOOR, (sys.executable, "-c", FLOOR_SCRIPT, str(journal)), work)
    return [*reports, floor]


def run(sizes: ScaleSizes, results: Path, work: Path) -> ScaleResult:
    """Make (or reuse) the journal under `results`, then time the reports and the floor."""
    journal, synthesis = cached(sizes.shape, results)
    work.mkdir(parents=True, exist_ok=True)
    timings = alternate(contenders(journal, work), sizes.rounds, memory=True)
    reports = {
        label: Measured([s.seconds for s in runs], timings.peak_mb(label))
        for label, runs in timings.samples.items()
    }
    size = journal.stat().st_size / 2**20
    return ScaleResult(
        sizes.shape.records, sizes.shape.runs, size, synthesis, reports, memory_method()
    )


def table(result: ScaleResult, checked: bool) -> Table:
    rows = []
    for label, measured in result.reports.items():
        cells = (label, secs(measured.median), f"{measured.peak_mb:.0f} MB")
        if label == FLOOR:
            rows.append(Row(cells))
            continue
        ok = measured.median <= SECONDS_LIMIT and measured.peak_mb <= MEMORY_LIMIT_MB
        target = f"≤ {SECONDS_LIMIT:g} s, ≤ {MEMORY_LIMIT_MB:.0f} MB"
        rows.append(Row(cells, target, verdict(ok, checked)))
    made = "cached" if result.synthesis_s is None else f"made in {result.synthesis_s:.1f} s"
    note = (
        f"Journal: {result.records:,} step records ({result.runs:,} runs), {result.file_mb:.0f} MB"
        f" on disk ({made}). Peak memory: the process's maximum resident set size"
        f" ({result.memory_method})."
    )
    return Table(
        f"Analytics at scale: report over {result.records:,} step records",
        ("command", "median", "peak memory"),
        tuple(rows),
        (note, MEMORY_NOTE),
        short="report at scale",
    )
