"""Benchmark of the async Workflow engine (a script, not a test).

1. Overhead: N no-op async tasks, all independent ("wide") and as one N-long chain, median of R
   runs. The target is at most 1 s each for 10,000 tasks (scaled down for smaller N).
2. Scheduling: a skewed DAG of sleeping tasks, three chains whose slow task sits at a different
   depth in each. A level-by-level scheduler (`asyncio.gather` per topological level, written
   below) waits for the slowest task of every level; our dynamic scheduler should finish within
   3% of the critical path.

Usage: `python bench/bench_async.py [--quick]`; `--quick` uses tiny sizes, and the limits are only
checked (exit status 1 when missed) on a full run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ci_orchestrator import graph
from ci_orchestrator.workflow import Workflow

NOOP_LIMIT = 1.0  # seconds for 10,000 tasks
PATH_RATIO_LIMIT = 1.03  # our wall time / critical path


@dataclass(frozen=True)
class Sizes:
    tasks: int
    repeats: int
    slow: float
    fast: float


FULL = Sizes(tasks=10_000, repeats=5, slow=0.2, fast=0.02)
QUICK = Sizes(tasks=200, repeats=3, slow=0.05, fast=0.005)


async def noop() -> None:
    return None


def noop_workflow(count: int, chained: bool) -> Workflow:
    workflow = Workflow("chain" if chained else "wide")
    for i in range(count):
        needs = [f"t{i - 1}"] if chained and i else None
        workflow.add_task(f"t{i}", noop, dependencies=needs)
    return workflow


def skewed_durations(slow: float, fast: float, chains: int = 3) -> dict[str, list[float]]:
    """Chain i is `fast` everywhere but at depth i, so every level has exactly one slow task."""
    return {f"c{i}": [slow if j == i else fast for j in range(chains)] for i in range(chains)}


def skewed_graph(
    durations: dict[str, list[float]],
) -> tuple[dict[str, list[str]], dict[str, float]]:
    needs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for chain, steps in durations.items():
        for depth, duration in enumerate(steps):
            name = f"{chain}_{depth}"
            needs[name] = [f"{chain}_{depth - 1}"] if depth else []
            seconds[name] = duration
    return needs, seconds


def critical_path_seconds(needs: dict[str, list[str]], seconds: dict[str, float]) -> float:
    return sum(seconds[name] for name in graph.critical_path(needs, seconds))


async def run_ours(needs: dict[str, list[str]], seconds: dict[str, float]) -> float:
    workflow = Workflow("skewed")
    for name, deps in needs.items():
        workflow.add_task(name, asyncio.sleep, dependencies=deps, args=[seconds[name]])
    started = time.perf_counter()
    await workflow.run()
    return time.perf_counter() - started


def levels(needs: dict[str, list[str]]) -> list[list[str]]:
    """Topological levels: a task's level is one more than its deepest dependency's."""
    depth: dict[str, int] = {}
    for name in graph.topological_order(needs):
        depth[name] = 1 + max((depth[n] for n in needs[name]), default=-1)
    grouped: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for name, level in depth.items():
        grouped[level].append(name)
    return grouped


async def run_level_batched(needs: dict[str, list[str]], seconds: dict[str, float]) -> float:
    """The scheduler we do not want: each level starts only when the whole previous one ended."""
    started = time.perf_counter()
    for level in levels(needs):
        await asyncio.gather(*(asyncio.sleep(seconds[name]) for name in level))
    return time.perf_counter() - started


def median_of(repeats: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(repeats))


def time_noop(count: int, chained: bool) -> tuple[float, float]:
    """(seconds to build, seconds to run) for one workflow of no-op tasks."""
    started = time.perf_counter()
    workflow = noop_workflow(count, chained)
    built = time.perf_counter() - started

    async def measure() -> float:
        begin = time.perf_counter()
        await workflow.run()
        return time.perf_counter() - begin

    return built, asyncio.run(measure())


def noop_rows(sizes: Sizes) -> list[tuple[str, int, float, str]]:
    rows = []
    for chained in (False, True):
        runs = [time_noop(sizes.tasks, chained) for _ in range(sizes.repeats)]
        built = statistics.median(b for b, _ in runs)
        ran = statistics.median(r for _, r in runs)
        limit = NOOP_LIMIT * sizes.tasks / 10_000
        label = "no-op chain" if chained else "no-op wide"
        rows.append((f"{label} (build)", sizes.tasks, built, ""))
        rows.append((f"{label} (run)", sizes.tasks, ran, _verdict(ran <= limit, f"≤ {limit:g} s")))
    return rows


def skewed_rows(sizes: Sizes) -> list[tuple[str, int, float, str]]:
    needs, seconds = skewed_graph(skewed_durations(sizes.slow, sizes.fast))
    path = critical_path_seconds(needs, seconds)
    ours = median_of(sizes.repeats, lambda: asyncio.run(run_ours(needs, seconds)))
    batched = median_of(sizes.repeats, lambda: asyncio.run(run_level_batched(needs, seconds)))
    ok = ours <= PATH_RATIO_LIMIT * path
    return [
        ("skewed DAG: critical path", len(needs), path, ""),
        ("skewed DAG: ours (dynamic)", len(needs), ours, _ratio(ours, path, ok)),
        ("skewed DAG: level-batched", len(needs), batched, _ratio(batched, path, None)),
    ]


def _ratio(seconds: float, path: float, ok: bool | None) -> str:
    text = f"{seconds / path:.3f} x critical path"
    return text if ok is None else f"{text}  {_verdict(ok, f'≤ {PATH_RATIO_LIMIT}')}"


def _verdict(ok: bool, limit: str) -> str:
    return f"{'ok' if ok else 'OVER'} ({limit})"


def print_table(rows: Sequence[tuple[str, int, float, str]]) -> None:
    print(f"{'benchmark':<30} {'tasks':>6} {'median':>10}  note")
    for label, tasks, seconds, note in rows:
        print(f"{label:<30} {tasks:>6} {seconds:>8.3f} s  {note}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, limits not checked")
    quick = parser.parse_args(argv).quick
    sizes = QUICK if quick else FULL
    rows = noop_rows(sizes) + skewed_rows(sizes)
    print_table(rows)
    missed = [label for label, _, _, note in rows if "OVER" in note]
    if missed and not quick:
        print(f"limits missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
