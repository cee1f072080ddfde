"""Markdown for a PR comment, a job summary or the nightly issue (pure: a report in, text out).

Sections, most important first: status header, step table, failures (log tails in `<details>`),
what the PR fixed, what broke, failed anew or was fixed on the branch (with the run's failures
marked known flaky or not), flaky steps and tests (their evidence in `<details>`), failure
hotspots of steps and tests, duration regressions, per-step stats, trend charts (Mermaid
`xychart-beta`: dropped first when the budget is tight), Mermaid graph (and the report's
notes). Every count says its unit (runs, commits). Each section is rendered in a few variants,
from complete to compact to left out. `fit` starts with the complete ones and walks `_STAGES`
until the text fits the byte budget: the trend charts go first, then log tails are shortened,
then sections are left out from the lowest priority up, and what was cut is said in a closing
note. Failed steps keep at least a line each with their name until nothing else is left.

Escaping, by where the text lands:
- Markdown text (`md`): one line; backslash, backtick and * _ [ ] < > & | ~ $ backslash-escaped
  (so no emphasis, code, links, raw HTML, entities, strikethrough, math or table-cell breaks), a
  block marker at the start (# + = - 1.) escaped too, and what GitHub would link by itself
  (`@user`, `#12`, `owner/repo#12`, `GH-12`, `https://…`, `www.…`) broken by a zero-width joiner
  (`unlinked`), so that nobody is pinged, no issue cross-referenced, no foreign link posted.
- HTML (`html_text`, inside `<summary>`): entity-escaped, one line, unlinked the same way.
- Inline code (`code`): never inside tables; delimited by a backtick run longer than any inside.
- Log tails (`fenced`): a fence of backticks longer than any backtick run in the text, so no line
  of output can close it; inside it `</details>`, HTML and mentions are inert text.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.records import RunRecord, StepRecord, TestCaseRecord
from ci_orchestrator.render import plural
from ci_orchestrator.render.charts import to_xychart, trend_charts
from ci_orchestrator.render.graph import to_mermaid
from ci_orchestrator.render.text import clean, log_lines, one_line
from ci_orchestrator.report_records import (
    BaseComparison,
    BaseLabel,
    Change,
    EvidenceCount,
    FailureMark,
    FlakyStep,
    HealthReport,
    Hotspot,
    RunLinks,
    RunRef,
)
from ci_orchestrator.skipping import skipped_on_purpose

COMMENT_BUDGET = 65_536  # GitHub's limit on a comment body (characters; we count bytes: stricter)
SUMMARY_BUDGET = 1024 * 1024  # GitHub's limit on a step's job summary (bytes)
# Log tail size per failed step, (lines, characters), from the complete form to "a few lines".
TAIL_LEVELS = ((50, 6000), (20, 2500), (10, 1200), (5, 600))
CELL_LIMIT = 200  # characters of a reason or message in a table cell or list item
FAILED_TESTS_SHOWN = 10

_STEP_ICONS = {
    "completed": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "cancelled": "⛔",
    "running": "🔄",
    "pending": "⏳",
}
_FLAKY_ICON = "⚠️"
_MINUS = "\u2212"
_RUN_ICONS = {"passed": "✅", "failed": "❌"}  # interrupted, abandoned, running: ⚠️
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")
_BLOCK_START = re.compile(r"^(?:([#+=-])|(\d+)([.)]))")
_BACKTICKS = re.compile(r"`+")
# What GitHub links by itself, up to the point where a joiner breaks it.
_AUTOLINKS = re.compile(r"@|#(?=\d)|\bGH-(?=\d)|:/(?=/)|\bww(?=w\.)", re.IGNORECASE)


@dataclass(frozen=True)
class Variant:
    """One way to render a section ("" when it is left out), and what it leaves out or shortens
    against the complete form, for the closing note."""

    text: str
    left_out: str = ""
    shortened: str = ""


# Render order; a section with no content has the single variant Variant("").
_ORDER = (
    "header",
    "steps",
    "failures",
    "fixed",
    "changes",
    "flaky",
    "hotspots",
    "regressions",
    "stats",
    "trends",
    "graph",
    "notes",
)
# How `fit` degrades, as (section, how far): "shorten" goes down to the last variant that leaves
# nothing out, "compact" to the last but one, "last" all the way. Tails first, then sections from
# the lowest priority up; the failed steps' names are the last thing standing.
_STAGES = (
    ("trends", "last"),
    ("failures", "shorten"),
    ("graph", "last"),
    ("notes", "last"),
    ("stats", "last"),
    ("regressions", "last"),
    ("hotspots", "last"),
    ("flaky", "last"),
    ("changes", "last"),
    ("fixed", "last"),
    ("failures", "compact"),
    ("steps", "last"),
    ("failures", "last"),
)


def render_markdown(
    report: HealthReport, *, budget: int = COMMENT_BUDGET, marker: str | None = None
) -> str:
    """The report as Markdown of at most `budget` UTF-8 bytes.

    `marker`, when given, comes first as a hidden HTML comment (pass `<!-- id -->` or just `id`),
    so that a sticky comment can be found again.
    """
    sections = {
        "header": [Variant(header(report))],
        "steps": step_table_variants(report.run),
        "failures": failure_variants(report.run, failure_context(report)),
        "fixed": optional(fixed_section(report.base), "what this PR fixed"),
        "changes": optional(changes_section(report), "broken, new and fixed"),
        "flaky": flaky_variants(report),
        "hotspots": optional(hotspot_section(report), "failure hotspots"),
        "regressions": optional(regression_section(report), "duration regressions"),
        "stats": optional(stats_section(report), "per-step stats"),
        "trends": trend_variants(report),
        "graph": optional(graph_section(report), "the Mermaid graph"),
        "notes": optional(notes_section(report.notes), "notes"),
    }
    prefix = marker_line(marker) if marker else ""
    return fit(
        sections, budget, prefix, lambda chosen: cut_note(chosen, budget, report.run, report.links)
    )


def optional(text: str, name: str) -> list[Variant]:
    """A section that is either there whole or left out."""
    return [Variant(text), Variant("", left_out=name)] if text else [Variant("")]


# --- fitting into the budget ---


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def fit(
    sections: dict[str, list[Variant]],
    budget: int,
    prefix: str,
    note: Callable[[list[Variant]], str],
) -> str:
    """Walk `_STAGES` one variant at a time until the text fits; cut hard if even that fails."""
    levels = dict.fromkeys(sections, 0)
    text = assemble(sections, levels, prefix, note)
    for key, how_far in _STAGES:
        target = stage_target(sections[key], how_far)
        while size(text) > budget and levels[key] < target:
            levels[key] += 1
            text = assemble(sections, levels, prefix, note)
    if size(text) <= budget:
        return text
    rest = Variant("", left_out="the rest of the text")
    notes = (note([*current(sections, levels), rest]), f"_Cut to fit {limit_label(budget)}._")
    return hard_cut(prefix, assemble(sections, levels, "", None), budget, notes)


def stage_target(variants: Sequence[Variant], how_far: str) -> int:
    last = len(variants) - 1
    if how_far == "shorten":
        return max(i for i, variant in enumerate(variants) if not variant.left_out)
    return max(0, last - 1) if how_far == "compact" else last


def assemble(
    sections: dict[str, list[Variant]],
    levels: dict[str, int],
    prefix: str,
    note: Callable[[list[Variant]], str] | None,
) -> str:
    chosen = current(sections, levels)
    blocks = [variant.text for variant in chosen if variant.text]
    if note and any(variant.left_out or variant.shortened for variant in chosen):
        blocks.append(note(chosen))
    return prefix + "\n\n".join(blocks) + "\n"


def current(sections: dict[str, list[Variant]], levels: dict[str, int]) -> list[Variant]:
    return [sections[key][levels[key]] for key in _ORDER]


def hard_cut(prefix: str, text: str, budget: int, notes: Sequence[str]) -> str:
    """The marker, whole lines from the start of `text`, and the first note that leaves room.

    Only reached when the names of the failed steps alone exceed the budget: all that is left then
    is the header and a list, plain lines that are safe to cut between."""
    for note in notes:
        room = budget - size(prefix) - size(note) - 2
        if room >= 0:
            head = text.encode("utf-8")[:room].decode("utf-8", "ignore")
            return prefix + head[: head.rfind("\n") + 1] + "\n" + note + "\n"
    return prefix.encode("utf-8")[:budget].decode("utf-8", "ignore")


def cut_note(
    chosen: Sequence[Variant], budget: int, run: RunRecord | None, links: RunLinks | None = None
) -> str:
    """`_Cut to fit …: left out A, B; log tails shortened. Full logs: …_`"""
    left_out = [variant.left_out for variant in chosen if variant.left_out]
    shortened = [variant.shortened for variant in chosen if variant.shortened]
    parts = [f"left out {', '.join(left_out)}"] if left_out else []
    parts += [f"{' and '.join(shortened)} shortened"] if shortened else []
    return f"_Cut to fit {limit_label(budget)}: {'; '.join(parts)}.{logs_hint(run, links)}_"


def limit_label(budget: int) -> str:
    if budget == COMMENT_BUDGET:
        return "GitHub's 65,536-character comment limit"
    if budget == SUMMARY_BUDGET:
        return "GitHub's 1 MiB job summary limit"
    return f"a budget of {budget:,} bytes"


def logs_hint(run: RunRecord | None, links: RunLinks | None = None) -> str:
    if run is None:
        return ""
    if links is not None:
        return f" Full logs: {link('on GitHub', links.logs)}."
    paths = [s.log_path for s in run.failed_steps if s.log_path]
    paths = paths or [s.log_path for s in run.steps if s.log_path]
    if not paths:
        return " Full logs: in the job output."
    return f" Full logs: in the job output and under {code(posixpath.dirname(paths[0]) + '/')}."


def marker_line(marker: str) -> str:
    """The hidden comment, alone on the first line; a bare id is wrapped in `<!-- -->`."""
    text = one_line(marker).strip()
    if not (text.startswith("<!--") and text.endswith("-->")):
        text = f"<!-- {text.replace('--', '- -')} -->"
    return text + "\n"


# --- escaping ---


def clip(text: str, limit: int = CELL_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md(text: str) -> str:
    """Text as inert Markdown on one line, safe in a table cell: see the module docstring."""
    escaped = _MD_SPECIAL.sub(r"\\\1", one_line(text).strip())
    escaped = _BLOCK_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", escaped)
    return unlinked(escaped)


def html_text(text: str) -> str:
    """Text as inert HTML on one line (inside `<summary>`, where Markdown is not parsed)."""
    escaped = one_line(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return unlinked(escaped.replace('"', "&quot;"))


def unlinked(text: str) -> str:
    """Text that GitHub will not turn into links: a zero-width joiner breaks up mentions
    (`@user`), references (`#12`, `owner/repo#12`, `GH-12`) and bare URLs (`https://`, `www.`),
    so that text from steps and tests never pings, cross-references or links from our bot."""
    return _AUTOLINKS.sub("\\g<0>\u200d", text)


def code(text: str) -> str:
    """An inline code span that holds any text; not for table cells (a `|` would split them)."""
    text = one_line(text)
    if not text:
        return ""
    ticks = "`" * (longest_backtick_run(text) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)


def fenced(text: str, info: str = "") -> str:
    """A fenced code block no line of `text` can close."""
    fence = "`" * max(3, longest_backtick_run(text) + 1)
    return f"{fence}{info}\n{text}\n{fence}"


# --- small formats ---


def percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}%".replace(".0%", "%")


def signed_percent(change: float) -> str:
    """+35%, -10% written with a real minus sign (U+2212), ±0%."""
    value = round(change * 100)
    if value == 0:
        return "±0%"
    return f"+{value}%" if value > 0 else f"{_MINUS}{-value}%"


def duration(ms: float | None) -> str:
    return "—" if ms is None else format_seconds(ms / 1000)


def day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d")


def table(headers: Sequence[str], align: str, rows: Sequence[Sequence[str]]) -> str:
    """A GFM table; `align` has one of l, r, c per column. Cells must already be escaped."""
    rules = {"l": "---", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(rules[a] for a in align) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines)


# --- (1) header ---


def header(report: HealthReport) -> str:
    run = report.run
    history = history_line(report)
    if run is None:
        icon = "✅" if report.pass_rate == 1 else "⚠️"
        title = md(report.title or "Pipeline health")
        return f"## {icon} {title}\n\n{history or 'No runs recorded.'}"
    icon = _RUN_ICONS.get(run.status, "⚠️")
    title = md(report.title or run.pipeline)
    facts = [run_facts(run), step_counts(run)] + ([f"History: {history}"] if history else [])
    # A backslash at the end of a line is a hard line break: one short paragraph, three lines.
    return f"## {icon} {title}: {md(run.status)}\n\n" + "\\\n".join(facts)


def run_facts(run: RunRecord) -> str:
    """Run `R1` · `main` @ `abc1234` · PR #12 · push · 1m05s"""
    facts = [f"Run {code(run.id)}"]
    if run.branch or run.git_sha:
        where = " @ ".join(code(part) for part in (run.branch, (run.git_sha or "")[:7]) if part)
        facts.append(where)
    if run.pr_number is not None:
        facts.append(f"PR #{run.pr_number}")
    facts.append(md(run.event or run.trigger))
    if run.duration_ms is not None:
        facts.append(duration(run.duration_ms))
    return " · ".join(facts)


