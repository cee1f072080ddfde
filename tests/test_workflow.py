"""The async Workflow engine: scheduling, failures as data, retries, timeouts, hooks, observers.

Plain pytest: every test drives its own event loop with `asyncio.run`. Ordering is proven with
events and recorded sequences, never with wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ci_orchestrator import retry
from ci_orchestrator.errors import CycleError, TaskFailedError, WorkflowError
from ci_orchestrator.runner import (
    Attempt,
    RunInfo,
    RunObserver,
    RunStatus,
    StepStatus,
    WorkflowResult,
    WorkflowStep,
)
from ci_orchestrator.workflow import (
    RetryPolicy,
    Task,
    TaskResult,
    TaskStatus,
    Workflow,
    WorkflowEvent,
    chain,
    fan_out_fan_in,
    parallel,
)

FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)
LOGGER = "ci_orchestrator.workflow"


def run(workflow: Workflow) -> dict[str, Any]:
    return asyncio.run(workflow.run())


async def noop() -> None:
    return None


def value(result: Any) -> Callable[[], Awaitable[Any]]:
    async def action() -> Any:
        return result

    return action


async def boom() -> None:
    raise ValueError("boom")


async def hang() -> None:
    await asyncio.sleep(5)


class Recorder:
    """A progress callback that remembers (task, status) in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.details: list[dict[str, Any]] = []

    def __call__(self, task: str, status: str, details: dict[str, Any]) -> None:
        self.events.append((task, status))
        self.details.append(details)

    def statuses(self, task: str) -> list[str]:
        return [status for name, status in self.events if name == task]


# --- scheduling ---


def test_a_slow_task_does_not_hold_back_an_unrelated_chain() -> None:
    # b can only finish once a3 ran: a level-by-level scheduler would wait for b before a2, forever.
    order: list[str] = []

    async def main() -> None:
        released = asyncio.Event()

        async def quick(name: str) -> None:
            order.append(name)

        async def last() -> None:
            order.append("a3")
            released.set()

        async def slow() -> None:
            await released.wait()
            order.append("b")

        workflow = Workflow("w", timeout=2)
        workflow.add_task("b", slow)
        workflow.add_task("a1", quick, args=["a1"])
        workflow.add_task("a2", quick, dependencies=["a1"], args=["a2"])
        workflow.add_task("a3", last, dependencies=["a2"])
        await workflow.run()

    asyncio.run(main())
    assert order == ["a1", "a2", "a3", "b"]


def test_run_returns_values_by_name_and_records_results() -> None:
    workflow = Workflow("w").add_task("a", value(1)).add_task("b", value("two"), dependencies=["a"])
    assert run(workflow) == {"a": 1, "b": "two"}
    assert workflow.task_results["a"].success
    assert workflow.task_results["b"].value == "two"
    assert workflow.task_results["b"].attempts == 1
    assert workflow.tasks["b"].status is TaskStatus.COMPLETED


def test_a_task_starts_only_after_every_dependency_completed() -> None:
    progress = Recorder()
    workflow = Workflow("w", progress_callback=progress)
    workflow.add_task("a", value(1)).add_task("b", value(2)).add_task("c", noop, ["a", "b"])
    run(workflow)
    started = progress.events.index(("c", "running"))
    assert progress.events.index(("a", "completed")) < started
    assert progress.events.index(("b", "completed")) < started


def test_an_empty_workflow_runs() -> None:
    workflow = Workflow("empty")
    assert run(workflow) == {}
    assert workflow.get_summary()["success"] is True


def test_a_second_run_starts_afresh() -> None:
    calls: list[int] = []

    async def counted() -> int:
        calls.append(1)
        return len(calls)

    workflow = Workflow("w").add_task("a", counted)
    assert run(workflow) == {"a": 1}
    assert run(workflow) == {"a": 2}
    assert workflow.task_results["a"].attempts == 1


