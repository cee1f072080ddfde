"""The health report as plain text for a terminal (`report --format text`; pure: data in, text out).

No colours; names and reasons are put on one line with control characters replaced, so nothing a
step printed can move the cursor or recolour the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone

from ci_orchestrator.analytics import SAMPLES
from ci_orchestrator.durations import format_seconds
from ci_orchestrator.records import RunRecord, StepRecord
from ci_orchestrator.render import plural
from ci_orchestrator.render.markdown import (
    EVIDENCE_WORDS,
    kinds_text,
    overview_headline,
    pipeline_name,
    pipeline_state,
    ref_text,
    time_saved,
)
from ci_orchestrator.render.terminal import failure_reason
from ci_orchestrator.render.text import strip_ansi
from ci_orchestrator.report_records import FlakyStep, HealthReport, Hotspot

TAIL_LINES = 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_STATUS_WORDS = {"completed": "passed", "failed": "FAILED"}


def render_text(report: HealthReport) -> str:
    """Header, broken/new/fixed, hotspots, flaky, regressions and per-step stats as aligned
    columns; then the run."""
    blocks = [
        header(report),
        changes(report),
        hotspots(report),
        flaky(report),
        regressions(report),
        stats(report),
        run_detail(report.run) if report.run else "",
    ]
    return "\n\n".join(block for block in blocks if block) + "\n"


def render_text_all(reports: Sequence[HealthReport]) -> str:
    """Several pipelines, in the order given (`markdown.worst_first`): an overview, then each
    pipeline's report as `render_text` writes it."""
    return "\n\n".join([overview(reports), *(render_text(r).rstrip("\n") for r in reports)]) + "\n"


def overview(reports: Sequence[HealthReport]) -> str:
    """`Pipeline health: 2 pipelines, 1 failing`, then one line per pipeline."""
    rows = [
        [
            plain(pipeline_name(report)),
            pipeline_state(report),
            plain(report.run.status) if report.run else "-",
            percent(report.pass_rate),
            str(report.runs_considered),
            duration(report.mean_duration_ms),
        ]
        for report in reports
    ]
    headers = ("pipeline", "state", "latest run", "pass rate", "runs", "mean duration")
    lines = columns(headers, rows, right="345")
    return titled(f"Pipeline health: {overview_headline(reports)}", lines)


# --- formats ---


def plain(text: str) -> str:
    """One line, no control characters (newlines and escapes included)."""
    return _CONTROL.sub("?", strip_ansi(text).replace("\r\n", " ").replace("\n", " "))


def duration(ms: float | None) -> str:
    return "-" if ms is None else format_seconds(ms / 1000)


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%".replace(".0%", "%")