def step_counts(run: RunRecord) -> str:
    """**2 failed** · 5 passed (1 flaky) · 1 skipped · 1 cancelled"""
    count = {status: sum(s.status == status for s in run.steps) for status in _STEP_ICONS}
    flaky = len(run.flaky_steps)
    passed = f"{count['completed']} passed" + (f" ({flaky} flaky)" if flaky else "")
    parts = [f"**{count['failed']} failed**" if count["failed"] else "", passed]
    parts += [f"{count[s]} {s}" for s in ("skipped", "cancelled") if count[s]]
    unfinished = count["running"] + count["pending"]
    parts.append(f"{unfinished} not finished" if unfinished else "")
    return " · ".join(part for part in parts if part)


def history_line(report: HealthReport, escape: Callable[[str], str] = md) -> str:
    """42 runs since 2024-05-01 (9 on main) · pass rate 90.5% · mean duration 3m12s; `escape`
    makes the base branch's name safe where the line goes (Markdown by default)."""
    if not report.runs_considered:
        return ""
    runs = f"{report.runs_considered} run{'s' if report.runs_considered != 1 else ''}"
    runs += f" since {day(report.since)}" if report.since is not None else ""
    parts = [runs + base_share(report.base, escape)]
    if report.pass_rate is not None:
        parts.append(f"pass rate {percent(report.pass_rate)}")
    if report.mean_duration_ms is not None:
        parts.append(f"mean duration {duration(report.mean_duration_ms)}")
    if report.steps_saved:
        parts.append(time_saved(report))
    return " · ".join(parts)


