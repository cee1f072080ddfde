"""Input fingerprints: a pipeline whose every step declares `inputs:` over a generated git
repository, side by side with go-task's `sources:` (checksum mode) on the same tree and DAG.

1. the library alone, in this process: `InputTree.read` plus `input_fingerprints` for every
   step, over the tree from git's index; and over the same files outside git, where every file
   is hashed (the fingerprint cost per file, both ways);
2. the whole process, the second run with nothing changed: `ci-orchestrator run pipeline.yml -q`
   against `task all`, both after a first run that recorded their state;
3. the first run's cost of fingerprinting: a first run (fresh journal) of the pipeline with
   `inputs:` against the same pipeline without them.

Usage: `python bench/inputs.py [--quick]`; `run(quick)` gives the section's table for
bench/run.py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench import tables  # noqa: E402
from bench.tables import Row, Table, ms, ratio, verdict  # noqa: E402
from bench.timing import Contender, alternate, clean_env  # noqa: E402
from bench.tools import find  # noqa: E402
from ci_orchestrator.inputs import InputTree, StepInputs, input_fingerprints  # noqa: E402

SECOND_RUN_LIMIT = 0.300  # seconds, the whole nothing-changed run
LIBRARY_LIMIT = 0.100  # seconds, reading the tree and every step's fingerprint
RATIO_LIMIT = 1.0  # ours / go-task, the nothing-changed run
OVERHEAD_LIMIT = 0.05  # the first run's extra time for fingerprinting
PACKAGES = 100  # the tree's top folders; each step covers part of one
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
}  # fmt: skip


@dataclass(frozen=True)
class InputsSizes:
    files: int
    steps: int
    rounds: int


FULL = InputsSizes(files=10_000, steps=200, rounds=10)
QUICK = InputsSizes(files=400, steps=20, rounds=2)


@dataclass(frozen=True)
class InputsResult:
    files: int
    steps: int
    library_s: list[float]  # InputTree.read + input_fingerprints, from git's index
    hashed_s: list[float]  # the same outside git: every file read and hashed
    second_s: dict[str, list[float]]  # label -> the nothing-changed run, whole process
    first_s: dict[str, list[float]]  # label -> a first run, with and without `inputs:`
    skipped: list[str]


OURS = "ci-orchestrator run"
TASK = "task all (sources, checksum)"
FIRST_WITH = "first run, with inputs:"
FIRST_WITHOUT = "first run, without inputs:"


# --- the tree and the DAG ---


def step_names(count: int) -> list[str]:
    return [f"s{i:03d}" for i in range(count)]


def needs_of(index: int) -> list[str]:
    """A chain of four inside each group of steps, and every fifth step needing two earlier."""
    needs = [f"s{index - 1:03d}"] if index % 4 else []
    return needs + ([f"s{index - 5:03d}"] if index % 5 == 0 and index >= 5 else [])


def inputs_of(index: int) -> tuple[list[str], list[str]]:
    """(ours, go-task's) globs of a step: one package (even steps) or its `sub/` folder's
    Python files less the tests (odd steps)."""
    package = f"pkg{index % PACKAGES:02d}"
    if index % 2 == 0:
        return [f"{package}/**"], [f"{package}/**/*"]
    return [f"{package}/sub/*.py", f"!{package}/sub/test_*.py"], [f"{package}/sub/*.py"]


def make_tree(folder: Path, files: int) -> Path:
    """A git repository of `files` small files, committed; its files dated in the past, so that
    git's index is not racily clean (as in any repository not just written)."""
    repo = folder / "repo"
    per_package = max(1, files // PACKAGES)
    past = time.time() - 60
    for number in range(files):
        package, index = divmod(number, per_package)
        sub = "sub/" if index % 2 else ""
        name = f"test_{index}.py" if index % 10 == 1 else f"mod_{index}.py"
        path = repo / f"pkg{package % PACKAGES:02d}" / f"{sub}{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {number}\nVALUE = {number * 7}\n")
        os.utime(path, (past, past))
    env = {**clean_env(), **GIT_ENV}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "tree"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)
    return repo


