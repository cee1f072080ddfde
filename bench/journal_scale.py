"""Section 4: `ci-orchestrator report` over a journal of a million step records and a million test
records, every format, as whole processes with their peak memory, against the floor: one plain
SQLite GROUP BY over the same file in a fresh Python process. And what the flaky evidence costs
each run: reading the tree it runs on (`fingerprint.read_tree`) in a repository of a few
thousand files, clean and with an uncommitted change."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.synthetic_journal import JournalShape, cached
from bench.tables import Row, Table, secs, verdict
from bench.timing import Contender, alternate, memory_method
from bench.tools import OURS, find
from ci_orchestrator.fingerprint import read_tree

SECONDS_LIMIT = 1.0
MEMORY_LIMIT_MB = 200.0
FORMATS = ("text", "json", "markdown")
MEMORY_NOTE = (
    "The report reads the journal through SQLite's page cache (no memory map), so its resident"
    " set stays small whatever the journal's size."
)
TREE_NOTE = (
    "Reading the tree is what a run pays for flaky evidence: HEAD's tree id and the diff of the"
    " working tree against it, two git processes started together (the dirty case hashes the"
    " diff too)."
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


FULL = ScaleSizes(JournalShape(runs=10_000, steps=100, tests=100), rounds=5)
QUICK = ScaleSizes(JournalShape(runs=200, steps=20, tests=20), rounds=2)
TREE_FILES = 2_000  # tracked files in the repository whose tree is read
TREE_ROUNDS = 30
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com"}


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
    test_records: int = 0
    tree_ms: dict[str, float] | None = None  # clean | dirty -> median ms of read_tree


def tree_costs(work: Path, files: int = TREE_FILES, rounds: int = TREE_ROUNDS) -> dict[str, float]:
    """Median milliseconds of `read_tree` (two git processes at once) in a new repository of
    `files` tracked files: right after the commit (git must re-read the files written in the
    same second as its index: "racily clean"), clean once the index has settled (a `git status`
    a second later, as any prompt or editor does), and with one uncommitted change."""
    repo = work / "tree"
    for i in range(files):
        path = repo / f"pkg{i % 50:02d}" / f"module_{i:05d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"VALUE = {i}\n" * 20)
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "files"]):
        _git(repo, *args)
    costs = {"just committed": _median_ms(repo, rounds)}
    time.sleep(1.1)
    _git(repo, "status")
    costs["clean"] = _median_ms(repo, rounds)
    (repo / "pkg00" / "module_00000.py").write_text("VALUE = -1\n")
    costs["dirty"] = _median_ms(repo, rounds)
    return costs


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, **GIT_ENV, "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.com"}  # fmt: skip
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _median_ms(repo: Path, rounds: int) -> float:
    samples = []
    for _ in range(rounds + 1):  # the first one warms the file system cache
        started = time.perf_counter()
        if read_tree(repo) is None:
            raise RuntimeError(f"no tree read in {repo}")
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples[1:])


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
        sizes.shape.records, sizes.shape.runs, size, synthesis, reports, memory_method(),
        sizes.shape.test_records, tree_costs(work),
    )  # fmt: skip


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
    for state, ms in (result.tree_ms or {}).items():
        label = f"per run: read the tree, {state} ({TREE_FILES:,} tracked files, in-process)"
        rows.append(Row((label, f"{ms:.1f} ms", "")))
    made = "cached" if result.synthesis_s is None else f"made in {result.synthesis_s:.1f} s"
    note = (
        f"Journal: {result.records:,} step records and {result.test_records:,} test records"
        f" ({result.runs:,} runs), {result.file_mb:.0f} MB on disk ({made}). Peak memory: the"
        f" process's maximum resident set size ({result.memory_method})."
    )
    title = f"Analytics at scale: report over {result.records:,} step records"
    if result.test_records:
        title += f" and {result.test_records:,} test records"
    return Table(
        title, ("command", "median", "peak memory"), tuple(rows), (note, MEMORY_NOTE, TREE_NOTE),
        short="report at scale",
    )  # fmt: skip
