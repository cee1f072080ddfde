"""Section 6: the async `Workflow` engine, measured by bench/bench_async.py's own functions:
10,000 no-op tasks wide and chained, and a skewed DAG against a level-batched scheduler."""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

from bench import bench_async
from bench.bench_async import Sizes
from bench.tables import Row, Table, ratio, secs, verdict

FULL = bench_async.FULL
QUICK = bench_async.QUICK


@dataclass(frozen=True)
class AsyncResult:
    tasks: int
    wide_s: list[float]
    chain_s: list[float]
    skewed_tasks: int
    critical_path_s: float
    dynamic_s: float
    level_batched_s: float


def run(sizes: Sizes) -> AsyncResult:
    wide = [bench_async.time_noop(sizes.tasks, chained=False)[1] for _ in range(sizes.repeats)]
    chain = [bench_async.time_noop(sizes.tasks, chained=True)[1] for _ in range(sizes.repeats)]
    needs, seconds = bench_async.skewed_graph(bench_async.skewed_durations(sizes.slow, sizes.fast))
    path = bench_async.critical_path_seconds(needs, seconds)
    ours = bench_async.median_of(
        sizes.repeats, lambda: asyncio.run(bench_async.run_ours(needs, seconds))
    )
    batched = bench_async.median_of(
        sizes.repeats, lambda: asyncio.run(bench_async.run_level_batched(needs, seconds))
    )
    return AsyncResult(sizes.tasks, wide, chain, len(needs), path, ours, batched)


def table(result: AsyncResult, checked: bool) -> Table:
    limit = bench_async.NOOP_LIMIT * result.tasks / 10_000
    path_limit = bench_async.PATH_RATIO_LIMIT
    rows = []
    for shape, runs in (("wide", result.wide_s), ("chain", result.chain_s)):
        seconds = statistics.median(runs)
        label = f"{result.tasks:,} no-op tasks, {shape}"
        rows.append(
            Row((label, secs(seconds)), f"≤ {limit:g} s", verdict(seconds <= limit, checked))
        )
    path = result.critical_path_s
    ok = result.dynamic_s <= path_limit * path
    rows += [
        Row((f"skewed DAG ({result.skewed_tasks} tasks): critical path", secs(path))),
        Row(
            (
                "skewed DAG: ours (dynamic)",
                f"{secs(result.dynamic_s)} ({ratio(result.dynamic_s / path)})",
            ),
            f"≤ {path_limit} x critical path",
            verdict(ok, checked),
        ),
        Row(
            (
                "skewed DAG: level-batched",
                f"{secs(result.level_batched_s)} ({ratio(result.level_batched_s / path)})",
            )
        ),
    ]
    return Table(
        "Async engine (median of runs; from bench/bench_async.py)",
        ("benchmark", "median"),
        tuple(rows),
        ("The run time of the no-op workflows excludes building them.",),
        short="async engine",
    )