def test_a_workflow_cannot_run_twice_at_once() -> None:
    async def main() -> None:
        workflow = Workflow("w").add_task("a", noop)
        first = asyncio.ensure_future(workflow.run())
        await asyncio.sleep(0)
        with pytest.raises(WorkflowError, match="already running"):
            await workflow.run()
        await first

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_keep_going_runs_exactly_what_does_not_depend_on_a_failure(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, 8))
    needs = {
        i: data.draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        for i in range(size)
    }
    failing = data.draw(st.sets(st.integers(0, size - 1)))
    progress = Recorder()
    workflow = Workflow("w", fail_fast=False, progress_callback=progress)
    for i in range(size):
        workflow.add_task(f"t{i}", boom if i in failing else value(i), [f"t{n}" for n in needs[i]])
    results = run(workflow)

    completed: set[int] = set()
    for i in range(size):  # names were added in topological order
        if i not in failing and needs[i] <= completed:
            completed.add(i)
    assert set(results) == {f"t{i}" for i in completed}
    for i in range(size):
        if ("t" + str(i), "running") in progress.events:
            started = progress.events.index((f"t{i}", "running"))
            assert all(progress.events.index((f"t{n}", "completed")) < started for n in needs[i])


# --- failures: fail-fast, keep-going, cancel ---


def test_fail_fast_cancels_a_running_task_and_skips_its_dependents() -> None:
    cancelled: list[str] = []

    async def main() -> Workflow:
        hang_started = asyncio.Event()

        async def long() -> None:
            hang_started.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append("long")
                raise

        async def fails_later() -> None:
            await hang_started.wait()
            raise ValueError("boom")

        workflow = Workflow("w")
        workflow.add_task("long", long).add_task("boom", fails_later)
        workflow.add_task("after", noop, dependencies=["long"])
        assert await workflow.run() == {}
        return workflow

    workflow = asyncio.run(main())
    assert cancelled == ["long"]
    long = workflow.task_results["long"]
    assert workflow.tasks["long"].status is TaskStatus.FAILED
    assert long.reason == "cancelled: fail-fast after 'boom' failed"
    assert isinstance(long.error, asyncio.CancelledError)
    assert isinstance(workflow.task_results["boom"].error, ValueError)
    assert workflow.task_results["boom"].reason == "ValueError: boom"
    assert workflow.tasks["after"].status is TaskStatus.SKIPPED
    assert workflow.task_results["after"].reason == "dependency 'long' failed"


def test_keep_going_runs_independent_branches_to_the_end() -> None:
    workflow = Workflow("w", fail_fast=False)
    workflow.add_task("boom", boom)
    workflow.add_task("child", noop, dependencies=["boom"])
    workflow.add_task("grandchild", noop, dependencies=["child"])

    async def slow_first() -> str:
        await asyncio.sleep(0.02)  # still running when boom fails
        return "b1"

    workflow.add_task("b1", slow_first).add_task("b2", value("b2"), dependencies=["b1"])
    assert run(workflow) == {"b1": "b1", "b2": "b2"}
    assert workflow.task_results["child"].reason == "dependency 'boom' failed"
    assert workflow.task_results["grandchild"].reason == "dependency 'child' was skipped"
    assert workflow.tasks["grandchild"].status is TaskStatus.SKIPPED


def test_a_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        run(Workflow("w").add_task("boom", boom))
    assert any("'boom' failed" in r.getMessage() and r.exc_info for r in caplog.records)


def test_cancel_stops_running_tasks_and_skips_the_rest() -> None:
    async def main() -> tuple[Workflow, dict[str, Any]]:
        started = asyncio.Event()

        async def long() -> None:
            started.set()
            await asyncio.sleep(5)

        workflow = Workflow("w").add_task("long", long)
        workflow.add_task("after", noop, dependencies=["long"])

        async def canceller() -> None:
            await started.wait()
            workflow.cancel()

        cancelling = asyncio.ensure_future(canceller())
        results = await workflow.run()
        await cancelling
        return workflow, results

    workflow, results = asyncio.run(main())
    assert results == {}
    assert workflow.task_results["long"].reason == "cancelled: workflow cancelled"
    assert workflow.tasks["after"].status is TaskStatus.SKIPPED
    assert workflow.get_summary()["success"] is False


