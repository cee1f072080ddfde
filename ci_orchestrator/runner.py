"""The synchronous Kahn runner: a DAG of shell steps (or Python callables) in one event loop.

A step starts the moment its own needs are done, up to `jobs` at once, the one with the longest
remaining path first. Failures are data on the step (status, reason, attempts), not exceptions.
Every running shell step is a process watched by one selector on the thread that called `run()`
(loop.py): its output, its exit, its timeout and retry delays are events of that loop, so starting
a step or learning that it ended costs no hand-off between threads. Python actions run on a small
thread pool and report back into the loop. Observers hear every event on that one thread, so they
need no locking.
"""

from __future__ import annotations

import inspect
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from ci_orchestrator import graph
from ci_orchestrator.durations import median
from ci_orchestrator.errors import WorkflowError
from ci_orchestrator.loop import Loop
from ci_orchestrator.masking import MaskedStream
from ci_orchestrator.records import TestCaseRecord
from ci_orchestrator.retry import NO_RETRY, Cancelled, ExitFailure, RetryPolicy, StepTimeout
from ci_orchestrator.shell import (
    DEFAULT_GRACE,
    TAIL_BYTES,
    CancelToken,
    Child,
    ShellOutcome,
    encode_env,
)
from ci_orchestrator.state import STATE_DIR, new_run_id, safe_filename

if TYPE_CHECKING:
    import logging

    from ci_orchestrator.loop import Timer
    from ci_orchestrator.masking import Masker


def _log() -> logging.Logger:
    """This module's logger. It only ever reports trouble, so the logging package is imported
    when there is some: a run that goes well does not pay for it."""
    import logging

    return logging.getLogger(__name__)


Action = str | Callable[..., Any] | None
Condition = str | Callable[[Mapping[str, Any]], bool] | None


class StepStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


class When(str, Enum):
    """When a step runs, given how its needs ended."""

    SUCCESS = "success"  # every need completed (or was skipped on purpose)
    FAILURE = "failure"  # something it depends on, directly or not, failed
    ALWAYS = "always"  # whatever happened upstream, once it is over


class RunStatus(str, Enum):
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ABANDONED = "abandoned"


@dataclass(frozen=True)
class Attempt:
    number: int
    exit_code: int | None
    duration_ms: float
    timed_out: bool
    started_at: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out and self.exit_code in (0, None)


@dataclass
class WorkflowStep:
    """A step: what to run and when, and, once run, how it went."""

    name: str
    action: Action = None
    depends_on: list[str] = field(default_factory=list)
    timeout: float | None = None
    retry: RetryPolicy = NO_RETRY
    condition: Condition = None
    when: When = When.SUCCESS
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    junit: list[str] = field(default_factory=list)
    description: str = ""
    grace: float = DEFAULT_GRACE
    skip_reason: str | None = None  # set before the run: skip on purpose, dependents go on
    status: StepStatus = StepStatus.PENDING
    result: Any = None
    error: str | None = None
    reason: str = ""
    duration_ms: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    flaky: bool = False
    exit_code: int | None = None
    log_path: str | None = None
    tail: str = ""
    started_at: float | None = None
    tests: list[TestCaseRecord] = field(default_factory=list)  # read from its `junit` files
    junit_problems: list[str] = field(default_factory=list)

    @property
    def command(self) -> str | None:
        return self.action if isinstance(self.action, str) else None

    @property
    def passthrough(self) -> bool:
        """Skipped on purpose (no command, --skip): the steps after it still run."""
        return self.status is StepStatus.SKIPPED and self.skip_reason is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "command": self.command,
            "depends_on": list(self.depends_on),
            "status": self.status.value,
            "reason": self.reason,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
            "attempts": [a.__dict__ for a in self.attempts],
            "flaky": self.flaky,
            "exit_code": self.exit_code,
            "log_path": self.log_path,
            "result": self.result if _jsonable(self.result) else repr(self.result),
        }


