"""Per-step overhead against make and go-task, with our journal on.

Per-step overhead = (wall of an N-step DAG - wall of a 1-step run) / (N - 1), medians of whole
processes, every tool alternating within each round: the start-up of each tool cancels out and
what remains is what one more step costs. Usage: `python bench/per_step.py [--rounds R]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import dags, formats  # noqa: E402
from bench.dags import Variant  # noqa: E402
from bench.timing import Contender, alternate  # noqa: E402
from bench.tools import find  # noqa: E402

SHAPES = {"layered": dags.layered(10, 20), "wide": dags.wide(199)}


@dataclass(frozen=True)
class Overhead:
    shape: str
    jobs: int
    steps: int
    per_step_ms: dict[str, float]  # tool -> ms per step


def _ours(source: Path, jobs: int) -> list[str]:
    """Our CLI from the package in `source`, through `env` (its cost cancels out per step)."""
    python = [sys.executable, "-m", "ci_orchestrator", "run", formats.PIPELINE, "-q"]
    return ["env", f"PYTHONPATH={source}", *python, "--jobs", str(jobs)]


BEFORE: list[Path] = []  # --before DIR: a checkout of the package to compare with


def _contenders(folder: Path, jobs: int) -> list[Contender]:
    ours = _ours(ROOT, jobs)
    tools = {
        **{f"before{i} (journal)": _ours(path, jobs) for i, path in enumerate(BEFORE)},
        "ours (journal)": ours,
        "ours (--no-journal)": [*ours, "--no-journal"],
        "make": ["make", "-s", "-f", formats.MAKEFILE, "-j", str(jobs), formats.GOAL],
        "go-task": ["task", "--silent", "--taskfile", formats.TASKFILE, "--concurrency",
                    str(jobs), formats.GOAL],
    }  # fmt: skip
    return [
        Contender(label, (exe, *argv[1:]), folder)
        for label, argv in tools.items()
        if (exe := find(argv[0])) is not None
    ]


def measure(shape: str, jobs: int, variant: Variant, rounds: int, work: Path) -> Overhead:
    big = dags.build(shape, SHAPES[shape], variant)
    one = dags.build("one", {"only": ()}, variant)
    many = _contenders(formats.write_all(big, work / f"{shape}-{variant.name}"), jobs)
    single = _contenders(formats.write_all(one, work / f"one-{variant.name}"), jobs)
    timings = alternate(
        [*many, *[Contender(c.label + " 1", c.argv, c.cwd) for c in single]], rounds
    )
    steps = len(big.needs)
    per_step = {}
    for contender in many:
        wall = statistics.median(s.seconds for s in timings.samples[contender.label])
        base = statistics.median(s.seconds for s in timings.samples[contender.label + " 1"])
        per_step[contender.label] = (wall - base) * 1000 / (steps - 1)
    return Overhead(shape, jobs, steps, per_step)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--before", type=Path, action="append", default=[])
    parser.add_argument("--variant", choices=[v.value for v in Variant], action="append")
    args = parser.parse_args()
    BEFORE.extend(path.resolve() for path in args.before)
    variants = [Variant(v) for v in args.variant or (Variant.BIN_TRUE.value, Variant.TRUE.value)]
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            for shape in SHAPES:
                for jobs in (2, 8):
                    result = measure(shape, jobs, variant, args.rounds, Path(tmp))
                    cells = "  ".join(f"{k} {v:.3f}" for k, v in result.per_step_ms.items())
                    make = result.per_step_ms.get("make")
                    ours = result.per_step_ms["ours (journal)"]
                    ratio = f"  ours/make {ours / make:.2f}x" if make else ""
                    print(f"{variant.value:9} {shape:8} -j{jobs}: {cells}{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
