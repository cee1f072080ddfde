"""The benchmarks of ci-orchestrator, against GNU make, go-task, doit and pre-commit.

1. the same DAGs (wide, chain, layered; no-op and sleeping) in every tool's format, each tool timed
   as a whole process, alternating tools within each round;
2. start-up: `--version` and a one-step run;
3. `report` over a synthetic journal of a million step records, against a plain SQLite query;
4. the journal's cost per step event;
5. the async engine (bench/bench_async.py);
6. the runner's speed targets (bench/runner_speed.py), against `--before DIR` if given;
7. skipping what did not change: input fingerprints against go-task's `sources:` (bench/inputs.py).

Usage: `python bench/run.py [--quick] [--json PATH] [--before DIR]`. A full run prints the tables,
writes docs/benchmarks.md and exits 1 when a target is missed. `--quick` (the CI smoke run) uses
tiny sizes, never fails on timing, and writes bench/results/benchmarks-quick.md instead. A peer
that is not installed is reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    async_engine,
    dag_compare,
    inputs,
    journal_overhead,
    journal_scale,
    machine,
    runner_speed,
    startup,
    tables,
)
from bench.async_engine import AsyncResult  # noqa: E402
from bench.bench_async import Sizes as AsyncSizes  # noqa: E402
from bench.dag_compare import DagResult, DagSizes  # noqa: E402
from bench.journal_overhead import OverheadResult, OverheadSizes  # noqa: E402
from bench.journal_scale import ScaleResult, ScaleSizes  # noqa: E402
from bench.machine import Machine  # noqa: E402
from bench.runner_speed import RunnerSpeedResult, RunnerSpeedSizes  # noqa: E402
from bench.startup import StartupResult, StartupSizes  # noqa: E402
from bench.tables import Table  # noqa: E402
from bench.timing import ProcessFailed  # noqa: E402
from bench.tools import dag_runners  # noqa: E402

RESULTS = ROOT / "bench" / "results"  # gitignored: cached journals, quick reports
DOCUMENT = ROOT / "docs" / "benchmarks.md"
QUICK_DOCUMENT = RESULTS / "benchmarks-quick.md"


@dataclass(frozen=True)
class Plan:
    dags: DagSizes
    startup: StartupSizes
    scale: ScaleSizes
    overhead: OverheadSizes
    asynchronous: AsyncSizes
    runner: RunnerSpeedSizes


FULL = Plan(
    dag_compare.FULL,
    startup.FULL,
    journal_scale.FULL,
    journal_overhead.FULL,
    async_engine.FULL,
    runner_speed.FULL,
)
QUICK = Plan(
    dag_compare.QUICK,
    startup.QUICK,
    journal_scale.QUICK,
    journal_overhead.QUICK,
    async_engine.QUICK,
    runner_speed.QUICK,
)


@dataclass(frozen=True)
class Results:
    quick: bool
    machine: Machine
    dags: list[DagResult]
    startup: StartupResult
    scale: ScaleResult
    overhead: OverheadResult
    asynchronous: AsyncResult
    runner: RunnerSpeedResult


def measure(plan: Plan, quick: bool, before: Path | None = None) -> Results:
    """Every section in turn, each in its own scratch folder."""
    described = machine.describe()
    with tempfile.TemporaryDirectory(prefix="ci-orchestrator-bench-") as scratch:
        work = Path(scratch)
        _progress("DAGs: ours, make, go-task, doit")
        dags = dag_compare.run(plan.dags, dag_runners(), work / "dags")
        _progress("start-up")
        started = startup.run(plan.startup, work / "startup")
        _progress(f"report over {plan.scale.shape.records:,} step records")
        scale = journal_scale.run(plan.scale, RESULTS, work / "scale")
        _progress("journal overhead")
        overhead = journal_overhead.run(plan.overhead, work / "overhead")
        _progress("issue 15: the runner against make, go-task" + (" and before" if before else ""))
        runner = runner_speed.run(plan.runner, work / "runner_speed", before)
    _progress("async engine")
    asynchronous = async_engine.run(plan.asynchronous)
    return Results(quick, described, dags, started, scale, overhead, asynchronous, runner)


def _progress(section: str) -> None:
    print(f"== {section}", file=sys.stderr, flush=True)


def result_tables(results: Results) -> list[Table]:
    checked = not results.quick
    runners = dag_runners()
    return [
        machine.table(results.machine),
        dag_compare.noop_table(results.dags, runners, checked),
        dag_compare.sleep_table(results.dags, runners, checked),
        startup.table(results.startup, checked),
        journal_scale.table(results.scale, checked),
        journal_overhead.table(results.overhead, checked),
        async_engine.table(results.asynchronous, checked),
        *runner_speed.tables(results.runner, checked),
        inputs.run(results.quick),
    ]


def document(sections: Sequence[Table], command: str, quick: bool) -> str:
    """docs/benchmarks.md: how to reproduce, which targets were missed, then every table."""
    missed = [name for table in sections for name in table.missed()]
    targets = sum(1 for table in sections for row in table.rows if row.verdict is not None)
    if quick:
        summary = "A `--quick` smoke run: tiny sizes, so the targets are not checked."
    elif missed:
        summary = f"{targets - len(missed)} of {targets} targets met. Missed:\n\n" + "\n".join(
            f"- {name}" for name in missed
        )
    else:
        summary = f"All {targets} targets met."
    head = [
        "# Benchmarks",
        "",
        "Written by `bench/run.py`; do not edit by hand. To reproduce (GNU make from the system;"
        " go-task, doit and pre-commit from the `bench` extra):",
        "",
        "```sh",
        "pip install -e '.[dev]'",
        command,
        "```",
        "",
        "Timings are medians of several runs of whole processes, on one machine; a busy machine"
        " (see the load average) makes them noisy.",
        "",
        summary,
        "",
    ]
    return "\n".join(head) + "\n" + "\n".join(tables.markdown(t) for t in sections)


def publish(results: Results, json_path: Path | None) -> list[str]:
    """Print the tables, write the document (and the raw numbers); return the targets missed."""
    sections = result_tables(results)
    print("\n".join(tables.text(t) for t in sections))
    command = "python bench/run.py" + (" --quick" if results.quick else "")
    out = QUICK_DOCUMENT if results.quick else DOCUMENT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document(sections, command, results.quick))
    print(f"wrote {out.relative_to(ROOT)}", file=sys.stderr)
    if json_path is not None:
        json_path.write_text(json.dumps(asdict(results), indent=2) + "\n")
    return [name for table in sections for name in table.missed()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; targets not checked")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the raw numbers")
    parser.add_argument(
        "--before", type=Path, metavar="DIR", help="a checkout of an earlier runner to compare"
    )
    args = parser.parse_args(argv)
    before = args.before.resolve() if args.before else None
    try:
        results = measure(QUICK if args.quick else FULL, args.quick, before)
    except ProcessFailed as exc:
        print(f"bench: a timed command failed: {exc}", file=sys.stderr)
        return 2
    missed = publish(results, args.json)
    if missed and not args.quick:
        print("targets missed:", *missed, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