def pipeline_yaml(steps: int, with_inputs: bool) -> str:
    data: dict[str, dict[str, object]] = {}
    for index, name in enumerate(step_names(steps)):
        step: dict[str, object] = {"run": "true"}
        if with_inputs:
            step["inputs"] = inputs_of(index)[0]
        if needs_of(index):
            step["needs"] = needs_of(index)
        data[name] = step
    document = {"version": 1, "name": "bench-inputs", "steps": data}
    return yaml.safe_dump(document, sort_keys=False, width=1_000_000)


def taskfile(steps: int) -> str:
    """The same DAG for go-task: `sources:` with `method: checksum` (its default) skip a task
    whose sources' checksum is the one it recorded."""
    names = step_names(steps)
    needed = {need for index in range(steps) for need in needs_of(index)}
    tasks: dict[str, dict[str, object]] = {"all": {"deps": [n for n in names if n not in needed]}}
    for index, name in enumerate(names):
        task: dict[str, object] = {"sources": inputs_of(index)[1], "cmds": ["true"]}
        if needs_of(index):
            task["deps"] = needs_of(index)
        tasks[name] = task
    document = {"version": "3", "run": "once", "method": "checksum", "tasks": tasks}
    return yaml.safe_dump(document, sort_keys=False, width=1_000_000)


def step_inputs(steps: int) -> dict[str, StepInputs]:
    return {
        name: StepInputs("true", {}, None, tuple(inputs_of(i)[0]), tuple(needs_of(i)))
        for i, name in enumerate(step_names(steps))
    }


# --- measuring ---


def library_seconds(root: Path, steps: int, rounds: int) -> list[float]:
    """In this process: the tree read, and every step's fingerprint."""
    wanted = step_inputs(steps)
    samples = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        input_fingerprints(wanted, InputTree.read(root))
        samples.append(time.perf_counter() - started)
    return samples[1:]  # the first warms the file system's cache


def hashed_seconds(root: Path, rounds: int) -> list[float]:
    """Every file of a folder outside git read and hashed (one glob selecting them all)."""
    samples = []
    for _ in range(rounds + 1):
        started = time.perf_counter()
        InputTree.read(root).digest(["**"])
        samples.append(time.perf_counter() - started)
    return samples[1:]


def measure(sizes: InputsSizes, work: Path) -> InputsResult:
    repo = make_tree(work, sizes.files)
    plain = work / "plain"
    shutil.copytree(repo, plain, ignore=shutil.ignore_patterns(".git"))
    library = library_seconds(repo, sizes.steps, sizes.rounds)
    hashed = hashed_seconds(plain, sizes.rounds)
    (repo / ".gitignore").write_text(".ci-orchestrator/\n.task/\n*.db\n")
    (repo / "pipeline.yml").write_text(pipeline_yaml(sizes.steps, with_inputs=True))
    (repo / "plain.yml").write_text(pipeline_yaml(sizes.steps, with_inputs=False))
    (repo / "Taskfile.yml").write_text(taskfile(sizes.steps))
    ours, task = find("ci-orchestrator"), find("task")
    skipped = []
    second: list[Contender] = []
    first: list[Contender] = []
    if ours is None:
        skipped += [OURS, FIRST_WITH, FIRST_WITHOUT]
    else:
        run = (ours, "run", "-q", "--jobs", "2")
        second.append(Contender(OURS, (*run, "pipeline.yml", "--journal", "second.db"), repo))
        # A first run is one with no journal to reuse: each starts from an empty one.
        for label, pipeline in ((FIRST_WITH, "pipeline.yml"), (FIRST_WITHOUT, "plain.yml")):
            fresh = f"rm -f first.db* && exec {' '.join(run)} {pipeline} --journal first.db"
            first.append(Contender(label, ("sh", "-c", fresh), repo))
    if task is None:
        skipped.append(TASK)
    else:
        second.append(Contender(TASK, (task, "--silent", "--concurrency", "2", "all"), repo))
    for contender in second:  # the first run, which records what the second compares with
        subprocess.run(contender.argv, cwd=repo, env=clean_env(), check=True, capture_output=True)
    timed_second = alternate(second, sizes.rounds)
    timed_first = alternate(first, sizes.rounds)
    return InputsResult(
        sizes.files,
        sizes.steps,
        library,
        hashed,
        {label: [s.seconds for s in runs] for label, runs in timed_second.samples.items()},
        {label: [s.seconds for s in runs] for label, runs in timed_first.samples.items()},
        skipped,
    )