def test_cancel_from_inside_a_task_cancels_that_task_too() -> None:
    workflow = Workflow("w")

    async def first() -> str:
        workflow.cancel()
        return "done"  # too late: the task is cancelled as it returns, as asyncio does

    workflow.add_task("first", first).add_task("second", noop, dependencies=["first"])
    assert run(workflow) == {}
    assert workflow.task_results["first"].reason == "cancelled: workflow cancelled"
    assert workflow.get_summary()["success"] is False


def test_fail_fast_skips_what_had_not_started() -> None:
    # Both roots end in the same loop iteration; the failure is settled first, so c never starts.
    workflow = Workflow("w").add_task("a", boom).add_task("b", value(1))
    workflow.add_task("c", noop, dependencies=["b"])
    assert run(workflow) == {"b": 1}
    assert workflow.task_results["c"].reason == "not started: fail-fast after 'a' failed"


def test_cancel_without_a_run_does_nothing() -> None:
    workflow = Workflow("w").add_task("a", value(1))
    workflow.cancel()
    assert run(workflow) == {"a": 1}


def test_cancelling_run_itself_cancels_its_tasks() -> None:
    cancelled: list[str] = []

    async def main() -> Workflow:
        started = asyncio.Event()

        async def long() -> None:
            started.set()
            try:
                await asyncio.sleep(5)
            except asyncio.CancelledError:
                cancelled.append("long")
                raise

        workflow = Workflow("w").add_task("long", long)
        running = asyncio.ensure_future(workflow.run())
        await started.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        return workflow

    workflow = asyncio.run(main())
    assert cancelled == ["long"]
    assert workflow.task_results["long"].reason == "cancelled: run cancelled"


# --- retries ---


def test_a_flaky_task_is_retried_until_it_passes() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    progress = Recorder()
    workflow = Workflow("w", progress_callback=progress)
    workflow.add_task("flaky", flaky, retry_policy=FAST_RETRY)
    assert run(workflow) == {"flaky": "up"}
    assert workflow.task_results["flaky"].attempts == 3
    expected = ["running", "retrying", "running", "retrying", "running", "completed"]
    assert progress.statuses("flaky") == expected


def test_a_task_that_keeps_failing_fails_after_max_attempts() -> None:
    calls: list[int] = []

    def always() -> None:
        calls.append(1)
        raise ConnectionError("down")

    workflow = Workflow("w").add_task("always", always, retry_policy=FAST_RETRY)
    run(workflow)
    result = workflow.task_results["always"]
    assert len(calls) == 3
    assert result.attempts == 3
    assert isinstance(result.error, ConnectionError)
    assert workflow.get_summary()["tasks"]["always"]["attempts"] == 3


def test_a_task_without_a_retry_policy_runs_once() -> None:
    workflow = Workflow("w").add_task("boom", boom)
    assert workflow.tasks["boom"].retry_policy is retry.NO_RETRY
    run(workflow)
    assert workflow.task_results["boom"].attempts == 1


def test_only_the_listed_errors_are_retried() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01, retry_on=(OSError,))
    workflow = Workflow("w", fail_fast=False)
    workflow.add_task("value_error", boom, retry_policy=policy)

    async def os_error() -> None:
        raise ConnectionError("down")

    workflow.add_task("os_error", os_error, retry_policy=policy)
    run(workflow)
    assert workflow.task_results["value_error"].attempts == 1
    assert workflow.task_results["os_error"].attempts == 3


def test_retry_policy_is_the_shared_one() -> None:
    assert RetryPolicy is retry.RetryPolicy
    assert RetryPolicy().max_attempts == 3


# --- timeouts ---


def test_a_task_timeout_fails_the_task_with_a_clear_message() -> None:
    workflow = Workflow("w").add_task("slow", hang, timeout=0.05)
    workflow.add_task("after", noop, dependencies=["slow"])
    run(workflow)
    error = workflow.task_results["slow"].error
    assert isinstance(error, TimeoutError)
    assert str(error) == "task 'slow' timed out after 0.05s"
    assert workflow.task_results["after"].reason == "dependency 'slow' failed"


