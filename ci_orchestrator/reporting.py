"""Building the health report: the run and scope chosen, analytics, base branch, links to the
logs, masking, and the rendering asked for. `commands/report.py` and the GitHub commands
(`github/comments.py`, `github/history.py`) both build on this; it imports neither.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ci_orchestrator.analytics import Scope, WorkflowAnalytics
from ci_orchestrator.durations import parse_duration
from ci_orchestrator.errors import UsageError
from ci_orchestrator.gitinfo import actions_run_url, detect
from ci_orchestrator.journal import JournalStore, journal_path
from ci_orchestrator.masking import Masker, mask_record
from ci_orchestrator.records import RunRecord, to_json
from ci_orchestrator.render import plural
from ci_orchestrator.report_records import HealthReport, RunLinks


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
    output: Path | None = None  # write the report there instead of to stdout


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


def build_report(
    store: JournalStore, options: ReportOptions, env: Mapping[str, str] | None = None
) -> HealthReport:
    """The health report for the pipeline (default: the latest run's) and the run in detail,
    its failures labelled against its base branch and, in GitHub Actions, linked to the run's
    logs there. `env`: the process's environment unless given."""
    env = os.environ if env is None else env
    run = _pick_run(store, options)
    pipeline = options.pipeline or (run.pipeline if run else None)
    scope = Scope(
        pipeline=pipeline,
        since=since_timestamp(options.since),
        branch=options.branch,
        last=options.last,
    )
    title = f"{pipeline or 'pipeline'} health"
    if run is None:
        return WorkflowAnalytics(store, scope).health_report(title)._replace(last=options.last)
    health = WorkflowAnalytics(store, scope).health_report(title, run, base=base_branch(run, env))
    notes = (*health.notes, *later_runs_note(store, scope, run, options))
    return health._replace(links=actions_links(run, env), last=options.last, notes=notes)


def check_pipeline(store: JournalStore, pipeline: str | None) -> None:
    """`--pipeline` names a pipeline the journal has runs of (not an empty report for a typo)."""
    if pipeline is None:
        return
    names = [row[0] for row in store.query("SELECT DISTINCT pipeline FROM runs ORDER BY 1")]
    if pipeline not in names:
        from ci_orchestrator.graph import closest

        known = f"; it has runs of {', '.join(names)}" if names else "; it has no runs yet"
        raise UsageError(
            f"--pipeline: no runs of {pipeline!r} in {store.label}{closest(pipeline, names)}{known}"
        )


def later_runs_note(
    store: JournalStore, scope: Scope, run: RunRecord, options: ReportOptions
) -> list[str]:
    """With `--run-id` of an older run, say that the history around it goes on past it."""
    if options.run_id is None:
        return []
    where, params = scope.runs_where()
    later = store.query(
        f"SELECT count(*) FROM runs WHERE {where} AND started_at > ?", [*params, run.started_at]
    )[0][0]
    if not later:
        return []
    return [
        f"the history also counts the {plural(later, 'run')} after run {run.id}"
        " (--since and --last choose the runs it counts)"
    ]


def base_branch(run: RunRecord, env: Mapping[str, str]) -> str | None:
    """The branch `run`'s failures are held against: the pull request's base (GITHUB_BASE_REF),
    else the repository's default branch. None for a run on that branch, or on no known one.
    (The journal does not record a run's base branch.)"""
    if run.pr_number is None and run.branch is None:
        return None
    base = env.get("GITHUB_BASE_REF") or detect(env).default_branch or "main"
    return None if run.pr_number is None and run.branch == base else base


def actions_links(run: RunRecord, env: Mapping[str, str]) -> RunLinks | None:
    """Where `run`'s logs are on GitHub: the Actions run it recorded; for a run recorded without
    one (an older journal), this Actions run's page when it is a CI run of this same commit."""
    if run.url:
        return RunLinks(run.url)
    url = actions_run_url(env)
    if url and run.trigger == "ci" and run.git_sha and run.git_sha == env.get("GITHUB_SHA"):
        return RunLinks(url)
    return None


def _pick_run(store: JournalStore, options: ReportOptions) -> RunRecord | None:
    if options.run_id is not None:
        run = store.load_run(options.run_id)
        if run is None:
            raise UsageError(f"--run-id: no run {options.run_id!r} in {store.label}")
        return run
    return store.latest_run(options.pipeline)


def pipelines_in_scope(store: JournalStore, options: ReportOptions) -> list[str]:
    """The pipelines with finished runs in the period and on the branch asked for."""
    scope = Scope(since=since_timestamp(options.since), branch=options.branch)
    where, params = scope.runs_where()
    rows = store.query(f"SELECT DISTINCT pipeline FROM runs WHERE {where} ORDER BY 1", params)
    return [row[0] for row in rows]


def build_reports(
    store: JournalStore, options: ReportOptions, env: Mapping[str, str]
) -> list[HealthReport]:
    """The reports `report` shows, masked, worst first: with neither --pipeline nor --run-id, one
    per pipeline in scope; otherwise (or with only one pipeline) the one `build_report` picks."""
    from ci_orchestrator.render.markdown import worst_first

    names = [] if options.pipeline or options.run_id else pipelines_in_scope(store, options)
    if len(names) < 2:
        return [masked_report(build_report(store, options, env), env)]
    return worst_first(
        [masked_report(build_report(store, replace(options, pipeline=n), env), env) for n in names]
    )


def masked_report(health: HealthReport, env: Mapping[str, str]) -> HealthReport:
    """The report with the secrets this process knows masked in every text, before any rendering
    escapes them (the journal holds none that its runs knew; this covers the rest)."""
    masker = Masker.from_env(env)
    return mask_record(health, masker) if masker else health


def render_all(reports: Sequence[HealthReport], fmt: str) -> str:
    """One report as `render` writes it; several under an overview, one section each."""
    if len(reports) == 1:
        return render(reports[0], fmt)
    if fmt == "json":
        return json.dumps(overview_json(reports), indent=2, default=str) + "\n"
    if fmt == "markdown":
        from ci_orchestrator.render.markdown import SUMMARY_BUDGET, render_markdown_all

        return render_markdown_all(reports, budget=SUMMARY_BUDGET)
    if fmt == "html":
        from ci_orchestrator.render.html import render_html_all

        return render_html_all(reports)
    from ci_orchestrator.render.report_text import render_text_all

    return render_text_all(reports)


def overview_json(reports: Sequence[HealthReport]) -> dict[str, Any]:
    """`{"state", "summary", "pipelines": [{"pipeline", "state", "report"}]}`, worst first."""
    from ci_orchestrator.render.markdown import (
        overall_state,
        overview_headline,
        pipeline_name,
        pipeline_state,
    )

    pipelines = [
        {"pipeline": pipeline_name(r), "state": pipeline_state(r), "report": to_json(r)}
        for r in reports
    ]
    summary = overview_headline(reports)
    return {"state": overall_state(reports), "summary": summary, "pipelines": pipelines}


def render(health: HealthReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(to_json(health), indent=2, default=str) + "\n"
    if fmt == "markdown":
        from ci_orchestrator.render.markdown import SUMMARY_BUDGET, render_markdown

        return render_markdown(health, budget=SUMMARY_BUDGET)
    if fmt == "html":
        from ci_orchestrator.render.html import render_html

        return render_html(health)
    from ci_orchestrator.render.report_text import render_text

    return render_text(health)