@dataclass
class WorkflowResult:
    workflow_id: str
    pipeline: str
    status: RunStatus
    steps: dict[str, WorkflowStep]
    total_duration_ms: float
    started_at: float
    finished_at: float

    @property
    def success(self) -> bool:
        return self.status is RunStatus.PASSED

    def _count(self, status: StepStatus) -> int:
        return sum(1 for s in self.steps.values() if s.status is status)

    @property
    def completed_count(self) -> int:
        return self._count(StepStatus.COMPLETED)

    @property
    def failed_count(self) -> int:
        return self._count(StepStatus.FAILED)

    @property
    def skipped_count(self) -> int:
        return self._count(StepStatus.SKIPPED)

    @property
    def cancelled_count(self) -> int:
        return self._count(StepStatus.CANCELLED)

    @property
    def flaky_steps(self) -> list[str]:
        return [s.name for s in self.steps.values() if s.flaky]

    @property
    def failed_steps(self) -> list[str]:
        return [s.name for s in self.steps.values() if s.status is StepStatus.FAILED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "pipeline": self.pipeline,
            "status": self.status.value,
            "success": self.success,
            "total_duration_ms": round(self.total_duration_ms, 3),
            "completed_count": self.completed_count,
            "failed_count": self.failed_count,
            "skipped_count": self.skipped_count,
            "flaky_steps": self.flaky_steps,
            "steps": {name: step.to_dict() for name, step in self.steps.items()},
        }


class RunInfo(NamedTuple):
    """What observers learn when a run starts."""

    run_id: str
    pipeline: str
    started_at: float
    steps: Mapping[str, WorkflowStep]
    log_dir: Path
    jobs: int


class RunObserver:
    """Hears a run as it happens; override what you need.

    Every method, `output` included, is called on the thread that called `run()`, which runs the
    event loop: an observer needs no lock, and a slow observer slows every step's streaming.
    """

    def run_started(self, run: RunInfo) -> None:
        """The run begins; no step has started."""

    def step_started(self, step: WorkflowStep) -> None:
        """A step's needs are done and it starts (its condition is checked next, in the loop)."""

    def attempt_finished(self, step: WorkflowStep, attempt: Attempt) -> None:
        """One attempt of a step ended; more may follow."""

    def step_finished(self, step: WorkflowStep) -> None:
        """A step reached its final status, skipped steps included."""

    def process_started(self, step: WorkflowStep, pid: int) -> None:
        """A shell step's process (the leader of its own process group) is running."""

    def turn_ended(self) -> None:
        """The runner heard every event of this turn, started the steps that became ready (their
        processes too) and is about to wait: a good moment to write what was heard in one go."""

    def run_finished(self, result: WorkflowResult) -> None:
        """The run is over; every step has its final status."""

    def output(self, step: WorkflowStep, chunk: bytes) -> None:
        """Output of a shell step, raw bytes as they arrive (on the loop's thread)."""


_ENV_KEY = re.compile(r"[^A-Za-z0-9]+")


def output_env_name(step: str, key: str) -> str:
    """`CIO_<STEP>_<KEY>`: how a step's outputs reach the steps after it."""
    return f"CIO_{_ENV_KEY.sub('_', step).upper()}_{_ENV_KEY.sub('_', key).upper()}"


def output_values(step: WorkflowStep) -> dict[str, str]:
    """The `CIO_*` values a completed step passes on (its `$CI_ORCHESTRATOR_OUTPUT` lines)."""
    if step.status is not StepStatus.COMPLETED or not isinstance(step.result, Mapping):
        return {}
    return {output_env_name(step.name, str(k)): str(v) for k, v in step.result.items()}