def test_every_attempt_gets_the_timeout() -> None:
    policy = RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.01)
    workflow = Workflow("w").add_task("slow", hang, timeout=0.02, retry_policy=policy)
    run(workflow)
    assert workflow.task_results["slow"].attempts == 2
    assert isinstance(workflow.task_results["slow"].error, TimeoutError)


def test_a_sync_task_times_out_too() -> None:
    release = threading.Event()
    workflow = Workflow("w").add_task("blocked", lambda: release.wait(5), timeout=0.05)
    try:
        run_until = asyncio.run(_run_then(workflow, release.set))
    finally:
        release.set()
    assert run_until == {}
    assert str(workflow.task_results["blocked"].error) == "task 'blocked' timed out after 0.05s"


async def _run_then(workflow: Workflow, after: Callable[[], object]) -> dict[str, Any]:
    results = await workflow.run()
    after()  # lets the worker thread end, so asyncio.run does not wait for it
    return results


def test_a_timeout_error_raised_by_the_action_keeps_its_message() -> None:
    async def own() -> None:
        raise TimeoutError("upstream too slow")

    workflow = Workflow("w").add_task("own", own, timeout=5)
    run(workflow)
    assert str(workflow.task_results["own"].error) == "upstream too slow"


def test_the_workflow_timeout_cancels_what_runs_and_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled: list[str] = []

    async def long() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append("long")
            raise

    workflow = Workflow("w", timeout=0.1).add_task("long", long)
    workflow.add_task("after", noop, dependencies=["long"])
    with (
        caplog.at_level(logging.ERROR, logger=LOGGER),
        pytest.raises(WorkflowError, match=r"^workflow 'w' timed out after 0.1s$"),
    ):
        run(workflow)
    assert cancelled == ["long"]
    assert workflow.task_results["long"].reason == "cancelled: workflow 'w' timed out after 0.1s"
    assert workflow.tasks["after"].status is TaskStatus.SKIPPED
    assert workflow.get_summary()["success"] is False
    assert any("timed out" in r.getMessage() for r in caplog.records)


# --- conditions, transforms, injection, threads ---


def test_a_false_condition_skips_the_task_and_its_dependents() -> None:
    seen: list[dict[str, TaskResult]] = []

    def big_enough(results: dict[str, TaskResult]) -> bool:
        seen.append(results)
        return bool(results["a"].value > 10)

    workflow = Workflow("w").add_task("a", value(1))
    workflow.add_task("gated", noop, dependencies=["a"], condition=big_enough)
    workflow.add_task("after", noop, dependencies=["gated"])
    workflow.add_task("open", value("ok"), dependencies=["a"], condition=lambda r: True)
    assert run(workflow) == {"a": 1, "open": "ok"}
    assert seen[0]["a"] == TaskResult(True, 1, None, seen[0]["a"].execution_time, 1)
    assert workflow.task_results["gated"].reason == "condition not met"
    assert workflow.task_results["after"].reason == "dependency 'gated' was skipped"
    assert workflow.get_summary()["success"] is True


def test_a_raising_condition_skips_the_task_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(results: dict[str, TaskResult]) -> bool:
        return bool(results["missing"])

    workflow = Workflow("w").add_task("gated", noop, condition=broken)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert run(workflow) == {}
    assert workflow.task_results["gated"].reason.startswith("condition raised KeyError")
    assert any("condition of task 'gated'" in r.getMessage() for r in caplog.records)


def test_an_async_condition_is_refused_without_a_warning() -> None:
    async def later(results: dict[str, TaskResult]) -> bool:
        return True

    workflow = Workflow("w").add_task("gated", noop, condition=later)
    run(workflow)
    assert workflow.task_results["gated"].reason == "condition must be a sync function"


