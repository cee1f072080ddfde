"""`ci-orchestrator report` and `ci-orchestrator journal ...`: the journal, read and moved."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ci_orchestrator.analytics import Scope, WorkflowAnalytics
from ci_orchestrator.durations import parse_duration
from ci_orchestrator.errors import ExitCode, UsageError
from ci_orchestrator.journal import (
    JournalStore,
    export_runs,
    import_runs,
    journal_path,
    prune,
    run_from_json,
)
from ci_orchestrator.records import HealthReport, RunRecord, to_json


@dataclass(frozen=True)
class ReportOptions:
    journal: str | None = None
    since: str | None = None
    branch: str | None = None
    pipeline: str | None = None
    last: int | None = None
    fmt: str = "text"
    run_id: str | None = None
    junit: Path | None = None
    publish_issue: str | None = None  # keep one GitHub issue with this title up to date


def since_timestamp(text: str | None, option: str = "--since") -> float | None:
    """`7d`, `12h`, `90m` before now, as a timestamp."""
    if text is None:
        return None
    seconds = parse_duration(text)
    if seconds is None:
        raise UsageError(f"{option}: expected a duration like 7d, 12h or 90m, got {text!r}")
    return time.time() - seconds


def open_store(option: str | None, env: Mapping[str, str], read_only: bool = True) -> JournalStore:
    return JournalStore(journal_path(option, env), read_only=read_only)


def build_report(store: JournalStore, options: ReportOptions) -> HealthReport:
    """The health report for the pipeline (default: the latest run's) and the run in detail."""
    run = _pick_run(store, options)
    pipeline = options.pipeline or (run.pipeline if run else None)
    scope = Scope(
        pipeline=pipeline,
        since=since_timestamp(options.since),
        branch=options.branch,
        last=options.last,
    )
    title = f"{pipeline or 'pipeline'} health"
    return WorkflowAnalytics(store, scope).health_report(title, run)


def _pick_run(store: JournalStore, options: ReportOptions) -> RunRecord | None:
    if options.run_id is not None:
        run = store.load_run(options.run_id)
        if run is None:
            raise UsageError(f"--run-id: no run {options.run_id!r} in {store.label}")
        return run
    return store.latest_run(options.pipeline)


def report(options: ReportOptions, out: TextIO, env: Mapping[str, str]) -> int:
    store = open_store(options.journal, env)
    health = build_report(store, options)
    if options.junit is not None:
        if health.run is None:
            raise UsageError("--junit: the journal has no run to write")
        from ci_orchestrator.render.junit import write_junit

        write_junit(health.run, options.junit)
    out.write(render(health, options.fmt))
    if options.publish_issue is not None:
        from ci_orchestrator.github.cli import publish_issue

        print(publish_issue(options.publish_issue, health, env), file=sys.stderr)
    return ExitCode.OK


def render(health: HealthReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(health), indent=2, default=str) + "\n"
    if fmt == "markdown":
        from ci_orchestrator.render.markdown import SUMMARY_BUDGET, render_markdown

        return render_markdown(health, budget=SUMMARY_BUDGET)
    from ci_orchestrator.render.report_text import render_text

    return render_text(health)


# --- journal export / import / prune / info ---


def journal_export(
    option: str | None, since: str | None, out: TextIO, env: Mapping[str, str]
) -> int:
    count = export_runs(open_store(option, env), out, since_timestamp(since))
    print(f"exported {count} runs", file=sys.stderr)
    return ExitCode.OK


def journal_import(
    option: str | None, files: Sequence[str], out: TextIO, env: Mapping[str, str]
) -> int:
    store = open_store(option, env, read_only=False)
    added = updated = present = 0
    for name in files:
        result = import_runs(store, _read_runs(name))
        added, updated, present = (
            added + result.added, updated + result.updated, present + result.present
        )  # fmt: skip
    out.write(f"imported {added} new runs, updated {updated}, {present} already present\n")
    return ExitCode.OK


def _read_runs(name: str) -> list[RunRecord]:
    """Runs from a `journal export` file ('-' for stdin), or a usage error naming the line."""
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
    except OSError as exc:
        raise UsageError(f"{name}: cannot read: {exc.strerror}") from None
    runs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not str(data.get("format", "")).startswith("ci-orchestrator-run/"):
                raise ValueError("not a ci-orchestrator run (no format field)")
            runs.append(run_from_json(data))
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsageError(
                f"{name}:{number}: expected a run from `journal export`: {exc}"
            ) from None
    return runs


def journal_prune(option: str | None, older_than: str, out: TextIO, env: Mapping[str, str]) -> int:
    before = since_timestamp(older_than, "--older-than")
    assert before is not None
    removed = prune(open_store(option, env, read_only=False), before)
    out.write(f"removed {removed} runs older than {older_than}\n")
    return ExitCode.OK


def _day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def journal_info(option: str | None, out: TextIO, env: Mapping[str, str]) -> int:
    store = open_store(option, env)
    runs, first, last = store.query("SELECT count(*), min(started_at), max(started_at) FROM runs")[
        0
    ]
    steps = store.query("SELECT count(*) FROM steps")[0][0]
    pipelines = [r[0] for r in store.query("SELECT DISTINCT pipeline FROM runs ORDER BY 1")]
    size = store.path.stat().st_size if store.path else 0
    span = ""
    if first is not None:
        span = f", {_day(first)} to {_day(last)}"
    out.write(
        f"{store.label}: {runs} runs, {steps} steps{span}; {size / 1e6:.1f} MB\n"
        f"pipelines: {', '.join(pipelines) or '(none)'}\n"
    )
    return ExitCode.OK
