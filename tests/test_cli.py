"""The command line, through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.cli import LAZY_COMMANDS, cli
from ci_orchestrator.shell import process_gone
from tests.conftest import assert_golden
from tests.conftest import cli as run_cli

Write = Callable[[str, str], Path]

PIPELINE = """
version: 1
name: shop
steps:
  lint: {run: echo linting}
  build: {run: echo building}
  test: {run: echo testing, needs: [build]}
  deploy:
    run: echo deploying
    needs: [test, lint]
    if: '[ "$DEPLOY" = yes ]'
"""


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_version_and_help() -> None:
    code, out = invoke("--version")
    assert code == 0
    assert out.startswith("ci-orchestrator, version ")
    code, out = invoke("run", "--help")
    assert code == 0
    for option in ("--set", "--skip", "--only", "--no-deps", "--dry-run", "--jobs", "--keep-going"):
        assert option in out


def test_every_command_loads_and_shows_its_help() -> None:
    """The commands imported by name (`LAZY_COMMANDS`) list and resolve like the others, and
    every command's --help works (click's advice for lazily loaded commands)."""

    def walk(group: click.Group, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, (*path, name)
            yield (*path, name)
            if isinstance(command, click.Group):
                yield from walk(command, (*path, name))

    commands = list(walk(cli, ()))
    assert set(LAZY_COMMANDS) <= {path[0] for path in commands}
    assert ("export", "github-workflow") in commands
    for path in commands:
        code, out = invoke(*path, "--help")
        assert code == 0, path
        assert out.startswith(f"Usage: cli {' '.join(path)} "), path


@pytest.mark.parametrize("args", [["--version"], ["run", "-q"]])
def test_a_command_imports_no_command_it_does_not_run(args: list[str], write: Write) -> None:
    """`--version` and `run` import neither the lazily loaded commands nor the report's records;
    `--version` not even pathlib or json."""
    write(".ci-orchestrator.yml", "steps:\n  a: {run: 'true'}\n")
    probe = (
        "import sys\n"
        "from ci_orchestrator.cli import main\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    print(*sorted(sys.modules), sep='\\n', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stderr.splitlines())
    assert "ci_orchestrator.cli" in loaded
    unwanted = {
        *(target.rpartition(".")[0] for target in LAZY_COMMANDS.values()),
        "ci_orchestrator.report_records",
        "ci_orchestrator.analytics",
    }
    if args == ["--version"]:
        unwanted |= {"pathlib", "json"}
    else:
        assert "ci_orchestrator.records" in loaded
    assert loaded & unwanted == set()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_the_command_answers_version_without_click_and_as_click_does(flag: str) -> None:
    """The console script's entry point answers `--version` before importing click; the text is
    exactly what click's version option prints."""
    probe = (
        "import sys\n"
        "from ci_orchestrator.__main__ import main\n"
        "main()\n"
        "print(*sorted(sys.modules), sep='\\n', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, flag], capture_output=True, text=True, check=True, timeout=60
    )
    assert "click" not in done.stderr.splitlines()
    code, out = invoke(flag)
    assert code == 0
    assert done.stdout == out == f"ci-orchestrator, version {__version__}\n"