def test_transform_result_shapes_the_stored_value() -> None:
    workflow = Workflow("w").add_task("a", value(21), transform_result=lambda v: v * 2)
    workflow.add_task("bad", value(1), transform_result=lambda v: v / 0)
    workflow.fail_fast = False
    assert run(workflow) == {"a": 42}
    assert isinstance(workflow.task_results["bad"].error, ZeroDivisionError)


def test_task_results_are_injected_only_where_they_are_accepted() -> None:
    async def named_async(_task_results: dict[str, TaskResult]) -> list[str]:
        return sorted(_task_results)

    def named_sync(prefix: str, _task_results: dict[str, TaskResult]) -> str:
        return prefix + str(_task_results["first"].value)

    async def var_keyword(**kwargs: Any) -> list[str]:
        return sorted(kwargs)

    def neither(x: int) -> int:  # an injected keyword would be a TypeError
        return x

    workflow = Workflow("w").add_task("first", value(1))
    after = ["first"]
    workflow.add_task("named_async", named_async, after)
    workflow.add_task("named_sync", named_sync, after, args=["n"])
    workflow.add_task("var_keyword", var_keyword, after, kwargs={"own": 1})
    workflow.add_task("neither", neither, after, args=[7])
    workflow.add_task("builtin", max, after, args=[3, 9])  # no readable signature
    results = run(workflow)
    assert results["named_async"] == ["first"]
    assert results["named_sync"] == "n1"
    assert results["var_keyword"] == ["_task_results", "own"]
    assert results["neither"] == 7
    assert results["builtin"] == 9
    assert not workflow.tasks["neither"].accepts_task_results
    assert workflow.tasks["var_keyword"].accepts_task_results


def test_sync_actions_run_in_a_thread_and_async_ones_on_the_loop() -> None:
    def where() -> bool:
        return threading.current_thread() is threading.main_thread()

    async def where_async() -> bool:
        return where()

    class AsyncCallable:
        async def __call__(self) -> bool:
            return where()

    def returns_coroutine() -> Coroutine[Any, Any, bool]:  # sync, but hands back a coroutine
        return where_async()

    workflow = Workflow("w").add_task("sync", where).add_task("async", where_async)
    workflow.add_task("callable", AsyncCallable())
    workflow.add_task("returns_coroutine", returns_coroutine)
    assert run(workflow) == {
        "sync": False,
        "async": True,
        "callable": True,
        "returns_coroutine": True,
    }
    assert workflow.tasks["callable"].is_async
    assert not workflow.tasks["sync"].is_async


# --- progress callback and event bus ---


def test_the_progress_callback_hears_every_moment_in_order() -> None:
    progress = Recorder()
    workflow = Workflow("w", fail_fast=False, progress_callback=progress)
    workflow.add_task("a", value(1)).add_task("b", boom, dependencies=["a"])
    workflow.add_task("c", noop, dependencies=["b"])
    run(workflow)
    assert progress.events == [
        ("w", "workflow_started"),
        ("a", "running"),
        ("a", "completed"),
        ("b", "running"),
        ("b", "failed"),
        ("c", "skipped"),
        ("w", "workflow_completed"),
    ]
    assert progress.details[0] == {"total_tasks": 3}
    assert progress.details[-1]["success"] is False
    assert progress.details[4]["reason"] == "ValueError: boom"


def test_a_raising_progress_callback_never_breaks_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(task: str, status: str, details: dict[str, Any]) -> None:
        raise RuntimeError("callback broke")

    workflow = Workflow("w", progress_callback=broken).add_task("a", value(1))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(workflow) == {"a": 1}
    assert workflow.get_summary()["success"] is True
    assert any("progress callback failed" in r.getMessage() for r in caplog.records)


class Bus:
    def __init__(self, broken: bool = False) -> None:
        self.events: list[WorkflowEvent] = []
        self.broken = broken

    def publish(self, event: WorkflowEvent) -> None:
        self.events.append(event)
        if self.broken:
            raise RuntimeError("bus broke")


