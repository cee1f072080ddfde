"""`ci-orchestrator report` and `ci-orchestrator journal ...`: the journal, read and moved."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from ci_orchestrator.errors import ExitCode, JournalError, UsageError
from ci_orchestrator.journal import (
    JournalStore,
    export_runs,
    import_runs,
    journal_path,
    prune,
    run_from_json,
)
from ci_orchestrator.masking import Masker
from ci_orchestrator.records import RunRecord
from ci_orchestrator.render import plural
from ci_orchestrator.report_records import HealthReport
from ci_orchestrator.reporting import (
    ReportOptions,
    build_report,
    build_reports,
    check_pipeline,
    open_store,
    render,
    render_all,
    since_timestamp,
)

# `build_report` and `render` stay importable from here, where they were before `reporting.py`.
__all__ = [
    "ReportOptions",
    "build_report",
    "journal_export",
    "journal_import",
    "journal_info",
    "journal_prune",
    "render",
    "report",
]


def end_dead_runs(option: str | None, env: Mapping[str, str]) -> None:
    """Runs whose runner was killed are shown as abandoned, not running, and what their steps
    left running is ended (as `run` does before it starts); a journal we may not write is left."""
    from ci_orchestrator.journal import host_name, process_alive

    path = journal_path(option, env)
    if not path.is_file():
        return
    try:
        store = JournalStore(path)
    except JournalError:
        return
    try:
        store.mark_abandoned(host_name(), process_alive)
    except JournalError:
        pass
    finally:
        store.close()


def report(options: ReportOptions, out: TextIO, env: Mapping[str, str]) -> int:
    end_dead_runs(options.journal, env)
    store = open_store(options.journal, env)
    check_pipeline(store, options.pipeline)
    reports = build_reports(store, options, env)
    if options.junit is not None:
        write_latest_junit(reports, options.junit)
    text = render_all(reports, options.fmt)
    if options.output is None:
        out.write(text)
    else:
        write_output(options.output, text)
    if options.publish_issue is not None:
        print(publish(options.publish_issue, reports, env), file=sys.stderr)
    return ExitCode.OK


def write_output(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--output: cannot write {path}: {exc.strerror}") from None


def write_latest_junit(reports: Sequence[HealthReport], path: Path) -> None:
    """The run the report details; with several pipelines, the latest of their runs."""
    runs = [health.run for health in reports if health.run is not None]
    if not runs:
        raise UsageError("--junit: the journal has no run to write")
    from ci_orchestrator.render.junit import write_junit

    write_junit(max(runs, key=lambda run: run.started_at), path)


def publish(title: str, reports: Sequence[HealthReport], env: Mapping[str, str]) -> str:
    """Keep the issue titled `title` up to date with the report; returns the line to print."""
    from ci_orchestrator.github.cli import ISSUE_AUTHOR_ENV, publish_issue

    if len(reports) == 1:
        return publish_issue(title, reports[0], env)
    from ci_orchestrator.github.issues import ISSUE_BUDGET, publish_report_issue
    from ci_orchestrator.render.markdown import render_markdown_all

    markdown = render_markdown_all(reports, budget=ISSUE_BUDGET)
    return publish_report_issue(title, markdown, env=env, author=env.get(ISSUE_AUTHOR_ENV))


# --- journal export / import / prune / info ---


def journal_export(
    option: str | None, since: str | None, out: TextIO, env: Mapping[str, str]
) -> int:
    count = export_runs(open_store(option, env), out, since_timestamp(since), Masker.from_env(env))
    print(f"exported {plural(count, 'run')}", file=sys.stderr)
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
    out.write(
        f"imported {plural(added, 'new run')}, updated {updated}, {present} already present\n"
    )
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
    out.write(f"removed {plural(removed, 'run')} older than {older_than}\n")
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
        f"{store.label}: {plural(runs, 'run')}, {plural(steps, 'step')}{span};"
        f" {size / 1e6:.1f} MB\n"
        f"pipelines: {', '.join(pipelines) or '(none)'}\n"
    )
    return ExitCode.OK
