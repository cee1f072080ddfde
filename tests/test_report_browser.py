"""The HTML report in a real browser: headless Chromium loads the page of a seeded journal
(failures, flaky steps, 30 days of runs; the latest run shown is R024, which failed
with two flaky steps), logs no console error or CSP violation, draws a
non-blank screenshot, and builds a DOM with the charts' points, the DAG's nodes and the hostile
step, test and log text as text only. Skipped when chromium is not installed (`.ci/run` installs
Debian's when it can)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from typing import NamedTuple

import pytest

from ci_orchestrator.commands.report import ReportOptions, build_report
from ci_orchestrator.render.html import render_html
from ci_orchestrator.report_records import HealthReport
from tests.test_charts import HOSTILE_LOG, HOSTILE_STEP, HOSTILE_TEST, seed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI containers run as root, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
HTML_VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "source", "area", "col", "embed"}
WIDTH, HEIGHT = 1200, 2000


class Element(NamedTuple):
    tag: str
    attrs: dict[str, str]
    ancestors: tuple[str, ...]  # tag names, outermost first
    svg: int  # which <svg> it is in (its number, from 0), or -1


class Dom(HTMLParser):
    """The elements of a document as Chromium serialised it (every element closed), and the
    text under each tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.elements: list[Element] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []
        self.svgs = -1
        self.in_svg = -1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg":
            self.svgs += 1
            self.in_svg = self.svgs
        values = {name: value or "" for name, value in attrs}
        self.elements.append(Element(tag, values, tuple(self.stack), self.in_svg))
        if tag not in HTML_VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in HTML_VOID:
            return
        assert self.stack[-1:] == [tag], (tag, self.stack)
        self.stack.pop()
        if tag == "svg":
            self.in_svg = -1

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(self.stack), data))

    def tags(self, name: str) -> list[Element]:
        return [e for e in self.elements if e.tag == name]

    def in_chart(self, number: int, tag: str, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.svg == number and e.tag == tag and (cls is None or e.attrs.get("class") == cls)
        ]


def parse(text: str) -> Dom:
    dom = Dom()
    dom.feed(text)
    dom.close()
    return dom


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def console_problems(stderr: str) -> list[str]:
    """Console messages and CSP reports Chromium logged for the page."""
    words = ("CONSOLE", "Content Security Policy", "Refused to")
    return [line for line in stderr.splitlines() if any(word in line for word in words)]


class Page(NamedTuple):
    report: HealthReport
    source: str  # the HTML we wrote
    dom: Dom  # the DOM Chromium built from it
    stderr: str  # what Chromium logged while loading it
    screenshot: Path


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Page:
    folder = tmp_path_factory.mktemp("browser")
    store = seed(folder / "journal.db", days=30)
    report = build_report(store, ReportOptions(pipeline="web-app", run_id="R024"), env={})
    store.close()
    source = render_html(report)
    html = folder / "report.html"
    html.write_text(source, encoding="utf-8")
    url = html.as_uri()
    dumped = chromium(folder / "profile-dom", "--dump-dom", url)
    shot = folder / "report.png"
    shown = chromium(
        folder / "profile-shot", f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", url
    )
    return Page(report, source, parse(dumped.stdout), dumped.stderr + shown.stderr, shot)


def png_pixels(path: Path) -> tuple[int, int, bytes]:
    """Width, height and the (filtered) pixel rows of a PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, size = 8, b"", (0, 0)
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    return size[0], size[1], zlib.decompress(idat)


def test_no_console_error_or_csp_violation(page: Page) -> None:
    assert console_problems(page.stderr) == []


def test_the_console_check_sees_a_csp_violation(page: Page, tmp_path: Path) -> None:
    """The check above could fail: the same CSP and a forbidden image are reported."""
    bad = page.source.replace("<main>", '<main><img src="https://example.invalid/x.png">')
    path = tmp_path / "bad.html"
    path.write_text(bad, encoding="utf-8")
    logged = chromium(tmp_path / "profile", "--dump-dom", path.as_uri()).stderr
    assert any("Content Security Policy" in line for line in console_problems(logged))


def test_screenshot_is_a_drawn_page(page: Page) -> None:
    width, height, pixels = png_pixels(page.screenshot)
    assert (width, height) == (WIDTH, HEIGHT)
    assert page.screenshot.stat().st_size > 20_000  # text, tables and charts, not a blank page
    assert len(set(pixels)) > 64  # many colours: antialiased text and the charts' fills


def test_charts_have_a_mark_per_point(page: Page) -> None:
    assert page.report.trend is not None
    flakes = [len(f.points) for f in page.report.trend.flake_rates]
    svgs = page.dom.tags("svg")
    assert [e.attrs["class"] for e in svgs] == ["chart"] * (2 + len(flakes)) + ["dag"]
    duration, pass_rate = 0, 1
    assert len(page.dom.in_chart(duration, "circle", "dot")) == 30  # p95: a dot per day
    bars = [e for e in page.dom.in_chart(duration, "rect", "bar") if e.attrs.get("width") != "10"]
    assert len(bars) == 30  # median: a bar per day (the 10-wide one is the legend's)
    (line,) = page.dom.in_chart(duration, "polyline", "line")
    assert len(line.attrs["points"].split()) == 30
    assert len(page.dom.in_chart(pass_rate, "title")) == 30  # a tooltip per bar
    for number, points in enumerate(flakes, start=2):
        assert len(page.dom.in_chart(number, "circle", "dot")) == points
    assert flakes == [5, 5, 5]  # 30 days from a Wednesday: five Monday weeks


def test_dag_has_a_node_per_step_and_an_edge_per_need(page: Page) -> None:
    dag = len(page.dom.tags("svg")) - 1
    nodes = [e.attrs["class"] for e in page.dom.in_chart(dag, "g")]
    assert sorted(nodes) == ["node s-completed", "node s-failed", "node s-flaky", "node s-flaky"]
    assert len(page.dom.in_chart(dag, "path", "edge")) == 4  # unit, e2e <- build; deploy <- both
    tooltips = [text for stack, text in page.dom.texts if stack[-2:] == ("g", "title")]
    assert f"{HOSTILE_STEP}: flaky" in tooltips


def test_hostile_text_stays_text(page: Page) -> None:
    dom = page.dom
    assert [e.tag for e in dom.elements if e.tag in ("script", "img", "iframe", "object")] == []
    assert [e.attrs["href"] for e in dom.tags("a")] == []  # no link: the report has no run page
    assert not any(name.startswith("on") for e in dom.elements for name in e.attrs)
    pres = [text for stack, text in dom.texts if stack[-1:] == ("pre",)]
    assert pres == [HOSTILE_LOG]  # `</pre></details><script>` is the tail's text, whole
    body = "".join(text for _, text in dom.texts)
    assert "onerror=alert(1)" in body
    assert HOSTILE_TEST in body
    # The browser built the same tree as html.parser read from our file: nothing escaped it.
    source = parse(page.source)
    assert [e.tag for e in dom.elements] == [e.tag for e in source.elements]
    assert len(dom.tags("details")) == page.source.count("<details>")