def test_the_event_bus_gets_the_same_moments() -> None:
    bus = Bus()
    workflow = Workflow("w", event_bus=bus).add_task("a", value(1))
    run(workflow)
    assert [(e.task, e.status) for e in bus.events] == [
        ("w", "workflow_started"),
        ("a", "running"),
        ("a", "completed"),
        ("w", "workflow_completed"),
    ]
    assert all(e.workflow == "w" and e.timestamp > 0 for e in bus.events)


def test_a_raising_event_bus_never_breaks_the_run(caplog: pytest.LogCaptureFixture) -> None:
    bus = Bus(broken=True)
    workflow = Workflow("w", event_bus=bus).add_task("a", value(1))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(workflow) == {"a": 1}
    assert len(bus.events) == 4
    assert any("event bus failed" in r.getMessage() for r in caplog.records)


def test_an_async_event_bus_is_awaited_and_its_errors_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    statuses: list[str] = []

    class AsyncBus:
        async def publish(self, event: WorkflowEvent) -> None:
            await asyncio.sleep(0)
            statuses.append(event.status)
            if event.status == "completed":
                raise RuntimeError("bus broke")

    workflow = Workflow("w", event_bus=AsyncBus()).add_task("a", value(1))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(workflow) == {"a": 1}
    assert statuses == ["workflow_started", "running", "completed", "workflow_completed"]
    assert any("async event delivery failed" in r.getMessage() for r in caplog.records)


# --- summary and results ---


def test_the_summary_counts_and_describes_every_task() -> None:
    workflow = Workflow("w", fail_fast=False)
    workflow.add_task("ok", value(1)).add_task("boom", boom)
    workflow.add_task("skipped", noop, dependencies=["boom"])
    before = workflow.get_summary()
    assert before["pending_tasks"] == 3
    assert before["success"] is False
    run(workflow)
    summary = workflow.get_summary()
    assert {k: summary[k] for k in ("name", "total_tasks", "success")} == {
        "name": "w",
        "total_tasks": 3,
        "success": False,
    }
    counts = ("completed_tasks", "failed_tasks", "skipped_tasks", "pending_tasks")
    assert [summary[k] for k in counts] == [1, 1, 1, 0]
    assert summary["elapsed"] > 0
    assert summary["total_execution_time"] >= summary["tasks"]["ok"]["execution_time"] > 0
    assert summary["tasks"]["boom"] == {
        "status": "failed",
        "execution_time": summary["tasks"]["boom"]["execution_time"],
        "attempts": 1,
        "error": "boom",
        "reason": "ValueError: boom",
    }
    assert summary["tasks"]["skipped"]["status"] == "skipped"
    assert summary["tasks"]["skipped"]["attempts"] == 0


def test_get_task_result_returns_values_and_raises_for_the_rest() -> None:
    workflow = Workflow("w", fail_fast=False).add_task("ok", value(5)).add_task("boom", boom)
    workflow.add_task("skipped", noop, dependencies=["boom"])
    with pytest.raises(WorkflowError, match="has not finished"):
        workflow.get_task_result("ok")
    run(workflow)
    assert workflow.get_task_result("ok") == 5
    with pytest.raises(TaskFailedError, match="ValueError: boom") as failed:
        workflow.get_task_result("boom")
    assert isinstance(failed.value.__cause__, ValueError)
    with pytest.raises(TaskFailedError, match=r"skipped \(dependency 'boom' failed\)"):
        workflow.get_task_result("skipped")
    with pytest.raises(WorkflowError, match="did you mean 'boom'"):
        workflow.get_task_result("bom")


# --- building and validating ---


def test_add_task_fills_a_task_and_chains() -> None:
    policy = RetryPolicy(max_attempts=2)
    workflow = Workflow("w")
    assert workflow.add_task("a", noop) is workflow
    workflow.add_task(
        "b",
        noop,
        dependencies="a",  # one name, not the letters of one
        timeout=3,
        retry_policy=policy,
        tags=["x", "x"],
        metadata={"owner": "me"},
    )
    task = workflow.tasks["b"]
    assert isinstance(task, Task)
    assert (task.dependencies, task.timeout, task.retry_policy) == (["a"], 3, policy)
    assert (task.tags, task.metadata, task.status) == ({"x"}, {"owner": "me"}, TaskStatus.PENDING)
    assert [s.value for s in TaskStatus] == [
        "pending",
        "running",
        "completed",
        "failed",
        "skipped",
        "retrying",
    ]


