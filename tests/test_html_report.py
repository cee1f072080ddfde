"""`report --format html`: one self-contained document, parsed with html.parser: its sections,
its inline SVG, nothing loaded from anywhere, and hostile step, test and log text inert."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_orchestrator.cli import cli
from ci_orchestrator.commands.report import ReportOptions, build_report, render
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.render.charts import Charts, to_xychart, trend_charts
from ci_orchestrator.render.html import render_html, render_html_all
from ci_orchestrator.report_records import HealthReport, RunLinks
from tests.test_charts import (
    DAY,
    HOSTILE_LOG,
    HOSTILE_STEP,
    HOSTILE_TEST,
    T0,
    assert_charts_valid,
    assert_xychart,
    seed,
)

VOID = {"meta", "br", "rect", "line", "polyline", "circle", "path", "input", "img", "link"}
RUN_PAGE = "https://github.com/o/r/actions/runs/42"


class Tree(HTMLParser):
    """Every element with its attributes and its ancestors, the text under each, and whether
    every start tag was closed in order (SVG shapes may close themselves)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None], tuple[str, ...]]] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []
        self.balanced = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.balanced = False
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(self.stack), data))

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs, _ in self.elements if tag == name]

    def text_under(self, tag: str) -> str:
        return "".join(text for stack, text in self.texts if tag in stack)


def parse(document: str) -> Tree:
    tree = Tree()
    tree.feed(document)
    tree.close()
    return tree


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> JournalStore:
    return seed(tmp_path_factory.mktemp("html") / "journal.db", days=20)


@pytest.fixture(scope="module")
def document(store: JournalStore) -> str:
    report = build_report(store, ReportOptions(pipeline="web-app", run_id="R038"), env={})
    return render_html(report._replace(links=RunLinks(RUN_PAGE)))


def test_structure_has_the_markdown_sections(document: str) -> None:
    tree = parse(document)
    assert document.startswith("<!DOCTYPE html>")
    assert tree.balanced
    assert tree.stack == []
    headings = [text.strip() for stack, text in tree.texts if stack and stack[-1] == "h2"]
    assert headings == [
        "Steps",
        "Failures",
        "Broken, new and fixed",
        "Flaky",
        "Failure hotspots",
        "Slower than before",
        "Per-step stats",
        "Trends",
        "Pipeline graph",
        "Notes",
    ]
    assert len(tree.tags("svg")) == 6  # five trend charts and the DAG
    graph = [attrs for attrs in tree.tags("svg") if attrs.get("class") == "dag"]
    assert len(graph) == 1
    classes = [attrs.get("class") or "" for attrs in tree.tags("g")]
    nodes = [name for name in classes if name.startswith("node")]
    assert sorted(nodes) == ["node s-completed"] * 3 + ["node s-failed"]
    assert "prefers-color-scheme: dark" in document
    assert len(document.encode()) < HTML_LIMIT


def test_failures_are_collapsible_with_their_log_tail(document: str) -> None:
    tree = parse(document)
    summaries = [text for stack, text in tree.texts if stack[-2:] == ("summary", "b")]
    assert "deploy" in summaries
    pres = [text for stack, text in tree.texts if stack[-3:] == ("section", "details", "pre")]
    assert pres == [HOSTILE_LOG]  # the whole tail, as text, inside the failure's <details>
    assert any(text == "Log: " for stack, text in tree.texts if stack[-2:] == ("details", "p"))
    assert tree.tags("a") == [{"href": RUN_PAGE, "rel": "noreferrer noopener"}] * 2  # facts, log


