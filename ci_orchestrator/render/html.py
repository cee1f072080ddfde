"""The report as one self-contained HTML file (pure: reports in, a document out).

The same sections as the Markdown report: header, steps, failures (log tails in `<details>`),
what the PR fixed, broken/new/fixed, flaky steps and tests, hotspots, regressions, per-step
stats, trend charts and the pipeline graph (inline SVG), notes. Nothing is fetched: the CSS is
inline, there is no script, no font, no image file, and a Content-Security-Policy says so to the
browser as well. A light and a dark scheme follow `prefers-color-scheme`.

Escaping: every text from data (step and test names, reasons, logs, branches) goes through
`esc` (html.escape with quotes), in element content, attributes and SVG alike. The one link is
the run's page on GitHub, and only an http(s) URL becomes one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from ci_orchestrator.records import RunRecord, StepRecord
from ci_orchestrator.render.charts import trend_charts
from ci_orchestrator.render.markdown import (
    EVIDENCE_WORDS,
    FAILED_TESTS_SHOWN,
    TAIL_LEVELS,
    duration,
    failure_context,
    first_line,
    flaky_cells,
    is_flaky_pass,
    label_words,
    overall_state,
    overview_headline,
    percent,
    pipeline_name,
    pipeline_state,
    signed_percent,
    step_note,
)
from ci_orchestrator.render.markdown import history_line as markdown_history_line
from ci_orchestrator.render.svg import chart_svg, dag_svg, esc
from ci_orchestrator.render.text import clean, log_lines
from ci_orchestrator.report_records import BaseComparison, Change, FlakyStep, HealthReport, Hotspot

_STATUS_WORDS = {
    "completed": "passed",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "running": "running",
    "pending": "not run",
    "flaky": "flaky",
}
_CHANGE_WORDS = {"broken": "broken since", "new": "new failure at", "fixed": "fixed at"}
# Nothing may be loaded or run: styles only from the page itself.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

CSS = """
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1f2328; --muted: #59636e;
  --line: #d1d9e0; --panel: #f6f8fa; --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e;
  --bad-bg: #ffebe9; --warn: #9a6700; --warn-bg: #fff8c5; --skip: #59636e; --skip-bg: #f6f8fa;
  --cancel: #8250df; --cancel-bg: #fbefff; --bar: #54aeff; --series: #cf222e; --link: #0969da; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --panel: #151b23;
    --ok: #3fb950; --ok-bg: #12261e; --bad: #f85149; --bad-bg: #25171c; --warn: #d29922;
    --warn-bg: #272115; --skip: #9198a1; --skip-bg: #151b23; --cancel: #ab7df8;
    --cancel-bg: #231a33; --bar: #388bfd; --series: #ff7b72; --link: #4493f8; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 24px; margin: 0 0 8px; } h2 { font-size: 20px; margin: 28px 0 8px; }
h3 { font-size: 16px; margin: 24px 0 8px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; }
.facts { color: var(--muted); margin: 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--panel); } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font: 12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  overflow-x: auto; white-space: pre; }
details { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
summary { cursor: pointer; } a { color: var(--link); }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px;
  border: 1px solid currentColor; }