def test_bad_tasks_are_refused() -> None:
    workflow = Workflow("w").add_task("a", noop)
    with pytest.raises(WorkflowError, match="duplicate task name 'a'"):
        workflow.add_task("a", noop)
    with pytest.raises(WorkflowError, match="must be callable"):
        workflow.add_task("b", "echo hi")  # type: ignore[arg-type]
    with pytest.raises(WorkflowError, match="timeout must be positive"):
        workflow.add_task("c", noop, timeout=0)


def test_an_unknown_dependency_is_refused_before_anything_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    workflow = Workflow("w").add_task("root", lambda: calls.append("root"))
    workflow.add_task("b", noop, dependencies=["rooot"])
    with pytest.raises(WorkflowError, match="did you mean 'root'"):
        workflow.validate()
    with caplog.at_level(logging.ERROR, logger=LOGGER), pytest.raises(WorkflowError):
        run(workflow)
    assert calls == []
    assert any("is not valid" in r.getMessage() for r in caplog.records)


def test_a_cycle_is_a_value_error_raised_before_any_task_ran() -> None:
    calls: list[str] = []
    workflow = Workflow("w").add_task("root", lambda: calls.append("root"))
    workflow.add_task("a", noop, dependencies=["b"]).add_task("b", noop, dependencies=["a"])
    with pytest.raises(ValueError, match="dependency cycle") as raised:
        run(workflow)
    assert isinstance(raised.value, CycleError)
    assert raised.value.cycle in (["a", "b", "a"], ["b", "a", "b"])
    assert calls == []
    assert workflow.tasks["root"].status is TaskStatus.PENDING


def test_chain_runs_actions_one_after_the_other() -> None:
    order: list[int] = []
    workflow = chain(*(lambda i=i: order.append(i) for i in range(3)))
    assert list(workflow.tasks) == ["step_0", "step_1", "step_2"]
    assert workflow.tasks["step_2"].dependencies == ["step_1"]
    run(workflow)
    assert order == [0, 1, 2]
    assert list(chain(noop, noop, names=["x", "y"]).tasks) == ["x", "y"]


def test_parallel_runs_independent_tasks() -> None:
    workflow = parallel(value(1), value(2))
    assert all(not task.dependencies for task in workflow.tasks.values())
    assert run(workflow) == {"task_0": 1, "task_1": 2}
    assert list(parallel(noop, names=["only"]).tasks) == ["only"]


def test_fan_out_fan_in_waits_for_every_branch() -> None:
    def final(_task_results: dict[str, TaskResult]) -> int:
        return sum(_task_results[f"task_{i}"].value for i in range(3))

    workflow = fan_out_fan_in(value(0), [value(1), value(2), value(3)], final, final_name="sum")
    assert workflow.tasks["task_1"].dependencies == ["initial"]
    assert workflow.tasks["sum"].dependencies == ["task_0", "task_1", "task_2"]
    assert run(workflow)["sum"] == 6
    assert fan_out_fan_in(noop, [], noop).tasks["final"].dependencies == ["initial"]


def test_helpers_refuse_a_wrong_number_of_names() -> None:
    with pytest.raises(WorkflowError, match="1 names given for 2 actions"):
        chain(noop, noop, names=["one"])
    with pytest.raises(WorkflowError):
        parallel(noop, names=["a", "b"])


# --- observers: the same journal as the sync runner ---