def test_nothing_is_loaded_from_anywhere(document: str) -> None:
    tree = parse(document)
    assert not re.search(r"<script|<link|<iframe|<img|<object|<embed|@import|url\(http", document)
    for tag, attrs, _ in tree.elements:
        assert "src" not in attrs, tag
        assert not any(name.startswith("on") for name in attrs), tag
        if "href" in attrs:
            assert (tag, attrs["href"]) == ("a", RUN_PAGE)
        for value in attrs.values():
            assert "javascript:" not in (value or "")
    urls = set(re.findall(r"https?://[^\s\"'<>&]+", document))
    assert urls <= {RUN_PAGE, "https://evil.test"}  # evil.test: the log's text, escaped
    assert 'href="https://evil.test' not in document
    csp = [a for a in tree.tags("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp
    assert "default-src 'none'" in (csp[0]["content"] or "")


def test_hostile_names_are_text_only(document: str) -> None:
    tree = parse(document)
    assert [tag for tag, _, _ in tree.elements if tag in ("script", "img", "a")] == ["a", "a"]
    body_text = "".join(text for _, text in tree.texts)
    assert "onerror=alert(1)" in body_text  # shown, as text
    assert HOSTILE_TEST.replace("`", "") in body_text.replace("`", "")
    titles = tree.text_under("title")
    assert f"{HOSTILE_STEP}: completed" in titles  # the DAG node's tooltip: the whole name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document
    assert "&lt;img src=x onerror=alert(1)&gt;]]`" in document
    assert "<script>" not in document
    assert "<img" not in document


def test_cli_writes_one_file(store: JournalStore, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli,
        ["report", "--journal", str(store.path), "--format", "html", "-o", str(out)],
        env={"GITHUB_ACTIONS": None, "CI_ORCHESTRATOR_JOURNAL": None},
    )
    assert result.exit_code == 0, result.output
    assert result.output == ""
    text = out.read_text(encoding="utf-8")
    assert parse(text).balanced
    assert text.count("<svg") == 6
    missing = CliRunner().invoke(
        cli,
        [
            "report",
            "--journal",
            str(store.path),
            "--format",
            "html",
            "-o",
            str(tmp_path / "no" / "r.html"),
        ],
    )
    assert missing.exit_code == 2
    assert "--output: cannot write" in missing.output


def test_several_pipelines_under_an_overview(store: JournalStore) -> None:
    report = build_report(store, ReportOptions(pipeline="web-app"), env={})
    other = report._replace(title="api health", run=None, pass_rate=1.0, trend=None)
    document = render_html_all([report, other])
    tree = parse(document)
    assert tree.balanced
    assert len(tree.tags("article")) == 2
    assert next(text for stack, text in tree.texts if stack[-1:] == ("h1",)).startswith(
        "Pipeline health: 2 pipelines"
    )


# --- bad input: any journal gives a readable page of bounded size ---

HTML_LIMIT = 100_000  # bytes; docs/reports.md states it
UNITS = {"Seconds", "Minutes", "Hours", "Pass rate (percent)", "Flake rate (percent)"}
HOUR_MS = 3_600_000.0


def bulk(path: Path, runs: Sequence[tuple[float, float | None, str]]) -> JournalStore:
    """A journal of `(started_at, duration_ms, status)` runs, each with one step, `build`, that
    is flaky in one run in five, written with executemany on the journal's schema (fast enough
    for 100,000 runs)."""
    store = JournalStore(path)
    states = {"passed": "completed", "failed": "failed"}
    run_rows, step_rows = [], []
    for n, (started, ms, status) in enumerate(runs):
        finished = None if ms is None else started + ms / 1000
        flaky = int(n % 5 == 0 and status == "passed")
        run_rows.append((f"B{n:06d}", "bulk", status, started, finished, ms, "ci"))
        step_rows.append(
            (f"B{n:06d}", "bulk", "build", states.get(status, "running"), started, finished,
             ms or 0.0, 1 + flaky, flaky)
        )  # fmt: skip
    with store.transaction() as db:
        db.executemany(
            "INSERT INTO runs (id, pipeline, status, started_at, finished_at, duration_ms,"
            " trigger) VALUES (?, ?, ?, ?, ?, ?, ?)",
            run_rows,
        )
        db.executemany(
            "INSERT INTO steps (run_id, pipeline, name, status, started_at, finished_at,"
            " duration_ms, attempts, flaky) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            step_rows,
        )
    return store


def readable(store: JournalStore) -> tuple[HealthReport, Charts, str]:
    """The report's page and charts, after checking what every journal must give: nothing
    raises, a balanced page under `HTML_LIMIT` with an SVG per chart, at most 30 points per
    chart in a known unit, and valid Mermaid for each."""
    report = build_report(store, ReportOptions(pipeline="bulk"), env={})
    page = render_html(report)
    drawn = trend_charts(report.trend)
    assert len(page.encode()) < HTML_LIMIT
    assert parse(page).balanced
    assert page.count('<svg class="chart"') == len(drawn.charts)
    for chart in drawn.charts:
        assert 3 <= len(chart.labels) <= 30
        assert len(set(chart.labels)) == len(chart.labels)  # no two buckets share a label
        assert chart.axis in UNITS
        assert_xychart(to_xychart(chart))
    markdown = render(report, "markdown")
    assert assert_charts_valid(markdown) == len(drawn.charts)
    return report, drawn, page


def test_one_run_is_a_note(tmp_path: Path) -> None:
    _, drawn, page = readable(bulk(tmp_path / "j.db", [(T0, 60_000.0, "passed")]))
    assert drawn.charts == ()
    assert "left out, 1 day with runs (3 needed)" in page


def test_no_finished_run(tmp_path: Path) -> None:
    runs = [(T0 + day * DAY, None, "running") for day in range(5)]
    _, drawn, page = readable(bulk(tmp_path / "j.db", runs))
    assert drawn == Charts(
        (), ("Duration and pass rate charts: left out, 0 days with runs (3 needed).",)
    )
    assert "Duration and pass rate charts: left out" in page


def test_five_years_is_30_weekly_points(tmp_path: Path) -> None:
    runs = [(T0 + day * DAY, 60_000.0 + day, "failed" if day % 9 == 0 else "passed")
            for day in range(5 * 365)]  # fmt: skip
    report, drawn, _ = readable(bulk(tmp_path / "j.db", runs))
    assert report.trend is not None
    assert report.trend.bucket_days == 7  # the widest bucket: the latest 30 weeks
    assert [len(c.labels) for c in drawn.charts] == [30, 30, 30]
    assert drawn.charts[0].axis == "Seconds"


def test_a_hundred_thousand_runs(tmp_path: Path) -> None:
    runs = [(T0 + n * 900.0, 30_000.0 + n % 600 * 1000, "failed" if n % 13 == 0 else "passed")
            for n in range(100_000)]  # fmt: skip
    report, drawn, _ = readable(bulk(tmp_path / "j.db", runs))
    assert report.runs_considered > 0
    assert [len(c.labels) for c in drawn.charts] == [30, 30, 30]
    assert drawn.charts[0].axis == "Minutes"


@pytest.mark.parametrize(
    ("durations", "unit", "top"),
    [
        ((0.0,), "Seconds", 1.0),
        ((0.0, 10 * HOUR_MS), "Hours", 10.0),
        ((10 * HOUR_MS,), "Hours", 10.0),
    ],
)
def test_extreme_durations(
    tmp_path: Path, durations: tuple[float, ...], unit: str, top: float
) -> None:
    runs = [(T0 + n * DAY / 2, durations[n % len(durations)], "passed") for n in range(12)]
    _, drawn, page = readable(bulk(tmp_path / "j.db", runs))
    chart = drawn.charts[0]
    assert (chart.axis, chart.top) == (unit, top)
    assert all(0 <= v <= top for s in chart.series for v in s.values)
    assert "nan" not in page.lower()
    assert "inf" not in to_xychart(chart)