def time_saved(report: HealthReport) -> str:
    """`4m10s saved by 37 skipped steps (unchanged or up to date)`"""
    steps = plural(report.steps_saved, "skipped step")
    return f"{duration(report.time_saved_ms)} saved by {steps} (unchanged or up to date)"


def base_share(base: BaseComparison | None, escape: Callable[[str], str] = md) -> str:
    """`(9 on main)` after the run count: the base-branch runs the labels rest on."""
    if base is None:
        return ""
    last = "last " if base.runs >= base.window else ""
    return f" ({last}{base.runs} on {escape(base.base)})"


# --- (2) step table ---


def step_table_variants(run: RunRecord | None) -> list[Variant]:
    if run is None or not run.steps:
        return [Variant("")]
    variants = [Variant(step_table(run.steps))]
    problems = [step for step in run.steps if not passed_cleanly(step)]
    if problems and len(problems) < len(run.steps):
        variants.append(Variant(step_table(problems), left_out="passed steps from the step table"))
    variants.append(Variant("", left_out="the step table"))
    return variants


def passed_cleanly(step: StepRecord) -> bool:
    return step.status == "completed" and not step.flaky


def is_flaky_pass(step: StepRecord) -> bool:
    return step.status == "completed" and step.flaky


def step_table(steps: Sequence[StepRecord]) -> str:
    headers = ("", "Step", "Duration", "vs median", "Attempts", "Notes")
    rows = [step_row(step) for step in steps]
    return "### Steps\n\n" + table(headers, "clrrrl", rows)