.st-completed, .st-passed { color: var(--ok); } .st-failed { color: var(--bad); }
.st-flaky, .st-unstable { color: var(--warn); } .st-skipped, .st-pending { color: var(--skip); }
.st-cancelled, .st-interrupted, .st-abandoned { color: var(--cancel); }
.note { color: var(--muted); font-style: italic; }
svg { display: block; max-width: 100%; height: auto; margin: 8px 0; }
svg text { fill: var(--fg); font: 12px system-ui, sans-serif; }
svg .title { font-weight: 600; font-size: 13px; } svg .tick, svg .axis { fill: var(--muted); }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .bar { fill: var(--bar); } svg .line { fill: none; stroke: var(--series); stroke-width: 2; }
svg .dot { fill: var(--series); } svg .edge { fill: none; stroke: var(--muted); stroke-width: 1.5; }
svg .arrow { fill: var(--muted); }
.node rect { stroke-width: 1.5; fill: var(--skip-bg); stroke: var(--skip); }
.node.s-completed rect { fill: var(--ok-bg); stroke: var(--ok); }
.node.s-failed rect { fill: var(--bad-bg); stroke: var(--bad); }
.node.s-flaky rect { fill: var(--warn-bg); stroke: var(--warn); }
.node.s-cancelled rect { fill: var(--cancel-bg); stroke: var(--cancel); }
.charts { display: flex; flex-wrap: wrap; gap: 8px 24px; }
"""


def render_html(report: HealthReport) -> str:
    """One report as a whole document."""
    title = report.title or (report.run.pipeline if report.run else "Pipeline health")
    return document(title, report_body(report, level=1))


def render_html_all(reports: Sequence[HealthReport]) -> str:
    """Several pipelines' reports under an overview, in the order given (`worst_first`)."""
    if len(reports) == 1:
        return render_html(reports[0])
    head = (
        f"<h1>Pipeline health: {esc(overview_headline(reports))}</h1>\n"
        f'<p class="facts">Overall: <span class="st-{state_class(overall_state(reports))}">'
        f"{esc(overall_state(reports))}</span></p>\n{overview_table(reports)}"
    )
    bodies = [f"<article>\n{report_body(report, level=2)}\n</article>" for report in reports]
    return document("Pipeline health", "\n".join([head, *bodies]))


def document(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def report_body(report: HealthReport, level: int) -> str:
    """The report's heading (h`level`) and its sections (h`level + 1`)."""
    sub = level + 1
    sections = [
        steps_section(report.run),
        failures_section(report),
        fixed_section(report.base),
        changes_section(report),
        flaky_section(report),
        hotspots_section(report),
        regressions_section(report),
        stats_section(report),
        trends_section(report),
        graph_section(report),
        notes_section(report.notes),
    ]
    blocks = [header(report, level)]
    blocks += [
        section.replace("<h*>", f"<h{sub}>").replace("</h*>", f"</h{sub}>")
        for section in sections
        if section
    ]
    return "\n".join(blocks)


def section(key: str, heading: str, *blocks: str) -> str:
    """`<section>` with a heading whose level `report_body` fills in."""
    inner = "\n".join(block for block in blocks if block)
    return f'<section class="{key}">\n<h*>{esc(heading)}</h*>\n{inner}\n</section>'


# --- small pieces ---


def state_class(state: str) -> str:
    return state.replace(" ", "-") if state.replace(" ", "").isalpha() else "other"


def badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge st-{state_class(status)}">{esc(text or status)}</span>'


def code(text: str) -> str:
    return f"<code>{esc(text)}</code>"


def day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: str = "") -> str:
    """Cells are markup already; `numeric` marks right-aligned columns with `r` (one letter per
    column: r or l)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = [
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if numeric[i : i + 1] == "r" else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    ]
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def run_link(url: str, text: str) -> str:
    """A plain link to the run's page on GitHub; any other URL is shown as text."""
    if url.startswith(("https://", "http://")):
        return f'<a href="{esc(url)}" rel="noreferrer noopener">{esc(text)}</a>'
    return esc(text)


def step_status(step: StepRecord) -> str:
    return "flaky" if is_flaky_pass(step) else step.status


# --- header ---


def header(report: HealthReport, level: int) -> str:
    run = report.run
    if run is None:
        state = "passed" if report.pass_rate == 1 else "unstable"
        title = f"<h{level}>{esc(report.title or 'Pipeline health')}</h{level}>"
        facts = esc(history_line(report) or "No runs recorded.")
        return f'{title}\n<p class="facts">{badge(state)} {facts}</p>'
    title = f"<h{level}>{esc(report.title or run.pipeline)}: {badge(run.status)}</h{level}>"
    lines = [run_facts(run, report), esc(step_counts(run))]
    if history_line(report):
        lines.append("History: " + esc(history_line(report)))
    return title + '\n<p class="facts">' + "<br>\n".join(lines) + "</p>"


def run_facts(run: RunRecord, report: HealthReport) -> str:
    facts = [f"Run {code(run.id)}"]
    where = " @ ".join(code(part) for part in (run.branch, (run.git_sha or "")[:7]) if part)
    facts += [where] if where else []
    facts += [f"PR #{run.pr_number}"] if run.pr_number is not None else []
    facts.append(esc(run.event or run.trigger))
    facts += [esc(duration(run.duration_ms))] if run.duration_ms is not None else []
    facts += [run_link(report.links.logs, "logs on GitHub")] if report.links else []
    return " · ".join(facts)


