"""Section 3: start-up. `ci-orchestrator --version` and a one-step run of `true` (with and without
the journal) against `pre-commit --version` and `task --version`, medians of many runs."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from bench.tables import Row, Table, ms, verdict
from bench.timing import Contender, alternate
from bench.tools import OURS, find

RUN_LIMIT = 0.150  # seconds, a one-step run
ONE_STEP = "version: 1\nname: one-step\nsteps:\n  only:\n    run: 'true'\n"


@dataclass(frozen=True)
class StartupSizes:
    rounds: int


FULL = StartupSizes(rounds=30)
QUICK = StartupSizes(rounds=3)

VERSION = f"{OURS} --version"
RUN = f"{OURS} run (one step, --no-journal)"
RUN_JOURNAL = f"{OURS} run (one step, journal)"
PRE_COMMIT = "pre-commit --version"
TASK = "task --version"
PEERS = (PRE_COMMIT, TASK)


@dataclass(frozen=True)
class StartupResult:
    seconds: dict[str, list[float]]  # command label -> wall time of each run
    skipped: list[str]


def contenders(work: Path) -> tuple[list[Contender], list[str]]:
    """The commands to time (in `work`), and the labels of those whose program is missing."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "pipeline.yml").write_text(ONE_STEP)
    journal = str(work / "journal.db")
    wanted: list[tuple[str, str, tuple[str, ...]]] = [
        (VERSION, "ci-orchestrator", ("--version",)),
        (RUN, "ci-orchestrator", ("run", "pipeline.yml", "-q", "--no-journal")),
        (RUN_JOURNAL, "ci-orchestrator", ("run", "pipeline.yml", "-q", "--journal", journal)),
        (PRE_COMMIT, "pre-commit", ("--version",)),
        (TASK, "task", ("--version",)),
    ]
    found, missing = [], []
    for label, program, args in wanted:
        exe = find(program)
        if exe is None:
            missing.append(label)
        else:
            found.append(Contender(label, (exe, *args), work))
    return found, missing


def run(sizes: StartupSizes, work: Path) -> StartupResult:
    found, missing = contenders(work)
    timings = alternate(found, sizes.rounds)
    seconds = {label: [s.seconds for s in runs] for label, runs in timings.samples.items()}
    return StartupResult(seconds, missing)


def table(result: StartupResult, checked: bool) -> Table:
    medians = {label: statistics.median(runs) for label, runs in result.seconds.items()}
    rows = [_row(label, medians, checked) for label in (VERSION, RUN, RUN_JOURNAL)]
    rows += [Row((label, ms(medians[label]))) for label in PEERS if label in medians]
    rows += [Row((label, "skipped (not installed)")) for label in result.skipped if label in PEERS]
    return Table(
        "Start-up (median wall time)", ("command", "median"), tuple(rows), short="start-up"
    )


def _row(label: str, medians: dict[str, float], checked: bool) -> Row:
    if label not in medians:
        return Row((label, "skipped (not installed)"))
    seconds = medians[label]
    if label != VERSION:
        return Row(
            (label, ms(seconds)), f"≤ {ms(RUN_LIMIT)}", verdict(seconds <= RUN_LIMIT, checked)
        )
    peer = medians.get(PRE_COMMIT)
    ok = peer is not None and seconds <= peer
    return Row((label, ms(seconds)), f"≤ {PRE_COMMIT}", verdict(ok, checked and peer is not None))
