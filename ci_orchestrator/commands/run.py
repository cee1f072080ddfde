"""`ci-orchestrator run`: load, override, plan or run, and turn the result into an exit code."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from ci_orchestrator.config import Overrides, Pipeline, apply_overrides, build_runner, load_pipeline
from ci_orchestrator.errors import ExitCode
from ci_orchestrator.gitinfo import RunContext, detect
from ci_orchestrator.render.terminal import TerminalReporter, use_color
from ci_orchestrator.runner import RunObserver, RunStatus, WorkflowResult, WorkflowRunner
from ci_orchestrator.state import STATE_DIR, ensure_state_dir


@dataclass(frozen=True)
class RunOptions:
    target: str | None = None
    overrides: Overrides = field(default_factory=Overrides)
    jobs: int | None = None
    keep_going: bool = False
    dry_run: bool = False
    verbosity: int = 1
    state_dir: Path = STATE_DIR


def run(
    options: RunOptions, out: TextIO | None = None, env: Mapping[str, str] | None = None
) -> int:
    out = out or sys.stdout
    env = dict(os.environ if env is None else env)
    pipeline = apply_overrides(load_pipeline(options.target), options.overrides)
    if options.dry_run:
        out.write(format_plan(pipeline, options))
        return ExitCode.OK
    context = detect(env)
    runner = make_runner(pipeline, options, context, env, out)
    with interrupts_stop(runner):
        result = runner.run()
    return exit_code(result)


def make_runner(
    pipeline: Pipeline,
    options: RunOptions,
    context: RunContext,
    env: dict[str, str],
    out: TextIO,
    observers: list[RunObserver] | None = None,
) -> WorkflowRunner:
    ensure_state_dir(options.state_dir)
    github = env.get("GITHUB_ACTIONS") == "true"
    reporter = TerminalReporter(
        out, color=use_color(out, env), verbosity=options.verbosity, github=github
    )
    return build_runner(
        pipeline,
        jobs=options.jobs,
        fail_fast=not options.keep_going,
        observers=[reporter, *(observers or [])],
        state_dir=options.state_dir,
        env={**env, **context.env()},
    )


def exit_code(result: WorkflowResult) -> int:
    if result.status is RunStatus.INTERRUPTED:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if result.success else ExitCode.STEP_FAILED


@contextmanager
def interrupts_stop(runner: WorkflowRunner) -> Iterator[None]:
    """Ctrl-C and SIGTERM stop the steps (a second one kills them) instead of killing us."""

    def handler(signum: int, frame: FrameType | None) -> None:
        runner.interrupt()

    previous: dict[signal.Signals, Callable[..., Any] | int | None] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(ValueError):  # not the main thread: the caller handles signals
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def format_plan(pipeline: Pipeline, options: RunOptions) -> str:
    """What `run` would do, in the order it would start things, without running anything."""
    jobs = options.jobs or os.cpu_count() or 1
    order = start_order(pipeline.graph())
    width = max(len(name) for name in order)
    lines = [f"{pipeline.name}: {len(order)} steps, up to {jobs} at once ({pipeline.source})"]
    for index, name in enumerate(order, 1):
        lines.append(f"{index:>3}. {name:<{width}}  {_plan_note(pipeline, name)}".rstrip())
    return "\n".join(lines) + "\n"


def start_order(dag: dict[str, list[str]]) -> list[str]:
    """The order steps would start in with one job: Kahn, longest remaining path first."""
    from ci_orchestrator import graph

    ready = graph.ReadySet(dag, graph.longest_remaining_path(dag))
    order = []
    while ready:
        order.append(ready.pop())
        ready.done(order[-1])
    return order


def _plan_note(pipeline: Pipeline, name: str) -> str:
    step = pipeline.steps[name]
    if step.skip_reason or step.run is None:
        return f"skip ({step.skip_reason or 'not configured'})"
    parts = [f"$ {step.run.strip().splitlines()[0] if step.run.strip() else step.run}"]
    if step.needs:
        parts.append(f"after {', '.join(step.needs)}")
    if step.condition:
        parts.append(f"if {step.condition}")
    if step.when != "success":
        parts.append(f"when {step.when}")
    if step.retry.attempts > 1:
        parts.append(f"{step.retry.attempts} attempts")
    return "   ".join(parts)