class Observer(RunObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.info: RunInfo | None = None
        self.finished: dict[str, StepStatus] = {}
        self.attempts: dict[str, list[Attempt]] = {}
        self.result: WorkflowResult | None = None

    def run_started(self, run: RunInfo) -> None:
        self.info = run
        self.events.append(("run_started", run.pipeline))

    def step_started(self, step: WorkflowStep) -> None:
        self.events.append(("step_started", step.name))

    def attempt_finished(self, step: WorkflowStep, attempt: Attempt) -> None:
        self.attempts.setdefault(step.name, []).append(attempt)

    def step_finished(self, step: WorkflowStep) -> None:
        self.finished[step.name] = step.status
        self.events.append(("step_finished", step.name))

    def run_finished(self, result: WorkflowResult) -> None:
        self.result = result
        self.events.append(("run_finished", result.pipeline))


def test_observers_hear_the_run_like_the_sync_runner() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 2:
            raise ConnectionError("down")
        return "up"

    observer = Observer()
    workflow = Workflow("w", fail_fast=False, observers=[observer])
    workflow.add_task("ok", value(1)).add_task("flaky", flaky, retry_policy=FAST_RETRY)
    workflow.add_task("boom", boom).add_task("skipped", noop, dependencies=["boom"])
    run(workflow)

    info, result = observer.info, observer.result
    assert info is not None
    assert result is not None
    assert (info.pipeline, info.jobs, set(info.steps)) == ("w", 4, set(workflow.tasks))
    assert info.log_dir == Path(".ci-orchestrator/runs") / info.run_id
    assert observer.events[0] == ("run_started", "w")
    assert observer.events[-1] == ("run_finished", "w")
    started = {name for kind, name in observer.events if kind == "step_started"}
    assert started == {"ok", "flaky", "boom"}
    assert observer.finished == {
        "ok": StepStatus.COMPLETED,
        "flaky": StepStatus.COMPLETED,
        "boom": StepStatus.FAILED,
        "skipped": StepStatus.SKIPPED,
    }
    assert [a.ok for a in observer.attempts["flaky"]] == [False, True]
    assert "ConnectionError" in observer.attempts["flaky"][0].error
    assert (result.workflow_id, result.status, result.success) == (
        info.run_id,
        RunStatus.FAILED,
        False,
    )
    steps = result.steps
    assert steps["flaky"].flaky
    assert steps["flaky"].reason == "passed on attempt 2"
    assert steps["ok"].result == 1
    assert steps["skipped"].reason == "dependency 'boom' failed"
    assert steps["boom"].error == "ValueError: boom"
    assert steps["boom"].depends_on == []
    assert steps["skipped"].depends_on == ["boom"]


def test_observers_see_a_passed_run_and_fail_fast_cancellations() -> None:
    observer = Observer()
    run(Workflow("w", observers=[observer]).add_task("a", value(1)))
    assert observer.result is not None
    assert observer.result.success is True

    async def main() -> None:
        started = asyncio.Event()

        async def long() -> None:
            started.set()
            await asyncio.sleep(5)

        async def fails() -> None:
            await started.wait()
            raise ValueError("boom")

        observer2 = Observer()
        workflow = Workflow("w", observers=[observer2]).add_task("long", long)
        workflow.add_task("boom", fails)
        await workflow.run()
        assert observer2.finished == {"long": StepStatus.CANCELLED, "boom": StepStatus.FAILED}
        assert observer2.attempts["long"][0].error == "cancelled"

    asyncio.run(main())


def test_a_cancelled_run_is_interrupted_for_observers() -> None:
    observer = Observer()
    workflow = Workflow("w", observers=[observer])

    async def first() -> None:
        workflow.cancel()

    workflow.add_task("first", first).add_task("second", noop, dependencies=["first"])
    run(workflow)
    assert observer.result is not None
    assert observer.result.status is RunStatus.INTERRUPTED
    assert observer.finished["second"] is StepStatus.SKIPPED


def test_a_raising_observer_never_breaks_the_run(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RunObserver):
        def step_finished(self, step: WorkflowStep) -> None:
            raise RuntimeError("observer broke")

    workflow = Workflow("w", observers=[Broken()]).add_task("a", value(1))
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        assert run(workflow) == {"a": 1}
    assert any(
        "observer" in r.getMessage() and "step_finished" in r.getMessage() for r in caplog.records
    )
