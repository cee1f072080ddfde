"""`report --format html`: one self-contained document, parsed with html.parser: its sections,
its inline SVG, nothing loaded from anywhere, and hostile step, test and log text inert."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from ci_orchestrator.cli import cli
from ci_orchestrator.commands.report import ReportOptions, build_report
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.records import RunLinks
from ci_orchestrator.render.html import render_html, render_html_all
from tests.test_charts import HOSTILE_LOG, HOSTILE_STEP, HOSTILE_TEST, seed

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
