"""One shell step as a process group, with real processes."""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ci_orchestrator.shell import CancelToken, ShellOutcome, process_gone, run_shell, which


def _run(command: str, **options: Any) -> tuple[ShellOutcome, bytes]:
    log = io.BytesIO()
    outcome = run_shell(command, log=log, **options)
    return outcome, log.getvalue()


def test_exit_code_output_and_pipefail() -> None:
    outcome, log = _run("echo out; echo err >&2; exit 3")
    assert outcome.exit_code == 3
    assert log == b"out\nerr\n"
    outcome, _ = _run("false | true")
    assert outcome.exit_code == 1


def test_output_reaches_the_callback_as_it_comes(tmp_path: Path) -> None:
    seen: list[bytes] = []
    gate = tmp_path / "gate"
    # The step waits until the callback has seen its first line: output is streamed, not buffered.
    command = f"echo first; while [ ! -e {gate} ]; do sleep 0.01; done; echo second"

    def on_output(chunk: bytes) -> None:
        seen.append(chunk)
        gate.touch()

    outcome, log = _run(command, on_output=on_output, timeout=10)
    assert outcome.exit_code == 0
    assert seen[0] == b"first\n"
    assert b"".join(seen) == log == b"first\nsecond\n"


def test_tail_is_bounded_and_log_is_complete() -> None:
    outcome, log = _run("head -c 3000000 /dev/zero | tr '\\0' x; echo; echo END", tail_bytes=1000)
    assert len(log) == 3000000 + 5
    assert len(outcome.tail) == 1000
    assert outcome.tail.endswith(b"\nEND\n")


def test_timeout_kills_a_grandchild_that_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    command = f"(trap '' TERM; sleep 60) & echo $! > {pidfile}; wait"
    outcome, _ = _run(command, timeout=0.5, grace=0.3)
    assert outcome.timed_out
    assert process_gone(int(pidfile.read_text()))


def test_background_processes_left_by_a_step_are_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    outcome, log = _run(f"sleep 60 > /dev/null 2>&1 & echo $! > {pidfile}; echo done", grace=0.3)
    assert outcome.exit_code == 0
    assert log == b"done\n"
    assert process_gone(int(pidfile.read_text()))


def test_a_step_that_closes_stdout_early_still_ends() -> None:
    outcome, _ = _run("echo hi; exec 1>&- 2>&-; sleep 0.2; exit 4")
    assert outcome.exit_code == 4


def test_cancel_stops_the_group() -> None:
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel, args=("stop",))
    timer.start()
    started = time.monotonic()
    outcome, _ = _run("sleep 30", cancel=token)
    assert outcome.cancelled
    assert not outcome.ok
    assert time.monotonic() - started < 25
    token.close()


def test_a_command_that_cannot_start_is_an_error_not_a_crash(tmp_path: Path) -> None:
    outcome, _ = _run("true", cwd=tmp_path / "missing")
    assert outcome.exit_code is None
    assert "No such file" in outcome.error


def test_which_answers_as_shutil_which_does(tmp_path: Path) -> None:
    """The shell module finds programs without importing shutil; the answers must not differ."""
    bin_a, bin_b, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for folder in (bin_a, bin_b, empty):
        folder.mkdir()
    (bin_a / "tool").write_text("#!/bin/sh\n")  # not executable: skipped
    (bin_b / "tool").write_text("#!/bin/sh\n")
    (bin_b / "tool").chmod(0o755)
    (bin_a / "dir").mkdir(mode=0o755)  # an executable folder is no program
    (bin_b / "script").write_text("#!/bin/sh\n")
    (bin_b / "script").chmod(0o755)
    path = os.pathsep.join(map(str, (empty, bin_a, bin_b, bin_a)))
    names = ["tool", "dir", "script", "missing", "sh", str(bin_b / "tool"), str(bin_a / "tool")]
    for name in names:
        assert which(name, path) == shutil.which(name, path=path), name
        assert which(name) == shutil.which(name), name
    assert which("tool", "") == shutil.which("tool", path="")
    assert which("tool", str(bin_b)) == str(bin_b / "tool")
