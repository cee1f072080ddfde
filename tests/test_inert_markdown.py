"""Text from steps and tests is inert in what the bot posts: rendered by cmark-gfm (GitHub's own
Markdown library), a report whose step names, reasons, test names, messages and notes carry
mentions, issue references and URLs has no link, mention or reference that the text made.

cmark-gfm makes the links (URLs, `www.`, e-mail addresses); `#12`, `owner/repo#12`, `GH-12` and
`@user` are GitHub's own post-processing of the HTML text, so they are checked as patterns in the
text outside code, where GitHub would apply them."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

from ci_orchestrator.records import RunRecord, StepRecord, TestCaseRecord
from ci_orchestrator.render.markdown import render_markdown
from ci_orchestrator.report_records import HealthReport, Hotspot

HOSTILE = (
    "see #12, octo/shop#7, GH-3, @admin, https://evil.example/x, www.evil.example, a@b.example"
)
# What GitHub turns into a reference or a mention in text (not in code).
_REFERENCES = re.compile(r"(?<![\w/])#\d|[\w.-]+/[\w.-]+#\d|\bGH-\d|(?<![\w`])@[A-Za-z0-9]")


class _Text(HTMLParser):
    """The links and the text outside `<code>`/`<pre>` of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []
        self.in_code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag in ("code", "pre"):
            self.in_code += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre"):
            self.in_code -= 1

    def handle_data(self, data: str) -> None:
        if not self.in_code:
            self.text.append(data)


def hostile_report() -> HealthReport:
    test = TestCaseRecord("suite", f"tests.{HOSTILE}", f"test[{HOSTILE}]", "failed", 1.0, HOSTILE)
    step = StepRecord(
        name="test",
        status="failed",
        reason=f"exit code 1 {HOSTILE}",
        command=f"pytest {HOSTILE}",
        log_tail=f"{HOSTILE}\n",
        tests=(test,),
        junit_problems=(HOSTILE,),
        attempts=(),
    )
    run = RunRecord("R1", "shop", "failed", 0.0, 1.0, 1000.0, steps=(step,))
    hotspot = Hotspot(f"lint {HOSTILE}", 3, 4, 1000.0)
    return HealthReport("shop health", run, 4, notes=(HOSTILE,), hotspots=(hotspot,))


def test_step_and_test_text_makes_no_link_reference_or_mention() -> None:
    markdown = render_markdown(hostile_report())
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    parsed = _Text()
    parsed.feed(html)
    assert [link for link in parsed.links if "evil" in link or "mailto" in link] == []
    text = "".join(parsed.text)
    assert "evil.example" in text  # the text is there, to read
    assert _REFERENCES.findall(text) == []
