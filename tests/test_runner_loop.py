"""The runner's one event loop: no thread per shell step, how processes are spawned, interrupts from
a real signal handler, the polling fallback without pidfd, and the journal's batches under kill -9."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ci_orchestrator import shell
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.retry import ExitFailure, RetryPolicy, StepTimeout
from ci_orchestrator.runner import RunObserver, RunStatus, StepStatus, WorkflowRunner, WorkflowStep
from ci_orchestrator.shell import process_gone, run_shell
from tests.conftest import cli


class Threads(RunObserver):
    """Which threads the observers are called on, and how many threads exist meanwhile."""

    def __init__(self) -> None:
        self.callers: set[str] = set()
        self.most = 0

    def output(self, step: WorkflowStep, chunk: bytes) -> None:
        self.callers.add(threading.current_thread().name)
        self.most = max(self.most, threading.active_count())

    def step_started(self, step: WorkflowStep) -> None:
        self.most = max(self.most, threading.active_count())


def test_shell_steps_run_without_a_thread_each(tmp_path: Path) -> None:
    threads = Threads()
    runner = WorkflowRunner("threads", jobs=16, state_dir=tmp_path / "state", observers=[threads])
    for i in range(16):
        runner.add_step(f"s{i}", f"sleep 0.2; echo s{i}")
    before = threading.active_count()
    result = runner.run()
    assert result.success
    assert threads.callers == {threading.current_thread().name}
    assert threads.most == before


def test_python_steps_report_into_the_loop_among_shell_steps(tmp_path: Path) -> None:
    runner = WorkflowRunner("mixed", jobs=4, state_dir=tmp_path / "state")
    runner.add_step("shell", "echo value=7 >> $CI_ORCHESTRATOR_OUTPUT")
    runner.add_step(
        "python", lambda context, results: int(results["shell"]["value"]) * 6, ["shell"]
    )
    runner.add_step("after", 'test "$CIO_SHELL_VALUE" = 7', ["python"])
    runner.add_step("slow", lambda: time.sleep(5), timeout=0.2)
    result = runner.run()
    assert result.steps["python"].result == 42
    assert result.steps["after"].status is StepStatus.COMPLETED
    assert result.steps["slow"].status is StepStatus.FAILED
    assert result.steps["slow"].attempts[-1].timed_out


@pytest.mark.parametrize("cwd", [None, "sub"])  # posix_spawn, and Popen where a cwd is set
def test_a_step_inherits_no_descriptor_of_the_runner(tmp_path: Path, cwd: str | None) -> None:
    (tmp_path / "sub").mkdir()
    read, write = os.pipe()
    os.set_inheritable(write, True)  # as one inherited from a parent would be
    try:
        runner = WorkflowRunner("fds", state_dir=tmp_path / "state")
        step = runner.add_step(
            "fds", "ls /proc/self/fd; pwd", cwd=None if cwd is None else str(tmp_path / cwd)
        )
        assert runner.run().success
    finally:
        os.close(read)
        os.close(write)
    *fds, where = step.tail.split()
    assert where == str(tmp_path / cwd if cwd else Path.cwd())
    assert str(write) not in fds[3:]  # only stdin, stdout, stderr and ls's own listing
    assert len(fds) <= 4


def test_direct_commands_fall_back_to_the_shell_for_a_script_without_shebang(
    tmp_path: Path,
) -> None:
    script = tmp_path / "plain"
    script.write_text("echo from-script\n")
    script.chmod(0o755)
    out = io.BytesIO()
    outcome = run_shell(str(script), log=out)
    assert outcome.ok
    assert out.getvalue() == b"from-script\n"


def test_without_pidfd_the_exit_is_polled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell, "_pidfd", lambda pid: None)
    out = io.BytesIO()
    assert run_shell("echo polled; exit 4", log=out).exit_code == 4
    assert out.getvalue() == b"polled\n"
    slow = run_shell("exec >&-; sleep 30", log=out, timeout=0.2, grace=0.1)
    assert slow.timed_out
    assert slow.exit_code == 128 + signal.SIGTERM


def test_a_real_signal_during_a_retry_delay_interrupts_the_run(tmp_path: Path) -> None:
    runner = WorkflowRunner("signal", jobs=2, state_dir=tmp_path / "state")
    retried = runner.add_step(
        "retried", "exit 1", retry=RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60)
    )
    runner.add_step("streams", "for i in $(seq 1 50); do echo $i; sleep 0.01; done")

    class Alarm(RunObserver):
        def attempt_finished(self, step: WorkflowStep, attempt: object) -> None:
            if step.name == "retried":
                signal.setitimer(signal.ITIMER_REAL, 0.3)

    runner.add_observer(Alarm())
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: runner.interrupt())
    try:
        result = runner.run()
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert result.status is RunStatus.INTERRUPTED
    assert retried.status is StepStatus.CANCELLED
    assert len(retried.attempts) == 1


def test_a_second_interrupt_kills_a_step_that_ignores_term(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    runner = WorkflowRunner("stubborn", state_dir=tmp_path / "state")
    step = runner.add_step("stubborn", f"trap '' TERM; echo $$ > {pid_file}; sleep 60", grace=60)

    class Twice(RunObserver):
        def output(self, step: WorkflowStep, chunk: bytes) -> None:
            pass

        def process_started(self, step: WorkflowStep, pid: int) -> None:
            threading.Thread(target=interrupt_twice).start()

    def interrupt_twice() -> None:
        while not (pid_file.exists() and pid_file.read_text().strip()):
            time.sleep(0.01)
        runner.interrupt()
        time.sleep(0.2)
        runner.interrupt()

    runner.add_observer(Twice())
    result = runner.run()
    assert result.status is RunStatus.INTERRUPTED
    assert step.status is StepStatus.CANCELLED
    assert process_gone(int(pid_file.read_text()))


def test_fail_fast_stops_running_steps_and_always_steps_still_run(tmp_path: Path) -> None:
    runner = WorkflowRunner("fail-fast", jobs=4, state_dir=tmp_path / "state")
    long = runner.add_step("long", "sleep 30")
    runner.add_step("broken", "sleep 0.1; exit 2")
    cleanup = runner.add_step("cleanup", "echo cleaned", ["long", "broken"], when="always")
    result = runner.run()
    assert result.status is RunStatus.FAILED
    assert long.status is StepStatus.CANCELLED
    assert cleanup.status is StepStatus.COMPLETED
    assert cleanup.tail == "cleaned\n"


def test_shell_conditions_run_in_the_loop(tmp_path: Path) -> None:
    runner = WorkflowRunner("conditions", jobs=2, state_dir=tmp_path / "state")
    yes = runner.add_step("yes", "echo ran", condition="test 1 = 1")
    no = runner.add_step("no", "echo ran", condition="sleep 0.1; test 1 = 2")
    runner.run()
    assert yes.status is StepStatus.COMPLETED
    assert no.status is StepStatus.SKIPPED
    assert no.reason == "condition not met: sleep 0.1; test 1 = 2"


def test_the_retry_decision_is_tenacitys() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=1, max_delay=3, exit_codes=frozenset({75}))
    assert policy.retries(1, ExitFailure(75))
    assert not policy.retries(1, ExitFailure(1))  # not a listed exit code
    assert policy.retries(2, StepTimeout(1))
    assert not policy.retries(3, ExitFailure(75))  # the last attempt
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [1, 2, 3]


def test_kill_9_leaves_the_running_process_recorded_for_the_next_run_to_end(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    (tmp_path / "p.yml").write_text(
        "name: orphan\nsteps:\n"
        "  first: {run: 'true'}\n"
        f"  hang: {{run: 'echo $$ > {pid_file}; sleep 60', needs: [first]}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", str(tmp_path / "p.yml")],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.02)
    time.sleep(0.1)  # the turn that spawned it is written right after the spawn
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    pid = int(pid_file.read_text())
    assert not process_gone(pid)

    (tmp_path / "q.yml").write_text("name: next\nsteps:\n  one: {run: 'true'}\n")
    assert cli("run", str(tmp_path / "q.yml")).returncode == 0
    deadline = time.monotonic() + 10
    while not process_gone(pid):  # ended by the next run; a zombie (PID 1 may not reap) is gone
        assert time.monotonic() < deadline, "the orphan was not ended"
        time.sleep(0.02)
    old = JournalStore(Path(".ci-orchestrator/journal.db")).latest_run("orphan")
    assert old is not None
    assert old.status == "abandoned"
    assert old.step("first").status == "completed"
