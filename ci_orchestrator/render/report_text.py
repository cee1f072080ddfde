"""The health report as plain text for a terminal (`report --format text`; pure: data in, text out).

No colours; names and reasons are put on one line with control characters replaced, so nothing a
step printed can move the cursor or recolour the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.records import HealthReport, RunRecord, StepRecord
from ci_orchestrator.render.markdown import (
    overview_headline,
    pipeline_name,
    pipeline_state,
    strip_ansi,
)

TAIL_LINES = 10
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_STATUS_WORDS = {"completed": "passed", "failed": "FAILED"}


def render_text(report: HealthReport) -> str:
    """Header, hotspots, flaky, regressions and per-step stats as aligned columns; then the run."""
    blocks = [
        header(report),
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
    since = "all recorded history"
    if report.since is not None:
        day = datetime.fromtimestamp(report.since, tz=timezone.utc).strftime("%Y-%m-%d")
        since = f"since {day} (UTC)"
    facts = [
        ("period", since),
        ("runs", str(report.runs_considered)),
        ("pass rate", percent(report.pass_rate)),
        ("mean duration", duration(report.mean_duration_ms)),
    ]
    if report.critical_path:
        facts.append(("critical path", " -> ".join(plain(s) for s in report.critical_path)))
    width = max(len(label) for label, _ in facts)
    lines = [f"  {label:<{width}}  {value}" for label, value in facts]
    lines += [f"  note: {plain(note)}" for note in report.notes]
    return titled(plain(report.title or "Pipeline health"), lines)


def hotspots(report: HealthReport) -> str:
    if not report.hotspots:
        return ""
    rows = [
        [plain(h.step), f"{h.failures}/{h.runs}", percent(h.failure_rate), duration(h.time_lost_ms)]
        for h in report.hotspots
    ]
    headers = ("step", "failures", "rate", "time lost")
    return titled("Failure hotspots", columns(headers, rows, right="123"))


def flaky(report: HealthReport) -> str:
    if not report.flaky:
        return ""
    rows = [
        [plain(f.step), plain(f.test or "-"), f"{f.flaky_runs}/{f.runs}", percent(f.flake_rate)]
        for f in report.flaky
    ]
    headers = ("step", "test", "flaky runs", "rate")
    return titled("Flaky", columns(headers, rows, right="23"))


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
    return titled("Per-step stats", columns(headers, rows, right="1234"))


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
    lines = ["", f"  {plain(step.name)}: {plain(step.reason or 'failed')}{where}"]
    tail = step.log_tail.rstrip("\n").split("\n")[-TAIL_LINES:] if step.log_tail.strip() else []
    return lines + [f"    | {plain(line)}" for line in tail]
