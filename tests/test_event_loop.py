"""The runner under load and abuse: many steps streaming at once, timers firing among them,
interrupts during retry delays, a killed runner, and input that tries to break it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from ci_orchestrator.journal import JournalStore, WorkflowJournal
from ci_orchestrator.retry import RetryPolicy
from ci_orchestrator.runner import (
    Attempt,
    RunObserver,
    RunStatus,
    StepStatus,
    WorkflowRunner,
    WorkflowStep,
)
from ci_orchestrator.shell import process_gone
from tests.conftest import cli

Write = Callable[[str, str], Path]


class Output(RunObserver):
    """Every byte each step printed, as the observers hear it."""

    def __init__(self) -> None:
        self.chunks: dict[str, list[bytes]] = defaultdict(list)
        self.lock = threading.Lock()

    def output(self, step: WorkflowStep, chunk: bytes) -> None:
        with self.lock:
            self.chunks[step.name].append(chunk)

    def text(self, name: str) -> bytes:
        return b"".join(self.chunks[name])


def _wait_for_file(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_64_steps_stream_at_once_and_no_byte_is_lost(tmp_path: Path) -> None:
    output = Output()
    runner = WorkflowRunner("many", jobs=64, state_dir=tmp_path / "state", observers=[output])
    gate = tmp_path / "all-started"
    for i in range(64):
        # Every step first waits until all 64 have started, so that their output interleaves.
        command = (
            f"echo $$ >> {tmp_path}/started; "
            f"while [ $(wc -l < {tmp_path}/started) -lt 64 ] && [ ! -e {gate} ]; do sleep 0.01; done; "
            f"for j in $(seq 1 300); do echo s{i:02d}-line-$j; done; printf 's{i:02d}-no-newline'"
        )
        runner.add_step(f"s{i:02d}", command)
    result = runner.run()
    assert result.success, result.to_dict()
    for i in range(64):
        name = f"s{i:02d}"
        expected = "".join(f"{name}-line-{j}\n" for j in range(1, 301)) + f"{name}-no-newline"
        assert output.text(name) == expected.encode()
        log_path = result.steps[name].log_path
        assert log_path is not None
        assert Path(log_path).read_bytes() == expected.encode()


def test_a_timeout_and_a_retry_delay_fire_while_others_stream(tmp_path: Path) -> None:
    output = Output()
    runner = WorkflowRunner(
        "timers", jobs=4, fail_fast=False, state_dir=tmp_path / "state", observers=[output]
    )
    counter = tmp_path / "count"
    runner.add_step("slow", "sleep 30", timeout=0.3, grace=0.2)
    runner.add_step(
        "flaky",
        f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; [ $n -ge 2 ]",
        retry=RetryPolicy(max_attempts=2, initial_delay=0.3, max_delay=0.3),
    )
    runner.add_step("chatty", "for i in $(seq 1 40); do echo line $i; sleep 0.02; done")
    result = runner.run()
    slow, flaky, chatty = (result.steps[n] for n in ("slow", "flaky", "chatty"))
    assert slow.status is StepStatus.FAILED
    assert slow.attempts[-1].timed_out
    assert flaky.status is StepStatus.COMPLETED
    assert flaky.flaky
    first, second = flaky.attempts
    assert second.started_at - first.started_at >= 0.3  # the delay was waited, not skipped
    assert chatty.status is StepStatus.COMPLETED
    assert output.text("chatty") == "".join(f"line {i}\n" for i in range(1, 41)).encode()


def test_ctrl_c_during_a_retry_delay_ends_the_run_without_the_next_attempt(
    tmp_path: Path,
) -> None:
    class InterruptAfterFirstAttempt(RunObserver):
        def __init__(self, runner: WorkflowRunner) -> None:
            self.runner = runner

        def attempt_finished(self, step: WorkflowStep, attempt: Attempt) -> None:
            self.runner.interrupt()  # what the SIGINT handler does

    runner = WorkflowRunner("ctrl-c", jobs=2, state_dir=tmp_path / "state")
    runner.add_observer(InterruptAfterFirstAttempt(runner))
    retry = RetryPolicy(max_attempts=3, initial_delay=60, max_delay=60)
    step = runner.add_step("retried", "exit 1", retry=retry)
    after = runner.add_step("after", "true", ["retried"], when="always")
    started = time.monotonic()
    result = runner.run()
    assert time.monotonic() - started < 30  # the 60 s delay was cut short
    assert result.status is RunStatus.INTERRUPTED
    assert step.status is StepStatus.CANCELLED
    assert len(step.attempts) == 1
    assert after.status is StepStatus.SKIPPED
    assert after.reason == "run interrupted"


def test_kill_9_mid_batch_keeps_every_finished_step(write: Write, tmp_path: Path) -> None:
    fan = "\n".join(f"  s{i:02d}: {{run: 'true'}}" for i in range(40))
    needs = ", ".join(f"s{i:02d}" for i in range(40))
    write(
        "p.yml",
        f"name: batched\nsteps:\n{fan}\n"
        f"  last: {{run: 'echo $$ > {tmp_path}/last.pid; sleep 60', needs: [{needs}]}}\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ci_orchestrator", "run", "p.yml", "-j", "8"],
        stdout=subprocess.DEVNULL,
    )
    pid_file = tmp_path / "last.pid"
    _wait_for_file(pid_file)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned step: nobody else will
    deadline = time.monotonic() + 10
    while not process_gone(int(pid_file.read_text())):  # a zombie (PID 1 may not reap) is gone
        assert time.monotonic() < deadline
        time.sleep(0.02)

    store = JournalStore(Path(".ci-orchestrator/journal.db"))
    run = store.latest_run("batched")
    assert run is not None
    assert run.status == "running"
    # `last` started, so every step it needs was written before it did.
    assert all(run.step(f"s{i:02d}").status == "completed" for i in range(40))
    assert run.step("last").status == "running"

    write("q.yml", "name: next\nsteps:\n  one: {run: 'true'}\n")
    assert cli("run", "q.yml").returncode == 0
    old = store.load_run(run.id)
    assert old is not None
    assert old.status == "abandoned"
    assert all(old.step(f"s{i:02d}").status == "completed" for i in range(40))
    assert old.step("last").status == "cancelled"


def test_kill_9_at_any_moment_never_records_a_step_before_its_needs(
    write: Write, tmp_path: Path
) -> None:
    chain = "\n".join(
        f"  c{i:03d}: {{run: 'true'{f', needs: [c{i - 1:03d}]' if i else ''}}}" for i in range(150)
    )
    write("p.yml", f"name: chained\nsteps:\n{chain}\n")
    for delay in (0.15, 0.3, 0.45):
        proc = subprocess.Popen(
            [sys.executable, "-m", "ci_orchestrator", "run", "p.yml", "-j", "2"],
            stdout=subprocess.DEVNULL,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        run = JournalStore(Path(".ci-orchestrator/journal.db")).latest_run("chained")
        if run is None:
            continue  # killed before the run was recorded
        recorded = {step.name: step.status for step in run.steps}
        for i in range(1, 150):
            if f"c{i:03d}" in recorded:
                assert recorded[f"c{i - 1:03d}"] == "completed", (delay, i, recorded)


def test_an_observer_hears_turns_and_the_journal_writes_them_together(tmp_path: Path) -> None:
    journal = WorkflowJournal(tmp_path / "journal.db")
    turns: list[int] = []

    class Turns(RunObserver):
        def turn_ended(self) -> None:
            turns.append(len(journal.pending))

    runner = WorkflowRunner("turns", jobs=4, state_dir=tmp_path / "state")
    runner.add_observer(journal)
    runner.add_observer(Turns())  # after the journal: it sees what the journal left pending
    for i in range(12):
        runner.add_step(f"s{i}", "true")
    result = runner.run()
    assert result.success
    assert turns
    assert set(turns) == {0}
    run = journal.store.load_run(result.workflow_id)
    assert run is not None
    assert run.status == "passed"
    assert [s.status for s in run.steps] == ["completed"] * 12
    assert all(len(s.attempts) == 1 for s in run.steps)


# --- bad input ---


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_jobs_below_one_is_a_usage_error(write: Write, jobs: str) -> None:
    write("p.yml", "steps:\n  a: {run: 'true'}\n")
    done = cli("run", "p.yml", "-j", jobs, "--no-journal")
    assert done.returncode == 2
    assert "--jobs" in done.stderr


def test_a_huge_jobs_value_starts_no_more_than_there_are_steps(write: Write) -> None:
    write("p.yml", "steps:\n" + "".join(f"  s{i}: {{run: 'true'}}\n" for i in range(5)))
    before = threading.active_count()
    done = cli("run", "p.yml", "-j", "100000", "--no-journal")
    assert done.returncode == 0, done.stdout + done.stderr
    assert threading.active_count() == before
    runner = WorkflowRunner("huge", jobs=100_000)
    runner.add_step("a", _threads)
    result = runner.run()
    assert result.success
    assert result.steps["a"].result <= before + 3  # one worker for one step, not 100,000


def _threads() -> int:
    return threading.active_count()


def test_20000_steps_run_and_are_all_accounted_for(tmp_path: Path) -> None:
    runner = WorkflowRunner("big", jobs=8, state_dir=tmp_path / "state")
    for i in range(20_000):
        runner.add_step(f"s{i:05d}", _nothing, [f"s{i - 1:05d}"] if i % 2 else [])
    result = runner.run()
    assert result.success
    assert result.completed_count == 20_000


def _nothing() -> None:
    return None


def test_a_step_that_closes_its_output_early_is_still_waited_for(tmp_path: Path) -> None:
    runner = WorkflowRunner("closed", jobs=2, fail_fast=False, state_dir=tmp_path / "state")
    done = tmp_path / "done"
    step = runner.add_step("quiet", f"echo before; exec >&- 2>&-; sleep 0.5; touch {done}; exit 3")
    hung = runner.add_step("hung", "exec >&- 2>&-; sleep 30", timeout=0.5, grace=0.2)
    result = runner.run()
    assert done.exists()  # its exit, not its closed output, ended the step
    assert step.exit_code == 3
    assert step.status is StepStatus.FAILED
    assert step.tail == "before\n"
    assert hung.status is StepStatus.FAILED
    assert hung.attempts[-1].timed_out
    assert result.status is RunStatus.FAILED


def test_100_mb_without_a_newline_keeps_memory_bounded(tmp_path: Path) -> None:
    script = (
        "from ci_orchestrator.runner import WorkflowRunner\n"
        f"runner = WorkflowRunner('loud', state_dir={str(tmp_path / 'state')!r})\n"
        "step = runner.add_step('loud', \"head -c 100000000 /dev/zero | tr '\\\\0' x\")\n"
        "result = runner.run()\n"
        # VmHWM, not ru_maxrss: Linux carries a forked child's maxrss (pytest's size) over exec.
        "status = open('/proc/self/status').read()\n"
        "peak = int(status.split('VmHWM:')[1].split()[0]) // 1024\n"
        "print(result.success, len(step.tail), step.tail[-3:], peak)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    success, tail_size, tail_end, peak_mb = done.stdout.split()
    assert success == "True"
    assert int(tail_size) <= 64 * 1024
    assert tail_end == "xxx"
    assert int(peak_mb) < 100  # streamed to the log; only a bounded tail stays in memory
    log = next((tmp_path / "state" / "runs").rglob("loud.log"))
    assert log.stat().st_size == 100_000_000
