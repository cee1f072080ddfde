"""`ci-orchestrator run`: load, override, plan or run, and turn the result into an exit code."""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from ci_orchestrator import skipping
from ci_orchestrator.config import (
    DEFAULT_FILE,
    SETUP_STEP,
    Overrides,
    apply_overrides,
    load_pipeline,
    setup_script,
    split_junit,
    typo_warnings,
    unknown_skip_env,
    with_setup,
)
from ci_orchestrator.errors import ConfigError, ExitCode, UsageError
from ci_orchestrator.github.actions import (
    append_summary,
    command,
    in_actions,
    set_outputs,
    summary_room,
)
from ci_orchestrator.gitinfo import RunContext, detect
from ci_orchestrator.masking import Masker, mask_record
from ci_orchestrator.model import Pipeline, build_runner
from ci_orchestrator.render import plural
from ci_orchestrator.render.terminal import TerminalReporter, use_color
from ci_orchestrator.runner import (
    RunObserver,
    RunStatus,
    WorkflowResult,
    WorkflowRunner,
    output_values,
)
from ci_orchestrator.state import STATE_DIR, ensure_state_dir

if TYPE_CHECKING:
    from ci_orchestrator.journal import WorkflowJournal
    from ci_orchestrator.records import RunRecord


class RunOptions(NamedTuple):
    target: str | None = None
    overrides: Overrides = Overrides()
    jobs: int | None = None
    keep_going: bool = False
    dry_run: bool = False
    verbosity: int = 1
    state_dir: Path = STATE_DIR
    journal: str | None = None  # --journal PATH
    use_journal: bool = True  # False with --no-journal
    rerun_failed: bool = False
    junit: Path | None = None
    junit_args: tuple[str, ...] = ()  # --junit values, FILE or STEP=GLOB (see `split_junit`)
    run_id: str | None = None  # --run-id: several jobs recording parts of one run
    setup: bool = False  # --setup: the pipeline's `setup:` commands first, as a step
    changed_since: str | None = None  # --changed-since REF: `paths:` filters against REF
    force: tuple[str, ...] = ()  # --force [STEP]: run regardless of paths and inputs (`*`: all)


# Set by the jobs of an exported workflow (github/export.py, NEEDS_ENV): GitHub's `needs` context,
# whose outputs carry the CIO_* values of the jobs before. Named here so that `run` imports the
# exporter (and PyYAML) only in such a job.
NEEDS_ENV = "CI_ORCHESTRATOR_NEEDS"


def run(
    options: RunOptions, out: TextIO | None = None, env: Mapping[str, str] | None = None
) -> int:
    out = out or sys.stdout
    env = dict(os.environ if env is None else env)
    loaded = load_for_run(options.target)
    options = with_junit_args(options, loaded)
    warn_about(loaded, options.overrides)
    pipeline = apply_overrides(loaded, options.overrides)
    check_run_id(options.run_id)
    if not options.dry_run and (message := nothing_to_run(pipeline)):
        out.write(message + "\n")
        return ExitCode.OK
    journal = open_journal(options, env)
    if journal is not None and options.run_id and journal.store.load_run(options.run_id):
        raise UsageError(f"--run-id: run {options.run_id!r} is already in {journal.store.label}")
    if options.rerun_failed:
        pipeline, message = rerun_selection(pipeline, journal)
        if message:
            out.write(message + "\n")
            return ExitCode.OK
    if options.setup:
        pipeline = with_setup(pipeline)
    if NEEDS_ENV in env:
        from ci_orchestrator.github.export import values_from_needs

        env.update(values_from_needs(env[NEEDS_ENV]))
    context = detect(env)
    # Each step's recent median: the runner's weights, and what a skipped step saves.
    weights = journal.store.recent_medians(pipeline.name, pipeline.steps) if journal else {}
    skips = plan_skips(pipeline, options, context, env, journal, weights)
    if options.dry_run:
        out.write(format_plan(pipeline, options, weights, skips))
        return ExitCode.OK
    if skips is not None:
        pipeline = skipping.apply(pipeline, skips.decisions)
        if journal is not None:
            journal.inputs, journal.saved = skips.fingerprints, skips.saved_ms
    masker = Masker.from_env(env)
    if skips is not None and skips.values:  # what up-to-date steps passed on when they ran
        env = {**env, **skips.values}
    runner = make_runner(pipeline, options, context, env, out, journal, masker, weights)
    with interrupts_stop(runner):
        result = runner.run()
    if skips is not None:
        passed = {
            s.name: output_values(s) for s in result.steps.values() if s.status.value == "completed"
        }
        for warning in skipping.store_outputs(pipeline, passed, skips, options.state_dir):
            print(f"warning: outputs of {warning}", file=sys.stderr)
    finish(result, context, options, journal, env, masker)
    return exit_code(result)