def step_counts(run: RunRecord) -> str:
    """2 failed · 5 passed (1 flaky) · 1 skipped"""
    count = {s: sum(step.status == s for step in run.steps) for s in _STATUS_WORDS}
    flaky = len(run.flaky_steps)
    parts = [f"{count['failed']} failed"] if count["failed"] else []
    parts.append(f"{count['completed']} passed" + (f" ({flaky} flaky)" if flaky else ""))
    parts += [f"{count[s]} {s}" for s in ("skipped", "cancelled") if count[s]]
    return " · ".join(parts)


def history_line(report: HealthReport) -> str:
    """The Markdown report's history line, as plain text (escaped where it is placed)."""
    return markdown_history_line(report, escape=str)


# --- steps, failures ---


def steps_section(run: RunRecord | None) -> str:
    if run is None or not run.steps:
        return ""
    rows = [
        [
            badge(step_status(step), _STATUS_WORDS.get(step_status(step), step.status)),
            esc(step.name),
            esc(duration(step.duration_ms)) if ran(step) else "—",
            esc(vs_median(step)) if ran(step) else "—",
            str(len(step.attempts)) if step.attempts else "—",
            esc(step_note(step)),
        ]
        for step in run.steps
    ]
    headers = ("Status", "Step", "Duration", "vs median", "Attempts", "Notes")
    return section("steps", "Steps", table(headers, rows, "llrrrl"))


def ran(step: StepRecord) -> bool:
    return step.status in ("completed", "failed") or bool(step.attempts)


def vs_median(step: StepRecord) -> str:
    if not step.median_ms or step.median_ms <= 0:
        return "—"
    return signed_percent(step.duration_ms / step.median_ms - 1)


def failures_section(report: HealthReport) -> str:
    run = report.run
    if run is None or not run.failed_steps:
        return ""
    context = failure_context(report)
    blocks = []
    for step in run.failed_steps:
        label = context.label(step.name)
        words = ""
        if label is not None:
            said, evidence = label_words(label, context.base)
            words = f" · <i>{esc(said)}</i>" + (f" ({esc(evidence)})" if evidence else "")
        summary = f"<b>{esc(step.name)}</b>: {esc(step.reason or 'failed')}{words}"
        blocks.append(
            f"<details>\n<summary>{summary}</summary>\n{failure_body(step, report)}\n</details>"
        )
    return section("failures", "Failures", *blocks)


def failure_body(step: StepRecord, report: HealthReport) -> str:
    facts = []
    if report.links:
        facts.append("Log: " + run_link(report.links.logs, "on GitHub"))
    elif step.log_path:
        facts.append("Log: " + code(step.log_path))
    if len(step.attempts) > 1:
        facts.append(f"{len(step.attempts)} attempts")
    tail = log_lines(step.log_tail, *TAIL_LEVELS[0])
    parts = [f"<p>{' · '.join(facts)}</p>"] if facts else []
    parts += [f"<pre>{esc(tail)}</pre>"] if tail.strip() else []
    bad = [t for t in step.tests if t.status in ("failed", "error")]
    if bad:
        items = [
            f"<li>{code(t.id)}" + (f": {esc(first_line(t.message))}" if t.message else "") + "</li>"
            for t in bad[:FAILED_TESTS_SHOWN]
        ]
        more = (
            [f"<li>… and {len(bad) - FAILED_TESTS_SHOWN} more</li>"]
            if len(bad) > FAILED_TESTS_SHOWN
            else []
        )
        parts.append("<p>Failed tests:</p>\n<ul>" + "".join(items + more) + "</ul>")
    if step.junit_problems:
        items = [f"<li>{esc(problem)}</li>" for problem in step.junit_problems]
        parts.append("<p>JUnit files that could not be read:</p>\n<ul>" + "".join(items) + "</ul>")
    return "\n".join(parts)


# --- fixed, changes, flaky ---


def subject(step: str, test: str | None) -> str:
    return f"test {code(test)} in <b>{esc(step)}</b>" if test else f"<b>{esc(step)}</b>"


