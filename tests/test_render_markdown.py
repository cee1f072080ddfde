"""The Markdown report (PR comment, job summary, nightly issue) and its plain-text twin: golden
files, the size budget, and step output that tries to break out of where it is put."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.markdown import COMMENT_BUDGET, SUMMARY_BUDGET, render_markdown
from ci_orchestrator.render.report_text import render_text
from ci_orchestrator.report_records import (
    BaseComparison,
    BaseLabel,
    FlakyStep,
    HealthReport,
    Hotspot,
    Regression,
    RunLinks,
    StepStats,
)
from tests.conftest import assert_golden

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
DAY = 86_400.0
LOGS = ".ci-orchestrator/runs/R7"
MARKER = "<!-- ci-orchestrator:web-app -->"


def step(name: str, status: str, ms: float = 0.0, **fields: Any) -> StepRecord:
    """A step record; one passing attempt when completed, a log path when it ran."""
    attempts = fields.get("attempts", (AttemptRecord(1, 0, ms),) if status == "completed" else ())
    record = StepRecord(name, status, duration_ms=ms, attempts=attempts)
    record = record._replace(log_path=f"{LOGS}/{name}.log" if attempts else None)
    return record._replace(**fields)


def failed(name: str, tail: str, reason: str = "exit code 1", **fields: Any) -> StepRecord:
    attempts = fields.pop("attempts", (AttemptRecord(1, 1, 1000),))
    return step(
        name, "failed", 1000, reason=reason, exit_code=1, attempts=attempts, log_tail=tail, **fields
    )


def run(status: str, *steps: StepRecord, **fields: Any) -> RunRecord:
    total = sum(s.duration_ms for s in steps) + 100
    record = RunRecord("R7", "web-app", status, T0, T0 + total / 1000, total, steps=steps)
    record = record._replace(git_sha="9f2c1e7d4b3a", branch="feature/login", event="push")
    return record._replace(**fields)


def history() -> dict[str, Any]:
    """The history part of a health report: 42 runs over a week."""
    return {
        "runs_considered": 42,
        "since": T0 - 7 * DAY,
        "pass_rate": 36 / 42,
        "mean_duration_ms": 183_000,
        "hotspots": (
            Hotspot("integration", 6, 42, 720_000, T0 - DAY),
            Hotspot("e2e", 3, 42, 1_800_000, T0 - 2 * DAY),
        ),
        "flaky": (
            FlakyStep("unit-tests", 4, 42),
            FlakyStep("unit-tests", 3, 42, test="tests.test_api.test_retry"),
        ),
        "regressions": (Regression("build", 61_000, 45_000, 10, 32),),
        "stats": (
            StepStats("lint", 42, 42, 0, 0, 410, 520),
            StepStats("build", 42, 42, 0, 0, 45_000, 63_000),
            StepStats("unit-tests", 42, 41, 1, 0, 30_000, 58_000, 60_000),
            StepStats("integration", 42, 30, 6, 6, 95_000, 140_000, 720_000),
            StepStats("deploy", 42, 0, 0, 42, None, None),
        ),
        "critical_path": ("lint", "build", "unit-tests", "integration", "deploy"),
    }


def passing_report() -> HealthReport:
    steps = (
        step("lint", "completed", 420, median_ms=400),
        step("build", "completed", 40_500, needs=("lint",), median_ms=45_000),
        step("unit-tests", "completed", 30_100, needs=("build",), median_ms=30_000),
        step("docs", "completed", 5_000, needs=("lint",)),
    )
    return HealthReport("web-app", run=run("passed", *steps, pr_number=42, event="pull_request"))


def failing_report() -> HealthReport:
    integration_tail = "\n".join(
        [
            "tests/test_db.py::test_connect PASSED",
            "tests/test_db.py::test_migrate FAILED",
            "E   sqlalchemy.exc.OperationalError: could not connect to server",
            "==== 1 failed, 41 passed in 88.20s ====",
        ]
    )
    steps = (
        step("lint", "completed", 420, median_ms=400),
        step("build", "completed", 61_000, needs=("lint",), median_ms=45_000),
        step(
            "unit-tests",
            "completed",
            62_000,
            needs=("build",),
            median_ms=30_000,
            flaky=True,
            reason="passed on attempt 2",
            attempts=(AttemptRecord(1, 1, 31_000), AttemptRecord(2, 0, 31_000)),
            tests=(
                Case("tests.test_api", "tests.test_api", "test_get", "passed", 12),
                Case("tests.test_api", "tests.test_api", "test_retry", "passed", 40, flaky=True),
                Case("tests.test_api", "tests.test_api", "test_tty", "skipped"),
            ),
        ),
        failed(
            "integration",
            integration_tail + "\n",
            duration_ms=88_500,
            needs=("build",),
            median_ms=95_000,
            tests=(
                Case("tests.test_db", "tests.test_db", "test_connect", "passed", 10),
                Case(
                    "tests.test_db",
                    "tests.test_db",
                    "test_migrate",
                    "failed",
                    20,
                    message="sqlalchemy.exc.OperationalError: could not connect to server\nmore",
                ),
            ),
        ),
        failed(
            "e2e",
            "waiting for http://localhost:3000 ...\n",
            reason="timed out after 10m",
            duration_ms=600_000,
            needs=("build",),
            attempts=(AttemptRecord(1, -15, 600_000, timed_out=True),),
            junit_problems=("reports/e2e.xml: file not found",),
        ),
        step(
            "deploy",
            "skipped",
            needs=("integration", "e2e"),
            reason="dependency 'integration' failed",
        ),
        step("notify", "completed", 800, needs=("deploy",)),
    )
    record = run("failed", *steps, pr_number=42, event="pull_request")
    notes = ("2 abandoned runs are not counted.",)
    return HealthReport("web-app", run=record, notes=notes, **history())


def history_report() -> HealthReport:
    return HealthReport("web-app: pipeline health, last 7 days", **history())


REPORTS = {"passing": passing_report, "failing": failing_report, "history": history_report}


# --- golden files ---


@pytest.mark.parametrize("name", REPORTS)
def test_markdown_golden(name: str) -> None:
    text = render_markdown(REPORTS[name]())
    assert_golden(f"markdown_{name}.md", text)
    assert "Cut to fit" not in text


@pytest.mark.parametrize("name", ["failing", "history"])
def test_text_golden(name: str) -> None:
    assert_golden(f"report_{name}.txt", render_text(REPORTS[name]()))


def test_an_empty_report_says_so() -> None:
    text = render_markdown(HealthReport("web-app"))
    assert text == "## ⚠️ web-app\n\nNo runs recorded.\n"


# --- the budget ---


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def test_a_5_mb_log_tail_still_fits_and_keeps_its_end() -> None:
    tail = "".join(f"line {i:07d} of a very chatty build\n" for i in range(140_000))  # ~5 MB
    report = failing_report()._replace(run=run("failed", failed("build", tail)))
    text = render_markdown(report)

    assert len(tail) > 5_000_000
    assert size(text) <= COMMENT_BUDGET
    assert "<b>build</b>" in text
    assert "line 0139999 of a very chatty build" in text  # the last line, where errors are


def test_a_5_mb_single_line_is_cut_too() -> None:
    report = failing_report()._replace(run=run("failed", failed("build", "x" * 5_000_000 + "END")))
    text = render_markdown(report)

    assert size(text) <= COMMENT_BUDGET
    assert "END" in text


def many_failures(
    count: int, tail_lines: int = 200, line: str = "error: something broke"
) -> RunRecord:
    tail = "\n".join(f"{line} {i}" for i in range(tail_lines)) + "\n"
    steps = [failed(f"fail-{i:03d}", tail) for i in range(count)]
    return run("failed", step("lint", "completed", 400), *steps)


def test_300_failing_steps_fit_and_are_all_named() -> None:
    report = failing_report()._replace(run=many_failures(300))
    text = render_markdown(report)

    assert size(text) <= COMMENT_BUDGET
    for i in range(300):
        assert f"fail-{i:03d}" in text
    assert "_Cut to fit GitHub's 65,536-character comment limit: left out " in text
    assert "the Mermaid graph" in text.rsplit("_Cut to fit", 1)[1]
    assert "Full logs: in the job output and under `.ci-orchestrator/runs/R7/`." in text
    outside, _ = split_fences(text)
    assert outside.count("<details>") == outside.count("</details>")


def test_log_tails_are_shortened_before_any_section_is_left_out() -> None:
    report = failing_report()._replace(run=many_failures(12, tail_lines=400, line="x" * 100))
    full = render_markdown(report, budget=10**9)
    budget = size(full) // 3
    text = render_markdown(report, budget=budget)

    assert size(text) <= budget
    assert "log tails shortened" in text
    assert "left out" not in text  # every section is still there
    assert "```mermaid" in text
    assert text.count("<details>") == 12


def test_sections_go_from_the_lowest_priority_up() -> None:
    report = failing_report()
    full = render_markdown(report, budget=10**9)
    graph = full.index("### Pipeline graph")
    notes = full.index("### Notes")
    text = render_markdown(report, budget=size(full) - size(full[graph:notes]) + 250)

    assert "### Pipeline graph" not in text
    assert "### Notes" in text  # rendered after the graph, but it goes later
    assert "### Per-step stats" in text
    assert "left out the Mermaid graph. Full logs" in text
    smaller = render_markdown(report, budget=size(text) - 300)
    assert "left out per-step stats, the Mermaid graph, notes." in smaller
    assert "### Slower than before" in smaller  # a higher priority than the stats: kept


@pytest.mark.parametrize("budget", [300, 2_000, 10_000, 30_000])
def test_any_budget_is_respected(budget: int) -> None:
    text = render_markdown(
        failing_report()._replace(run=many_failures(300)), budget=budget, marker=MARKER
    )

    assert size(text) <= budget
    assert text.startswith(MARKER + "\n")


def test_the_summary_budget_counts_bytes_not_characters() -> None:
    emoji_line = "😀€ü" * 30  # 90 characters, 270 bytes
    report = failing_report()._replace(run=many_failures(500, tail_lines=50, line=emoji_line))
    text = render_markdown(report, budget=SUMMARY_BUDGET)

    assert len(text) < SUMMARY_BUDGET // 2  # in characters it would have fitted more
    assert size(text) <= SUMMARY_BUDGET
    assert "_Cut to fit GitHub's 1 MiB job summary limit: " in text
    for i in range(500):
        assert f"fail-{i:03d}" in text


# --- hostile content ---

FENCE_OPEN = re.compile(r"^ {0,3}(`{3,})([^`]*)$")


def split_fences(markdown: str) -> tuple[str, list[str]]:
    """The text outside fenced code blocks, and each block's content, by CommonMark's rules for
    backtick fences: a block ends at a line of at least as many backticks and nothing else."""
    outside: list[str] = []
    blocks: list[str] = []
    content: list[str] = []
    fence = ""
    for line in markdown.split("\n"):
        if not fence:
            match = FENCE_OPEN.match(line)
            if match:
                fence, content = match.group(1), []
            else:
                outside.append(line)
        elif re.fullmatch(rf" {{0,3}}`{{{len(fence)},}}[ \t]*", line):
            blocks.append("\n".join(content))
            fence = ""
        else:
            content.append(line)
    assert not fence, "a fence was left open"
    return "\n".join(outside), blocks


HOSTILE_TAIL = "\n".join(
    [
        "```",
        "``````",
        "~~~",
        "</details>",
        "</summary></details><details><summary>fake",
        "<script>alert(1)</script>",
        "@octocat please look",
        "| not | a | table |",
        "end of log",
    ]
)
HOSTILE_NAME = "evil|step\n<b>@admin</b>"


def hostile_report() -> HealthReport:
    steps = (
        step("setup", "completed", 100),
        failed(HOSTILE_NAME, HOSTILE_TAIL, reason="exit `1` | </details> @team/reviewers"),
        failed("second", HOSTILE_TAIL),
        step('x"]; click s0 call alert(1); A["', "skipped", reason="<img src=x onerror=alert(1)>"),
    )
    return HealthReport("web-app @everyone", run=run("failed", *steps))


def test_the_fence_is_longer_than_any_backtick_run_in_the_tail() -> None:
    text = render_markdown(hostile_report())
    _, blocks = split_fences(text)

    tails = [block for block in blocks if block.endswith("end of log")]
    assert tails == [HOSTILE_TAIL, HOSTILE_TAIL]  # each tail whole, inside one block
    assert "\n```````text\n" in text  # 7 backticks: one more than the longest run


def test_closing_details_in_a_log_does_not_close_the_details_early() -> None:
    outside, _ = split_fences(render_markdown(hostile_report()))

    assert outside.count("<details>") == outside.count("</details>") == 2
    assert "<script>" not in outside
    assert "fake" not in outside


def test_mentions_are_neutralised_outside_code() -> None:
    text = render_markdown(hostile_report())
    outside, blocks = split_fences(text)
    prose = re.sub(r"(`+).*?\1", "", outside)  # GitHub does not link mentions in code spans either

    assert re.search(r"@\w", prose) is None
    assert "@\u200dteam/reviewers" in outside
    assert "@\u200deveryone" in outside
    assert any("@octocat please look" in block for block in blocks)  # fences don't ping


def test_table_cells_are_escaped() -> None:
    text = render_markdown(hostile_report())
    outside, _ = split_fences(text)
    table = [line for line in outside.split("\n") if line.startswith("| ")]

    def cells(line: str) -> int:
        return len(re.split(r"(?<!\\)\|", line)) - 2

    assert len(table) == 5  # the header and four steps: no row was split by a newline
    assert {cells(line) for line in table} == {6}
    assert "evil\\|step &lt;b&gt;" not in text  # Markdown escapes, not HTML entities, in cells
    assert "evil\\|step \\<b\\>@\u200dadmin\\</b\\>" in text
    assert "<img" not in text.replace("\\<img", "")


def test_raw_html_in_a_summary_is_escaped() -> None:
    text = render_markdown(hostile_report())

    summary = "<summary>❌ <b>evil|step &lt;b&gt;@\u200dadmin&lt;/b&gt;</b>: "
    assert summary + "exit `1` | &lt;/details&gt; @\u200dteam/reviewers</summary>" in text


def test_mermaid_syntax_in_step_names_stays_in_its_label() -> None:
    _, blocks = split_fences(render_markdown(hostile_report()))
    [graph] = [block for block in blocks if block.startswith("flowchart LR")]

    nodes = [line for line in graph.split("\n") if re.match(r"  s\d+\[", line)]
    assert len(nodes) == 4
    assert "click" not in graph.replace("x#34;#93;; click s0 call alert#40;1#41;; A#91;#34;", "")


# --- the marker ---


def test_the_marker_comes_first() -> None:
    text = render_markdown(failing_report(), marker=MARKER)

    assert text.startswith(MARKER + "\n## ❌ web-app: failed\n")
    assert text.count(MARKER) == 1


def test_a_bare_marker_is_wrapped_in_a_comment() -> None:
    text = render_markdown(passing_report(), marker="ci-orchestrator:web-app")
    assert text.startswith(MARKER + "\n")


def test_the_marker_survives_cutting() -> None:
    report = failing_report()._replace(run=many_failures(300))
    assert render_markdown(report, marker=MARKER).startswith(MARKER + "\n")


# --- labels against the base branch, links to the logs on GitHub ---

RUN_URL = "https://github.com/octo/web-app/actions/runs/42"


def labelled_report(base: str = "main", logs: str = RUN_URL) -> HealthReport:
    labels = (
        BaseLabel("integration", "failing", None, 0, 12, "abc1234def"),
        BaseLabel("integration", "new", "tests.test_db.test_migrate"),
        BaseLabel("e2e", "flaky", None, 3, 12),
        BaseLabel("lint", "fixed", None, 0, 12, "0123456789"),
    )
    base_runs = BaseComparison(base, 12, 20, labels)
    return failing_report()._replace(base=base_runs, links=RunLinks(logs))


def test_labels_links_and_the_base_share_of_history() -> None:
    text = render_markdown(labelled_report())

    assert "History: 42 runs since 2024-04-24 (12 on main) · pass rate" in text
    assert "timed out after 10m · <i>known flaky on main</i> (3 of 12 runs)</summary>" in text
    assert "exit code 1 · <i>also failing on main</i> (failing since abc1234)</summary>" in text
    assert "- `tests.test_db.test_migrate` · *new*: sqlalchemy" in text
    assert "### Fixed by this PR\n\n- ✅ **lint**: failing on main since 0123456\n" in text
    assert text.count(f"Log: [on GitHub]({RUN_URL})") == 2
    assert LOGS not in text


def test_a_full_window_says_last() -> None:
    report = labelled_report()
    assert report.base is not None
    text = render_markdown(report._replace(base=report.base._replace(runs=20)))
    assert "(last 20 on main)" in text


def test_a_hostile_base_branch_name_stays_inert() -> None:
    text = render_markdown(labelled_report(base="x|y</i><b>@team"))
    outside, _ = split_fences(text)

    assert "<i>also failing on x|y&lt;/i&gt;&lt;b&gt;@\u200dteam</i>" in outside
    assert "(12 on x\\|y\\</i\\>\\<b\\>@\u200dteam)" in outside
    assert "</i><b>" not in outside


def test_only_an_http_link_is_a_link_and_it_cannot_break_out() -> None:
    plain = render_markdown(labelled_report(logs="javascript:alert(1)"))
    assert "Log: on GitHub · " in plain
    assert "javascript" not in plain

    odd = render_markdown(labelled_report(logs="https://x.test/a b)<c>[d]`e"))
    assert "[on GitHub](https://x.test/a%20b%29%3Cc%3E%5Bd%5D%60e)" in odd


# --- the text report ---


def test_text_report_has_no_control_characters() -> None:
    report = history_report()._replace(
        run=run("failed", failed("b\x1b[2Jad\nname", "\x1b[31mred\x07\n"))
    )
    text = render_text(report)

    assert re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text) is None
    assert "bad name: exit code 1" in text  # the escape sequence is gone, not just defused
    assert "    | red?" in text
