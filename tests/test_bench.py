"""The benchmark harness works: the same DAG in every tool's format, its critical path, and a
synthetic journal that `report` reads with the right counts. No timing here: that is bench/."""

from __future__ import annotations

import ast
import json
import re
import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from bench import dag_compare, dags, formats, tables, tools
from bench.dags import Dag, Shapes, Variant
from bench.synthetic_journal import JournalShape, cached
from ci_orchestrator.config import load_pipeline
from tests.conftest import cli

Needs = dict[str, tuple[str, ...]]
Parsed = tuple[Needs, dict[str, str], list[str]]  # needs, commands, what the goal runs
TINY = Shapes(wide=4, chain=4, layers=3, layer_width=3)


def tiny_dags() -> list[Dag]:
    return [
        dags.build(shape, needs, variant, critical_path=0.05)
        for shape, needs in TINY.all().items()
        for variant in Variant
    ]


# --- each format read back by simple parsing ---


def read_ours(folder: Path) -> Parsed:
    pipeline = load_pipeline(folder / formats.PIPELINE)
    needs = {name: tuple(step.needs) for name, step in pipeline.steps.items()}
    commands = {name: step.run or "" for name, step in pipeline.steps.items()}
    return needs, commands, list(needs)  # we run every step


def read_makefile(folder: Path) -> Parsed:
    needs: Needs = {}
    commands: dict[str, str] = {}
    target = ""
    for line in (folder / formats.MAKEFILE).read_text().splitlines():
        if line.startswith("\t"):
            commands[target] = line[1:].replace("$$", "$")
        elif ":" in line and not line.startswith(".PHONY"):
            target, _, prerequisites = line.partition(":")
            needs[target] = tuple(prerequisites.split())
    goal = needs.pop(formats.GOAL)
    return needs, commands, list(goal)


def read_taskfile(folder: Path) -> Parsed:
    data = yaml.safe_load((folder / formats.TASKFILE).read_text())
    assert data["run"] == "once"  # else a step that several steps need runs more than once
    tasks = data["tasks"]
    goal = tasks.pop(formats.GOAL)["deps"]
    assert all(len(task["cmds"]) == 1 for task in tasks.values())
    needs = {name: tuple(task.get("deps", ())) for name, task in tasks.items()}
    return needs, {name: task["cmds"][0] for name, task in tasks.items()}, goal