def fixed_section(base: BaseComparison | None) -> str:
    if base is None or not base.fixed:
        return ""
    items = []
    for label in base.fixed:
        since = f" since {label.failing_since[:7]}" if label.failing_since else ""
        items.append(
            f"<li>{subject(label.step, label.test)}: failing on {esc(base.base)}{esc(since)}</li>"
        )
    return section("fixed", "Fixed by this PR", "<ul>" + "\n".join(items) + "</ul>")


def changes_section(report: HealthReport) -> str:
    blocks = []
    if report.changes:
        blocks.append("<ul>" + "\n".join(change_item(c) for c in report.changes) + "</ul>")
    if report.run is not None and report.run_failures:
        items = []
        for mark in report.run_failures:
            known = "not known flaky"
            if mark.known_flaky:
                known = f"known flaky, {mark.flaky_runs} of {mark.runs} runs"
                known += f" ({percent(mark.flake_rate)})"
            change = {"broken": " · broken", "new": " · new failure"}.get(mark.change or "", "")
            items.append(f"<li>{subject(mark.step, mark.test)}: {esc(known + change)}</li>")
        blocks.append(
            f"<p>Failures in run {code(report.run.id)}:</p>\n<ul>" + "\n".join(items) + "</ul>"
        )
    return section("changes", "Broken, new and fixed", *blocks) if blocks else ""


def change_item(change: Change) -> str:
    sha = code(change.sha[:7]) if change.sha else "an unknown commit"
    text = f"<li>{subject(change.step, change.test)}: {_CHANGE_WORDS[change.kind]} {sha}"
    text += " or earlier" if change.earlier_unknown else ""
    text += f" (run {code(change.fixed_in.run_id)})" if change.fixed_in else ""
    runs = "run" if change.failed_runs == 1 else "runs"
    commits = "commit" if change.commits == 1 else "commits"
    text += f" · failed in {change.failed_runs} {runs} on {change.commits} {commits}"
    first, last = code(change.first_seen.run_id), code(change.last_seen.run_id)
    return text + f" · first run {first}, last run {last}</li>"


def flaky_section(report: HealthReport) -> str:
    blocks = []
    if report.run is not None and (
        report.run.flaky_steps or any(t.flaky for s in report.run.steps for t in s.tests)
    ):
        items = [
            f"<li>{subject(s.name, None)}: {esc(s.reason or 'flaky')}</li>"
            for s in report.run.flaky_steps
        ]
        items += [
            f"<li>{subject(s.name, t.id)}</li>"
            for s in report.run.steps
            for t in s.tests
            if t.flaky
        ]
        blocks.append(f"<p>In run {code(report.run.id)}:</p>\n<ul>" + "\n".join(items) + "</ul>")
    for what, group in (
        ("steps", list(report.flaky)),
        ("tests", [f for f in report.flaky_tests if f.test is not None]),
    ):
        if group:
            intro = f"<p>Flaky {what} (flaky runs of the runs where each ran):</p>"
            blocks.append(f"{intro}\n{flaky_table(what, group)}")
            blocks.append(evidence_details(what, group))
    return section("flaky", "Flaky", *blocks) if blocks else ""


def flaky_table(what: str, group: Sequence[FlakyStep]) -> str:
    tests = what == "tests"
    rows = [flaky_cells(f, tests, esc) for f in group]
    headers = (
        "Step",
        *(["Test"] if tests else []),
        "Flaky runs / runs",
        "Flake rate",
        "Evidence (runs)",
        "Last seen",
    )
    return table(headers, rows, ("ll" if tests else "l") + "rrll")


def evidence_details(what: str, group: Sequence[FlakyStep]) -> str:
    items = []
    for f in group:
        if not f.evidence:
            continue
        runs = [
            f"<li>{esc(ref_text_of(e.run_id, e.sha, e.started_at))}: "
            f"{esc(EVIDENCE_WORDS.get(e.kind, e.kind))}"
            + (f", passed in run {code(e.other_run)}" if e.other_run else "")
            + "</li>"
            for e in f.evidence
        ]
        items.append(f"<li>{subject(f.step, f.test)}<ul>{''.join(runs)}</ul></li>")
    if not items:
        return ""
    summary = f"Evidence: the runs that show each of these {what} flaky, latest first"
    return (
        f"<details>\n<summary>{esc(summary)}</summary>\n<ul>"
        + "\n".join(items)
        + "</ul>\n</details>"
    )