def check_changed_since(ref: str, folder: Path) -> None:
    """`--changed-since REF` names a commit of the pipeline's repository, or it is a usage error."""
    from ci_orchestrator.changes import commit_id, toplevel

    top = toplevel(folder)
    if top is None:
        raise UsageError(f"--changed-since: {folder} is not in a git repository")
    if commit_id(top, ref) is None:
        raise UsageError(
            f"--changed-since: {ref!r} is not a commit of the repository at {folder}"
            " (expected a branch, tag or commit id)"
        )


def plan_skips(
    pipeline: Pipeline,
    options: RunOptions,
    context: RunContext,
    env: Mapping[str, str],
    journal: WorkflowJournal | None,
    medians: Mapping[str, float],
) -> skipping.Plan | None:
    """Which steps this run leaves out (`paths:`, `inputs:`), with their `outputs:` put back;
    None when no step declares either."""
    for name in options.force:
        if name != skipping.ALL and name not in pipeline.steps:
            from ci_orchestrator.graph import closest

            file = " (every step of a file: run FILE --force)" if Path(name).is_file() else ""
            hint = closest(name, pipeline.steps) or file
            raise UsageError(f"--force: no step named {name!r} in {pipeline.source}{hint}")
    if options.changed_since:
        check_changed_since(options.changed_since, pipeline.base_dir.resolve())
    if not skipping.uses_skipping(pipeline):
        if options.changed_since:
            print("note: --changed-since: no step has `paths:`; every step runs", file=sys.stderr)
        return None
    skips = skipping.plan(
        pipeline,
        env=env,
        context=context,
        changed_since=options.changed_since,
        force=options.force,
        store=journal.store if journal is not None else None,
        medians=medians,
        state_dir=options.state_dir,
    )
    if not options.dry_run:
        skips = skipping.restore_outputs(pipeline, skips, options.state_dir)
    for note in skips.notes:
        print(f"note: {note}", file=sys.stderr)
    return skips


def with_junit_args(options: RunOptions, pipeline: Pipeline) -> RunOptions:
    """The options with `--junit` values sorted out: the FILE to write, each STEP's GLOBs."""
    if not options.junit_args:
        return options
    out, globs = split_junit(options.junit_args, pipeline.steps)
    overrides = options.overrides._replace(junit={**options.overrides.junit, **globs})
    return options._replace(junit=out or options.junit, overrides=overrides)


def load_for_run(target: str | None) -> Pipeline:
    """The pipeline; `run test` when `test` is no file but a step of the default pipeline file
    (a go-task habit) says that `--only test` runs it."""
    try:
        return load_pipeline(target)
    except ConfigError as exc:
        hint = _step_hint(target) if exc.message.endswith("no such file") else ""
        if not hint:
            raise
        raise ConfigError(exc.message + hint, exc.location, exc.key) from None


def _step_hint(target: str | None) -> str:
    if target is None or target == DEFAULT_FILE or not Path(DEFAULT_FILE).is_file():
        return ""
    try:
        default = load_pipeline(DEFAULT_FILE)
    except ConfigError:
        return ""
    if target not in default.steps:
        return ""
    return f"; to run the step {target!r} of {DEFAULT_FILE}: ci-orchestrator run --only {target}"


def warn_about(pipeline: Pipeline, overrides: Overrides) -> None:
    """Likely typos that are not errors: a misspelt template step, an unknown name in SKIP."""
    warnings = typo_warnings(pipeline)
    if (skips := unknown_skip_env(pipeline, overrides.skip_env)) is not None:
        warnings.append(skips)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def nothing_to_run(pipeline: Pipeline) -> str:
    """'' when some step would run. When none would: an error when no step has a command (a
    template run without --set), or the message for a run the user skipped entirely."""
    if any(s.run is not None and s.skip_reason is None for s in pipeline.steps.values()):
        return ""
    configured = [n for n, s in pipeline.steps.items() if s.run is not None]
    if not configured:
        names = ", ".join(pipeline.steps)
        first = next(iter(pipeline.steps))
        where = (
            "a pipeline file that extends it"
            if pipeline.source.startswith("template:")
            else (pipeline.source)
        )
        raise UsageError(
            f"nothing to run: no step of {pipeline.source} has a command ({names});"
            f" give them one with --set STEP=COMMAND (--set {first}='...') or a `run:` in {where}"
        )
    return (
        f"nothing to run: every configured step was skipped on purpose"
        f" ({', '.join(configured)}: --skip or SKIP)"
    )


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_run_id(run_id: str | None) -> None:
    """Run ids name folders (`.ci-orchestrator/runs/ID`): letters, digits, `.`, `_`, `-`."""
    if run_id is not None and not _RUN_ID.match(run_id):
        raise UsageError(
            f"--run-id: expected letters, digits, '.', '_' or '-' (at most 100), got {run_id!r}"
        )