def step_row(step: StepRecord) -> list[str]:
    ran = step.status in ("completed", "failed") or bool(step.attempts)
    return [
        step_icon(step),
        md(step.name),
        duration(step.duration_ms) if ran else "—",
        change_vs_median(step) if ran else "—",
        str(len(step.attempts)) if step.attempts else "—",
        md(clip(step_note(step))),
    ]


def step_icon(step: StepRecord) -> str:
    if is_flaky_pass(step):
        return _FLAKY_ICON
    return _STEP_ICONS.get(step.status, "❔")


def change_vs_median(step: StepRecord) -> str:
    if not step.median_ms or step.median_ms <= 0:
        return "—"
    return signed_percent(step.duration_ms / step.median_ms - 1)


def step_note(step: StepRecord) -> str:
    """Why it failed or was skipped, `flaky`, and what its tests said."""
    notes = []
    if step.flaky:
        notes.append(f"flaky ({step.reason})" if step.reason else "flaky")
    elif step.status != "completed" and step.reason:
        notes.append(step.reason)
    if step.tests:
        notes.append(test_counts(step.tests))
    if step.junit_problems:
        count = len(step.junit_problems)
        notes.append(f"{count} JUnit file{'s' if count > 1 else ''} unreadable")
    return "; ".join(notes)


def test_counts(tests: Sequence[TestCaseRecord]) -> str:
    """tests: 40 passed (1 flaky), 2 failed, 1 skipped"""
    count = {s: sum(t.status == s for t in tests) for s in ("passed", "failed", "error", "skipped")}
    flaky = sum(t.flaky for t in tests)
    parts = [f"{count['passed']} passed" + (f" ({flaky} flaky)" if flaky else "")]
    parts += [f"{count[s]} {s}" for s in ("failed", "error", "skipped") if count[s]]
    return "tests: " + ", ".join(parts)


# --- (3) failures ---


@dataclass(frozen=True)
class FailureContext:
    """What failures are shown with: their labels against the base branch (by step and test id),
    and the run's logs on GitHub (then no local log path is shown: the runner is gone)."""

    base: str = ""
    labels: dict[tuple[str, str | None], BaseLabel] | None = None
    logs_url: str = ""

    def label(self, step: str, test: str | None = None) -> BaseLabel | None:
        return self.labels.get((step, test)) if self.labels else None


def failure_context(report: HealthReport) -> FailureContext:
    base, links = report.base, report.links
    labels = {(label.step, label.test): label for label in base.labels} if base else None
    return FailureContext(base.base if base else "", labels, links.logs if links else "")


def failure_variants(run: RunRecord | None, context: FailureContext) -> list[Variant]:
    """Tails at every level, then tails for fewer and fewer steps, then a list, then names."""
    failed = run.failed_steps if run else []
    if not failed:
        return [Variant("")]
    variants = [Variant(failures(failed, len(failed), 0, context))]
    for level in range(1, len(TAIL_LEVELS)):
        text = failures(failed, len(failed), level, context)
        if text != variants[-1].text:  # short tails stay as they are: nothing to report as cut
            variants.append(Variant(text, shortened="log tails"))
    last = len(TAIL_LEVELS) - 1
    shown = len(failed) // 2
    while shown:
        left_out = f"the log tails of {len(failed) - shown} of {len(failed)} failed steps"
        variants.append(Variant(failures(failed, shown, last, context), left_out, "log tails"))
        shown //= 2
    variants.append(Variant(failures(failed, 0, last, context), left_out="log tails"))
    names = failed_names(failed, context)
    variants.append(Variant(names, left_out="log tails and failure reasons"))
    return variants


def failures(
    failed: Sequence[StepRecord], detailed: int, level: int, context: FailureContext
) -> str:
    """The first `detailed` failed steps with their log tails, the others as a list."""
    blocks = ["### Failures"]
    blocks += [failure_details(step, *TAIL_LEVELS[level], context) for step in failed[:detailed]]
    if failed[detailed:]:
        blocks.append("\n".join(failure_item(step, context) for step in failed[detailed:]))
        if context.logs_url:  # one place for all of them: said once
            blocks.append(f"Logs: {link('on GitHub', context.logs_url)}")
    return "\n\n".join(blocks)


def failure_details(step: StepRecord, lines: int, chars: int, context: FailureContext) -> str:
    """A closed `<details>` whose summary says what failed, why, and whether it is new; the tail
    in a safe fence."""
    summary = f"❌ <b>{html_text(step.name)}</b>: {html_text(clip(step.reason or 'failed'))}"
    summary += label_html(context.label(step.name), context.base)
    tail = log_lines(step.log_tail, lines, chars)
    blocks = [f"<details><summary>{summary}</summary>"]
    facts = failure_facts(step, tail.count("\n") + 1 if tail else 0, context.logs_url)
    if facts:
        blocks.append(facts)
    if tail.strip():
        blocks.append(fenced(tail, "text"))
    blocks += [part for part in (failed_tests(step, context), junit_problems(step)) if part]
    blocks.append("</details>")
    return "\n\n".join(blocks)


