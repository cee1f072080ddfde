"""Issue 15 (runner speed): where each target stands, measured side by side in one run.

Every contender is a whole process on the same generated files (each in a folder of its own, so
that journals do not mix), alternating within each round; medians. "ours" is this checkout with the
journal on; `--before DIR` (a checkout of an earlier runner, e.g. a `git worktree`) adds it as
"before". The profile shows where our own time goes, for the target that is hardest to meet.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench import dags, formats  # noqa: E402
from bench.dags import Dag, Variant  # noqa: E402
from bench.tables import Row, Table, markdown, ms, ratio, verdict  # noqa: E402
from bench.timing import Contender, alternate, clean_env  # noqa: E402
from bench.tools import find  # noqa: E402

MAKE_LIMIT = 2.0  # wall / make's, 200 /bin/true steps
TASK_LIMIT = 1.0  # wall / go-task's, 200 `true` steps
PATH_LIMIT = 1.03  # wall / critical path, sleeping DAGs
ONE_STEP_LIMIT = 0.100  # seconds, a one-step run, journal on
VERSION_LIMIT = 0.050  # seconds, `ci-orchestrator --version`
OURS = "ours"
BEFORE = "before"


@dataclass(frozen=True)
class RunnerSpeedSizes:
    layers: int  # the layered no-op DAG: layers x width steps
    width: int
    wide: int
    rounds: int
    sleep_steps: int  # the skewed layered and the chained sleeping DAGs
    critical_path: float
    sleep_rounds: int
    memory_steps: int
    journal: str  # the name of bench/journal_overhead.py's sizes
    spawn_steps: int
    full: bool  # every shape, job count and peer, and the profile; else one of each (--quick)


FULL = RunnerSpeedSizes(10, 20, 200, 7, 40, 3.0, 3, 2000, "FULL", 500, True)
QUICK = RunnerSpeedSizes(2, 4, 8, 1, 4, 0.1, 1, 20, "QUICK", 20, False)


@dataclass
class RunnerSpeedResult:
    noop: list[Measured] = field(default_factory=list)
    one_step: Measured | None = None  # start-up: a one-step run of each contender
    floor_s: dict[str, float] = field(default_factory=dict)  # FLOOR label -> median wall
    sleeping: list[Measured] = field(default_factory=list)
    memory_steps: int = 0
    memory_kb: dict[str, int] = field(default_factory=dict)
    journal_ms: dict[str, float] = field(default_factory=dict)  # per step event
    profile: list[str] = field(default_factory=list)
    spawn_s: dict[str, float] = field(default_factory=dict)  # spawn call -> median run, in-process
    before: bool = False


@dataclass(frozen=True)
class Measured:
    name: str
    jobs: int
    critical_path_s: float
    seconds: dict[str, float]  # contender -> median wall


# What the `ci-orchestrator` console script runs (not `python -m`, whose runpy costs a run a few
# milliseconds that users do not pay), for the package in PYTHONPATH.
CONSOLE_SCRIPT = "import sys; from ci_orchestrator.cli import main; sys.exit(main())"


def _ours(source: Path, jobs: int) -> tuple[str, ...]:
    """Our CLI from the package in `source`, journal on."""
    python = (sys.executable, "-c", CONSOLE_SCRIPT, "run", formats.PIPELINE, "-q")
    return ("env", f"PYTHONPATH={source}", *python, "--jobs", str(jobs))


def _peers(jobs: int) -> dict[str, tuple[str, ...]]:
    make, task = find("make"), find("task")
    peers: dict[str, tuple[str, ...]] = {}
    if make:
        peers["make"] = (make, "-s", "-f", formats.MAKEFILE, "-j", str(jobs), formats.GOAL)
    if task:
        peers["go-task"] = (task, "--silent", "--taskfile", formats.TASKFILE, "--concurrency",
                            str(jobs), formats.GOAL)  # fmt: skip
    return peers


def _sources(before: Path | None) -> dict[str, Path]:
    return {OURS: ROOT, **({BEFORE: before} if before else {})}


def _time(
    dag: Dag, jobs: int, rounds: int, sources: dict[str, Path], work: Path, peers: bool = True
) -> Measured:
    contenders = []
    for label, argv in [
        *((label, _ours(source, jobs)) for label, source in sources.items()),
        *(_peers(jobs).items() if peers else ()),
    ]:
        folder = formats.write_all(dag, work / f"{dag.shape}-{dag.variant.name}-{jobs}-{label}")
        contenders.append(Contender(label, argv, folder))
    timings = alternate(contenders, rounds)
    medians = {k: statistics.median(s.seconds for s in v) for k, v in timings.samples.items()}
    return Measured(dag.name, jobs, dag.critical_path, medians)


def run(sizes: RunnerSpeedSizes, work: Path, before: Path | None = None) -> RunnerSpeedResult:
    sources = _sources(before)
    result = RunnerSpeedResult(before=before is not None)
    shapes = {"layered": dags.layered(sizes.layers, sizes.width), "wide": dags.wide(sizes.wide)}
    one = dags.build("one", {"only": ()}, Variant.BIN_TRUE)
    result.one_step = _time(one, 1, sizes.rounds, sources, work)
    result.floor_s = _floor(sizes.rounds, work)
    for variant in (Variant.BIN_TRUE, Variant.TRUE):
        for shape, needs in shapes.items():
            for jobs in (2, 8):
                if sizes.full or (shape, jobs) == ("layered", 2):
                    dag = dags.build(shape, needs, variant)
                    result.noop.append(_time(dag, jobs, sizes.rounds, sources, work))
    half = max(2, sizes.sleep_steps // 4)
    sleeping = {
        "skewed": dags.layered(sizes.sleep_steps // half, half),
        "chain": dags.chain(sizes.sleep_steps),
    }
    for shape, needs in sleeping.items() if sizes.full else list(sleeping.items())[:1]:
        dag = dags.build(shape, needs, Variant.SLEEP, sizes.critical_path)
        result.sleeping.append(_time(dag, dag.width, sizes.sleep_rounds, sources, work))
    result.memory_steps = sizes.memory_steps
    result.memory_kb = _memory(sizes, sources, work)
    result.journal_ms = {
        label: _journal_cost(source, sizes.journal, work / label)
        for label, source in sources.items()
    }
    result.spawn_s = _spawn_calls(sizes.spawn_steps, sizes.rounds, work / "spawn")
    if sizes.full:
        result.profile = _profile(dags.build("layered", shapes["layered"], Variant.BIN_TRUE), work)
    return result


# What any Python CLI built on click pays before its first line of its own: the interpreter's
# start, then the import of click (the user's choice of CLI library).
FLOOR = {
    "Python start-up (`python -c pass`)": "pass",
    "Python start-up + `import click`": "import click",
}


VERSION = "ours --version"
_VERSION_SCRIPT = "import sys; from ci_orchestrator.__main__ import main; sys.exit(main())"


def _floor(rounds: int, work: Path) -> dict[str, float]:
    """Median wall of each FLOOR command and of our `--version` (as the console script runs it),
    whole processes, alternating."""
    work.mkdir(parents=True, exist_ok=True)
    contenders = [
        Contender(label, (sys.executable, "-c", code), work) for label, code in FLOOR.items()
    ]
    contenders.append(
        Contender(VERSION, (sys.executable, "-c", _VERSION_SCRIPT, "--version"), work)
    )
    timings = alternate(contenders, max(rounds, 3))
    return {k: statistics.median(s.seconds for s in v) for k, v in timings.samples.items()}


def _memory(sizes: RunnerSpeedSizes, sources: dict[str, Path], work: Path) -> dict[str, int]:
    dag = dags.build("wide", dags.wide(sizes.memory_steps), Variant.BIN_TRUE)
    contenders = [
        Contender(label, _ours(source, 8), formats.write_all(dag, work / f"memory-{label}"))
        for label, source in sources.items()
    ]
    timings = alternate(contenders, 1, warmup=0, memory=True)
    return {label: runs[0].max_rss_kb for label, runs in timings.samples.items()}


def _spawn_calls(steps: int, rounds: int, work: Path) -> dict[str, float]:
    """Our runner in this process, `steps` wide `/bin/true` steps at -j 8, spawning with
    `os.posix_spawn` and with `subprocess.Popen` (what a step with a `cwd` uses), alternating."""
    from ci_orchestrator import shell
    from ci_orchestrator.runner import WorkflowRunner

    def once() -> float:
        runner = WorkflowRunner("spawn", jobs=8, state_dir=work)
        for i in range(steps):
            runner.add_step(f"s{i}", "/bin/true")
        started = time.perf_counter()
        runner.run()
        return time.perf_counter() - started

    samples: dict[str, list[float]] = {"posix_spawn": [], "Popen": []}
    default = shell._POSIX_SPAWN
    try:
        for number in range(1 + rounds):
            for label in samples if number % 2 else reversed(samples):
                shell._POSIX_SPAWN = label == "posix_spawn"
                seconds = once()
                if number:
                    samples[label].append(seconds)
    finally:
        shell._POSIX_SPAWN = default
    return {label: statistics.median(runs) for label, runs in samples.items()}


_JOURNAL = """
import json, sys
from pathlib import Path
from bench import journal_overhead
sizes = journal_overhead.{sizes}
result = journal_overhead.run(sizes, Path(sys.argv[1]))
print(json.dumps(result.per_event_ms))
"""


def _journal_cost(source: Path, sizes: str, folder: Path) -> float:
    """bench/journal_overhead.py (in-process, no-op Python steps) against the runner in `source`."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _JOURNAL.format(sizes=sizes), str(folder / "journal")],
        env={**clean_env(), "PYTHONPATH": f"{source}:{ROOT}"},
        capture_output=True, text=True, check=True, cwd=folder,
    )  # fmt: skip
    return float(json.loads(done.stdout))


