"""Faults: what the runner does when steps, the disk or signals misbehave (real processes)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_orchestrator.journal import JournalStore
from ci_orchestrator.shell import process_gone
from tests.conftest import cli

Write = Callable[[str, str], Path]


def run_measured(*args: str, **popen: object) -> tuple[int, int, str]:
    """Run the CLI; return its exit code, its peak memory in MB and its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    done = subprocess.run(
        [sys.executable, "-m", "ci_orchestrator", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, timeout=300,
        **popen,  # type: ignore[call-overload]
    )  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return done.returncode, max(peak, before) // 1024, done.stderr


def test_100_mb_of_output_keeps_memory_bounded(write: Write) -> None:
    write(
        "p.yml",
        "steps:\n  loud: {run: 'head -c 100000000 /dev/zero | tr \"\\\\0\" x; echo; echo END'}\n",
    )
    code, peak_mb, _ = run_measured("run", "p.yml")
    assert code == 0
    log = next(Path(".ci-orchestrator/runs").rglob("loud.log"))
    assert log.stat().st_size == 100_000_005
    assert peak_mb < 100  # the output streams to disk; only a tail stays in memory
    run = JournalStore(Path(".ci-orchestrator/journal.db")).latest_run()
    assert run is not None
    assert run.step("loud").log_tail.endswith("END\n")
    assert len(run.step("loud").log_tail) <= 8192


@pytest.mark.parametrize(
    "producer",
    [
        "head -c 200000 /dev/urandom",  # binary
        "printf 'bad utf-8: \\377\\376 and NUL: \\000 and bell: \\007\\n'",
        "printf '\\033[31mred\\033[0m \\033[2J\\033]0;title\\007 ]]> </details> ```\\n'",
        "head -c 10000000 /dev/zero | tr '\\0' y",  # a 10 MB line without a newline
    ],
    ids=["binary", "invalid-utf8-nul", "ansi-and-markup", "10mb-line"],
)
def test_odd_output_never_breaks_logs_junit_or_reports(
    producer: str, write: Write, tmp_path: Path
) -> None:
    write("p.yml", f"steps:\n  odd:\n    run: |\n      {producer}; exit 3\n")
    summary = tmp_path / "summary.md"
    done = subprocess.run(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml", "--junit", "j.xml"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False, timeout=120,
        env={**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    ET.parse("j.xml")  # parses
    assert 0 < summary.stat().st_size < 1024 * 1024
    for fmt in ("text", "markdown", "json"):
        report = cli("report", "--format", fmt)
        assert report.returncode == 0, report.stderr


def test_a_full_disk_loses_the_log_but_not_the_result(write: Write) -> None:
    """RLIMIT_FSIZE makes writes past 1 MB fail with EFBIG, as a full disk fails with ENOSPC."""
    write(
        "p.yml",
        "steps:\n  big: {run: 'head -c 3000000 /dev/zero; echo done'}\n  after: {run: 'echo after', needs: [big]}\n",
    )
    assert cli("validate", "p.yml").returncode == 0
    JournalStore(Path(".ci-orchestrator/journal.db")).close()  # created before the limit

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    code, _, stderr = run_measured("run", "p.yml", preexec_fn=limit)
    assert code == 0, stderr
    assert "the log of step 'big' is incomplete: File too large" in stderr
    assert "Traceback" not in stderr
    run = JournalStore(Path(".ci-orchestrator/journal.db")).latest_run()
    assert run is not None
    assert [s.status for s in run.steps] == ["completed", "completed"]


def test_an_unusable_state_folder_is_one_line_and_nothing_runs(
    write: Write, tmp_path: Path
) -> None:
    write("p.yml", f"steps:\n  a: {{run: 'touch {tmp_path}/ran'}}\n")
    Path(".ci-orchestrator").write_text("a file where the state folder should be")
    done = cli("run", "p.yml")
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot write the state folder .ci-orchestrator")
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_runs_write_their_reports_and_leave_no_process(
    sig: signal.Signals, write: Write, tmp_path: Path
) -> None:
    write(
        "p.yml",
        f"""
        steps:
          done: {{run: 'echo ok'}}
          stuck: {{run: '(trap "" TERM; sleep 60) & echo $! > {tmp_path}/child.pid; wait', kill_grace: 1s, needs: [done]}}
        """,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml", "--junit", "j.xml"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "s.md"), "GITHUB_OUTPUT": str(tmp_path / "o.txt")},
    )  # fmt: skip
    pid = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not (pid.exists() and pid.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 130
    assert process_gone(int(pid.read_text()))  # ignored SIGTERM, got SIGKILL after the grace
    suite = ET.parse("j.xml").getroot()
    assert suite.find(".//testcase[@name='stuck']/error") is not None  # cancelled: an error
    assert "interrupted" in (tmp_path / "s.md").read_text().lower()
    assert "status<<" in (tmp_path / "o.txt").read_text()
    run = JournalStore(Path(".ci-orchestrator/journal.db")).latest_run()
    assert run is not None
    assert run.status == "interrupted"
    assert run.step("done").status == "completed"


def test_a_second_interrupt_kills_at_once(write: Write, tmp_path: Path) -> None:
    write(
        "p.yml",
        f"steps:\n  stuck: {{run: 'trap \"\" TERM; echo $$ > {tmp_path}/pid; sleep 60', kill_grace: 60s}}\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml"], stdout=subprocess.DEVNULL
    )
    pid = tmp_path / "pid"
    while not (pid.exists() and pid.read_text().strip()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # without it, the step would get its 60 s grace
    assert proc.wait(timeout=20) == 130
    assert process_gone(int(pid.read_text()))


def test_a_broken_junit_file_leaves_the_step_status_and_is_reported(write: Write) -> None:
    write(
        "p.yml",
        "steps:\n  t:\n    run: echo '<testsuite><testcase' > r.xml\n    junit: [r.xml, missing/*.xml]\n",
    )
    done = cli("run", "p.yml")
    assert done.returncode == 0
    assert "- JUnit r.xml: not valid XML: unclosed token at line 1" in done.stdout
    assert "- JUnit missing/*.xml: no file matched" in done.stdout
    assert "t: JUnit r.xml: not valid XML" in cli("report").stdout
    assert "2 JUnit files unreadable" in cli("report", "--format", "markdown").stdout