def failure_facts(step: StepRecord, tail_lines: int, logs_url: str = "") -> str:
    """Log: `path` (or a link to the logs on GitHub) · 3 attempts · last 20 lines"""
    facts = [f"Log: {log_place(step, logs_url)}"] if step.log_path or logs_url else []
    if len(step.attempts) > 1:
        facts.append(f"{len(step.attempts)} attempts")
    if tail_lines:
        facts.append(f"last {tail_lines} line{'s' if tail_lines > 1 else ''}")
    return " · ".join(facts)


def log_place(step: StepRecord, logs_url: str) -> str:
    return link("on GitHub", logs_url) if logs_url else code(step.log_path or "")


def link(text: str, url: str) -> str:
    """A Markdown link to an http(s) URL, percent-encoded so that no character of it ends the
    link or starts markup; for any other URL, the text alone."""
    if not url.startswith(("https://", "http://")):
        return md(text)
    return f"[{md(text)}]({quote(url, safe=':/?#&=%+,;')})"


def failed_tests(step: StepRecord, context: FailureContext) -> str:
    """The failed tests, new ones first when they are labelled, each with its label."""
    bad = [t for t in step.tests if t.status in ("failed", "error")]
    if not bad:
        return ""
    labels = {t.id: context.label(step.name, t.id) for t in bad}
    bad.sort(key=lambda t: label_rank(labels[t.id]))
    items = [
        f"- {code(t.id)}{label_md(labels[t.id], context.base)}"
        + (f": {md(clip(first_line(t.message)))}" if t.message else "")
        for t in bad[:FAILED_TESTS_SHOWN]
    ]
    if len(bad) > FAILED_TESTS_SHOWN:
        items.append(f"- … and {len(bad) - FAILED_TESTS_SHOWN} more")
    return "Failed tests:\n\n" + "\n".join(items)


def junit_problems(step: StepRecord) -> str:
    if not step.junit_problems:
        return ""
    items = [f"- {md(clip(problem))}" for problem in step.junit_problems]
    return "JUnit files that could not be read:\n\n" + "\n".join(items)


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def failure_item(step: StepRecord, context: FailureContext) -> str:
    """- ❌ **build**: exit code 2 · *new* · log `path` (no path when the logs are on GitHub)"""
    item = f"- ❌ **{md(step.name)}**: {md(clip(step.reason or 'failed'))}"
    item += label_md(context.label(step.name), context.base)
    local = step.log_path and not context.logs_url
    return item + (f" · log {code(step.log_path or '')}" if local else "")


def failed_names(failed: Sequence[StepRecord], context: FailureContext) -> str:
    items = [
        f"- ❌ **{md(step.name)}**{label_md(context.label(step.name), context.base)}"
        for step in failed
    ]
    return "### Failures\n\n" + "\n".join(items)


# Labels against the base branch: what the reviewer should look at first comes first.
_LABEL_RANKS = {"new": 0, "failing": 1, "flaky": 2}


def label_rank(label: BaseLabel | None) -> int:
    return _LABEL_RANKS.get(label.kind, 3) if label else 3


def label_words(label: BaseLabel, base: str) -> tuple[str, str]:
    """The label and its evidence: ("known flaky on main", "2 of 6 runs")."""
    if label.kind == "flaky":
        return f"known flaky on {base}", f"{label.flaky_runs} of {label.runs} runs"
    if label.kind == "failing":
        since = f"failing since {label.failing_since[:7]}" if label.failing_since else ""
        return f"also failing on {base}", since
    return label.kind, ""


def label_md(label: BaseLabel | None, base: str) -> str:
    """`· *known flaky on main* (2 of 6 runs)` after a failure."""
    if label is None:
        return ""
    words, evidence = label_words(label, base)
    return f" · *{md(words)}*" + (f" ({md(evidence)})" if evidence else "")


def label_html(label: BaseLabel | None, base: str) -> str:
    """`· <i>also failing on main</i> (failing since 3f2a9c1)`, inside a `<summary>`."""
    if label is None:
        return ""
    words, evidence = label_words(label, base)
    return f" · <i>{html_text(words)}</i>" + (f" ({html_text(evidence)})" if evidence else "")


# --- (3b) fixed ---

FIXED_SHOWN = 20


def fixed_section(base: BaseComparison | None) -> str:
    """What fails on the base branch and passed in this run."""
    fixed = base.fixed if base else []
    if base is None or not fixed:
        return ""
    items = [fixed_item(label, base.base) for label in fixed[:FIXED_SHOWN]]
    if len(fixed) > FIXED_SHOWN:
        items.append(f"- … and {len(fixed) - FIXED_SHOWN} more")
    return "### Fixed by this PR\n\n" + "\n".join(items)


def fixed_item(label: BaseLabel, base: str) -> str:
    """- ✅ test `tests.test_cache.test_expiry` in **unit**: failing on main since 3f2a9c1"""
    what = f"**{md(label.step)}**"
    if label.test is not None:
        what = f"test {code(label.test)} in {what}"
    since = f" since {label.failing_since[:7]}" if label.failing_since else ""
    return f"- ✅ {what}: {md(f'failing on {base}{since}')}"