def ref_text_of(run_id: str, sha: str | None, started: float) -> str:
    return f"run {run_id}" + (f" @ {sha[:7]}" if sha else "") + f" ({day(started)})"


# --- hotspots, regressions, stats ---


def hotspots_section(report: HealthReport) -> str:
    blocks = [hotspot_table(report.hotspots, False)] if report.hotspots else []
    if report.test_hotspots:
        blocks.append("<p>Tests:</p>\n" + hotspot_table(report.test_hotspots, True))
    return section("hotspots", "Failure hotspots", *blocks) if blocks else ""


def hotspot_table(spots: Sequence[Hotspot], tests: bool) -> str:
    rows = [
        [
            esc(h.step),
            *([esc(h.test or "")] if tests else []),
            f"{h.failed_runs}/{h.runs}",
            percent(h.failure_rate),
            esc(duration(h.time_lost_ms)),
        ]
        for h in spots
    ]
    headers = (
        "Step",
        *(["Test"] if tests else []),
        "Failed runs / runs",
        "Failure rate",
        "Time lost",
    )
    return table(headers, rows, ("ll" if tests else "l") + "rrr")


def regressions_section(report: HealthReport) -> str:
    if not report.regressions:
        return ""
    rows = [
        [
            esc(r.step),
            esc(duration(r.earlier_median_ms)),
            esc(duration(r.recent_median_ms)),
            esc(signed_percent(r.change)),
            f"{r.recent_runs} / {r.earlier_runs}",
        ]
        for r in report.regressions
    ]
    headers = ("Step", "Earlier median", "Recent median", "Change", "Runs (recent / earlier)")
    return section("regressions", "Slower than before", table(headers, rows, "lrrrr"))


def stats_section(report: HealthReport) -> str:
    if not report.stats:
        return ""
    rows = [
        [
            esc(s.step),
            str(s.runs),
            percent(s.reliability) if s.reliability is not None else "—",
            esc(duration(s.p50_ms)),
            esc(duration(s.p95_ms)),
        ]
        for s in report.stats
    ]
    return section(
        "stats",
        "Per-step stats",
        table(("Step", "Runs", "Reliability", "p50", "p95"), rows, "lrrrr"),
    )


# --- trends, graph, notes ---


def trends_section(report: HealthReport) -> str:
    drawn = trend_charts(report.trend)
    if not drawn.charts and not drawn.notes:
        return ""
    charts = '<div class="charts">\n' + "\n".join(chart_svg(c) for c in drawn.charts) + "\n</div>"
    notes = [f'<p class="note">{esc(note)}</p>' for note in drawn.notes]
    return section("trends", "Trends", charts if drawn.charts else "", *notes)


def graph_section(report: HealthReport) -> str:
    path = " → ".join(esc(step) for step in report.critical_path)
    run = report.run
    if not (run and run.steps):
        return section("graph", "Critical path", f"<p>{path}</p>") if path else ""
    names = {clean(s.name) for s in run.steps}
    graph = {clean(s.name): [n for n in map(clean, s.needs) if n in names] for s in run.steps}
    status = {clean(s.name): step_status(s) for s in run.steps}
    legend = " ".join(
        badge(s, _STATUS_WORDS[s]) for s in ("completed", "flaky", "failed", "skipped", "cancelled")
    )
    critical = f"<p>Critical path: {path}</p>" if path else ""
    return section("graph", "Pipeline graph", dag_svg(graph, status), f"<p>{legend}</p>", critical)


def notes_section(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return section(
        "notes", "Notes", "<ul>" + "\n".join(f"<li>{esc(note)}</li>" for note in notes) + "</ul>"
    )


# --- several pipelines ---


def overview_table(reports: Sequence[HealthReport]) -> str:
    rows = [
        [
            esc(pipeline_name(report)),
            badge(pipeline_state(report)),
            esc(report.run.status) if report.run else "—",
            percent(report.pass_rate) if report.pass_rate is not None else "—",
            str(report.runs_considered),
            esc(duration(report.mean_duration_ms)),
        ]
        for report in reports
    ]
    headers = ("Pipeline", "State", "Latest run", "Pass rate", "Runs", "Mean duration")
    return table(headers, rows, "lllrrr")
