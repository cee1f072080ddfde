"""Trend charts: the analytics' buckets from a real SQLite journal, the Mermaid `xychart-beta`
they become (golden, and checked against the grammar of the subset we emit), the budget that
drops them first, and step names that try to break out."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from ci_orchestrator.analytics import Scope, WorkflowAnalytics
from ci_orchestrator.commands.report import ReportOptions, build_report, render
from ci_orchestrator.journal import JournalStore, import_runs
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.charts import chart_text, to_xychart, trend_charts
from ci_orchestrator.render.markdown import render_markdown, trends_section
from ci_orchestrator.report_records import FlakeTrend, HealthReport, Trend, TrendBucket
from tests.conftest import GOLDEN, assert_golden

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z, a Wednesday
DAY = 86_400.0
HOSTILE_STEP = 'e2e"] ```\n%%{init: {"theme": "dark"}}%%<script>alert(1)</script>'
HOSTILE_TEST = "test_<img src=x onerror=alert(1)>]]`"
HOSTILE_LOG = "</pre></details><script>alert(1)</script>\n```\n<a href=https://evil.test>x</a>"

# The xychart-beta subset the renderer emits (the mermaid CLI needs a browser download, so the
# grammar is checked here): a quoted string has no quote inside; a label is one or unquoted.
_QUOTED = r'"[^"\n]*"'
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
_LABEL = rf"(?:{_QUOTED}|[\w.:/+-]+)"
_LIST = r"\[\s*(?:{item}(?:\s*,\s*{item})*)?\s*\]"
_XYCHART = (
    ("title", re.compile(rf"    title ({_QUOTED})")),
    ("x-axis", re.compile(rf"    x-axis (?:{_QUOTED} )?({_LIST.format(item=_LABEL)})")),
    ("y-axis", re.compile(rf'    y-axis "[^"\n]+" ({_NUMBER}) --> ({_NUMBER})')),
)
_SERIES = re.compile(rf"    (bar|line) ({_LIST.format(item=_NUMBER)})")


def assert_xychart(body: str) -> None:
    """`body` (a mermaid block without its fence) is valid xychart-beta of our subset: the header,
    title, x-axis with its labels, y-axis min --> max, then one or more bar/line series, each with
    as many finite numbers as there are labels."""
    lines = body.split("\n")
    assert lines[0] == "xychart-beta", lines[0]
    matches = []
    for (name, pattern), line in zip(_XYCHART, lines[1:4], strict=True):
        match = pattern.fullmatch(line)
        assert match, f"bad {name} line: {line!r}"
        matches.append(match)
    labels = re.findall(_LABEL, matches[1].group(1)[1:-1])
    low, high = (float(v) for v in matches[2].groups())
    assert low < high, matches[2].group(0)  # _NUMBER admits no nan or inf
    assert 1 <= len(labels) <= 30, labels
    assert lines[4:], "no series"
    for line in lines[4:]:
        series = _SERIES.fullmatch(line)
        assert series, f"bad series line: {line!r}"
        values = [float(v) for v in re.findall(_NUMBER, series.group(2))]
        assert len(values) == len(labels), line
        assert all(math.isfinite(v) and low <= v <= high for v in values), line


def mermaid_blocks(markdown: str) -> list[str]:
    """The bodies of the ```mermaid blocks (any fence length)."""
    found = re.findall(r"^(`{3,})mermaid\n(.*?)\n\1$", markdown, re.MULTILINE | re.DOTALL)
    return [body for _, body in found]


def assert_charts_valid(markdown: str) -> int:
    """Every xychart block of `markdown` checked; their count."""
    charts = [b for b in mermaid_blocks(markdown) if b.startswith("xychart-beta")]
    for body in charts:
        assert_xychart(body)
    return len(charts)


def passed(name: str, ms: float, **fields: Any) -> StepRecord:
    return StepRecord(
        name, "completed", duration_ms=ms, attempts=(AttemptRecord(1, 0, ms),)
    )._replace(**fields)


def flaky(name: str, ms: float, **fields: Any) -> StepRecord:
    attempts = (AttemptRecord(1, 1, ms / 2), AttemptRecord(2, 0, ms / 2))
    step = StepRecord(name, "completed", "passed on attempt 2", ms, attempts, 0, flaky=True)
    return step._replace(**fields)