# --- (3c) broken, new, fixed; the run's failures marked ---

CHANGES_SHOWN = 20
_CHANGE_ICONS = {"broken": "❌", "new": "🆕", "fixed": "✅"}
_CHANGE_WORDS = {"broken": "broken since", "new": "new failure at", "fixed": "fixed at"}


def changes_section(report: HealthReport) -> str:
    """What broke, failed anew or was fixed on the branch; then the run's failures, each marked
    known flaky (with its counts) or not."""
    blocks = []
    if report.changes:
        items = [change_item(change) for change in report.changes[:CHANGES_SHOWN]]
        blocks.append("\n".join(items + more(len(report.changes), CHANGES_SHOWN)))
    if report.run is not None and report.run_failures:
        marks = [mark_item(mark) for mark in report.run_failures[:CHANGES_SHOWN]]
        marks += more(len(report.run_failures), CHANGES_SHOWN)
        blocks.append(f"Failures in run {code(report.run.id)}:\n\n" + "\n".join(marks))
    return "\n\n".join(["### Broken, new and fixed", *blocks]) if blocks else ""


def more(count: int, shown: int) -> list[str]:
    return [f"- … and {count - shown} more"] if count > shown else []


def subject(step: str, test: str | None) -> str:
    """**step**, or test `id` in **step**."""
    return f"test {code(test)} in **{md(step)}**" if test else f"**{md(step)}**"


def counted(count: int, unit: str) -> str:
    """1 run, 3 runs"""
    return f"{count} {unit}{'' if count == 1 else 's'}"


def change_item(change: Change) -> str:
    """- ❌ **build**: broken since `1a2b3c4` · failed in 3 runs on 2 commits · first run `R3`,
    last run `R7`"""
    sha = code(change.sha[:7]) if change.sha else "an unknown commit"
    head = f"- {_CHANGE_ICONS[change.kind]} {subject(change.step, change.test)}:"
    head += f" {_CHANGE_WORDS[change.kind]} {sha}" + (
        " or earlier" if change.earlier_unknown else ""
    )
    if change.fixed_in is not None:
        head += f" (run {code(change.fixed_in.run_id)})"
    streak = (
        f"failed in {counted(change.failed_runs, 'run')} on {counted(change.commits, 'commit')}"
    )
    seen = f"first run {code(change.first_seen.run_id)}, last run {code(change.last_seen.run_id)}"
    return f"{head} · {streak} · {seen}"


def mark_item(mark: FailureMark) -> str:
    """- test `x` in **unit**: known flaky, 3 of 42 runs (7.1%) · new failure"""
    known = "not known flaky"
    if mark.known_flaky:
        known = f"known flaky, {mark.flaky_runs} of {counted(mark.runs, 'run')}"
        known += f" ({percent(mark.flake_rate)})"
    change = {"broken": " · broken", "new": " · new failure"}.get(mark.change or "", "")
    return f"- {subject(mark.step, mark.test)}: {known}{change}"


# --- (4) flaky ---

EVIDENCE_WORDS = {
    "retry": "retry recovery",
    "same-tree": "same-tree flip",
    "reported": "reported flaky in its run",
}


def flaky_variants(report: HealthReport) -> list[Variant]:
    """With the evidence, without it, left out."""
    full = flaky_section(report)
    if not full:
        return [Variant("")]
    variants = [Variant(full)]
    compact = flaky_section(report, evidence=False)
    if compact != full:
        variants.append(Variant(compact, left_out="the evidence of flaky steps and tests"))
    return [*variants, Variant("", left_out="flaky steps and tests")]


def flaky_section(report: HealthReport, evidence: bool = True) -> str:
    blocks = [flaky_in_run(report.run), *flaky_history(report, evidence)]
    blocks = [block for block in blocks if block]
    return "\n\n".join(["### Flaky", *blocks]) if blocks else ""


def flaky_in_run(run: RunRecord | None) -> str:
    if run is None:
        return ""
    items = [flaky_step_item(step) for step in run.flaky_steps]
    items += [
        f"- {_FLAKY_ICON} test {code(test.id)} in **{md(step.name)}**"
        for step in run.steps
        for test in step.tests
        if test.flaky
    ]
    return "\n".join(items)


def flaky_step_item(step: StepRecord) -> str:
    """- ⚠️ **test** passed on attempt 3; failed before: exit code 1, timed out"""
    failed = [a for a in step.attempts if not a.ok]
    what = [
        "timed out" if a.timed_out else clip(a.error, 80) if a.error else f"exit code {a.exit_code}"
        for a in failed
    ]
    item = f"- {_FLAKY_ICON} **{md(step.name)}** {md(step.reason or 'flaky')}"
    return item + (f"; failed before: {md(', '.join(what))}" if what else "")


def flaky_history(report: HealthReport, evidence: bool = True) -> list[str]:
    """Flaky steps, then flaky tests: a table each, and their evidence in a closed `<details>`."""
    entries = [*report.flaky, *report.flaky_tests]
    blocks = []
    for what, group in (
        ("steps", [f for f in entries if f.test is None]),
        ("tests", [f for f in entries if f.test is not None]),
    ):
        if group:
            blocks.append(flaky_table(what, group))
            if evidence and any(f.evidence for f in group):
                blocks.append(evidence_details(what, group))
    return blocks