def _profile(dag: Dag, work: Path, top: int = 8) -> list[str]:
    """cProfile's top functions by own time, for our run of `dag` at -j 8."""
    folder = formats.write_all(dag, work / "profile")
    stats = folder / "profile.out"
    script = (
        "import cProfile, pstats, sys, runpy\n"
        "sys.argv = ['ci_orchestrator', 'run', 'pipeline.yml', '-q', '--jobs', '8']\n"
        "profile = cProfile.Profile()\n"
        "try:\n    profile.runcall(runpy.run_module, 'ci_orchestrator', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"pstats.Stats(profile, stream=open({str(stats)!r}, 'w')).sort_stats('tottime')"
        f".print_stats({top})\n"
    )
    subprocess.run(
        [sys.executable, "-c", script], cwd=folder, env={**clean_env(), "PYTHONPATH": str(ROOT)},
        capture_output=True, check=False,
    )  # fmt: skip
    lines = stats.read_text().splitlines() if stats.exists() else []
    rows = [line for line in lines if re.match(r"\s*\d+(/\d+)?\s+\d", line)]
    return [_profile_row(line) for line in rows[:top]]


def _profile_row(line: str) -> str:
    calls, own, _, _, _, where = line.split(None, 5)
    where = re.sub(r"\S*/lib/python3\.\d+/", "", where.replace(str(ROOT) + "/", ""))
    return f"{where} ({own} s own, {calls} calls)"


