"""What a new user tripped on (issue 17), met as they met it: the real command, real files,
real git repositories and a real `git push`."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.github.action_env import read_inputs, run_arguments
from tests.conftest import cli
from tests.test_hooks import commit, git

Write = Callable[[str, str], Path]


# --- 1. a zero retry delay ---


def test_a_zero_retry_delay_is_valid_and_a_zero_timeout_says_why(write: Write) -> None:
    write(
        "p.yml",
        """
        steps:
          a: {run: "true", retry: {attempts: 2, delay: 0}}
          b: {run: "true", retry: {attempts: 2, delay: 0s, max_delay: 5s}}
        """,
    )
    assert cli("run", "p.yml", "--no-journal").returncode == 0
    schema = json.loads(cli("schema").stdout)
    retry = schema["properties"]["defaults"]["properties"]["retry"]["anyOf"][1]
    assert {"type": "number", "minimum": 0} in retry["properties"]["delay"]["anyOf"]

    write("t.yml", "steps:\n  a: {run: 'true', timeout: 0}\n")
    done = cli("validate", "t.yml")
    assert done.returncode == 2
    assert done.stderr.startswith("error: t.yml:2: steps.a.timeout: expected a positive duration")
    assert "a zero timeout would stop the step at once" in done.stderr


# --- 2. a run that runs nothing ---


def test_a_template_run_with_nothing_configured_is_an_error(tmp_path: Path) -> None:
    done = cli("run", "ci_cd")
    assert done.returncode == 2
    assert "nothing to run: no step of template:ci_cd has a command" in done.stderr
    assert "--set STEP=COMMAND" in done.stderr
    assert "Passed" not in done.stdout
    assert not (tmp_path / ".ci-orchestrator" / "journal.db").exists()  # checked before running


def test_a_run_the_user_skipped_entirely_says_so_and_passes() -> None:
    done = cli("run", "ci_cd", "--no-journal", "--set", "lint=echo linted", "--skip", "lint")
    assert done.returncode == 0, done.stderr
    assert "every configured step was skipped on purpose (lint" in done.stdout
    assert "linted" not in done.stdout
    via_env = cli("run", "ci_cd", "--no-journal", "--set", "lint=echo linted", SKIP="lint")
    assert via_env.returncode == 0
    assert "skipped on purpose" in via_env.stdout


# --- 3. silent typos ---


def test_report_for_an_unknown_pipeline_is_an_error_with_a_suggestion(write: Write) -> None:
    write("shop.yml", "steps:\n  a: {run: 'true'}\n")
    assert cli("run", "shop.yml").returncode == 0
    done = cli("report", "--pipeline", "shpo")
    assert done.returncode == 2
    assert "--pipeline: no runs of 'shpo'" in done.stderr
    assert "(did you mean 'shop'?)" in done.stderr
    assert done.stdout == ""
    assert cli("report", "--pipeline", "shop").returncode == 0


def test_a_misspelt_template_step_warns_and_strict_validate_fails(write: Write) -> None:
    write(".ci-orchestrator.yml", "extends: ci_cd\nsteps:\n  tset: {run: echo tested}\n")
    warning = (
        ".ci-orchestrator.yml:3: steps.tset: adds a step that the pipeline it extends does not"
        " have; did you mean 'test'? ('test' stays not configured)"
    )
    done = cli("validate")
    assert done.returncode == 0
    assert done.stderr == f"warning: {warning}\n"
    strict = cli("validate", "--strict")
    assert strict.returncode == 2
    assert strict.stderr.startswith(f"error: {warning}")
    ran = cli("run", "--no-journal")
    assert ran.returncode == 0
    assert f"warning: {warning}" in ran.stderr


def test_an_unknown_name_in_skip_is_ignored_with_one_warning(write: Write) -> None:
    write(".ci-orchestrator.yml", "steps:\n  test: {run: echo tested}\n")
    done = cli("run", "--no-journal", SKIP="tset,flake8,tset")
    assert done.returncode == 0
    assert "tested" in done.stdout
    assert done.stderr.count("warning:") == 1
    assert "SKIP: no step named 'tset' (did you mean 'test'?), 'flake8'" in done.stderr
    assert "pre-commit" in done.stderr


def test_run_with_a_step_name_points_at_only(write: Write) -> None:
    write(".ci-orchestrator.yml", "steps:\n  test: {run: echo tested}\n")
    done = cli("run", "test")
    assert done.returncode == 2
    assert done.stderr == (
        "error: test: no such file; to run the step 'test' of .ci-orchestrator.yml:"
        " ci-orchestrator run --only test\n"
    )
    assert cli("run", "nothing-like-it").stderr == "error: nothing-like-it: no such file\n"


# --- 4. the pre-push hook: which tree it tests ---


def _repo_with_untracked_failure(tmp_path: Path) -> Path:
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git("init", "-q", "--bare", "-b", "main", str(remote), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / ".ci-orchestrator.yml").write_text("steps:\n  check: {run: test ! -e FAIL}\n")
    git("add", ".", cwd=work)
    git("commit", "-qm", "first", cwd=work)
    git("remote", "add", "origin", str(remote), cwd=work)
    (work / "FAIL").write_text("an untracked file the commit does not have")
    return work


def test_the_default_hook_tests_the_working_tree_and_says_so(tmp_path: Path) -> None:
    work = _repo_with_untracked_failure(tmp_path)
    assert "it tests the working tree" in cli("install-hook", cwd=work).stdout
    refused = git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert f"testing the working tree {work}, not only the pushed commit" in refused.stderr
    assert "untracked files (install-hook --isolated" in refused.stderr
    assert "push refused: the pipeline failed" in refused.stderr
    assert "git push --no-verify" in refused.stderr
    assert git("ls-remote", "origin", cwd=work).stdout == ""


def test_the_isolated_hook_tests_the_pushed_commit_in_a_worktree(tmp_path: Path) -> None:
    work = _repo_with_untracked_failure(tmp_path)
    assert "it tests the pushed commit" in cli("install-hook", "--isolated", cwd=work).stdout
    pushed = git("push", "origin", "main", cwd=work, check=False)
    assert pushed.returncode == 0, pushed.stderr
    head = git("rev-parse", "--short", "HEAD", cwd=work).stdout.strip()
    assert f"testing the pushed commit {head} (checked out in a temporary worktree)" in (
        pushed.stderr
    )
    assert git("ls-remote", "origin", cwd=work).stdout != ""
    assert len(git("worktree", "list", cwd=work).stdout.splitlines()) == 1  # removed after
    journal = sqlite3.connect(work / ".ci-orchestrator" / "journal.db")
    assert journal.execute("SELECT trigger, status FROM runs").fetchall() == [
        ("pre-push", "passed")
    ]

    commit(work, "FAIL")  # now the commit itself fails
    (work / "FAIL").unlink()
    git("checkout", "-q", "HEAD~1", "--", ".", cwd=work)  # the working tree would pass
    refused = git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert "push refused: the pipeline failed on the pushed commit" in refused.stderr
    assert "git push --no-verify" in refused.stderr
    assert len(git("worktree", "list", cwd=work).stdout.splitlines()) == 1


# --- 5. JUnit results from the command line and the action ---

JUNIT = (
    'printf \'<testsuite name="t" tests="1"><testcase classname="m" name="test_one"/>'
    "</testsuite>' > r.xml"
)


def test_junit_step_glob_next_to_set(tmp_path: Path) -> None:
    done = cli(
        "run", "ci_cd", "--set", f"test={JUNIT}", "--junit", "test=r*.xml", "--junit", "./out.xml"
    )
    assert done.returncode == 0, done.stderr
    out = (tmp_path / "out.xml").read_text()
    assert 'name="test_one"' in out
    typo = cli("run", "ci_cd", "--set", f"test={JUNIT}", "--junit", "tset=r.xml")
    assert typo.returncode == 2
    assert "--junit: no step named 'tset' (did you mean 'test'?)" in typo.stderr


def test_the_action_steps_input_takes_a_junit_form(tmp_path: Path) -> None:
    steps = f"lint: echo linted\ntest: {{run: {json.dumps(JUNIT)}, junit: r.xml}}\n"
    inputs = read_inputs({"INPUT_TEMPLATE": "ci_cd", "INPUT_STEPS": steps})
    assert inputs.steps["lint"] == "echo linted"
    assert inputs.junit == {"test": ("r.xml",)}
    args = [*run_arguments(inputs), "--junit", str(tmp_path / "out.xml")]
    assert "--junit=test=r.xml" in args
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert 'name="test_one"' in (tmp_path / "out.xml").read_text()


# --- 7. report labels ---


def _history(write: Write) -> list[str]:
    write(
        "p.yml",
        """
        name: shop
        steps:
          one: {run: "true"}
          flaky:
            run: 'if [ -e once ]; then rm once; else touch once; exit 1; fi'
            retry: {attempts: 2}
          broken: {run: "exit 3"}
        """,
    )
    for _ in range(3):
        assert cli("run", "p.yml", "--keep-going").returncode == 1
    db = sqlite3.connect(".ci-orchestrator/journal.db")
    return [r[0] for r in db.execute("SELECT id FROM runs ORDER BY started_at")]


def test_report_labels_say_what_the_numbers_cover(write: Write) -> None:
    runs = _history(write)
    last = cli("report", "--last", "2").stdout
    assert re.search(r"period +the last 2 runs\n", last)
    assert re.search(r"runs +2\n", last)
    since = cli("report", "--since", "1h").stdout
    assert re.search(r"period +since \d{4}-\d\d-\d\d \d\d:\d\d UTC\n", since)
    old = cli("report", "--run-id", runs[0]).stdout
    assert f"note: the history also counts the 2 runs after run {runs[0]}" in old
    report = cli("report").stdout
    hotspots = report.split("Failure hotspots\n")[1].split("\n\n")[0]
    assert "broken" in hotspots
    assert "flaky" not in hotspots  # failed no run: it is under flaky steps
    stats = report.split(
        "Per-step stats (p50/p95 over each step's last 200 runs that passed or failed)"
    )[1]
    broken = next(line for line in stats.splitlines() if line.strip().startswith("broken"))
    assert "-" not in broken.split()[3:]  # p50, p95 of a step that always fails


def test_counts_read_in_the_singular(write: Write) -> None:
    write("one.yml", "steps:\n  a: {run: 'true'}\n")
    assert "pipeline 'one', 1 step (1 configured)" in cli("validate", "one.yml").stdout
    assert "one: 1 step, up to" in cli("run", "one.yml", "--dry-run").stdout
    assert cli("run", "one.yml").returncode == 0
    assert ": 1 run, 1 step," in cli("journal", "info").stdout


# --- 8. messages ---


def test_dry_run_in_start_order_with_multi_line_commands_marked(write: Write) -> None:
    write(
        "p.yml",
        """
        steps:
          short: {run: "true"}
          first:
            run: |
              echo one
              echo two
          after: {run: "true", needs: [first]}
        """,
    )
    plan = cli("run", "p.yml", "--dry-run", "-j", "1").stdout.splitlines()
    assert [line.split()[1] for line in plan[1:]] == ["first", "short", "after"]
    assert "$ echo one …" in plan[1]


def test_validate_reports_every_error_each_at_its_line(write: Write) -> None:
    write(
        "p.yml",
        """
        version: 2
        steps:
          a: {run: ""}
          b:
            run: "true"
            needs:
              - a
              - biuld
          c: {run: "true", timeout: forever, colour: red}
        """,
    )
    done = cli("validate", "p.yml")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: p.yml:1: version: expected 1 (the only file format version ci-orchestrator"
        f" {_version()} reads), got 2 (a number)",
        "error: p.yml:3: steps.a.run: expected a string, got an empty string",
        "error: p.yml:9: steps.c.timeout: expected a positive duration like 90, 90s, 15m or"
        ' 1h30m, got "forever"',
        "error: p.yml:9: steps.c.colour: unknown key 'colour'; expected one of run, needs, if,"
        " when, timeout, kill_grace, retry, env, cwd, junit, artifacts, paths, inputs, outputs,"
        " cache, description",
        "error: 4 errors in p.yml",
    ]
    write("n.yml", "steps:\n  a: {run: 'true'}\n  b:\n    run: 'true'\n    needs:\n      - biuld\n")
    needs = cli("validate", "n.yml")
    assert needs.stderr == ("error: n.yml:6: steps.b.needs: 'biuld' is not a step\n")


def _version() -> str:
    from ci_orchestrator.__about__ import __version__

    return __version__


def test_a_command_not_found_is_named(write: Write) -> None:
    write("p.yml", "steps:\n  a: {run: no-such-tool-xyz --check}\n")
    done = cli("run", "p.yml", "--no-journal")
    assert done.returncode == 1
    assert "command not found: no-such-tool-xyz" in done.stdout
    assert "exit code 127" not in done.stdout


def test_one_duration_format_rounds_before_choosing_the_unit() -> None:
    assert format_seconds(0.9996) == "1s"
    assert format_seconds(0.4) == "400ms"
    assert format_seconds(59.96) == "1m00s"
    assert format_seconds(3599.6) == "1h00m"


def test_a_journal_in_a_missing_folder_is_an_error_not_a_new_folder(
    write: Write, tmp_path: Path
) -> None:
    write("p.yml", "steps:\n  a: {run: 'true'}\n")
    journal = tmp_path / "nonexistent" / "dir" / "j.db"
    done = cli("run", "p.yml", "--journal", str(journal))
    assert done.returncode == 2
    assert f"the folder {journal.parent} does not exist; create it first" in done.stderr
    assert not (tmp_path / "nonexistent").exists()
    assert cli("run", "p.yml").returncode == 0  # the default state folder is still made
    assert (tmp_path / ".ci-orchestrator" / "journal.db").is_file()


# --- 6. kill -9 of the runner ---


def test_a_killed_runner_leaves_no_step_running_once_the_next_command_looks(
    write: Write, tmp_path: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from ci_orchestrator.journal import JournalStore
    from ci_orchestrator.shell import process_gone

    pid_file = tmp_path / "step.pid"
    write(
        "p.yml",
        f"""
        name: slow
        steps:
          wait:
            run: 'echo $$ > {pid_file}; echo started; sleep 1; echo still here; sleep 30'
        """,
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert runner.stdout is not None
    for line in runner.stdout:  # the step's output, live
        if "still here" in line:
            break
    else:
        raise AssertionError("the runner ended before the step said it was still there")
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    runner.stdout.close()
    step_pid = int(pid_file.read_text())
    assert not process_gone(step_pid)  # the step's process group outlived its runner

    done = cli("report")  # the next command that opens the journal ends it
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while not process_gone(step_pid):  # SIGKILL to the group: a zombie counts as gone
        assert time.monotonic() < deadline
        time.sleep(0.05)
    store = JournalStore(Path(".ci-orchestrator/journal.db"))
    run = store.latest_run("slow")
    store.close()
    assert run is not None
    assert run.status == "abandoned"
    assert run.duration_ms is not None
    assert run.duration_ms >= 900  # up to the last output seen, not the step's start
    assert cli("run", "p.yml", "--set", "wait=true").returncode == 0
    assert os.path.exists(".ci-orchestrator/journal.db")