def flaky_cells(f: FlakyStep, tests: bool, escape: Callable[[str], str]) -> list[str]:
    """One row of a flaky table (Markdown's or HTML's, by `escape`)."""
    return [
        escape(f.step),
        *([escape(f.test or "")] if tests else []),
        f"{f.flaky_runs}/{f.runs}",
        percent(f.flake_rate),
        escape(kinds_text(f.kinds)) or "—",
        escape(ref_text(f.last_seen)) if f.last_seen else "—",
    ]


def flaky_table(what: str, group: Sequence[FlakyStep]) -> str:
    tests = what == "tests"
    rows = [flaky_cells(f, tests, md) for f in group]
    headers = ("Step", *(["Test"] if tests else []), "Flaky runs / runs", "Flake rate")
    grid = table(
        (*headers, "Evidence (runs)", "Last seen"), ("ll" if tests else "l") + "rrll", rows
    )
    return f"Flaky {what} (flaky runs of the runs where each ran):\n\n{grid}"


def kinds_text(kinds: Sequence[EvidenceCount]) -> str:
    """retry recovery 3, same-tree flip 1"""
    return ", ".join(f"{EVIDENCE_WORDS.get(k.kind, k.kind)} {k.runs}" for k in kinds)


def ref_text(ref: RunRef) -> str:
    """R7 (9f2c1e7, 2024-05-01): plain, to escape for where it lands"""
    sha = f"{ref.sha[:7]}, " if ref.sha else ""
    return f"{ref.run_id} ({sha}{day(ref.started_at)})"


def ref_md(ref: RunRef) -> str:
    """run `R7` @ `9f2c1e7` (2024-05-01)"""
    sha = f" @ {code(ref.sha[:7])}" if ref.sha else ""
    return f"run {code(ref.run_id)}{sha} ({day(ref.started_at)})"


def evidence_details(what: str, group: Sequence[FlakyStep]) -> str:
    """Each flaky entry's first and last seen runs, then its evidence runs, most recent first."""
    items = []
    for f in group:
        if not f.evidence:
            continue
        seen = [f"first seen {ref_md(f.first_seen)}" if f.first_seen else ""]
        seen += [f"last seen {ref_md(f.last_seen)}" if f.last_seen else ""]
        items.append(f"- {subject(f.step, f.test)}: " + ", ".join(part for part in seen if part))
        for e in f.evidence:
            other = f", passed in run {code(e.other_run)}" if e.other_run else ""
            kind = md(EVIDENCE_WORDS.get(e.kind, e.kind))
            items.append(f"  - {ref_md(RunRef(e.run_id, e.sha, e.started_at))}: {kind}{other}")
    summary = html_text(f"Evidence: the runs that show each of these {what} flaky, latest first")
    return f"<details><summary>{summary}</summary>\n\n" + "\n".join(items) + "\n\n</details>"


# --- (5) hotspots, (6) regressions, (7) stats ---


def hotspot_section(report: HealthReport) -> str:
    """Steps, then tests, ranked by failed runs, then by time lost."""
    blocks = []
    if report.hotspots:
        blocks.append(hotspot_table(report.hotspots, tests=False))
    if report.test_hotspots:
        blocks.append("Tests:\n\n" + hotspot_table(report.test_hotspots, tests=True))
    return "\n\n".join(["### Failure hotspots", *blocks]) if blocks else ""


def hotspot_table(spots: Sequence[Hotspot], tests: bool) -> str:
    rows = [
        [
            md(h.step),
            *([md(h.test or "")] if tests else []),
            f"{h.failed_runs}/{h.runs}",
            percent(h.failure_rate),
            duration(h.time_lost_ms),
        ]
        for h in spots
    ]
    headers = ("Step", *(["Test"] if tests else []), "Failed runs / runs", "Failure rate")
    return table((*headers, "Time lost"), ("ll" if tests else "l") + "rrr", rows)


def regression_section(report: HealthReport) -> str:
    if not report.regressions:
        return ""
    rows = [
        [
            md(r.step),
            duration(r.earlier_median_ms),
            duration(r.recent_median_ms),
            signed_percent(r.change),
            f"{r.recent_runs} / {r.earlier_runs}",
        ]
        for r in report.regressions
    ]
    headers = ("Step", "Earlier median", "Recent median", "Change", "Runs (recent / earlier)")
    return "### Slower than before\n\n" + table(headers, "lrrrr", rows)


def stats_section(report: HealthReport) -> str:
    if not report.stats:
        return ""
    rows = [
        [
            md(s.step),
            str(s.runs),
            percent(s.reliability) if s.reliability is not None else "—",
            duration(s.p50_ms),
            duration(s.p95_ms),
        ]
        for s in report.stats
    ]
    headers = ("Step", "Runs", "Reliability", "p50", "p95")
    return "### Per-step stats\n\n" + table(headers, "lrrrr", rows)


# --- (7b) trends ---


def trend_variants(report: HealthReport) -> list[Variant]:
    """The charts, or nothing; a section that only says why there are no charts goes silently
    (no chart was left out)."""
    text = trends_section(report)
    if not text:
        return [Variant("")]
    charted = bool(trend_charts(report.trend).charts)
    return [Variant(text), Variant("", left_out="the trend charts" if charted else "")]


