"""The async Workflow engine: a DAG of Python callables, sync or async, on one event loop.

A task starts the moment its own dependencies finish. Each running task is an asyncio task whose
done-callback puts it on a queue; the scheduler takes finished tasks off that queue one at a time
and settles each in O(its dependents) through `graph.ReadySet`, so the bookkeeping never rescans
the workflow and 10,000 tasks schedule in well under a second, wide or deep.

Failures are data (`TaskResult`), not exceptions: `run()` raises only for an invalid graph
(`WorkflowError`, `CycleError`) and for the workflow timeout. Stopping early (fail-fast after the
first failure, `cancel()`, the workflow timeout) cancels the running asyncio tasks; they end FAILED
with a reason starting "cancelled: " and an `asyncio.CancelledError` as their error, and every task
that had not started ends SKIPPED. A sync action runs in a worker thread, which Python cannot
interrupt: its task ends at once, the thread runs on to its end.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from ci_orchestrator import graph
from ci_orchestrator.errors import TaskFailedError, WorkflowError
from ci_orchestrator.retry import NO_RETRY, RetryPolicy
from ci_orchestrator.runner import (
    Attempt,
    RunInfo,
    RunObserver,
    RunStatus,
    StepStatus,
    WorkflowResult,
    WorkflowStep,
)
from ci_orchestrator.state import STATE_DIR, new_run_id

if TYPE_CHECKING:  # tenacity is imported lazily by retry.py: only retried tasks pay for it
    from tenacity import RetryCallState

__all__ = [
    "RetryPolicy",
    "Task",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowEvent",
    "chain",
    "fan_out_fan_in",
    "parallel",
]

log = logging.getLogger(__name__)

RESULTS_PARAMETER = "_task_results"


class TaskStatus(str, Enum):
    """Where a task is in its life; `retrying` while it waits between attempts."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    RETRYING = "retrying"


@dataclass(frozen=True, slots=True)
class TaskResult:
    """How a task ended: its (transformed) value, or the error or skip reason, and what it cost."""

    success: bool
    value: Any = None
    error: BaseException | None = None
    execution_time: float = 0.0
    attempts: int = 0
    reason: str = ""


Condition = Callable[[dict[str, TaskResult]], object]


@dataclass
class Task:
    """One callable in a workflow and when to run it.

    `is_async` and `accepts_task_results` are read from the action once, when the task is created,
    so a run never inspects signatures.
    """

    name: str
    action: Callable[..., Any]
    dependencies: list[str] = field(default_factory=list)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retry_policy: RetryPolicy = NO_RETRY
    condition: Condition | None = None
    transform_result: Callable[[Any], Any] | None = None
    tags: set[str] = field(default_factory=set)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: TaskStatus = TaskStatus.PENDING
    is_async: bool = field(init=False, repr=False)
    accepts_task_results: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.is_async = _is_async(self.action)
        self.accepts_task_results = _accepts_task_results(self.action)


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """What an event bus receives: the same moments as the progress callback."""

    workflow: str
    task: str  # the workflow's name for workflow_started / workflow_completed
    status: str
    details: Mapping[str, Any]
    timestamp: float


class EventBus(Protocol):
    """Anything with `publish(event)`; publish may return an awaitable, which is awaited."""

    def publish(self, event: WorkflowEvent) -> object: ...


ProgressCallback = Callable[[str, str, dict[str, Any]], object]