# --- tables ---


def main() -> int:
    """`python bench/runner_speed.py [--before DIR]`: only this section, as Markdown, on stdout."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--before", type=Path, metavar="DIR")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ci-orchestrator-runner_speed-") as scratch:
        result = run(FULL, Path(scratch), args.before.resolve() if args.before else None)
    print("\n".join(markdown(table) for table in tables(result, checked=True)))
    return 0


def tables(result: RunnerSpeedResult, checked: bool) -> list[Table]:
    return [
        _noop_table(result, checked),
        _sleep_table(result, checked),
        _cost_table(result, checked),
    ]


def _labels(result: RunnerSpeedResult) -> list[str]:
    return [OURS, *([BEFORE] if result.before else [])]


def _noop_table(result: RunnerSpeedResult, checked: bool) -> Table:
    labels = _labels(result)
    rows = []
    for measured in result.noop:
        peer = "go-task" if measured.name.endswith("(true)") else "make"
        limit = TASK_LIMIT if peer == "go-task" else MAKE_LIMIT
        s = measured.seconds
        ours_ratio = s[OURS] / s[peer] if peer in s else None
        cells = (
            f"{measured.name}, -j {measured.jobs}",
            *(ms(s[label]) for label in labels),
            ms(s[peer]) if peer in s else "not installed",
            *(f"{s[label] / s[peer]:.2f}x {peer}" if peer in s else "—" for label in labels),
        )
        ok = ours_ratio is not None and ours_ratio <= limit
        rows.append(Row(cells, f"ours ≤ {limit:g}x {peer}", verdict(ok, checked and bool(s))))
    return Table(
        "Issue 15 (runner speed): no-op DAGs against make and go-task, journal on",
        ("DAG", *labels, "peer", *(f"{label} / peer" for label in labels)),
        tuple(rows),
        (
            "Whole processes, median wall time; every contender alternates within each round;"
            " ours and before write their journal (each in its own folder).",
            "`/bin/true` rows compare with make (both start a process per step); `true` rows with"
            " go-task, whose shell interpreter runs `true` in-process.",
            "Where a row misses, compare with the one-step run below: our start-up is paid once"
            " per run and is most of the gap; what each further step costs is the in-process"
            " spawn row and the profile.",
            *_floor_note(result),
            "What would close the rest is less Python per run and per step, not a faster loop:"
            " fewer and smaller modules on the run path (after click, creating classes and"
            " loading modules is most of our start-up), and fewer SQLite writes per step (today"
            " its row when it starts and when it ends, its process and its attempt, in one"
            " transaction per turn of the loop).",
        ),
        short="issue 15 no-op DAGs",
    )


def _floor_note(result: RunnerSpeedResult) -> list[str]:
    """How much of make's budget the floor of any click program (Python's start and click's
    import, measured in this run) takes by itself."""
    floor = result.floor_s.get("Python start-up + `import click`")
    make = [m.seconds["make"] for m in result.noop if "make" in m.seconds]
    if floor is None or not make:
        return []
    fastest = min(make)
    left = ms(MAKE_LIMIT * fastest - floor)
    return [
        f"Python's start and click's import alone take {ms(floor)}, {floor / fastest:.2f}x make's"
        f" fastest whole run above: ≤ {MAKE_LIMIT:g}x make leaves {left} for our own imports,"
        " the journal and every step's spawn."
    ]


def _sleep_table(result: RunnerSpeedResult, checked: bool) -> Table:
    labels = [*_labels(result), "make"]
    rows = []
    for measured in result.sleeping:
        s, path = measured.seconds, measured.critical_path_s
        cells = (
            f"{measured.name}, -j {measured.jobs}",
            f"{path:.2f} s",
            *(ratio(s[label] / path) if label in s else "—" for label in labels),
        )
        ok = s[OURS] / path <= PATH_LIMIT
        rows.append(Row(cells, f"ours ≤ {PATH_LIMIT}x path", verdict(ok, checked)))
    return Table(
        "Issue 15 (runner speed): sleeping DAGs, wall / critical path, journal on",
        ("DAG", "critical path", *(f"{label} wall / path" for label in labels)),
        tuple(rows),
        ("jobs = the DAG's width, so no ready step waits; start-up is included in the wall.",),
        short="issue 15 sleeping DAGs",
    )


def _start_up_rows(result: RunnerSpeedResult, labels: list[str], checked: bool) -> list[Row]:
    """Start-up: what every whole-process row above pays once, next to the peers' one-step run,
    our `--version`, and the floor of any click program (Python's start, then click's import)."""
    rows = []
    if result.one_step is not None:
        s = result.one_step.seconds
        peers = ", ".join(f"{peer} {ms(s[peer])}" for peer in ("make", "go-task") if peer in s)
        cells = (f"one-step run, whole process ({peers})", *(ms(s[label]) for label in labels))
        ok = s[OURS] <= ONE_STEP_LIMIT
        rows.append(Row(cells, f"ours ≤ {ms(ONE_STEP_LIMIT)}", verdict(ok, checked)))
    pad = [""] * (len(labels) - 1)
    if VERSION in result.floor_s:
        seconds = result.floor_s[VERSION]
        ok = seconds <= VERSION_LIMIT
        cells = ("`ci-orchestrator --version`, whole process", ms(seconds), *pad)
        rows.append(Row(cells, f"≤ {ms(VERSION_LIMIT)}", verdict(ok, checked)))
    rows += [
        Row((f"floor: {label}", ms(seconds), *pad))
        for label, seconds in result.floor_s.items()
        if label != VERSION
    ]
    return rows


def _cost_table(result: RunnerSpeedResult, checked: bool) -> Table:
    labels = _labels(result)
    rows = [
        Row(("journal cost per step event", *(f"{result.journal_ms[k]:.3f} ms" for k in labels))),
        *_start_up_rows(result, labels, checked),
        Row(
            (
                f"peak memory, {result.memory_steps:,} `/bin/true` steps, -j 8",
                *(f"{result.memory_kb[k] / 1024:.1f} MB" for k in labels),
            )
        ),
    ]
    if result.spawn_s:
        spawn, popen = result.spawn_s["posix_spawn"], result.spawn_s["Popen"]
        rows.append(
            Row(
                (
                    "our loop spawning with posix_spawn / with Popen (wide `/bin/true`, -j 8,"
                    " in-process)",
                    f"{ms(spawn)} / {ms(popen)} = {spawn / popen:.2f}",
                    *([""] if result.before else []),
                )
            )
        )
    notes = ["Journal cost: bench/journal_overhead.py against each runner; memory: GNU time."]
    if result.profile:
        notes.append(
            "Where our time goes (cProfile, own time, the layered `/bin/true` DAG at -j 8): "
            + "; ".join(result.profile)
            + "."
        )
    return Table("Issue 15 (runner speed): journal, start-up and memory", ("measure", *labels),
                 tuple(rows), tuple(notes))  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