def columns(headers: Sequence[str], rows: Sequence[Sequence[str]], right: str = "") -> list[str]:
    """Rows under headers, indented by two, each column as wide as its widest cell. `right` lists
    the indexes (as digits) of right-aligned columns."""
    table = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [
            cell.rjust(width) if str(i) in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def titled(title: str, lines: list[str]) -> str:
    return "\n".join([title, *lines])


# --- sections ---


def header(report: HealthReport) -> str:
    """Title, then period, runs, pass rate and mean duration as aligned `label  value` lines."""
    facts = [
        ("period", period(report)),
        ("runs", str(report.runs_considered)),
        ("pass rate", percent(report.pass_rate)),
        ("mean duration", duration(report.mean_duration_ms)),
    ]
    if report.steps_saved:
        facts.append(("time saved", time_saved(report)))
    if report.critical_path:
        facts.append(("critical path", " -> ".join(plain(s) for s in report.critical_path)))
    width = max(len(label) for label, _ in facts)
    lines = [f"  {label:<{width}}  {value}" for label, value in facts]
    lines += [f"  note: {plain(note)}" for note in report.notes]
    return titled(plain(report.title or "Pipeline health"), lines)


def period(report: HealthReport) -> str:
    """`all recorded history`, `since 2024-04-24 09:30 UTC`, `the last 2 runs`, or both."""
    parts = [f"the last {plural(report.last, 'run')}"] if report.last is not None else []
    if report.since is not None:
        moment = datetime.fromtimestamp(report.since, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        parts.append(f"since {moment} UTC")
    return " ".join(parts) or "all recorded history"


_CHANGE_WORDS = {"broken": "broken since", "new": "new failure at", "fixed": "fixed at"}


def changes(report: HealthReport) -> str:
    """What broke, failed anew or was fixed on the branch; the run's failures, marked."""
    blocks = []
    if report.changes:
        rows = [
            [
                _CHANGE_WORDS[c.kind],
                plain(c.step),
                plain(c.test or "-"),
                plain((c.sha or "-")[:7]) + (" or earlier" if c.earlier_unknown else ""),
                str(c.failed_runs),
                str(c.commits),
                plain(c.first_seen.run_id),
                plain(c.last_seen.run_id),
                plain(c.fixed_in.run_id) if c.fixed_in else "-",
            ]
            for c in report.changes
        ]
        headers = ("change", "step", "test", "commit", "failed runs", "commits", "first run",
                   "last run", "fixed in run")  # fmt: skip
        blocks.append(titled("Broken, new and fixed", columns(headers, rows, right="45")))
    if report.run is not None and report.run_failures:
        rows = [
            [
                plain(m.step),
                plain(m.test or "-"),
                f"yes: {m.flaky_runs}/{m.runs} runs, {percent(m.flake_rate)}" if m.known_flaky
                else "no",
                {"broken": "broken", "new": "new failure"}.get(m.change or "", "-"),
            ]
            for m in report.run_failures
        ]  # fmt: skip
        lines = columns(("step", "test", "known flaky", "change"), rows)
        blocks.append(titled(f"Failures in run {plain(report.run.id)}", lines))
    return "\n\n".join(blocks)


def hotspots(report: HealthReport) -> str:
    """Steps, then tests, by failed runs, then time lost."""
    blocks = []
    if report.hotspots:
        blocks.append(titled("Failure hotspots", hotspot_lines(report.hotspots, tests=False)))
    if report.test_hotspots:
        blocks.append(titled("Test hotspots", hotspot_lines(report.test_hotspots, tests=True)))
    return "\n\n".join(blocks)


def hotspot_lines(spots: Sequence[Hotspot], tests: bool) -> list[str]:
    rows = [
        [
            plain(h.step),
            *([plain(h.test or "-")] if tests else []),
            f"{h.failed_runs}/{h.runs}",
            percent(h.failure_rate),
            duration(h.time_lost_ms),
        ]
        for h in spots
    ]
    headers = ("step", *(["test"] if tests else []), "failed runs", "rate", "time lost")
    return columns(headers, rows, right="234" if tests else "123")


def flaky(report: HealthReport) -> str:
    """Flaky steps, then flaky tests (flaky runs of the runs where each ran), each with its
    evidence: kinds, first and last seen, and its latest evidence runs."""
    entries = [*report.flaky, *report.flaky_tests]
    blocks = [
        titled(f"Flaky {what}", flaky_lines(group, tests=what == "tests"))
        for what, group in (
            ("steps", [f for f in entries if f.test is None]),
            ("tests", [f for f in entries if f.test is not None]),
        )
        if group
    ]
    return "\n\n".join(blocks)


def flaky_lines(group: Sequence[FlakyStep], tests: bool) -> list[str]:
    rows = [
        [
            plain(f.step),
            *([plain(f.test or "-")] if tests else []),
            f"{f.flaky_runs}/{f.runs}",
            percent(f.flake_rate),
            plain(kinds_text(f.kinds)) or "-",
            plain(ref_text(f.first_seen)) if f.first_seen else "-",
            plain(ref_text(f.last_seen)) if f.last_seen else "-",
        ]
        for f in group
    ]
    headers = ("step", *(["test"] if tests else []), "flaky runs", "rate", "evidence (runs)",
               "first seen", "last seen")  # fmt: skip
    lines = columns(headers, rows, right="23" if tests else "12")
    for f in group:
        if f.evidence:
            runs = "; ".join(
                evidence_text(e.kind, e.run_id, e.sha, e.other_run) for e in f.evidence
            )
            what = f"{plain(f.step)} {plain(f.test)}" if f.test else plain(f.step)
            lines.append(f"  {what}: {runs}")
    return lines


def evidence_text(kind: str, run_id: str, sha: str | None, other: str | None) -> str:
    """R7 9f2c1e7 same-tree flip (passed in R6)"""
    at = f" {plain(sha[:7])}" if sha else ""
    passed = f" (passed in {plain(other)})" if other else ""
    return f"{plain(run_id)}{at} {EVIDENCE_WORDS.get(kind, plain(kind))}{passed}"


def regressions(report: HealthReport) -> str:
    if not report.regressions:
        return ""
    rows = [
        [
            plain(r.step),
            duration(r.earlier_median_ms),
            duration(r.recent_median_ms),
            f"{r.change * 100:+.0f}%",
            f"{r.recent_runs}/{r.earlier_runs}",
        ]
        for r in report.regressions
    ]
    headers = ("step", "earlier", "recent", "change", "runs (recent/earlier)")
    return titled("Slower than before", columns(headers, rows, right="1234"))


def stats(report: HealthReport) -> str:
    if not report.stats:
        return ""
    rows = [
        [
            plain(s.step),
            str(s.runs),
            percent(s.reliability),
            duration(s.p50_ms),
            duration(s.p95_ms),
        ]
        for s in report.stats
    ]
    headers = ("step", "runs", "reliability", "p50", "p95")
    title = f"Per-step stats (p50/p95 over each step's last {SAMPLES} runs that passed or failed)"
    return titled(title, columns(headers, rows, right="1234"))


# --- one run ---


def run_detail(run: RunRecord) -> str:
    """The run's steps as columns, then each failure's reason, log path and last lines."""
    facts = [f"Run {plain(run.id)}: {plain(run.status)}"]
    if run.branch or run.git_sha:
        facts.append(" @ ".join(plain(p) for p in (run.branch, (run.git_sha or "")[:7]) if p))
    if run.duration_ms is not None:
        facts.append(duration(run.duration_ms))
    rows = [step_row(step) for step in run.steps]
    lines = columns(("status", "step", "duration", "attempts", "note"), rows, right="23")
    for step in run.failed_steps:
        lines += failure_lines(step)
    for step in run.steps:
        name = plain(step.name)
        lines += [f"  {name}: JUnit {plain(problem)}" for problem in step.junit_problems]
    return titled(", ".join(facts), lines)


def step_row(step: StepRecord) -> list[str]:
    status = "flaky" if step.flaky and step.status == "completed" else step.status
    ran = step.status in ("completed", "failed") or bool(step.attempts)
    note = step.reason if step.status != "completed" or step.flaky else ""
    note = failure_reason(note, step.exit_code, step.log_tail)
    return [
        _STATUS_WORDS.get(status, status),
        plain(step.name),
        duration(step.duration_ms) if ran else "-",
        str(len(step.attempts)) if step.attempts else "-",
        plain(note),
    ]


def failure_lines(step: StepRecord) -> list[str]:
    """`build: exit code 2 (log: path)` and the last lines of its output."""
    where = f" (log: {plain(step.log_path)})" if step.log_path else ""
    reason = failure_reason(step.reason or "failed", step.exit_code, step.log_tail)
    lines = ["", f"  {plain(step.name)}: {plain(reason)}{where}"]
    tail = step.log_tail.rstrip("\n").split("\n")[-TAIL_LINES:] if step.log_tail.strip() else []
    return lines + [f"    | {plain(line)}" for line in tail]