def day_runs(day: int, per_day: int) -> list[RunRecord]:
    """`per_day` runs on day `day` after T0: durations grow with the day and the run; a run in
    seven fails; `unit` is flaky in one run in four; the hostile step on even days; the hostile
    test in unit's JUnit reported flaky every third run."""
    runs = []
    for i in range(per_day):
        n = day * per_day + i
        started = T0 + day * DAY + i * 3600
        ms = 60_000 + day * 5_000 + i * 1_000
        case = Case("unit", "tests.test_api", HOSTILE_TEST, "passed", 10, flaky=n % 3 == 0)
        unit = flaky if n % 4 == 0 else passed
        hostile = flaky if day % 2 == 0 else passed
        failing = n % 7 == 3
        deploy = StepRecord(
            "deploy", "failed", "exit code 1", 2_000, (AttemptRecord(1, 1, 2_000),), 1,
            needs=("unit", HOSTILE_STEP), log_tail=HOSTILE_LOG,
        )  # fmt: skip
        steps = (
            passed("build", ms * 0.4),
            unit("unit", ms * 0.3, needs=("build",), tests=(case,)),
            hostile(HOSTILE_STEP, ms * 0.2, needs=("build",)),
            deploy if failing else passed("deploy", 2_000, needs=("unit", HOSTILE_STEP)),
        )
        status = "failed" if failing else "passed"
        runs.append(
            RunRecord(f"R{n:03d}", "web-app", status, started, started + ms / 1000, ms,
                      git_sha=f"{n:07x}", branch="main", trigger="ci", steps=steps)
        )  # fmt: skip
    return runs


def seed(path: Path, days: int, per_day: int = 2) -> JournalStore:
    """A journal file written through the journal's own import, with fixed timestamps."""
    store = JournalStore(path)
    import_runs(store, [run for day in range(days) for run in day_runs(day, per_day)])
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> JournalStore:
    return seed(tmp_path_factory.mktemp("trend") / "journal.db", days=20)


def health(store: JournalStore) -> HealthReport:
    return WorkflowAnalytics(store, Scope(pipeline="web-app")).health_report("web-app health")


def test_trend_buckets_per_day_from_sql(store: JournalStore) -> None:
    trend = WorkflowAnalytics(store, Scope(pipeline="web-app")).trend()
    assert trend.bucket_days == 1
    assert len(trend.durations) == 20
    assert len(trend.pass_rate) == 20
    first = trend.durations[0]
    assert first.start == T0 - 12 * 3600  # the day's first second, UTC
    assert (first.runs, first.value, first.p95) == (2, 60_500, 61_000)  # median of 2: their mean
    assert trend.pass_rate[1] == TrendBucket(T0 + DAY - 12 * 3600, 2, 0.5)  # run 3 failed
    # Weekly flake rates: the entries with the most flaky runs, Monday weeks.
    names = [(f.step, f.test) for f in trend.flake_rates]
    assert names == [
        (HOSTILE_STEP, None),  # 20 flaky runs
        ("unit", f"tests.test_api.{HOSTILE_TEST}"),  # 14
        ("unit", None),  # 10
    ]
    hostile = trend.flake_rates[0]
    assert [p.start for p in hostile.points][:2] == [
        T0 - 2 * DAY - 12 * 3600,
        T0 + 5 * DAY - 12 * 3600,
    ]
    assert hostile.points[0] == TrendBucket(
        T0 - 2 * DAY - 12 * 3600, 10, 0.6
    )  # Wed-Sun: 3 of 5 days


def test_trend_is_bucketed_to_at_most_30_points(tmp_path: Path) -> None:
    store = seed(tmp_path / "journal.db", days=75, per_day=1)
    trend = WorkflowAnalytics(store, Scope(pipeline="web-app")).trend()
    assert trend.bucket_days == 3
    assert 25 <= len(trend.durations) <= 30
    assert sum(p.runs for p in trend.durations) == 75
    assert len(trend.flake_rates[0].points) <= 30
    charts = trend_charts(trend).charts
    assert all(len(chart.labels) <= 30 for chart in charts)
    for chart in charts:
        assert_xychart(to_xychart(chart))
    assert charts[0].title == "Run duration per 3 days"


def test_markdown_charts_golden(store: JournalStore) -> None:
    report = health(store)
    assert_golden("trends.md", trends_section(report) + "\n")
    assert_golden("health_trends.md", render_markdown(report))
    assert assert_charts_valid(trends_section(report)) == 5
    assert assert_charts_valid(render_markdown(report)) == 5


def test_golden_charts_are_valid_xychart() -> None:
    counts = {
        path.name: assert_charts_valid(path.read_text(encoding="utf-8"))
        for path in sorted(GOLDEN.glob("*.md"))
    }
    assert counts["trends.md"] == counts["health_trends.md"] == 5


@pytest.mark.parametrize(
    "bad",
    [
        'xychart\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    bar [1]',
        'xychart-beta\n    title "t"t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    bar [1]',
        'xychart-beta\n    title "t"\n    x-axis ["a", "b"]\n    y-axis "s" 0 --> 1\n    bar [1]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    bar [nan]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    bar [inf]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    bar [2]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 1 --> 1\n    bar [1]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1',
        'xychart-beta\n    title "t"\n    x-axis [a b]\n    y-axis "s" 0 --> 1\n    bar [1]',
        'xychart-beta\n    title "t"\n    x-axis ["a"]\n    y-axis "s" 0 --> 1\n    pie [1]',
    ],
)
def test_the_xychart_checker_rejects_bad_charts(bad: str) -> None:
    with pytest.raises(AssertionError):
        assert_xychart(bad)
    good = 'xychart-beta\n    title "t"\n    x-axis "d" ["a", b]\n    y-axis "s" 0 --> 1\n    bar [1, 0.5]'
    assert_xychart(good)