def trends_section(report: HealthReport) -> str:
    """Mermaid `xychart-beta` charts of the report's trend, each with its legend, and a line
    for each series too short to chart. A pull request's report (its comment, its job summary)
    shows charts when its history allows and says nothing otherwise: the comment is about the
    change, and a young journal would repeat that note on every push."""
    drawn = trend_charts(report.trend)
    if not drawn.charts and report.run is not None and report.run.pr_number is not None:
        return ""
    blocks = [
        fenced(to_xychart(chart), "mermaid") + f"\n\n{md(chart.legend)}" for chart in drawn.charts
    ]
    blocks += [f"_{md(note)}_" for note in drawn.notes]
    return "\n\n".join(["### Trends", *blocks]) if blocks else ""


# --- (8) graph, notes ---


def graph_section(report: HealthReport) -> str:
    """The run's DAG coloured by status, and the critical path when analytics found one."""
    path = " → ".join(md(step) for step in report.critical_path)
    if not (report.run and report.run.steps):
        return f"### Critical path\n\n{path}" if path else ""
    graph = fenced(run_mermaid(report.run), "mermaid")
    return f"### Pipeline graph\n\n{graph}" + (f"\n\nCritical path: {path}" if path else "")


def run_mermaid(run: RunRecord) -> str:
    """`to_mermaid` over the steps that ran; needs outside the run (`--only`) are left out."""
    names = {clean(step.name) for step in run.steps}
    graph = {clean(s.name): [n for n in map(clean, s.needs) if n in names] for s in run.steps}
    status = {clean(s.name): _graph_status(s) for s in run.steps}
    return to_mermaid(graph, status).rstrip("\n")


def _graph_status(step: StepRecord) -> str:
    if is_flaky_pass(step):
        return "flaky"
    if step.status == "skipped" and skipped_on_purpose(step.reason):
        return "unchanged"
    return step.status


def notes_section(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "### Notes\n\n" + "\n".join(f"- {md(clip(note, 500))}" for note in notes)


# --- several pipelines: `report` over a journal that holds more than one ---

# Worst first; "no runs": nothing finished in the period asked for.
PIPELINE_STATES = ("failing", "unstable", "no runs", "passing")
_PIPELINE_ICONS = {"failing": "❌", "unstable": "⚠️", "no runs": "⚠️", "passing": "✅"}


def pipeline_name(report: HealthReport) -> str:
    return report.run.pipeline if report.run else report.title


def pipeline_state(report: HealthReport) -> str:
    """`failing`: its latest run did not pass. `unstable`: it did, but not every run in scope
    did. `no runs`: none in scope. `passing`: every one passed."""
    if report.run is not None and report.run.status not in ("passed", "running"):
        return "failing"
    if report.pass_rate is None:
        return "no runs"
    return "unstable" if report.pass_rate < 1 else "passing"


def worst_first(reports: Sequence[HealthReport]) -> list[HealthReport]:
    """By state (failing first), then by pass rate, then by name."""

    def severity(report: HealthReport) -> tuple[int, float, str]:
        rate = 1.0 if report.pass_rate is None else report.pass_rate
        return PIPELINE_STATES.index(pipeline_state(report)), rate, pipeline_name(report)

    return sorted(reports, key=severity)


def overall_state(reports: Sequence[HealthReport]) -> str:
    """The worst state among the pipelines: never `passing` while one is not."""
    return min((pipeline_state(r) for r in reports), key=PIPELINE_STATES.index, default="no runs")


def overview_headline(reports: Sequence[HealthReport]) -> str:
    """`3 pipelines, 1 failing, 1 unstable` or `2 pipelines, all passing`."""
    states = [pipeline_state(report) for report in reports]
    total = f"{len(states)} pipeline{'s' if len(states) != 1 else ''}"
    if all(state == "passing" for state in states):
        return f"{total}, all passing"
    counts = [f"{states.count(s)} {s}" for s in PIPELINE_STATES[:-1] if s in states]
    return ", ".join([total, *counts])


def overview_table(reports: Sequence[HealthReport]) -> str:
    headers = ("", "Pipeline", "State", "Latest run", "Pass rate", "Runs", "Mean duration")
    rows = [
        [
            _PIPELINE_ICONS[pipeline_state(report)],
            md(clip(pipeline_name(report))),
            pipeline_state(report),
            md(report.run.status) if report.run else "—",
            percent(report.pass_rate) if report.pass_rate is not None else "—",
            str(report.runs_considered),
            duration(report.mean_duration_ms),
        ]
        for report in reports
    ]
    return table(headers, "clllrrr", rows)


def render_markdown_all(reports: Sequence[HealthReport], *, budget: int = SUMMARY_BUDGET) -> str:
    """Several pipelines' reports, in the order given (`worst_first`), under one overview, in at
    most `budget` UTF-8 bytes: each report gets an even share of what is left, and what one
    does not use goes to the next."""
    icon = _PIPELINE_ICONS[overall_state(reports)]
    head = f"# {icon} Pipeline health: {overview_headline(reports)}\n\n"
    head += overview_table(reports) + "\n\n"
    room, parts = budget - size(head), []
    for index, report in enumerate(reports):
        share = room // (len(reports) - index) - 1  # 1: the blank line before the next one
        parts.append(render_markdown(report, budget=max(share, 0)))
        room -= size(parts[-1]) + 1
    return head + "\n".join(parts)