class WorkflowRunner:
    """Runs a DAG of steps; see the module docstring. Build it with `add_step`, then `run()`."""

    def __init__(
        self,
        name: str = "workflow",
        *,
        jobs: int | None = None,
        fail_fast: bool = True,
        observers: Iterable[RunObserver] = (),
        state_dir: str | Path = STATE_DIR,
        weights: Mapping[str, float] | None = None,
        env: Mapping[str, str] | None = None,
        run_id: str | None = None,
        mask: Masker | None = None,
        on_mask: Callable[[str], object] | None = None,
    ) -> None:
        self.name = name
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.fail_fast = fail_fast
        self.observers = list(observers)
        self.state_dir = Path(state_dir)
        self.weights = dict(weights or {})
        self.env = env
        self.run_id = run_id
        self.mask = mask  # secrets to keep out of logs, the terminal and the journal
        self.on_mask = on_mask  # hears each `::add-mask::` value as a step registers it
        self.steps: dict[str, WorkflowStep] = {}
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._loop: Loop | None = None  # the running run's loop, woken by `interrupt()`

    @property
    def step_count(self) -> int:
        return len(self.steps)

    def step_names(self) -> list[str]:
        return list(self.steps)

    def add_observer(self, observer: RunObserver) -> None:
        self.observers.append(observer)

    def add_step(
        self,
        name: str,
        action: Action = None,
        depends_on: Sequence[str] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> WorkflowStep:
        """Add a step: a shell command (str), a Python callable, or None (not configured).

        `options` are the other `WorkflowStep` fields: retry, condition, when, env, cwd, junit,
        description, grace, skip_reason.
        """
        if name in self.steps:
            raise WorkflowError(f"duplicate step name {name!r}")
        if timeout is not None and timeout <= 0:
            raise WorkflowError(f"step {name!r}: timeout must be positive, got {timeout}")
        step = WorkflowStep(name, action, list(depends_on or []), timeout, **options)
        step.when = When(step.when)
        self.steps[name] = step
        return step

    def graph(self) -> dict[str, list[str]]:
        return {name: step.depends_on for name, step in self.steps.items()}

    def validate(self) -> None:
        graph.validate(self.graph())

    def interrupt(self) -> None:
        """Stop the run (safe to call from a signal handler); a second call kills at once."""
        self._events.put(("interrupt", None))  # SimpleQueue.put is reentrant
        loop = self._loop
        if loop is not None:
            loop.wake()  # one write to a non-blocking pipe

    def run(self, context: Mapping[str, Any] | None = None) -> WorkflowResult:
        """Run every step; the result says how each ended. Raises `CycleError` before any runs."""
        try:
            self.validate()
        except WorkflowError:
            _log().exception("workflow %r is not valid", self.name)
            raise
        return _Run(self, dict(context or {})).execute()


class _Run:
    """The state of one execution of a runner's steps, driven by one event loop on this thread."""

    def __init__(self, runner: WorkflowRunner, context: dict[str, Any]) -> None:
        self.runner = runner
        self.steps = runner.steps
        self.context = context
        self.events = runner._events
        self.graph = runner.graph()
        self.run_id = runner.run_id or new_run_id()
        self.log_dir = runner.state_dir / "runs" / self.run_id
        # Steps started together share a cancel token; fail-fast cancels it and starts a new one,
        # so that `when: always` steps started afterwards can still run.
        self.token = CancelToken()
        self.tokens = [self.token]
        self.loop = Loop()
        self.loop.on_keyboard_interrupt = self.interrupt
        python_steps = sum(1 for step in self.steps.values() if callable(step.action))
        self.pool = _Pool(self.loop, min(runner.jobs, python_steps))
        self.ended: list[str] = []  # steps that reached their final status this turn
        self.stop_reason: str | None = None
        self.interrupts = 0
        self.exports: dict[str, dict[str, str]] = {}
        # Kept as steps settle, so that handing results to an action costs one copy, not a scan
        # of every step (20,000 steps would make that quadratic).
        self.completed: dict[str, Any] = {}
        self.started = time.time()
        # Encoded once per run; each step adds its few own variables (`step_env`).
        self.base_env = encode_env(os.environ if runner.env is None else runner.env)
        for step in self.steps.values():
            _reset(step)

    def execute(self) -> WorkflowResult:
        clock = time.monotonic()
        info = RunInfo(
            self.run_id, self.runner.name, self.started, self.steps, self.log_dir, self.runner.jobs
        )
        self.notify("run_started", info)
        # Turns are announced from the start, so that observers batch even the first turn's
        # events (a run that skips 200 up-to-date steps writes them in one transaction).
        self.notify("turn_ended")
        if any(isinstance(step.action, str) for step in self.steps.values()):
            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the steps still run: each says its log is missing
                _log().warning("cannot create the log folder %s: %s", self.log_dir, exc)
        self.runner._loop = self.loop
        try:
            self.schedule()
        finally:
            self.runner._loop = None
            self.pool.close()
            self.loop.close()
            for token in self.tokens:
                token.close()
        status = self.final_status()
        result = WorkflowResult(
            self.run_id,
            self.runner.name,
            status,
            self.steps,
            (time.monotonic() - clock) * 1000,
            self.started,
            time.time(),
        )
        self.notify("run_finished", result)
        return result

    def schedule(self) -> None:
        """Kahn's algorithm over the loop's turns: start what is ready, let observers write what
        the turn heard, wait for the next events (exits, output, timers, Python actions)."""
        weights = self.runner.weights
        default = median(weights.values()) if weights else 1.0
        priority = graph.longest_remaining_path(self.graph, weights, default)
        ready = graph.ReadySet(self.graph, priority)
        running = 0
        while ready or running:
            while ready and running < self.runner.jobs:
                name = ready.pop()
                if self.start(self.steps[name]):
                    running += 1
                else:
                    ready.done(name)
            # What this turn heard (steps that ended, steps that started, their processes) is
            # written in one go: a step is never recorded as started while a step it needs is
            # not recorded as done.
            self.notify("turn_ended")
            if running and not self.ended:
                self.loop.run_once()
                self.handle_events()
            for name in self.ended:
                running -= 1
                ready.done(name)
            self.ended.clear()

    def start(self, step: WorkflowStep) -> bool:
        """Start a ready step in the loop, or settle it as skipped (False)."""
        reason = self.skip_reason(step)
        if reason is not None:
            self.finish(step, StepStatus.SKIPPED, reason)
            return False
        step.status = StepStatus.RUNNING
        step.started_at = time.time()
        env = self.step_env(step)
        self.notify("step_started", step)
        _Execution(self, step, env, self.token).start()
        return True

    def results(self) -> dict[str, Any]:
        """Results of the steps that completed so far, by name (a copy: the run goes on)."""
        return dict(self.completed)

    def skip_reason(self, step: WorkflowStep) -> str | None:
        if self.interrupts:
            return "run interrupted"
        if step.skip_reason is not None:
            return step.skip_reason
        if step.action is None:
            step.skip_reason = "not configured"
            return step.skip_reason
        needs = [self.steps[n] for n in dict.fromkeys(step.depends_on)]
        if step.when is When.ALWAYS:
            return None
        if step.when is When.FAILURE:
            upstream = graph.ancestors(self.graph, [step.name])
            if any(self.steps[n].status in _BROKEN for n in upstream):
                return None
            return "nothing it depends on failed (when: failure)"
        for need in needs:
            if need.status is not StepStatus.COMPLETED and not need.passthrough:
                return f"dependency {need.name!r} {_ended(need)}"
        if self.stop_reason is not None:
            return self.stop_reason
        return None

    def handle_events(self) -> None:
        """What `WorkflowRunner.interrupt()` left for the loop (it may run in a signal handler)."""
        while True:
            try:
                kind, _ = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "interrupt":
                self.interrupt()

    def interrupt(self) -> None:
        self.interrupts += 1
        for token in self.tokens:
            token.cancel("run interrupted", force=self.interrupts > 1)

    def step_ended(self, step: WorkflowStep) -> None:
        """A started step reached its final status (on the loop's thread)."""
        if values := output_values(step):
            self.exports[step.name] = values
        self.settled(step)
        self.ended.append(step.name)

    def settled(self, step: WorkflowStep) -> None:
        if step.status is StepStatus.COMPLETED:
            self.completed[step.name] = step.result
        if step.status is StepStatus.FAILED and self.runner.fail_fast and self.stop_reason is None:
            self.stop_reason = f"not started: fail-fast after {step.name!r} failed"
            self.token.cancel(f"stopped: fail-fast after {step.name!r} failed")
            self.token = CancelToken()
            self.tokens.append(self.token)
        self.notify("step_finished", step)

    def finish(self, step: WorkflowStep, status: StepStatus, reason: str = "") -> None:
        step.status = status
        step.reason = reason
        self.notify("step_finished", step)

    def final_status(self) -> RunStatus:
        if self.interrupts:
            return RunStatus.INTERRUPTED
        if any(s.status in _BROKEN for s in self.steps.values()):
            return RunStatus.FAILED
        return RunStatus.PASSED

    def step_env(self, step: WorkflowStep) -> dict[str, str]:
        """The variables of a step on top of the run's environment (`_Execution.child_env`)."""
        env = dict(step.env)
        if self.exports:
            for name in graph.ancestors(self.graph, [step.name]) & self.exports.keys():
                env.update(self.exports[name])
        env["CI_ORCHESTRATOR_RUN_ID"] = self.run_id
        env["CI_ORCHESTRATOR_STEP"] = step.name
        return env

    def notify(self, event: str, *args: Any) -> None:
        for observer in self.runner.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:
                _log().exception("observer %r failed on %s; the run goes on", observer, event)


_Done = Callable[[Any, BaseException | None], None]  # how a Python action's end is reported


class _Pool:
    """Python actions run off the loop, on up to `size` daemon threads started as needed; each
    reports back through the loop's wake-up pipe."""

    def __init__(self, loop: Loop, size: int) -> None:
        self.loop = loop
        self.size = size
        self.tasks: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.threads = 0
        self.busy = 0  # counted on the loop's thread

    def submit(self, action: Callable[[], Any], done: _Done) -> None:
        """Run `action()` on a thread; `done(value, error)` is then called on the loop's thread."""

        def task() -> None:
            value, error = _call(action)
            self.loop.call_soon_threadsafe(lambda: self.finished(done, value, error))

        self.busy += 1
        if self.busy > self.threads and self.threads < self.size:
            self.threads += 1
            threading.Thread(target=self.work, name=f"cio-step-{self.threads}", daemon=True).start()
        self.tasks.put(task)

    def finished(
        self,
        done: Callable[[Any, BaseException | None], None],
        value: Any,
        error: BaseException | None,
    ) -> None:
        self.busy -= 1
        done(value, error)

    def work(self) -> None:
        while (task := self.tasks.get()) is not None:
            task()

    def close(self) -> None:
        for _ in range(self.threads):
            self.tasks.put(None)


def _call(action: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return action(), None
    except BaseException as exc:  # whatever a user's action raises is the attempt's failure
        return None, exc


class _Execution:
    """One step in the loop: its condition, then attempts under the retry policy. Each phase ends
    in a callback of the loop (a process ended, a timer fired, a Python action returned), so no
    thread waits for a step and a retry delay is a timer."""

    def __init__(self, run: _Run, step: WorkflowStep, env: dict[str, str], token: CancelToken):
        self.run_ = run
        self.loop = run.loop
        self.step = step
        self.env = env
        self.token = token
        self.log: StepLog | None = None
        self.junit_read: dict[str, tuple[int, int]] = {}  # JUnit file -> (mtime_ns, attempt)
        self.clock = time.monotonic()
        self.done = False
        self.waiting: object | None = None  # the Python attempt whose result is awaited
        self.timer: Timer | None = None  # the retry delay, or a Python attempt's deadline
        self.forget_cancel: Callable[[], object] | None = None

    def start(self) -> None:
        self.guarded(self.begin)

    def guarded(self, phase: Callable[..., None], *args: Any) -> None:
        """Run one phase; an exception is a bug of ours: the step fails, the run goes on."""
        try:
            phase(*args)
        except Exception as exc:
            _log().exception("internal error while running step %r", self.step.name)
            self.step.status, self.step.reason, self.step.error = (
                StepStatus.FAILED,
                f"internal error: {exc}",
                str(exc),
            )
            self.end()

    def begin(self) -> None:
        if isinstance(self.step.action, str):
            self.open_log()
        condition = self.step.condition
        if isinstance(condition, str):
            sink = self.masked_stream(forward=False)
            Child(
                self.loop,
                condition,
                log=sink or self.log or _DISCARD,
                env=self.child_env(),
                cwd=self.step.cwd,
                cancel=self.token,
                grace=self.step.grace,
                on_exit=lambda outcome: self.guarded(self.condition_ended, sink, outcome),
            ).start()
            return
        reason = self.condition_failed(condition)
        if reason is not None:
            self.skipped(reason)
            return
        self.next_attempt()

    def condition_ended(self, sink: MaskedStream | None, outcome: ShellOutcome) -> None:
        if sink is not None:
            sink.close()
        if outcome.ok:
            self.next_attempt()
        else:
            self.skipped(f"condition not met: {self.step.condition}")

    def condition_failed(self, condition: Callable[[Mapping[str, Any]], bool] | None) -> str | None:
        if condition is None:
            return None
        try:
            return None if condition(self.run_.results()) else "condition not met"
        except Exception as exc:
            _log().warning(
                "condition of step %r raised %r; the step is skipped", self.step.name, exc
            )
            return f"condition raised {type(exc).__name__}: {exc}"

    def skipped(self, reason: str) -> None:
        self.step.status, self.step.reason = StepStatus.SKIPPED, reason
        self.end()

    def end(self) -> None:
        if self.done:
            return
        self.done = True
        step = self.step
        step.duration_ms = (time.monotonic() - self.clock) * 1000
        if self.log is not None:
            self.log.close()
            if self.log.file is not None:
                step.log_path = str(self.log.path)
            if self.log.error:
                _log().warning("the log of step %r is incomplete: %s", step.name, self.log.error)
        self.run_.step_ended(step)

    # --- attempts ---

    def next_attempt(self) -> None:
        self.timer = None
        if self.token.is_set():
            self.step.status, self.step.reason = StepStatus.CANCELLED, self.token.reason
            self.end()
            return
        number = len(self.step.attempts) + 1
        started = time.time()
        if isinstance(self.step.action, str):
            self.shell(number, started)
        else:
            self.call(number, started)

    def attempt_ended(self, number: int, started: float, exc: BaseException | None) -> None:
        """Record the attempt, read its tests, then: done, or the delay before the next one."""
        self.record(number, started, exc)
        self.attempt_tests(number, started)
        step = self.step
        if exc is None:
            step.status = StepStatus.COMPLETED
            step.flaky = len(step.attempts) > 1
            if step.flaky:
                step.reason = f"passed on attempt {len(step.attempts)}"
        elif isinstance(exc, Cancelled):
            step.status, step.reason = StepStatus.CANCELLED, self.token.reason
        elif step.retry.retries(number, exc):
            self.wait(step.retry.delay_after(number), self.delay_over)
            return
        elif isinstance(exc, (ExitFailure, StepTimeout)):
            self.failed(str(exc), exc.exit_code)
        else:
            _log().error("step %r raised %s: %s", step.name, type(exc).__name__, exc)
            self.failed(f"{type(exc).__name__}: {exc}", None)
        self.end()

    def wait(self, seconds: float, then: Callable[[], None]) -> None:
        """A timer in the loop, cut short when the run is cancelled."""
        self.timer = self.loop.call_later(seconds, lambda: self.guarded(then))
        self.forget_cancel = self.loop.on_cancel(self.token, lambda: self.guarded(then))

    def delay_over(self) -> None:
        self.stop_waiting()
        self.next_attempt()

    def stop_waiting(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.forget_cancel is not None:
            self.forget_cancel()
            self.forget_cancel = None

    def failed(self, reason: str, exit_code: int | None) -> None:
        if self.token.is_set():
            self.step.status, self.step.reason = StepStatus.CANCELLED, self.token.reason
        else:
            self.step.status, self.step.reason = StepStatus.FAILED, reason
        self.step.error = reason
        self.step.exit_code = exit_code

    def read_tests(self, number: int, started: float) -> None:
        """After each attempt, the test cases of the JUnit files it wrote (modified since it
        started), folded into those of the attempts before: a test that failed, then passed is
        flaky. A missing, stale or broken file is a note, and the step's own status stands."""
        from ci_orchestrator.junit_reader import Freshness, merge_runs, read_junit_globs

        step = self.step
        fresh = Freshness(started, number, self.junit_read)
        found = read_junit_globs(step.junit, Path.cwd(), step.name, fresh)
        self.junit_read.update(found.read)
        cases, problems = found.cases, found.problems
        mask = self.run_.runner.mask
        if mask is not None:  # test names, messages and output are as secret as the log
            from ci_orchestrator.masking import mask_record

            cases, problems = mask_record(cases, mask), mask_record(problems, mask)
        if step.retry.max_attempts > 1:
            problems = [f"attempt {number}: {problem}" for problem in problems]
        step.tests = merge_runs(step.tests, cases)
        step.junit_problems = [*step.junit_problems, *problems]

    def attempt_tests(self, number: int, started: float) -> None:
        """Every attempt's JUnit files are read, not only the last one's: a flaky test shows."""
        if self.step.junit:
            self.read_tests(number, started)

    def record(self, number: int, started: float, exc: BaseException | None) -> None:
        exit_code = exc.exit_code if isinstance(exc, (ExitFailure, StepTimeout)) else None
        if exc is None and isinstance(self.step.action, str):
            exit_code = 0
        error = "" if exc is None or isinstance(exc, (ExitFailure, StepTimeout)) else repr(exc)
        attempt = Attempt(
            number,
            exit_code,
            (time.time() - started) * 1000,
            isinstance(exc, StepTimeout),
            started,
            error,
        )
        self.step.attempts.append(attempt)
        self.step.exit_code = exit_code
        self.run_.notify("attempt_finished", self.step, attempt)

    # --- a shell attempt: one process in the loop ---

    def child_env(self) -> dict[bytes, bytes]:
        env = dict(self.run_.base_env)
        env.update(encode_env(self.env))
        return env

    def open_log(self) -> None:
        path = self.run_.log_dir / f"{safe_filename(self.step.name)}.log"
        self.log = StepLog(path)
        self.env["CI_ORCHESTRATOR_OUTPUT"] = str(path.with_suffix(".out"))

    def shell(self, number: int, started: float) -> None:
        step = self.step
        assert isinstance(step.action, str)
        assert self.log is not None
        if number > 1:
            newline = "\n" if step.tail and not step.tail.endswith("\n") else ""
            self.log.write(f"{newline}--- ci-orchestrator: attempt {number} ---\n".encode())
        output_file = Path(self.env["CI_ORCHESTRATOR_OUTPUT"])
        if number > 1:
            output_file.unlink(missing_ok=True)
        stream = self.masked_stream()
        Child(
            self.loop,
            step.action,
            log=stream or self.log,
            env=self.child_env(),
            cwd=step.cwd,
            timeout=step.timeout,
            cancel=self.token,
            grace=step.grace,
            on_output=None if stream else self.forward,
            on_spawn=lambda pid: self.run_.notify("process_started", step, pid),
            on_exit=lambda outcome: self.guarded(
                self.shell_ended, number, started, stream, output_file, outcome
            ),
        ).start()

    def shell_ended(
        self,
        number: int,
        started: float,
        stream: MaskedStream | None,
        output_file: Path,
        outcome: ShellOutcome,
    ) -> None:
        step = self.step
        step.tail = outcome.tail.decode("utf-8", errors="replace")
        if stream is not None:
            stream.close()
            step.tail = stream.masker(_whole_lines(step.tail, len(outcome.tail)))
        self.attempt_ended(number, started, self.shell_error(outcome, output_file))

    def shell_error(self, outcome: ShellOutcome, output_file: Path) -> Exception | None:
        """How the attempt failed, as the retry policy sees it; None (outputs read) if it passed."""
        if outcome.error:
            return OSError(outcome.error)
        if outcome.cancelled:
            return Cancelled(self.token.reason)
        if outcome.timed_out:
            return _timeout(self.step.timeout, outcome.exit_code)
        if outcome.exit_code != 0:
            return ExitFailure(outcome.exit_code or 1)
        self.step.result = read_outputs(output_file)
        return None

    def masked_stream(self, forward: bool = True) -> MaskedStream | None:
        """With secrets to hide, output is masked line by line before the log and the terminal."""
        mask = self.run_.runner.mask
        if mask is None or self.log is None:
            return None
        sinks = [self.log.write, self.forward] if forward else [self.log.write]
        return MaskedStream(mask, sinks, on_mask=self.run_.runner.on_mask)

    def forward(self, chunk: bytes) -> None:
        for observer in self.run_.runner.observers:
            try:
                observer.output(self.step, chunk)
            except Exception:
                _log().exception("observer %r failed on output", observer)

    # --- a Python attempt: on the pool, or on a thread of its own when it has a deadline ---

    def call(self, number: int, started: float) -> None:
        step = self.step
        assert callable(step.action)
        args = _call_args(step.action, self.run_.context, self.run_.results)
        action = step.action
        attempt = self.waiting = object()

        def done(value: Any, error: BaseException | None) -> None:
            if self.waiting is attempt:  # not already ended by its deadline or a cancel
                self.guarded(self.call_ended, number, started, value, error)

        if step.timeout is None:
            self.run_.pool.submit(lambda: action(*args), done)
            return
        # Python code cannot be killed: past the deadline the step fails and its thread is left.
        loop = self.loop

        def target() -> None:
            value, error = _call(lambda: action(*args))
            loop.call_soon_threadsafe(lambda: done(value, error))

        threading.Thread(target=target, daemon=True, name="cio-action").start()
        seconds = step.timeout
        self.timer = loop.call_later(seconds, lambda: done(None, StepTimeout(seconds)))
        self.forget_cancel = loop.on_cancel(
            self.token, lambda: done(None, Cancelled(self.token.reason))
        )

    def call_ended(
        self, number: int, started: float, value: Any, error: BaseException | None
    ) -> None:
        self.waiting = None
        self.stop_waiting()
        if error is None:
            self.step.result = value
        self.attempt_ended(number, started, error)


class _Discard:
    """Where a condition's output goes when its step has no log."""

    def write(self, data: bytes) -> int:
        return len(data)


_DISCARD = _Discard()


class StepLog:
    """A step's log file, made on the first output (a silent step costs no file), that a full or
    read-only disk cannot break: the first failure is kept in `error` and later writes are
    dropped, while the step runs on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.error: str | None = None
        self.file: BinaryIO | None = None

    def write(self, data: bytes) -> int:
        if self.error is None and data:
            try:
                if self.file is None:
                    # Unbuffered: each read of the pipe is one write, so a runner killed with -9
                    # leaves the log complete (and dated by its last output).
                    self.file = self.path.open("wb", buffering=0)
                self.file.write(data)
            except OSError as exc:
                self.error = exc.strerror or str(exc)
        return len(data)

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError as exc:  # the buffered rest could not be flushed either
                self.error = self.error or exc.strerror or str(exc)


def _timeout(seconds: float | None, exit_code: int | None) -> StepTimeout:
    error = StepTimeout(seconds or 0)
    error.exit_code = exit_code
    return error


def _whole_lines(tail: str, size: int) -> str:
    """A tail cut from a longer output starts mid-line, maybe mid-secret: drop that part line."""
    if size < TAIL_BYTES:
        return tail
    return tail.partition("\n")[2]


def read_outputs(path: Path) -> dict[str, str]:
    """`key=value` lines a step wrote to `$CI_ORCHESTRATOR_OUTPUT`."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    outputs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            outputs[key.strip()] = value
    return outputs


def _call_args(
    action: Callable[..., Any], context: Any, results: Callable[[], Any]
) -> tuple[Any, ...]:
    """Python actions take (), (context) or (context, results), by their signature; the results
    are copied only for an action that takes them."""
    try:
        params = inspect.signature(action).parameters.values()
    except (TypeError, ValueError):
        return (context,)
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return (context, results())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    count = min(len(positional), 2)
    return (context, results())[:count] if count == 2 else (context,)[:count]


_BROKEN = (StepStatus.FAILED, StepStatus.CANCELLED)


def _ended(step: WorkflowStep) -> str:
    if step.status is StepStatus.SKIPPED:
        return "was skipped"
    return str(step.status.value)


def _reset(step: WorkflowStep) -> None:
    step.status, step.result, step.error, step.reason = StepStatus.PENDING, None, None, ""
    step.duration_ms, step.attempts, step.flaky, step.exit_code = 0.0, [], False, None
    step.log_path, step.tail, step.started_at = None, "", None
    step.tests, step.junit_problems = [], []


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict))