class Workflow:
    """A DAG of tasks run concurrently on the event loop; see the module docstring.

    `progress_callback(task_name, status, details)` and `event_bus.publish(WorkflowEvent)` hear
    workflow_started, running, retrying, completed, failed, skipped and workflow_completed; their
    exceptions are logged and never break the run. `observers` (`runner.RunObserver`) hear the run
    exactly as they hear the sync runner, so the journal records async workflows too.
    """

    def __init__(
        self,
        name: str,
        timeout: float | None = None,
        fail_fast: bool = True,
        progress_callback: ProgressCallback | None = None,
        event_bus: EventBus | None = None,
        *,
        observers: Iterable[RunObserver] = (),
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise WorkflowError(f"workflow {name!r}: timeout must be positive, got {timeout}")
        self.name = name
        self.timeout = timeout
        self.fail_fast = fail_fast
        self.progress_callback = progress_callback
        self.event_bus = event_bus
        self.observers = list(observers)
        self.tasks: dict[str, Task] = {}
        self.task_results: dict[str, TaskResult] = {}
        self._run: _Run | None = None
        self._outcome: RunStatus | None = None
        self._elapsed = 0.0

    def add_task(
        self,
        name: str,
        action: Callable[..., Any],
        dependencies: Sequence[str] | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
        condition: Condition | None = None,
        transform_result: Callable[[Any], Any] | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Add a task and return the workflow, for chaining.

        Without `retry_policy` the task runs once. `timeout` applies to each attempt. A task whose
        `condition(results)` is false (or raises) is skipped. `_task_results` (name -> TaskResult
        so far, a snapshot taken as the task starts) is passed to actions that accept it.
        """
        if name in self.tasks:
            raise WorkflowError(f"workflow {self.name!r}: duplicate task name {name!r}")
        if not callable(action):
            raise WorkflowError(f"task {name!r}: action must be callable, got {action!r}")
        if timeout is not None and timeout <= 0:
            raise WorkflowError(f"task {name!r}: timeout must be positive, got {timeout}")
        # A lone string is one name, not a sequence of one-letter names.
        needs = [dependencies] if isinstance(dependencies, str) else list(dependencies or ())
        self.tasks[name] = Task(
            name,
            action,
            needs,
            tuple(args or ()),
            dict(kwargs or {}),
            timeout,
            retry_policy or NO_RETRY,
            condition,
            transform_result,
            set(tags or ()),
            dict(metadata or {}),
        )
        return self

    def validate(self) -> None:
        """Check the graph; the error is logged before it propagates.

        `WorkflowError` for a self- or unknown dependency, `CycleError` (with its path) for a cycle.
        """
        try:
            graph.validate(self._graph())
        except WorkflowError as exc:
            log.error("workflow %r is not valid: %s", self.name, exc)
            raise

    async def run(self) -> dict[str, Any]:
        """Run every task; return the values of the tasks that completed, by name.

        Raises `CycleError`/`WorkflowError` before anything runs when the graph is invalid, and
        `WorkflowError` when the workflow timeout expires (after cancelling what runs). Failed and
        skipped tasks are not in the returned dict: see `task_results` and `get_summary()`.
        """
        if self._run is not None:
            raise WorkflowError(f"workflow {self.name!r} is already running")
        self.validate()
        self._reset()
        run = self._run = _Run(self)
        try:
            await run.execute()
        finally:
            self._run = None
            self._elapsed = time.perf_counter() - run.clock
            self._outcome = run.outcome()
        if run.timed_out:
            message = f"workflow {self.name!r} timed out after {self.timeout:g}s"
            log.error(message)
            raise WorkflowError(message)
        results = self.task_results
        return {name: results[name].value for name in self.tasks if results[name].success}

    def cancel(self) -> None:
        """Stop the current run: running tasks are cancelled, the rest skipped; `run()` returns.

        Call it on the event loop's thread (from another thread: `loop.call_soon_threadsafe`).
        Without a run in progress it does nothing.
        """
        if self._run is not None:
            self._run.stop("workflow cancelled", interrupted=True)

    def get_task_result(self, name: str) -> Any:
        """The value of a completed task; `TaskFailedError` if it failed or was skipped."""
        if name not in self.tasks:
            hint = graph.closest(name, self.tasks)
            raise WorkflowError(f"workflow {self.name!r} has no task {name!r}{hint}")
        result = self.task_results.get(name)
        if result is None:
            raise WorkflowError(f"task {name!r} has not finished")
        if result.success:
            return result.value
        reason = result.reason
        if self.tasks[name].status is TaskStatus.SKIPPED:
            reason = f"skipped ({reason})"
        raise TaskFailedError(name, reason) from result.error

    def get_summary(self) -> dict[str, Any]:
        """Counts, success, times and per-task status of the last (or current) run.

        `pending_tasks` counts every task that has not finished (pending, running or retrying);
        `success` is true only once a run ended with no failure, cancellation or timeout.
        """
        counts = dict.fromkeys(TaskStatus, 0)
        for task in self.tasks.values():
            counts[task.status] += 1
        finished = counts[TaskStatus.COMPLETED] + counts[TaskStatus.FAILED]
        finished += counts[TaskStatus.SKIPPED]
        results = self.task_results.values()
        return {
            "name": self.name,
            "total_tasks": len(self.tasks),
            "completed_tasks": counts[TaskStatus.COMPLETED],
            "failed_tasks": counts[TaskStatus.FAILED],
            "skipped_tasks": counts[TaskStatus.SKIPPED],
            "pending_tasks": len(self.tasks) - finished,
            "success": self._run is None and self._outcome is RunStatus.PASSED,
            "total_execution_time": sum(r.execution_time for r in results),
            "elapsed": self._current_elapsed(),
            "tasks": {name: self._task_summary(task) for name, task in self.tasks.items()},
        }

    def _task_summary(self, task: Task) -> dict[str, Any]:
        result = self.task_results.get(task.name)
        return {
            "status": task.status.value,
            "execution_time": result.execution_time if result else 0.0,
            "attempts": result.attempts if result else 0,
            "error": str(result.error) if result and result.error else None,
            "reason": result.reason if result else "",
        }

    def _current_elapsed(self) -> float:
        if self._run is not None:
            return time.perf_counter() - self._run.clock
        return self._elapsed

    def _graph(self) -> dict[str, list[str]]:
        return {name: task.dependencies for name, task in self.tasks.items()}

    def _reset(self) -> None:
        self.task_results.clear()
        for task in self.tasks.values():
            task.status = TaskStatus.PENDING
        self._outcome = None


class _Run:
    """One execution of a workflow: the ready set, the running tasks, and how to stop."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.tasks = workflow.tasks
        self.results = workflow.task_results
        self.ready = graph.ReadySet(workflow._graph())
        self.running: dict[asyncio.Task[TaskResult], _Execution] = {}
        self.finished: asyncio.Queue[asyncio.Task[TaskResult]] = asyncio.Queue()
        self.stop_reason: str | None = None
        self.interrupted = False
        self.timed_out = False
        self.failed = False
        self.clock = time.perf_counter()
        hooked = workflow.progress_callback is not None or workflow.event_bus is not None
        self.notifier = _Notifier(workflow) if hooked else None
        self.bridge = _ObserverBridge(workflow) if workflow.observers else None

    async def execute(self) -> None:
        """Run to the end; on outside cancellation, cancel and settle every task, then re-raise."""
        self.announce_start()
        timer = self.start_timer()
        try:
            await self.schedule()
        except asyncio.CancelledError:
            self.stop("run cancelled", interrupted=True)
            await self.schedule()  # the cancelled tasks settle and the rest are skipped
            self.announce_end()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        self.announce_end()
        if self.notifier is not None:
            await self.notifier.flush()

    async def schedule(self) -> None:
        self.start_ready()
        while self.running:
            self.settle(await self.finished.get())
            self.start_ready()

    def start_timer(self) -> asyncio.TimerHandle | None:
        if self.workflow.timeout is None:
            return None
        return asyncio.get_running_loop().call_later(self.workflow.timeout, self.time_out)

    def time_out(self) -> None:
        if self.stop_reason is not None:  # already stopping (fail-fast, cancel): not a timeout
            return
        self.timed_out = True
        self.stop(f"workflow {self.workflow.name!r} timed out after {self.workflow.timeout:g}s")

    def stop(self, reason: str, *, interrupted: bool = False) -> None:
        """Cancel what runs and start nothing new; the first reason wins."""
        if self.stop_reason is not None:
            return
        log.warning("workflow %r stops: %s", self.workflow.name, reason)
        self.stop_reason = reason
        self.interrupted = interrupted
        for running in self.running:
            running.cancel()

    def start_ready(self) -> None:
        """Start every ready task, or settle it as skipped (which may make more tasks ready)."""
        ready = self.ready
        while ready:
            task = self.tasks[ready.pop()]
            reason = self.skip_reason(task)
            if reason is None:
                self.start(task)
            else:
                self.skip(task, reason)
                ready.done(task.name)

    def skip_reason(self, task: Task) -> str | None:
        for need in task.dependencies:
            if not self.results[need].success:
                ended = "was skipped" if self.tasks[need].status is TaskStatus.SKIPPED else "failed"
                return f"dependency {need!r} {ended}"
        if self.stop_reason is not None:
            return f"not started: {self.stop_reason}"
        if task.condition is not None:
            return self.condition_failed(task)
        return None

    def condition_failed(self, task: Task) -> str | None:
        assert task.condition is not None
        try:
            outcome = task.condition(dict(self.results))
        except Exception as exc:
            log.warning("condition of task %r raised %r; the task is skipped", task.name, exc)
            return f"condition raised {type(exc).__name__}: {exc}"
        if inspect.isawaitable(outcome):  # an async condition would be truthy and never awaited
            _discard(outcome)
            log.error("condition of task %r is async; conditions must be sync", task.name)
            return "condition must be a sync function"
        return None if outcome else "condition not met"

    def start(self, task: Task) -> None:
        task.status = TaskStatus.RUNNING
        execution = _Execution(self, task)
        running = asyncio.get_running_loop().create_task(execution.execute())
        running.add_done_callback(self.finished.put_nowait)
        self.running[running] = execution
        if self.bridge is not None:
            self.bridge.step_started(task.name)
        if self.notifier is not None:
            self.notifier.emit(task.name, "running", {"attempt": 1})

    def settle(self, running: asyncio.Task[TaskResult]) -> None:
        """A task's asyncio task is done: record how it ended and release its dependents."""
        execution = self.running.pop(running)
        cancelled = running.cancelled()
        result = execution.cancelled(self.stop_reason) if cancelled else running.result()
        self.finish(execution.task, result, cancelled=cancelled)
        if not result.success and self.workflow.fail_fast:
            self.stop(f"fail-fast after {execution.task.name!r} failed")
        self.ready.done(execution.task.name)

    def finish(self, task: Task, result: TaskResult, *, cancelled: bool) -> None:
        self.results[task.name] = result
        if result.success:
            task.status = TaskStatus.COMPLETED
        else:
            task.status = TaskStatus.FAILED
            self.failed = True
            if not cancelled:
                log.error("task %r failed: %s", task.name, result.reason, exc_info=result.error)
        if self.bridge is not None:
            self.bridge.step_finished(task, result, cancelled=cancelled)
        if self.notifier is not None:
            self.notifier.emit(task.name, task.status.value, _details(result))

    def skip(self, task: Task, reason: str) -> None:
        task.status = TaskStatus.SKIPPED
        result = self.results[task.name] = TaskResult(False, reason=reason)
        if self.bridge is not None:
            self.bridge.step_finished(task, result, cancelled=False)
        if self.notifier is not None:
            self.notifier.emit(task.name, "skipped", {"reason": reason})

    def outcome(self) -> RunStatus:
        if self.interrupted:
            return RunStatus.INTERRUPTED
        if self.failed or self.timed_out:
            return RunStatus.FAILED
        return RunStatus.PASSED

    def announce_start(self) -> None:
        if self.bridge is not None:
            self.bridge.run_started()
        if self.notifier is not None:
            details = {"total_tasks": len(self.tasks)}
            self.notifier.emit(self.workflow.name, "workflow_started", details)

    def announce_end(self) -> None:
        outcome = self.outcome()
        if self.bridge is not None:
            self.bridge.run_finished(outcome)
        if self.notifier is not None:
            details = {
                "success": outcome is RunStatus.PASSED,
                "status": outcome.value,
                "elapsed": time.perf_counter() - self.clock,
            }
            self.notifier.emit(self.workflow.name, "workflow_completed", details)


class _Execution:
    """One task's attempts, inside its asyncio task."""

    __slots__ = ("attempts", "run", "started", "task")

    def __init__(self, run: _Run, task: Task) -> None:
        self.run = run
        self.task = task
        self.attempts = 0
        self.started: float | None = None  # None until the event loop first runs the task

    async def execute(self) -> TaskResult:
        """The task's result; only cancellation escapes, as `asyncio.CancelledError`."""
        task = self.task
        self.started = time.perf_counter()
        try:
            if task.retry_policy.max_attempts == 1:
                value = await self.attempt()
            else:
                value = await self.retried()
            if task.transform_result is not None:
                value = task.transform_result(value)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            return TaskResult(False, None, exc, self.elapsed(), self.attempts, reason)
        return TaskResult(True, value, None, self.elapsed(), self.attempts)

    def cancelled(self, stop_reason: str | None) -> TaskResult:
        reason = f"cancelled: {stop_reason}" if stop_reason else "cancelled"
        error = asyncio.CancelledError(reason)
        return TaskResult(False, None, error, self.elapsed(), self.attempts, reason)

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started

    async def retried(self) -> Any:
        value: Any = None
        async for attempt in self.task.retry_policy.async_retrying(self.before_sleep):
            with attempt:
                value = await self.attempt()
        return value

    def before_sleep(self, state: RetryCallState) -> None:
        task = self.task
        task.status = TaskStatus.RETRYING
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        log.warning(
            "task %r attempt %d failed (%r); retrying in %.3gs",
            task.name,
            state.attempt_number,
            error,
            delay,
        )
        if self.run.notifier is not None:
            details = {"attempt": state.attempt_number, "delay": delay, "error": repr(error)}
            self.run.notifier.emit(task.name, "retrying", details)

    async def attempt(self) -> Any:
        self.attempts += 1
        if self.attempts > 1:
            self.task.status = TaskStatus.RUNNING
            if self.run.notifier is not None:
                self.run.notifier.emit(self.task.name, "running", {"attempt": self.attempts})
        bridge = self.run.bridge
        if bridge is None:
            return await self.call()
        started = time.time()
        try:
            value = await self.call()
        except BaseException as exc:  # cancellation too: the journal records the cut attempt
            bridge.attempt_finished(self.task.name, self.attempts, started, exc)
            raise
        bridge.attempt_finished(self.task.name, self.attempts, started, None)
        return value

    async def call(self) -> Any:
        task = self.task
        kwargs = task.kwargs
        if task.accepts_task_results:
            # A snapshot: a sync action reads it on its own thread while the loop adds results.
            kwargs = {**kwargs, RESULTS_PARAMETER: dict(self.run.results)}
        if task.timeout is None:
            return await _invoke(task, kwargs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + task.timeout - 0.001
        try:
            return await asyncio.wait_for(_invoke(task, kwargs), task.timeout)
        except asyncio.TimeoutError:
            if loop.time() < deadline:  # the action raised TimeoutError itself, in time
                raise
            raise TimeoutError(f"task {task.name!r} timed out after {task.timeout:g}s") from None


async def _invoke(task: Task, kwargs: dict[str, Any]) -> Any:
    if task.is_async:
        return await task.action(*task.args, **kwargs)
    value = await asyncio.to_thread(task.action, *task.args, **kwargs)
    if inspect.isawaitable(value):  # e.g. a lambda that returns a coroutine
        value = await value
    return value


class _Notifier:
    """Delivers events to the progress callback and the event bus; their errors are logged only."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow.name
        self.callback = workflow.progress_callback
        self.bus = workflow.event_bus
        self.background: set[asyncio.Future[Any]] = set()

    def emit(self, task: str, status: str, details: dict[str, Any]) -> None:
        if self.callback is not None:
            self.deliver("progress callback", status, self.callback, task, status, details)
        if self.bus is not None:
            event = WorkflowEvent(self.workflow, task, status, details, time.time())
            self.deliver("event bus", status, self.bus.publish, event)

    def deliver(self, what: str, status: str, fn: Callable[..., object], *args: Any) -> None:
        try:
            outcome = fn(*args)
        except Exception:
            log.exception("%s failed on %r; the run goes on", what, status)
            return
        if inspect.isawaitable(outcome):  # an async callback or bus: await it in the background
            future = asyncio.ensure_future(outcome)
            self.background.add(future)
            future.add_done_callback(self.delivered)

    def delivered(self, future: asyncio.Future[Any]) -> None:
        self.background.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("async event delivery failed; the run goes on", exc_info=future.exception())

    async def flush(self) -> None:
        """Wait for async deliveries, so the workflow_completed event is not lost."""
        if self.background:
            await asyncio.wait(self.background)


class _ObserverBridge:
    """Reports a run to `RunObserver`s exactly as the sync runner does, one WorkflowStep a task."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.run_id = new_run_id()
        self.started_at = time.time()
        self.clock = time.perf_counter()
        self.steps = {
            name: WorkflowStep(
                name, task.action, list(task.dependencies), task.timeout, retry=task.retry_policy
            )
            for name, task in workflow.tasks.items()
        }

    def notify(self, event: str, *args: Any) -> None:
        for observer in self.workflow.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                log.exception("observer %r failed on %s; the run goes on", observer, event)

    def run_started(self) -> None:
        log_dir = STATE_DIR / "runs" / self.run_id
        info = RunInfo(
            self.run_id, self.workflow.name, self.started_at, self.steps, log_dir, len(self.steps)
        )
        self.notify("run_started", info)

    def step_started(self, name: str) -> None:
        step = self.steps[name]
        step.status = StepStatus.RUNNING
        step.started_at = time.time()
        self.notify("step_started", step)

    def attempt_finished(
        self, name: str, number: int, started: float, error: BaseException | None
    ) -> None:
        step = self.steps[name]
        described = "" if error is None else repr(error)
        if isinstance(error, asyncio.CancelledError):
            described = "cancelled"
        duration_ms = (time.time() - started) * 1000
        timed_out = isinstance(error, TimeoutError)
        attempt = Attempt(number, None, duration_ms, timed_out, started, described)
        step.attempts.append(attempt)
        self.notify("attempt_finished", step, attempt)

    def step_finished(self, task: Task, result: TaskResult, *, cancelled: bool) -> None:
        step = self.steps[task.name]
        step.status = StepStatus.CANCELLED if cancelled else _STEP_STATUS[task.status]
        step.reason = result.reason
        step.error = result.reason if step.status in _BROKEN else None
        step.duration_ms = result.execution_time * 1000
        step.result = result.value
        step.flaky = result.success and result.attempts > 1
        if step.flaky:
            step.reason = f"passed on attempt {result.attempts}"
        self.notify("step_finished", step)

    def run_finished(self, status: RunStatus) -> None:
        result = WorkflowResult(
            self.run_id,
            self.workflow.name,
            status,
            self.steps,
            (time.perf_counter() - self.clock) * 1000,
            self.started_at,
            time.time(),
        )
        self.notify("run_finished", result)


_STEP_STATUS = {
    TaskStatus.COMPLETED: StepStatus.COMPLETED,
    TaskStatus.FAILED: StepStatus.FAILED,
    TaskStatus.SKIPPED: StepStatus.SKIPPED,
}
_BROKEN = (StepStatus.FAILED, StepStatus.CANCELLED)


def _details(result: TaskResult) -> dict[str, Any]:
    details: dict[str, Any] = {
        "execution_time": result.execution_time,
        "attempts": result.attempts,
    }
    if not result.success:
        details["reason"] = result.reason
        details["error"] = result.error
    return details


def _discard(awaitable: object) -> None:
    """Close an un-awaited coroutine so Python does not warn about it."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _is_async(action: Callable[..., Any]) -> bool:
    # An instance of a class with `async def __call__` is an async action too.
    return inspect.iscoroutinefunction(action) or inspect.iscoroutinefunction(type(action).__call__)


def _accepts_task_results(action: Callable[..., Any]) -> bool:
    """True when the action takes `_task_results` by name or has `**kwargs`."""
    try:
        parameters = inspect.signature(action).parameters.values()
    except (TypeError, ValueError):  # builtins without a readable signature take nothing extra
        return False
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == RESULTS_PARAMETER and p.kind is not p.POSITIONAL_ONLY)
        for p in parameters
    )


def _names(actions: Sequence[object], names: Sequence[str] | None, prefix: str) -> list[str]:
    if names is None:
        return [f"{prefix}_{i}" for i in range(len(actions))]
    if len(names) != len(actions):
        raise WorkflowError(f"{len(names)} names given for {len(actions)} actions")
    return list(names)


def chain(*actions: Callable[..., Any], names: Sequence[str] | None = None) -> Workflow:
    """A workflow running the actions one after the other (tasks `step_0`, `step_1`, ...)."""
    workflow = Workflow("chain")
    previous: list[str] = []
    for name, action in zip(_names(actions, names, "step"), actions, strict=True):
        workflow.add_task(name, action, dependencies=previous)
        previous = [name]
    return workflow


def parallel(*actions: Callable[..., Any], names: Sequence[str] | None = None) -> Workflow:
    """A workflow running every action at once (tasks `task_0`, `task_1`, ...)."""
    workflow = Workflow("parallel")
    for name, action in zip(_names(actions, names, "task"), actions, strict=True):
        workflow.add_task(name, action)
    return workflow


def fan_out_fan_in(
    initial: Callable[..., Any],
    parallel_tasks: Sequence[Callable[..., Any]],
    final: Callable[..., Any],
    initial_name: str = "initial",
    final_name: str = "final",
) -> Workflow:
    """`initial`, then every parallel task at once (`task_0`, ...), then `final` after them all."""
    workflow = Workflow("fan_out_fan_in")
    workflow.add_task(initial_name, initial)
    middle = _names(parallel_tasks, None, "task")
    for name, action in zip(middle, parallel_tasks, strict=True):
        workflow.add_task(name, action, dependencies=[initial_name])
    workflow.add_task(final_name, final, dependencies=middle or [initial_name])
    return workflow