def open_journal(options: RunOptions, env: Mapping[str, str]) -> WorkflowJournal | None:
    """The journal for this run, or a `JournalError` before anything runs (never a run that
    silently records nothing); runs left 'running' by a dead process are marked abandoned."""
    if not options.use_journal:
        if options.rerun_failed:
            raise UsageError("--rerun-failed needs the journal; drop --no-journal")
        return None
    from ci_orchestrator.journal import (
        JournalStore,
        WorkflowJournal,
        host_name,
        journal_path,
        process_alive,
    )

    store = JournalStore(journal_path(options.journal, env))
    store.mark_abandoned(host_name(), process_alive)
    return WorkflowJournal(store)


def rerun_selection(pipeline: Pipeline, journal: WorkflowJournal | None) -> tuple[Pipeline, str]:
    """The steps that did not pass in the pipeline's last run, and what depends on them."""
    assert journal is not None
    last = journal.store.latest_run(pipeline.name, finished=True)
    if last is None:
        raise UsageError(f"--rerun-failed: the journal has no earlier run of {pipeline.name!r}")
    passed = {
        s.name
        for s in last.steps
        if s.status == "completed" or skipping.skipped_on_purpose(s.reason)
    }
    again = [name for name in pipeline.steps if name not in passed]
    if not again:
        return pipeline, f"nothing to rerun: every step passed in run {last.id}"
    from ci_orchestrator import graph

    keep = set(again) | graph.descendants(pipeline.graph(), again)
    selected = [name for name in pipeline.steps if name in keep]
    return apply_overrides(pipeline, Overrides(only=selected, with_deps=False)), ""


def make_runner(
    pipeline: Pipeline,
    options: RunOptions,
    context: RunContext,
    env: dict[str, str],
    out: TextIO,
    journal: WorkflowJournal | None = None,
    masker: Masker | None = None,
    weights: Mapping[str, float] | None = None,
) -> WorkflowRunner:
    ensure_state_dir(options.state_dir)
    github = in_actions(env)
    mask = masker if masker is not None and (github or masker) else None
    reporter = TerminalReporter(
        out, color=use_color(out, env), verbosity=options.verbosity, github=github, mask=mask
    )
    # The runner must learn a step's `::add-mask::` values as they appear, unmasked.
    on_mask = reporter.add_mask if github else None
    observers: list[RunObserver] = [reporter]
    tree = None
    if journal is not None:
        from ci_orchestrator.fingerprint import TreeReader

        tree = TreeReader()  # git reads the tree while the runner is prepared
        journal.context = context
        if mask is not None:
            journal.mask = mask
        observers.append(journal)
        if weights is None:
            weights = journal.store.recent_medians(pipeline.name, pipeline.steps)
    runner = build_runner(
        pipeline,
        jobs=options.jobs,
        fail_fast=not options.keep_going,
        observers=observers,
        state_dir=options.state_dir,
        env={**env, **context.env()},
        weights=weights,
        mask=mask,
        on_mask=on_mask,
        run_id=options.run_id,
    )
    if journal is not None and tree is not None:
        journal.tree = tree.result()  # before any step can change the working tree
    return runner


def finish(
    result: WorkflowResult,
    context: RunContext,
    options: RunOptions,
    journal: WorkflowJournal | None,
    env: Mapping[str, str],
    masker: Masker,
) -> None:
    """After the run: the JUnit file; in GitHub Actions the step outputs and the job summary;
    a warning if the journal missed anything. None of it changes the run's exit code."""
    from ci_orchestrator.journal import run_record

    record = run_record(result, context, masker)
    if options.junit is not None:
        from ci_orchestrator.render.junit import write_junit

        write_junit(record, options.junit)
    if in_actions(env):
        outputs = action_outputs(result, options)
        if NEEDS_ENV in env:  # the values the jobs after this one get (github/export.py)
            from ci_orchestrator.github.export import values_output

            outputs["values"] = values_output(env[NEEDS_ENV], result, masker)
        set_outputs(outputs, env)
        append_summary(masker(job_summary(record, journal, env, masker)), env)
    for warning in masker.warnings():
        line = command("warning", warning) if in_actions(env) else f"warning: {warning}"
        print(line, file=sys.stderr)
    if journal is not None and journal.problem:
        print(
            f"warning: the journal did not record all of this run: {journal.problem}",
            file=sys.stderr,
        )


