"""The pipeline model: `Pipeline`, `Step` and `Retry`, and how a pipeline becomes a runner.

What the loader (`config.py`) builds from a file, the cache (`pipeline_cache.py`) keeps, and a
template (`templates.py`) is made of. Nothing here reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from ci_orchestrator import graph
from ci_orchestrator.errors import UsageError
from ci_orchestrator.retry import ExitFailure, RetryPolicy, StepTimeout

if TYPE_CHECKING:
    from ci_orchestrator.runner import WorkflowRunner, WorkflowStep


class Retry(NamedTuple):
    attempts: int = 1
    delay: float = 0.0
    backoff: float = 2.0
    max_delay: float | None = None
    jitter: float | None = None
    on: tuple[str, ...] = ("failure", "timeout")
    exit_codes: tuple[int, ...] = ()

    @classmethod
    def parse(cls, raw: int | Mapping[str, Any] | None) -> Retry:
        if raw is None:
            return cls()
        if isinstance(raw, int):
            return cls(attempts=raw)
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)

    def policy(self) -> RetryPolicy:
        kinds = {"failure": ExitFailure, "timeout": StepTimeout}
        return RetryPolicy(
            max_attempts=self.attempts,
            initial_delay=self.delay,
            max_delay=self.max_delay if self.max_delay is not None else max(self.delay, 3600.0),
            exponential_base=self.backoff,
            retry_on=tuple(kinds[k] for k in self.on),
            jitter=self.jitter if self.jitter is not None else self.delay / 10,
            exit_codes=frozenset(self.exit_codes),
        )


class Step(NamedTuple):
    """A step as the pipeline file describes it (after `extends` and defaults)."""

    name: str
    run: str | None
    needs: tuple[str, ...] = ()
    condition: str | None = None
    when: str = "success"
    timeout: float | None = None
    kill_grace: float | None = None
    retry: Retry = Retry()
    env: Mapping[str, str] = MappingProxyType({})
    cwd: str | None = None
    junit: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()  # what an exported workflow carries to the jobs after it
    paths: tuple[str, ...] = ()  # run only when the range under test changed one of these
    inputs: tuple[str, ...] = ()  # files that, with the command, make its fingerprint
    outputs: tuple[str, ...] = ()  # files kept when it passes, put back when up to date
    cache: str = "local"  # local | trust-history: which recorded passes make it up to date
    description: str = ""
    location: str = ""  # file:line of the step's definition
    skip_reason: str | None = None
    need_locations: tuple[str, ...] = ()  # file:line of each entry of `needs`
    typo_of: str | None = None  # a step `extends` adds, likely meant as this step of the base


class Pipeline(NamedTuple):
    name: str
    steps: Mapping[str, Step]
    source: str  # the file (or `template:NAME`) it was read from
    base_dir: Path
    description: str = ""
    setup: tuple[str, ...] = ()  # `setup:` commands: run by `run --setup` and exported jobs

    def graph(self) -> dict[str, list[str]]:
        return {name: list(step.needs) for name, step in self.steps.items()}

    def step(self, name: str, option: str) -> Step:
        """The named step, or a usage error that suggests the closest name."""
        if name not in self.steps:
            hint = graph.closest(name, self.steps)
            raise UsageError(f"{option}: no step named {name!r} in {self.source}{hint}")
        return self.steps[name]


def build_runner(pipeline: Pipeline, **runner_options: Any) -> WorkflowRunner:
    """A `WorkflowRunner` for the pipeline; `runner_options` go to its constructor."""
    from ci_orchestrator.runner import WorkflowRunner

    runner = WorkflowRunner(pipeline.name, **runner_options)
    for step in pipeline.steps.values():
        add_to_runner(runner, step, step.run, pipeline.base_dir)
    return runner


def add_to_runner(runner: WorkflowRunner, step: Step, action: Any, base_dir: Path) -> WorkflowStep:
    options: dict[str, Any] = {}
    if step.kill_grace is not None:
        options["grace"] = step.kill_grace
    cwd = str(base_dir / step.cwd) if step.cwd else None
    return runner.add_step(
        step.name,
        action,
        list(step.needs),
        step.timeout,
        retry=step.retry.policy(),
        condition=step.condition,
        when=step.when,
        env=dict(step.env),
        cwd=cwd,
        junit=[str(base_dir / j) for j in step.junit],
        description=step.description,
        skip_reason=step.skip_reason,
        **options,
    )