# --- the table ---


def table(result: InputsResult, checked: bool) -> Table:
    median = statistics.median
    library, hashed = median(result.library_s), median(result.hashed_s)
    rows = [
        Row(
            (
                f"library: read the tree + {result.steps} fingerprints",
                ms(library),
                _per_file(library, result),
            ),
            f"≤ {ms(LIBRARY_LIMIT)}",
            verdict(library <= LIBRARY_LIMIT, checked),
        ),
        Row(("library: every file hashed (outside git)", ms(hashed), _per_file(hashed, result))),
    ]
    second = {label: median(runs) for label, runs in result.second_s.items()}
    if OURS in second:
        ours = second[OURS]
        rows.append(
            Row(
                (f"{OURS}, nothing changed", ms(ours), ""),
                f"≤ {ms(SECOND_RUN_LIMIT)}",
                verdict(ours <= SECOND_RUN_LIMIT, checked),
            )
        )
    if TASK in second:
        rows.append(Row((f"{TASK}, nothing changed", ms(second[TASK]), "")))
    if OURS in second and TASK in second:
        share = second[OURS] / second[TASK]
        rows.append(
            Row(
                ("ours / go-task, nothing changed", ratio(share), ""),
                f"≤ {ratio(RATIO_LIMIT)}",
                verdict(share <= RATIO_LIMIT, checked),
            )
        )
    first = {label: median(runs) for label, runs in result.first_s.items()}
    if FIRST_WITH in first and FIRST_WITHOUT in first:
        extra = first[FIRST_WITH] / first[FIRST_WITHOUT] - 1
        rows += [
            Row((f"{OURS}, {FIRST_WITHOUT}", ms(first[FIRST_WITHOUT]), "")),
            Row((f"{OURS}, {FIRST_WITH}", ms(first[FIRST_WITH]), "")),
            Row(
                ("first run: the cost of fingerprinting", f"{extra:+.1%}", ""),
                f"≤ {OVERHEAD_LIMIT:.0%}",
                verdict(extra <= OVERHEAD_LIMIT, checked),
            ),
        ]
    rows += [Row((label, "skipped (not installed)", "")) for label in result.skipped]
    notes = (
        f"A git repository of {result.files:,} files; {result.steps} steps of `true`, each with"
        " `inputs:` over one folder of it (go-task: the same folders as `sources:`), some"
        " `needs:`. Medians of whole processes (`--jobs 2` / `--concurrency 2`); the library rows"
        " are in-process.",
    )
    return Table(
        f"Input fingerprints: {result.steps} steps over {result.files:,} files",
        ("measure", "median", "per file"),
        tuple(rows),
        notes,
        short="input fingerprints",
    )


def _per_file(seconds: float, result: InputsResult) -> str:
    return f"{seconds * 1e6 / result.files:.1f} µs/file"


def run(quick: bool) -> Table:
    """The section, measured in a scratch folder: its table (targets checked unless `quick`)."""
    with tempfile.TemporaryDirectory(prefix="ci-orchestrator-inputs-") as scratch:
        result = measure(QUICK if quick else FULL, Path(scratch))
    return table(result, checked=not quick)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; targets not checked")
    section = run(parser.parse_args().quick)
    print(tables.text(section))
    return 1 if section.missed() else 0


if __name__ == "__main__":
    raise SystemExit(main())