def action_outputs(result: WorkflowResult, options: RunOptions) -> dict[str, str]:
    """The outputs the composite action exposes."""
    return {
        "success": "true" if result.success else "false",
        "failed-steps": ",".join(result.failed_steps),
        "flaky-steps": ",".join(result.flaky_steps),
        "junit-path": str(options.junit or ""),
        "run-id": result.workflow_id,
        "status": result.status.value,
    }


def job_summary(
    record: RunRecord,
    journal: WorkflowJournal | None,
    env: Mapping[str, str],
    masker: Masker | None = None,
) -> str:
    """The run's Markdown report, with history when there is a journal, within the 1 MiB;
    `masker` hides secrets in the report's texts before they are escaped."""
    from ci_orchestrator.analytics import Scope, WorkflowAnalytics
    from ci_orchestrator.journal import JournalStore
    from ci_orchestrator.render.markdown import render_markdown
    from ci_orchestrator.reporting import actions_links, base_branch

    store = journal.store if journal is not None else JournalStore()
    title = f"{record.pipeline} health"
    analytics = WorkflowAnalytics(store, Scope(pipeline=record.pipeline))
    health = analytics.health_report(title, record, base=base_branch(record, env))
    health = health._replace(links=actions_links(record, env))
    if masker:
        health = mask_record(health, masker)
    return render_markdown(health, budget=summary_room(env))


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


def format_plan(
    pipeline: Pipeline,
    options: RunOptions,
    weights: Mapping[str, float] | None = None,
    skips: skipping.Plan | None = None,
) -> str:
    """What `run` would do, in the order it would start things (weighing steps by their recent
    durations, as the runner does), without running anything."""
    jobs = options.jobs or os.cpu_count() or 1
    order = start_order(pipeline.graph(), weights)
    width = max(len(name) for name in order)
    steps = plural(len(order), "step")
    lines = [f"{pipeline.name}: {steps}, up to {jobs} at once ({pipeline.source})"]
    if pipeline.setup and SETUP_STEP not in pipeline.steps:
        lines.append(f"  set-up not run (--setup runs it first): {_first_lines(pipeline.setup)}")
    decisions = skips.decisions if skips is not None else {}
    for index, name in enumerate(order, 1):
        note = _plan_note(pipeline, name, decisions.get(name))
        lines.append(f"{index:>3}. {name:<{width}}  {note}".rstrip())
    return "\n".join(lines) + "\n"


def start_order(dag: dict[str, list[str]], weights: Mapping[str, float] | None = None) -> list[str]:
    """The order steps would start in with one job: Kahn, longest remaining path first."""
    from ci_orchestrator import graph
    from ci_orchestrator.durations import median

    default = median(weights.values()) if weights else 1.0
    ready = graph.ReadySet(dag, graph.longest_remaining_path(dag, weights, default))
    order = []
    while ready:
        order.append(ready.pop())
        ready.done(order[-1])
    return order


def _first_lines(commands: tuple[str, ...]) -> str:
    return " && ".join(f"$ {_first_line(c)}" for c in commands)


def _first_line(command: str) -> str:
    """A command's first line, with ` …` when more lines follow."""
    lines = command.strip().splitlines()
    if not lines:
        return command
    return lines[0] + (" …" if len(lines) > 1 else "")


def _plan_note(pipeline: Pipeline, name: str, decision: skipping.Decision | None = None) -> str:
    step = pipeline.steps[name]
    if step.skip_reason or step.run is None:
        return f"skip ({step.skip_reason or 'not configured'})"
    if decision is not None and not decision.runs:
        return skipping.describe(decision)
    if name == SETUP_STEP and step.run == setup_script(pipeline.setup):
        return _first_lines(pipeline.setup)
    parts = [f"$ {_first_line(step.run)}"]
    if step.needs:
        parts.append(f"after {', '.join(step.needs)}")
    if step.condition:
        parts.append(f"if {step.condition}")
    if step.when != "success":
        parts.append(f"when {step.when}")
    if step.retry.attempts > 1:
        parts.append(f"{step.retry.attempts} attempts")
    if decision is not None and decision.why:
        parts.append(f"runs: {decision.why}")
    return "   ".join(parts)