def test_units_follow_the_range() -> None:
    def durations(ms: float) -> str:
        points = tuple(TrendBucket(T0 + i * DAY, 1, ms, ms * 2) for i in range(3))
        chart = trend_charts(Trend(1, points, ())).charts[0]
        assert_xychart(to_xychart(chart))
        return chart.axis

    assert durations(20_000) == "Seconds"
    assert durations(300_000) == "Minutes"
    assert durations(4_000_000) == "Hours"


def test_fewer_than_three_points_is_a_note(tmp_path: Path) -> None:
    report = health(seed(tmp_path / "journal.db", days=2))
    section = trends_section(report)
    assert "xychart-beta" not in section
    assert "Duration and pass rate charts: left out, 2 days with runs (3 needed)." in section
    assert "Flake rate per week: unit: left out, 1 week with runs" in section
    assert section.count("\n") == 2 + 2 * len(report.trend.flake_rates if report.trend else ())


def test_charts_are_dropped_first_under_a_small_budget(store: JournalStore) -> None:
    report = health(store)
    whole = render_markdown(report, budget=1_000_000)
    assert "xychart-beta" in whole
    assert "### Trends" in whole
    without = len(whole.encode()) - len(trends_section(report).encode())
    text = render_markdown(report, budget=without + 200)
    assert "### Trends" not in text
    assert "xychart" not in text
    assert "left out the trend charts." in text
    assert "### Per-step stats" in text
    assert "### Flaky" in text


def test_hostile_names_cannot_break_the_chart(store: JournalStore) -> None:
    section = trends_section(health(store))
    fences = re.findall(r"^(`{3,})mermaid$", section, re.MULTILINE)
    blocks = re.findall(r"^(`{3,})mermaid\n(.*?)\n\1$", section, re.MULTILINE | re.DOTALL)
    assert len(blocks) == len(fences) == 5
    assert assert_charts_valid(section) == 5
    for _, body in blocks:
        lines = body.split("\n")
        assert lines[0] == "xychart-beta"
        assert all(
            re.fullmatch(r"    (title|x-axis|y-axis|bar|line) .*", line) for line in lines[1:]
        )
        title = lines[1][len('    title "') : -1]
        assert not set(title) & set('"[]`<>%{}\n;#&')
        assert "<" not in body
        assert "%%" not in body
        assert "=" not in body
    assert "<script>" not in section
    assert "<img" not in section


@pytest.mark.parametrize("name", [HOSTILE_STEP, HOSTILE_TEST, "a\r\nb", "`", '"', "%%{init}%%"])
def test_chart_text_is_inert(name: str) -> None:
    text = chart_text(name)
    assert not set(text) & set('"[]`<>%{}\r\n;#&')
    chart = trend_charts(
        Trend(1, (), (), (FlakeTrend(name, None, tuple(TrendBucket(i, 1, 0.5) for i in range(3))),))
    ).charts[0]
    assert_xychart(to_xychart(chart))
    title = to_xychart(chart).split("\n")[1]
    assert title.count('"') == 2


def test_json_has_the_same_numbers(store: JournalStore) -> None:
    report = build_report(store, ReportOptions(pipeline="web-app"), env={})
    data = json.loads(render(report, "json"))
    trend = data["trend"]
    assert set(trend) == {"bucket_days", "durations", "pass_rate", "flake_rates"}
    assert trend["durations"][0] == {
        "start": T0 - 12 * 3600,
        "runs": 2,
        "value": 60_500,
        "p95": 61_000,
    }
    assert set(trend["flake_rates"][0]) == {"step", "test", "points"}
    assert trend["pass_rate"][1]["value"] == 0.5
    charts = trend_charts(report.trend).charts
    assert charts[1].series[0].values[1] == 50.0  # the Markdown/HTML chart plots the same value


def test_a_young_history_is_a_note_but_not_in_a_pull_request(tmp_path: Path) -> None:
    report = health(seed(tmp_path / "journal.db", days=2))
    assert trends_section(report).startswith("### Trends\n\n_Duration and pass rate charts")
    pull_request = report._replace(run=day_runs(1, 1)[0]._replace(pr_number=7))
    assert trends_section(pull_request) == ""
    # A section that only says why there are no charts goes first, and silently: none was cut.
    whole = render_markdown(report, budget=1_000_000)
    cut = render_markdown(report, budget=len(whole.encode()) - 10)
    assert "### Trends" not in cut
    assert "_Cut to fit" not in cut