def read_dodo(folder: Path) -> Parsed:
    needs: Needs = {}
    commands: dict[str, str] = {}
    for node in ast.parse((folder / formats.DODO).read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("task_"):
            returned = node.body[0]
            assert isinstance(returned, ast.Return)
            assert returned.value is not None
            task = ast.literal_eval(returned.value)
            name = node.name.removeprefix("task_")
            needs[name] = tuple(task["task_dep"])
            (commands[name],) = task["actions"]
    return needs, commands, list(needs)  # doit runs every task by default


READERS = {"ours": read_ours, "make": read_makefile, "go-task": read_taskfile, "doit": read_dodo}


def everything_under(goal: list[str], needs: Mapping[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    todo = list(goal)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(needs[name])
    return seen


@pytest.mark.parametrize("dag", tiny_dags(), ids=lambda d: d.name)
@pytest.mark.parametrize("tool", READERS)
def test_every_format_holds_the_same_steps_edges_and_commands(
    dag: Dag, tool: str, tmp_path: Path
) -> None:
    formats.write_all(dag, tmp_path)
    needs, commands, goal = READERS[tool](tmp_path)
    assert needs == dict(dag.needs)
    assert commands == dict(dag.commands)
    assert everything_under(goal, needs) == set(dag.needs)


def test_shapes_have_the_sizes_asked_for() -> None:
    wide, chain, layered = TINY.all().values()
    assert len(wide) == 5
    assert wide["final"] == ("s000", "s001", "s002", "s003")
    assert chain["s003"] == ("s002",)
    assert chain["s000"] == ()
    assert len(layered) == 9
    assert all(len(n) == 2 and n[0].startswith("l00_") for s, n in layered.items() if "l01" in s)
    assert layered == dags.layered(3, 3)  # seeded: the same on every run


def test_critical_path_and_width_of_a_known_dag() -> None:
    needs = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ()}
    seconds = {"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0, "e": 6.0}
    dag = Dag("known", Variant.SLEEP, needs, {n: f"sleep {s}" for n, s in seconds.items()}, seconds)
    assert dag.critical_path == pytest.approx(7.0)  # a -> b -> d, not the lone e (6)
    assert dag.width == 2
    assert sorted(dag.sinks()) == ["d", "e"]


def test_skewed_durations_are_scaled_to_the_critical_path() -> None:
    dag = dags.build("layered", dags.layered(4, 5), Variant.SLEEP, critical_path=2.0)
    assert dag.critical_path == pytest.approx(2.0, abs=0.001 * 4)  # rounding to whole ms
    assert max(dag.seconds.values()) > 3 * min(dag.seconds.values())  # skewed
    assert all(dag.commands[n] == f"sleep {s:.3f}" for n, s in dag.seconds.items())


RUNNABLE = [tool for tool in tools.dag_runners() if tool.executable is not None]


@pytest.mark.parametrize("tool", RUNNABLE, ids=lambda t: t.name)
def test_each_tool_runs_every_step_once_after_its_needs(tool: tools.Tool, tmp_path: Path) -> None:
    needs = dags.layered(3, 3)
    logging = {name: f"echo {name} >> steps.log" for name in needs}
    dag = Dag("layered", Variant.TRUE, needs, logging, dict.fromkeys(needs, 0.0))
    formats.write_all(dag, tmp_path)
    subprocess.run(tool.argv(2), cwd=tmp_path, check=True, capture_output=True, timeout=60)
    # go-task's shell writes `echo`'s word and its newline separately, so lines of parallel steps
    # can interleave ("l01_s02l02_s00\n\n"): read the names, not the lines.
    order = re.findall(r"l\d+_s\d+", (tmp_path / "steps.log").read_text())
    assert sorted(order) == sorted(needs)
    position = {name: i for i, name in enumerate(order)}
    assert all(position[n] < position[step] for step, deps in needs.items() for n in deps)


# --- the synthetic journal ---


def test_report_reads_the_synthetic_journal_with_the_right_counts(tmp_path: Path) -> None:
    shape = JournalShape(runs=60, steps=20)
    path, made = cached(shape, tmp_path)
    assert made is not None
    assert cached(shape, tmp_path) == (path, None)
    db = sqlite3.connect(path)
    failed_runs = db.execute("SELECT count(*) FROM runs WHERE status = 'failed'").fetchone()[0]
    by_step = {
        name: (failed, flaky)
        for name, failed, flaky in db.execute(
            "SELECT name, sum(status = 'failed'), sum(flaky) FROM steps GROUP BY name"
        )
    }
    assert db.execute("SELECT count(*) FROM steps WHERE command_hash IS NULL").fetchone() == (0,)
    db.close()
    assert failed_runs
    assert any(f for f, _ in by_step.values())
    assert any(k for _, k in by_step.values())

    done = cli("report", "--journal", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runs_considered"] == 60
    assert report["pass_rate"] == pytest.approx((60 - failed_runs) / 60)
    stats = {s["step"]: s for s in report["stats"]}
    assert set(stats) == set(by_step)
    assert all(s["runs"] == 60 for s in stats.values())
    assert all(stats[name]["failed"] == failed for name, (failed, _) in by_step.items())
    assert len(report["run"]["steps"]) == 20


def test_synthetic_steps_fill_every_column_like_the_real_writer(tmp_path: Path) -> None:
    path, _ = cached(JournalShape(runs=9, steps=10), tmp_path)
    db = sqlite3.connect(path)
    run = db.execute("SELECT * FROM runs LIMIT 1").fetchone()
    assert None not in run[:9]
    assert run[-2:] == ("ci-orchestrator", "{}")
    rows = db.execute(
        "SELECT pipeline, position, needs, lost_ms FROM steps WHERE run_id = ?", run[:1]
    )
    positions = []
    for pipeline, position, needs, lost in rows:
        assert pipeline == "synthetic"
        assert isinstance(json.loads(needs), list)
        assert lost >= 0
        positions.append(position)
    assert sorted(positions) == list(range(10))
    shas = db.execute("SELECT count(DISTINCT git_sha) FROM runs").fetchone()[0]
    assert shas == 3  # three runs per commit
    db.close()


# --- tables ---


def test_tables_show_targets_and_name_what_was_missed() -> None:
    table = tables.Table(
        "Start-up",
        ("command", "median"),
        (
            tables.Row(("one", "1 ms"), "≤ 2 ms", tables.Verdict.MET),
            tables.Row(("two", "3 ms"), "≤ 2 ms", tables.Verdict.MISSED),
            tables.Row(("peer", "5 ms")),
        ),
    )
    assert table.missed() == ["Start-up: two"]
    assert "| two | 3 ms | ≤ 2 ms | MISSED |" in tables.markdown(table)
    assert "| peer | 5 ms |  |  |" in tables.markdown(table)
    assert tables.text(table).splitlines()[2].split() == ["command", "median", "target", "verdict"]


def test_a_peer_that_is_not_installed_is_skipped(tmp_path: Path) -> None:
    argv = tools.dag_runners()[0].argv_for
    absent = [tools.Tool(name, "not-installed-xyz", argv) for name in (tools.OURS, "doit")]
    dag = dags.build("chain", dags.chain(3), Variant.TRUE)
    result = dag_compare.measure(dag, jobs=2, rounds=1, tools=absent, work=tmp_path)
    assert result.skipped == [tools.OURS, "doit"]
    assert result.seconds == {}
    (row,) = dag_compare.noop_table([result], absent, checked=True).rows[:1]
    assert row.cells[3] == "skipped (not installed)"
    assert row.verdict is tables.Verdict.UNCHECKED
