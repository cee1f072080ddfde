"""Sections 1 and 2: the same DAGs run by us, GNU make, go-task and doit, as whole processes.

No-op DAGs at `--jobs 2` measure scheduling and process overhead; sleeping DAGs (skewed durations,
as many jobs as the DAG is wide) measure how close each tool gets to the critical path.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import dags, formats
from bench.dags import Dag, Shapes, Variant
from bench.tables import Row, Table, ms, ratio, secs, verdict
from bench.timing import Contender, alternate
from bench.tools import OURS, Tool

PATH_RATIO_LIMIT = 1.03  # our wall time / critical path, sleeping DAGs
DOIT_RATIO_LIMIT = 0.75  # "well ahead of doit": at least a quarter faster
NOOP_VARIANTS = (Variant.TRUE, Variant.BIN_TRUE)


@dataclass(frozen=True)
class DagSizes:
    shapes: Shapes
    jobs: int  # for the no-op DAGs
    noop_rounds: int
    sleep_rounds: int
    critical_path: float  # seconds, of every sleeping DAG


# 12 s of critical path: starting a process costs every tool about a millisecond, which on a
# 200-step chain must stay small next to the steps' own time for the ratio to measure scheduling.
FULL = DagSizes(Shapes(wide=200, chain=200, layers=10, layer_width=20), 2, 7, 3, 12.0)
QUICK = DagSizes(Shapes(wide=10, chain=10, layers=3, layer_width=4), 2, 1, 1, 0.2)


@dataclass(frozen=True)
class DagResult:
    shape: str
    variant: str
    steps: int
    jobs: int
    critical_path_s: float
    seconds: dict[str, list[float]]  # tool -> wall time of each run (after the warm-up)
    skipped: list[str]  # tools not installed

    def median(self, tool: str) -> float | None:
        runs = self.seconds.get(tool)
        return statistics.median(runs) if runs else None


def measure(dag: Dag, jobs: int, rounds: int, tools: Sequence[Tool], work: Path) -> DagResult:
    """Time every installed tool on `dag`, alternating tools within each round."""
    folder = formats.write_all(dag, work / f"{dag.shape}-{dag.variant.name.lower()}")
    installed = [t for t in tools if t.executable is not None]
    contenders = [Contender(t.name, tuple(t.argv(jobs)), folder) for t in installed]
    timings = alternate(contenders, rounds)
    return DagResult(
        dag.shape, dag.variant.value, len(dag.needs), jobs, dag.critical_path,
        {label: [s.seconds for s in runs] for label, runs in timings.samples.items()},
        [t.name for t in tools if t.executable is None],
    )  # fmt: skip


def run(sizes: DagSizes, tools: Sequence[Tool], work: Path) -> list[DagResult]:
    results = []
    for shape, needs in sizes.shapes.all().items():
        for variant in NOOP_VARIANTS:
            dag = dags.build(shape, needs, variant)
            results.append(measure(dag, sizes.jobs, sizes.noop_rounds, tools, work))
        dag = dags.build(shape, needs, Variant.SLEEP, sizes.critical_path)
        results.append(measure(dag, dag.width, sizes.sleep_rounds, tools, work))
    return results


# --- tables ---


def _peers(tools: Sequence[Tool]) -> list[str]:
    return [t.name for t in tools if t.name != OURS]


def noop_table(results: Sequence[DagResult], tools: Sequence[Tool], checked: bool) -> Table:
    peers = _peers(tools)
    rows = [_noop_row(r, peers, checked) for r in results if r.variant != Variant.SLEEP.value]
    return Table(
        "No-op DAGs (median wall time of the whole process)",
        ("DAG", "steps", "jobs", OURS, *peers, *(f"ours / {p}" for p in peers)),
        tuple(rows),
        (
            "`true` is a shell builtin for go-task (its mvdan/sh interpreter starts no process),"
            " while ci-orchestrator, make and doit start a process per step; the `/bin/true` rows"
            " make every tool start one, for an honest comparison.",
            "ours / peer below 1 means ci-orchestrator was faster. 'Well ahead of doit' is read"
            f" as ours / doit ≤ {DOIT_RATIO_LIMIT}.",
            "Commands, run in the folder of the generated files: "
            + "; ".join(f"`{tool.usage()}`" for tool in tools)
            + ".",
        ),
        short="no-op DAGs",
    )


def _noop_row(result: DagResult, peers: Sequence[str], checked: bool) -> Row:
    ours = result.median(OURS)
    cells = (
        f"{result.shape} ({result.variant})",
        str(result.steps),
        str(result.jobs),
        *(_cell(result.median(t), ms) for t in (OURS, *peers)),
        *(_ratio_cell(ours, result.median(p)) for p in peers),
    )
    if result.variant != Variant.TRUE.value:
        return Row(cells)
    ok = _ahead_of_task_and_doit(result)
    target = f"≤ go-task, ≤ {DOIT_RATIO_LIMIT} x doit"
    return Row(cells, target, verdict(bool(ok), checked and ok is not None))


def _ahead_of_task_and_doit(result: DagResult) -> bool | None:
    """None when go-task or doit is not there to compare with."""
    ours, task, doit = (result.median(t) for t in (OURS, "go-task", "doit"))
    if ours is None or task is None or doit is None:
        return None
    return ours <= task and ours <= DOIT_RATIO_LIMIT * doit


def sleep_table(results: Sequence[DagResult], tools: Sequence[Tool], checked: bool) -> Table:
    peers = _peers(tools)
    rows = [_sleep_row(r, peers, checked) for r in results if r.variant == Variant.SLEEP.value]
    return Table(
        "Sleeping DAGs: median wall time and wall / critical path (jobs = the DAG's width)",
        ("DAG", "steps", "jobs", "critical path", OURS, *peers, *(f"ours / {p}" for p in peers)),
        tuple(rows),
        (
            "Durations are lognormal (most steps short, a few long), scaled so that the critical"
            " path (computed from the generated durations) is the same for every shape. Wall time"
            " includes each tool's own start-up (see Start-up) and the start of every step's"
            " `sleep` process, neither of which is in the critical path.",
        ),
        short="sleeping DAGs",
    )


def _sleep_row(result: DagResult, peers: Sequence[str], checked: bool) -> Row:
    path = result.critical_path_s
    ours = result.median(OURS)
    cells = (
        result.shape,
        str(result.steps),
        str(result.jobs),
        secs(path),
        *(
            _cell(result.median(t), lambda s: f"{secs(s)} ({ratio(s / path)})")
            for t in (OURS, *peers)
        ),
        *(_ratio_cell(ours, result.median(p)) for p in peers),
    )
    ok = ours is not None and ours <= PATH_RATIO_LIMIT * path
    target = f"ours ≤ {PATH_RATIO_LIMIT} x critical path"
    return Row(cells, target, verdict(ok, checked and ours is not None))


def _cell(seconds: float | None, show: Callable[[float], str]) -> str:
    return "skipped (not installed)" if seconds is None else show(seconds)


def _ratio_cell(ours: float | None, peer: float | None) -> str:
    return "-" if ours is None or peer is None else ratio(ours / peer)