def test_run_passes_and_prints_status_lines(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("run", "-j", "1")
    assert code == 0, out
    assert "lint" in out
    assert "Passed" in out
    assert '(condition not met: [ "$DEPLOY" = yes ])' in out
    assert "Passed: 3 passed, 1 skipped" in out


def test_set_skip_and_skip_env(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke(
        "run", "--set", "test=echo custom-test", "--skip", "lint", env={"SKIP": "build,other"}
    )
    assert code == 0, out
    assert "custom-test" in out
    assert "(skipped by --skip)" in out
    assert "(skipped by SKIP)" in out


def test_failure_exit_code_and_details(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("run", "--set", "build=echo compiler says no; exit 4")
    assert code == 1
    assert "- exit code: 4" in out
    assert "failed: build: exit code 4" in out
    assert "(dependency 'build' failed)" in out


def test_quiet_shows_the_tail_of_failures_only(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("run", "-q", "--set", "build=echo compiler says no; exit 4")
    assert code == 1
    assert "linting" not in out
    assert "  | compiler says no" in out


def test_only_with_and_without_dependencies(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("run", "--only", "test")
    assert code == 0
    assert "building" in out
    assert "linting" not in out
    code, out = invoke("run", "--only", "test", "--no-deps")
    assert "building" not in out
    assert "testing" in out
    code, out = invoke("run", "--no-deps")
    assert code == 2
    assert "--no-deps goes with --only" in out


def test_dry_run_prints_the_plan_and_runs_nothing(write: Write, tmp_path: Path) -> None:
    write(".ci-orchestrator.yml", PIPELINE.replace("echo building", f"touch {tmp_path}/ran"))
    code, out = invoke("run", "--dry-run", "--skip", "lint", "-j", "3")
    assert code == 0
    assert not (tmp_path / "ran").exists()
    assert_golden("dry_run.txt", out.replace(str(tmp_path), "TMP"))


def test_usage_and_config_errors_exit_2_with_one_line(write: Write, tmp_path: Path) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    cases = [
        (
            ["run", "--set", "tset=x"],
            "error: --set: no step named 'tset' in .ci-orchestrator.yml (did you mean 'test'?)",
        ),
        (["run", "--set", "novalue"], "error: --set: expected STEP=COMMAND, got 'novalue'"),
        (["run", "missing.yml"], "error: missing.yml: no such file"),
        (["run", str(tmp_path)], "is a directory; expected a pipeline file"),
        (["validate", "nope.yml"], "error: nope.yml: no such file"),
        (
            ["templates", "show", "ci_cdd"],
            "error: no template named 'ci_cdd' (did you mean 'ci_cd'?)",
        ),
    ]
    for args, expected in cases:
        code, out = invoke(*args)
        assert code == 2, (args, out)
        assert expected in out
        assert "Traceback" not in out


def test_real_process_exit_codes(write: Write) -> None:
    write("ok.yml", "steps:\n  a: {run: 'true'}\n")
    write("bad.yml", "steps:\n  a: {run: 'exit 7'}\n")
    write("broken.yml", "steps:\n  a: {run: true}\n")
    assert run_cli("run", "ok.yml").returncode == 0
    assert run_cli("run", "bad.yml").returncode == 1
    broken = run_cli("run", "broken.yml")
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines() == [
        "error: broken.yml:2: steps.a.run: expected a string, got true (a boolean); "
        "YAML read it as a boolean, quote it"
    ]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_a_running_pipeline_exits_130_and_leaves_no_process(
    sig: signal.Signals, write: Write, tmp_path: Path
) -> None:
    write(
        "slow.yml",
        f"""
        steps:
          a: {{run: 'echo $$ > {tmp_path}/a.pid; sleep 60'}}
          b: {{run: 'echo $$ > {tmp_path}/b.pid; sleep 60'}}
          c: {{run: 'true', needs: [a]}}
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "slow.yml", "-j", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pids = [tmp_path / "a.pid", tmp_path / "b.pid"]
    deadline = time.monotonic() + 30
    while not all(p.exists() and p.read_text().strip() for p in pids):
        assert time.monotonic() < deadline, "steps did not start"
        time.sleep(0.02)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "Interrupted" in out
    assert all(process_gone(int(p.read_text())) for p in pids)


def test_validate_and_templates_round_trip() -> None:
    code, out = invoke("templates", "list")
    assert code == 0
    assert "ci_cd          lint -> build -> test -> deploy" in out
    for name in ("ci_cd", "code_review", "data_pipeline"):
        code, text = invoke("templates", "show", name)
        assert code == 0
        Path(f"{name}.yml").write_text(text)
        code, out = invoke("validate", f"{name}.yml")
        assert code == 0, out
        assert "valid" in out


@pytest.mark.parametrize("fmt", ["text", "mermaid", "dot"])
def test_graph_formats(fmt: str, write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("graph", "--format", fmt)
    assert code == 0
    assert_golden(f"graph.{fmt}", out)


def test_schema_is_json_schema() -> None:
    code, out = invoke("schema")
    assert code == 0
    schema = json.loads(out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "steps" in schema["properties"]


def test_a_template_name_runs_the_template(tmp_path: Path) -> None:
    code, out = invoke("run", "ci_cd", "--set", "lint=echo lint-ok", "--set", "test=echo test-ok")
    assert code == 0, out
    assert "lint-ok" in out
    assert "test-ok" in out
    assert "(not configured)" in out


def test_github_actions_mode_groups_output_and_annotates_failures(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    code, out = invoke("run", "--set", "build=echo oops; exit 3", env={"GITHUB_ACTIONS": "true"})
    assert code == 1
    assert "::group::build" in out
    assert "::endgroup::" in out
    assert "::error title=build failed::exit code 3%0Aoops" in out


def test_no_color_and_not_a_tty_mean_no_escape_codes(write: Write) -> None:
    write(".ci-orchestrator.yml", PIPELINE)
    _, out = invoke("run")
    assert "\033[" not in out
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    colored = subprocess.run(
        [sys.executable, "-m", "ci_orchestrator", "run"],
        capture_output=True, text=True, env={**env, "FORCE_COLOR": "1"}, check=False,
    )  # fmt: skip
    assert "\033[" in colored.stdout
