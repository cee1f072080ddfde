"""The synchronous Kahn runner with real shell steps."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from ci_orchestrator.errors import CycleError
from ci_orchestrator.retry import ExitFailure, RetryPolicy
from ci_orchestrator.runner import (
    Attempt,
    RunObserver,
    RunStatus,
    StepStatus,
    WorkflowRunner,
    WorkflowStep,
)
from ci_orchestrator.shell import process_gone

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def wait_for(path: Path, seconds: int = 20) -> str:
    """A shell snippet that waits for a file to exist, failing after `seconds`."""
    tries = seconds * 100
    return f"i=0; while [ ! -e {path} ] && [ $i -lt {tries} ]; do sleep 0.01; i=$((i+1)); done; [ -e {path} ]"


class Recorder(RunObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.attempts: list[Attempt] = []

    def step_started(self, step: WorkflowStep) -> None:
        self.events.append(("started", step.name))

    def attempt_finished(self, step: WorkflowStep, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    def step_finished(self, step: WorkflowStep) -> None:
        self.events.append(("finished", step.name))


def make(tmp_path: Path, **options: Any) -> WorkflowRunner:
    return WorkflowRunner("test", state_dir=tmp_path / "state", **options)


def test_independent_steps_overlap_with_two_jobs(tmp_path: Path) -> None:
    runner = make(tmp_path, jobs=2)
    # Each step passes only if the other has started while it is still running.
    runner.add_step("a", f"touch {tmp_path}/a.on; {wait_for(tmp_path / 'b.on')}")
    runner.add_step("b", f"touch {tmp_path}/b.on; {wait_for(tmp_path / 'a.on')}")
    result = runner.run()
    assert result.success, result.to_dict()


def test_steps_do_not_overlap_with_one_job(tmp_path: Path) -> None:
    runner = make(tmp_path, jobs=1)
    for name in ("a", "b"):
        stamp = tmp_path / name
        runner.add_step(name, f"date +%s%N > {stamp}.start; sleep 0.1; date +%s%N > {stamp}.end")
    assert runner.run().success
    a = [int((tmp_path / f"a.{x}").read_text()) for x in ("start", "end")]
    b = [int((tmp_path / f"b.{x}").read_text()) for x in ("start", "end")]
    assert a[1] <= b[0] or b[1] <= a[0]


def test_a_step_starts_when_its_own_needs_are_done_not_its_level(tmp_path: Path) -> None:
    runner = make(tmp_path, jobs=2)
    # `slow` is in the first level; `c` is in the second. `slow` waits for `c` to have started,
    # which only happens if `c` does not wait for the whole first level.
    runner.add_step("slow", wait_for(tmp_path / "c.on"))
    runner.add_step("b", "true")
    runner.add_step("c", f"touch {tmp_path}/c.on", ["b"])
    result = runner.run()
    assert result.success, result.to_dict()


def test_longest_remaining_path_starts_first(tmp_path: Path) -> None:
    recorder = Recorder()
    runner = make(tmp_path, jobs=1, observers=[recorder])
    runner.add_step("short", "true")
    runner.add_step("long1", "true")
    runner.add_step("long2", "true", ["long1"])
    runner.add_step("long3", "true", ["long2"])
    runner.run()
    started = [name for kind, name in recorder.events if kind == "started"]
    # long3 and short tie on remaining path; the one declared first wins.
    assert started == ["long1", "long2", "short", "long3"]


def test_historical_weights_change_the_priority(tmp_path: Path) -> None:
    recorder = Recorder()
    runner = make(tmp_path, jobs=1, observers=[recorder], weights={"a": 1.0, "b": 50.0})
    runner.add_step("a", "true")
    runner.add_step("b", "true")
    runner.run()
    assert [n for kind, n in recorder.events if kind == "started"] == ["b", "a"]


def test_flaky_step_recovers_and_every_attempt_is_recorded(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    recorder = Recorder()
    runner = make(tmp_path, observers=[recorder])
    command = (
        f"n=$(( $(cat {counter} 2>/dev/null || echo 0) + 1 )); echo $n > {counter}; [ $n -ge 3 ]"
    )
    step = runner.add_step("flaky", command, retry=FAST_RETRY)
    result = runner.run()
    assert result.success
    assert step.status is StepStatus.COMPLETED
    assert step.flaky
    assert [a.exit_code for a in step.attempts] == [1, 1, 0]
    assert [a.number for a in step.attempts] == [1, 2, 3]
    assert recorder.attempts == step.attempts
    assert result.flaky_steps == ["flaky"]


def test_retry_only_listed_exit_codes(tmp_path: Path) -> None:
    runner = make(tmp_path, fail_fast=False)
    policy = RetryPolicy(3, 0.01, 0.01, retry_on=(ExitFailure,), exit_codes=frozenset({75}))
    transient = runner.add_step("transient", "exit 75", retry=policy)
    fatal = runner.add_step("fatal", "exit 1", retry=policy)
    runner.run()
    assert len(transient.attempts) == 3
    assert len(fatal.attempts) == 1


def test_timeout_fails_the_step_with_a_reason(tmp_path: Path) -> None:
    runner = make(tmp_path)
    step = runner.add_step("hang", "sleep 30", timeout=0.3, grace=0.2)
    result = runner.run()
    assert result.status is RunStatus.FAILED
    assert step.status is StepStatus.FAILED
    assert step.reason.startswith("timed out after 300ms")
    assert step.attempts[-1].timed_out


def test_fail_fast_stops_a_long_sibling_and_starts_nothing_new(tmp_path: Path) -> None:
    pidfile = tmp_path / "long.pid"
    runner = make(tmp_path, jobs=2)
    runner.add_step("long", f"echo $$ > {pidfile}; sleep 60")
    runner.add_step("fails", f"{wait_for(pidfile)}; exit 2")
    runner.add_step("after", "true", ["fails"])
    runner.add_step("later", "true", ["long"])
    result = runner.run()
    assert result.steps["fails"].status is StepStatus.FAILED
    assert result.steps["long"].status is StepStatus.CANCELLED
    assert "fail-fast after 'fails' failed" in result.steps["long"].reason
    assert result.steps["after"].status is StepStatus.SKIPPED
    assert result.steps["later"].status is StepStatus.SKIPPED
    assert process_gone(int(pidfile.read_text()))


def test_keep_going_runs_the_independent_branch_to_the_end(tmp_path: Path) -> None:
    runner = make(tmp_path, jobs=2, fail_fast=False)
    runner.add_step("fails", "exit 2")
    runner.add_step("other", "sleep 0.2")
    runner.add_step("after-fail", "true", ["fails"])
    runner.add_step("after-other", "true", ["other"])
    result = runner.run()
    assert result.status is RunStatus.FAILED
    assert result.steps["other"].status is StepStatus.COMPLETED
    assert result.steps["after-other"].status is StepStatus.COMPLETED
    skipped = result.steps["after-fail"]
    assert skipped.status is StepStatus.SKIPPED
    assert skipped.reason == "dependency 'fails' failed"
    assert (result.completed_count, result.failed_count) == (2, 1)


def test_cycle_raises_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    runner = make(tmp_path)
    runner.add_step("free", f"touch {marker}")
    runner.add_step("build", "true", ["test"])
    runner.add_step("test", "true", ["build"])
    with pytest.raises(ValueError, match=r"build -> test -> build|test -> build -> test"):
        runner.run()
    with pytest.raises(CycleError):
        runner.run()
    assert not marker.exists()


def test_skips_always_carry_a_reason(tmp_path: Path) -> None:
    runner = make(tmp_path, fail_fast=False)
    runner.add_step("unset", None)
    runner.add_step("after-unset", "true", ["unset"])
    runner.add_step("guarded", "true", condition="[ 1 = 2 ]")
    runner.add_step("after-guarded", "true", ["guarded"])
    runner.add_step("by-user", "true", skip_reason="skipped by --skip")
    runner.add_step("python-guard", lambda: 1, condition=lambda results: "unset" in results)
    result = runner.run()
    reasons = {n: (s.status, s.reason) for n, s in result.steps.items()}
    assert reasons["unset"] == (StepStatus.SKIPPED, "not configured")
    # A step skipped on purpose does not hold back what needs it.
    assert reasons["after-unset"][0] is StepStatus.COMPLETED
    assert reasons["guarded"] == (StepStatus.SKIPPED, "condition not met: [ 1 = 2 ]")
    assert reasons["after-guarded"] == (StepStatus.SKIPPED, "dependency 'guarded' was skipped")
    assert reasons["by-user"] == (StepStatus.SKIPPED, "skipped by --skip")
    assert reasons["python-guard"] == (StepStatus.SKIPPED, "condition not met")
    assert result.success


def test_when_failure_and_always(tmp_path: Path) -> None:
    runner = make(tmp_path)
    runner.add_step("build", "exit 1")
    runner.add_step("deploy", "true", ["build"])
    runner.add_step("notify", "true", ["deploy"], when="failure")
    runner.add_step("cleanup", "true", ["deploy"], when="always")
    runner.add_step("on-success-only", "true", ["deploy"])
    ok = make(tmp_path)
    ok.add_step("build", "true")
    ok.add_step("notify", "true", ["build"], when="failure")
    failed, passed = runner.run(), ok.run()
    assert failed.steps["notify"].status is StepStatus.COMPLETED
    assert failed.steps["cleanup"].status is StepStatus.COMPLETED
    assert failed.steps["on-success-only"].status is StepStatus.SKIPPED
    assert passed.steps["notify"].status is StepStatus.SKIPPED
    assert "when: failure" in passed.steps["notify"].reason


def test_results_pass_between_shell_and_python_both_ways(tmp_path: Path) -> None:
    runner = make(tmp_path)
    runner.add_step(
        "produce",
        'echo "rows=42" >> "$CI_ORCHESTRATOR_OUTPUT"; echo "x=a=b" >> "$CI_ORCHESTRATOR_OUTPUT"',
    )

    def double(context: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, int]:
        return {"doubled": int(results["produce"]["rows"]) * context["factor"]}

    runner.add_step("double", double, ["produce"])
    runner.add_step(
        "consume",
        f'echo "$CIO_DOUBLE_DOUBLED $CIO_PRODUCE_X $CI_ORCHESTRATOR_STEP" > {tmp_path}/seen',
        ["double"],
    )
    result = runner.run({"factor": 2})
    assert result.success, result.to_dict()
    assert result.steps["produce"].result == {"rows": "42", "x": "a=b"}
    assert result.steps["double"].result == {"doubled": 84}
    assert (tmp_path / "seen").read_text() == "84 a=b consume\n"


def test_python_actions_take_zero_one_or_two_arguments(tmp_path: Path) -> None:
    runner = make(tmp_path)
    runner.add_step("none", lambda: "n")
    runner.add_step("ctx", lambda context: context["k"])
    runner.add_step("both", lambda context, results: results["none"] + context["k"], ["none"])
    result = runner.run({"k": "v"})
    assert [result.steps[n].result for n in ("none", "ctx", "both")] == ["n", "v", "nv"]


def test_python_action_exceptions_fail_the_step_and_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> None:
        raise RuntimeError("disk on fire")

    runner = make(tmp_path)
    step = runner.add_step("boom", boom)
    result = runner.run()
    assert step.status is StepStatus.FAILED
    assert step.reason == "RuntimeError: disk on fire"
    assert not result.success
    assert "disk on fire" in caplog.text


def test_an_observer_that_raises_does_not_break_the_run(tmp_path: Path) -> None:
    class Broken(RunObserver):
        def step_finished(self, step: WorkflowStep) -> None:
            raise RuntimeError("observer bug")

    runner = make(tmp_path, observers=[Broken()])
    runner.add_step("a", "true")
    assert runner.run().success


def test_interrupt_stops_every_step_and_marks_the_run(tmp_path: Path) -> None:
    pids = [tmp_path / f"{n}.pid" for n in ("a", "b")]
    runner = make(tmp_path, jobs=2)
    runner.add_step("a", f"echo $$ > {pids[0]}; sleep 60")
    runner.add_step("b", f"echo $$ > {pids[1]}; sleep 60")
    runner.add_step("c", "true", ["a"])

    def interrupt_when_started() -> None:
        for pid in pids:
            while not pid.exists() or not pid.read_text().strip():
                threading.Event().wait(0.01)
        runner.interrupt()

    threading.Thread(target=interrupt_when_started, daemon=True).start()
    result = runner.run()
    assert result.status is RunStatus.INTERRUPTED
    assert {result.steps[n].status for n in "ab"} == {StepStatus.CANCELLED}
    assert result.steps["c"].reason == "run interrupted"
    assert all(process_gone(int(p.read_text())) for p in pids)


def test_logs_are_written_per_step(tmp_path: Path) -> None:
    runner = make(tmp_path)
    step = runner.add_step("say", "echo hello")
    result = runner.run()
    assert step.log_path is not None
    assert Path(step.log_path) == tmp_path / "state" / "runs" / result.workflow_id / "say.log"
    assert Path(step.log_path).read_text() == "hello\n"
    assert step.tail == "hello\n"


def test_api_names_and_to_dict(tmp_path: Path) -> None:
    runner = make(tmp_path)
    runner.add_step("a", "true")
    runner.add_step("b", lambda: 3, ["a"], timeout=5)
    assert runner.step_count == 2
    assert runner.step_names() == ["a", "b"]
    result = runner.run()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["success"] is True
    assert data["completed_count"] == 2
    assert data["steps"]["b"]["result"] == 3
    assert data["steps"]["a"]["depends_on"] == []
    assert result.total_duration_ms > 0
