"""The JUnit renderer: golden files, counts as junitparser reads them, Surefire rerun elements, and
text no log can use to break the XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import JUnitXml, xunit2

from ci_orchestrator.junit_reader import read_junit
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.junit import TAIL_LIMIT, render_junit, write_junit
from tests.conftest import assert_golden

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
LOGS = ".ci-orchestrator/runs/R1"


def ok(number: int, ms: float) -> AttemptRecord:
    return AttemptRecord(number, 0, ms)


def step(name: str, status: str, ms: float = 0.0, **fields: Any) -> StepRecord:
    """A step record; one passing attempt when completed, a log path when it ran."""
    attempts = fields.get("attempts", (ok(1, ms),) if status == "completed" else ())
    record = StepRecord(name, status, duration_ms=ms, attempts=attempts)
    record = record._replace(log_path=f"{LOGS}/{name}.log" if attempts else None)
    return record._replace(**fields)


def run(status: str, *steps: StepRecord, **fields: Any) -> RunRecord:
    """Run R1 of web-app at a fixed time; it took the steps' durations plus 100ms."""
    total = sum(s.duration_ms for s in steps) + 100
    record = RunRecord("R1", "web-app", status, T0, T0 + total / 1000, total, steps=steps)
    record = record._replace(git_sha="9f2c1e7d4b", branch="main", event="push")
    return record._replace(**fields)


def passing_run() -> RunRecord:
    tests = (
        Case("tests.test_api", "tests.test_api", "test_get", "passed", 12.5),
        Case("tests.test_api", "tests.test_api", "test_post", "passed", 30.0),
        Case("tests.test_cli", "tests.test_cli", "test_help", "skipped", message="needs a TTY"),
    )
    return run(
        "passed",
        step("lint", "completed", 420),
        step("build", "completed", 1234, needs=("lint",)),
        step("test", "completed", 3150, needs=("build",), tests=tests),
        trigger="ci",
        pr_number=12,
        event="pull_request",
    )


def failing_run() -> RunRecord:
    retried = (AttemptRecord(1, 1, 900), AttemptRecord(2, 1, 950), AttemptRecord(3, 1, 1000))
    return run(
        "failed",
        step("lint", "completed", 420),
        step(
            "build",
            "failed",
            1234,
            reason="exit code 2",
            exit_code=2,
            attempts=(AttemptRecord(1, 2, 1234),),
            log_tail="compiling main.c\nmain.c:3: error: expected ';'\n",
        ),
        step(
            "integration",
            "failed",
            2850,
            reason="exit code 1",
            exit_code=1,
            attempts=retried,
            log_tail="connecting to db\nconnection refused\n",
            junit_problems=("reports/integration.xml: file not found",),
        ),
        step(
            "e2e",
            "failed",
            600_000,
            reason="timed out after 10m",
            exit_code=-15,
            attempts=(AttemptRecord(1, -15, 600_000, timed_out=True),),
            log_tail="waiting for browser...\n",
        ),
        step("deploy", "skipped", reason="dependency 'build' failed", needs=("build",)),
        step("notify", "cancelled", reason="fail-fast after 'build' failed"),
    )


def flaky_run() -> RunRecord:
    attempts = (
        AttemptRecord(1, 1, 1000),
        AttemptRecord(2, None, 1000, timed_out=True),
        ok(3, 1150),
    )
    tests = (
        Case("tests.test_api", "tests.test_api", "test_get", "passed", 12.0),
        Case(
            "tests.test_api",
            "tests.test_api",
            "test_retry",
            "passed",
            40.0,
            message="AssertionError: 503",
            flaky=True,
        ),
    )
    return run(
        "passed",
        step("lint", "completed", 420),
        step(
            "test",
            "completed",
            3150,
            reason="passed on attempt 3",
            flaky=True,
            attempts=attempts,
            tests=tests,
        ),
    )


def skipped_run() -> RunRecord:
    return run(
        "passed",
        step("generate", "skipped", reason="not configured"),
        step("review", "skipped", reason='condition not met: [ "$GITHUB_REF" = refs/heads/main ]'),
        step("merge", "pending", reason="interrupted"),
        git_sha=None,
        branch=None,
        event=None,
    )


SAMPLES = {
    "passing": passing_run,
    "failing": failing_run,
    "flaky": flaky_run,
    "skipped": skipped_run,
}


@pytest.mark.parametrize("name", SAMPLES)
def test_golden(name: str) -> None:
    data = render_junit(SAMPLES[name]())
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n")
    assert_golden(f"junit_{name}.xml", data.decode("utf-8"))
    assert render_junit(SAMPLES[name]()) == data  # deterministic


@pytest.mark.parametrize(
    ("name", "tests", "failures", "skipped"),
    [
        ("passing", 3, 0, 0),
        ("failing", 6, 3, 2),
        ("flaky", 2, 0, 0),
        ("skipped", 3, 0, 3),
    ],
)
def test_counts_as_junitparser_reads_them(
    name: str, tests: int, failures: int, skipped: int
) -> None:
    suites = list(JUnitXml.fromstring(render_junit(SAMPLES[name]())))
    main = suites[0]

    assert main.name == "web-app"
    assert (main.tests, main.failures, main.errors, main.skipped) == (tests, failures, 0, skipped)
    cases = list(main)
    assert len(cases) == tests
    assert sum(not case.is_passed and not case.is_skipped for case in cases) == failures
    assert sum(case.is_skipped for case in cases) == skipped


def test_run_properties_and_timestamp() -> None:
    suite = ET.fromstring(render_junit(passing_run())).find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}

    assert properties == {
        "run_id": "R1",
        "git_sha": "9f2c1e7d4b",
        "branch": "main",
        "event": "pull_request",
        "pull_request": "12",
        "trigger": "ci",
    }
    assert suite.get("timestamp") == "2024-05-01T12:00:00+00:00"
    assert suite.get("time") == "4.904"  # the run's wall time


def xunit2_suites(data: bytes) -> dict[str, dict[str, xunit2.TestCase]]:
    """Suite name -> case name -> case, read with junitparser's Surefire-aware flavour."""
    suites = {}
    for suite in xunit2.JUnitXml.fromstring(data):
        cases = list(suite)
        assert all(isinstance(case, xunit2.TestCase) for case in cases)
        suites[suite.name] = {c.name: c for c in cases if isinstance(c, xunit2.TestCase)}
    return suites


def test_failed_step_carries_reason_tail_and_log_path() -> None:
    cases = xunit2_suites(render_junit(failing_run()))["web-app"]
    build = cases["build"]

    [failure] = build.result
    assert failure.message == "exit code 2"
    assert failure.type == "exit-code"
    assert "main.c:3: error: expected ';'" in failure.text
    assert "main.c:3: error" in build.system_out
    assert f"log: {LOGS}/build.log" in build.system_out
    [timeout] = cases["e2e"].result
    assert (timeout.message, timeout.type) == ("timed out after 10m", "timeout")
    [cancelled] = cases["notify"].result
    assert cancelled.message == "cancelled: fail-fast after 'build' failed"
    assert cases["deploy"].result[0].message == "dependency 'build' failed"


def test_flaky_step_has_flaky_failures_and_counts_as_passed() -> None:
    data = render_junit(flaky_run())
    case = xunit2_suites(data)["web-app"]["test"]

    assert case.is_passed
    assert next(iter(JUnitXml.fromstring(data))).failures == 0
    failures = case.flaky_failures()
    assert [(f.message, f.type) for f in failures] == [
        ("attempt 1: exit code 1 after 1s", "exit-code"),
        ("attempt 2: timed out after 1s", "timeout"),
    ]
    assert case.rerun_failures() == []


def test_finally_failed_retried_step_has_rerun_failures() -> None:
    case = xunit2_suites(render_junit(failing_run()))["web-app"]["integration"]

    assert not case.is_passed
    [failure] = case.result
    assert failure.message == "exit code 1"
    assert [f.message for f in case.rerun_failures()] == [
        "attempt 1: exit code 1 after 900ms",
        "attempt 2: exit code 1 after 950ms",
    ]
    assert case.flaky_failures() == []
    assert "reports/integration.xml: file not found" in case.system_err


def test_step_tests_appear_as_their_own_suites() -> None:
    suites = {s.name: s for s in JUnitXml.fromstring(render_junit(passing_run()))}

    assert list(suites) == ["web-app", "test: tests.test_api", "test: tests.test_cli"]
    api = suites["test: tests.test_api"]
    assert (api.tests, api.failures, api.skipped) == (2, 0, 0)
    assert [(c.classname, c.name) for c in api] == [
        ("tests.test_api", "test_get"),
        ("tests.test_api", "test_post"),
    ]
    assert suites["test: tests.test_cli"].skipped == 1
    document = JUnitXml.fromstring(render_junit(passing_run()))
    assert (document.tests, document.failures, document.skipped) == (6, 0, 1)


def test_flaky_step_test_gets_a_flaky_failure() -> None:
    cases = xunit2_suites(render_junit(flaky_run()))["test: tests.test_api"]

    assert cases["test_retry"].is_passed
    assert [f.message for f in cases["test_retry"].flaky_failures()] == ["AssertionError: 503"]
    assert cases["test_get"].flaky_failures() == []


def test_our_reader_reads_our_output(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(failing_run(), path)
    cases = {c.name: c for c in read_junit(path, step="all") if c.suite == "web-app"}

    assert {name: c.status for name, c in cases.items()} == {
        "lint": "passed",
        "build": "failed",
        "integration": "failed",
        "e2e": "failed",
        "deploy": "skipped",
        "notify": "skipped",
    }
    flaky = read_junit(write_and_return(flaky_run(), tmp_path / "flaky.xml"), step="all")
    assert [(c.name, c.flaky) for c in flaky if c.flaky] == [("test", True), ("test_retry", True)]


def write_and_return(record: RunRecord, path: Path) -> Path:
    write_junit(record, path)
    return path


def test_write_junit_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "ci.xml"
    write_junit(failing_run(), path)
    write_junit(passing_run(), path)

    assert path.read_bytes() == render_junit(passing_run())
    assert [p.name for p in path.parent.iterdir()] == ["ci.xml"]


# --- hostile text ---

HOSTILE = 'ok\x00nul \x01\x08\x0b\x0c\x1f ctl \x1b[31mred\x1b[0m ]]> </failure> \ud800\udfff lone \ufffe\uffff <![CDATA[x]]> &amp; "q"\n'


def hostile_run(text: str) -> RunRecord:
    return run(
        "failed",
        step(
            text,
            "failed",
            10,
            reason=text,
            attempts=(AttemptRecord(1, 1, 5, error=text), AttemptRecord(2, 1, 5)),
            log_tail=text * 3,
            log_path=text,
            junit_problems=(text,),
            tests=(Case(text, text, text, "failed", message=text, output=text, flaky=False),),
        ),
        step(
            "x", "completed", 5, tests=(Case(text, text, text, "passed", message=text, flaky=True),)
        ),
        step("y", "cancelled", reason=text),
        branch=text,
    )


def test_control_characters_nul_cdata_end_and_surrogates_never_break_the_file() -> None:
    data = render_junit(hostile_run(HOSTILE))

    root = ET.fromstring(data)
    JUnitXml.fromstring(data)
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == expected_xml_text(HOSTILE)
    failure = case.find("failure")
    assert failure is not None
    assert failure.text is not None
    assert "]]> </failure>" in failure.text  # escaped on the way out, intact on the way in
    assert "\x1b" not in failure.text
    assert "[31m" not in failure.text  # colour codes stripped, not just defused
    assert "\ufffd" in failure.text


def test_a_huge_tail_is_capped_to_its_last_part() -> None:
    tail = "".join(f"line {i}\n" for i in range(500_000))  # ~6.4 MB
    record = run("failed", step("big", "failed", 1, reason="exit code 1", log_tail=tail))
    data = render_junit(record)

    assert len(data) < 3 * TAIL_LIMIT + 4096
    case = ET.fromstring(data).find("testsuite/testcase")
    assert case is not None
    failure_text = case.findtext("failure") or ""
    assert failure_text.rstrip().endswith("line 499999")
    assert failure_text.startswith("[… ")  # says that the start was cut
    assert "\nline " in failure_text[:200]  # and starts on a whole line after that note


def expected_xml_text(text: str) -> str:
    """What survives a round trip: characters XML 1.0 allows, U+FFFD for the others."""

    def allowed(char: str) -> bool:
        code = ord(char)
        return (
            char in "\t\n\r"
            or 0x20 <= code <= 0xD7FF
            or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF
        )

    return "".join(char if allowed(char) else "\ufffd" for char in text)


hostile_text = st.lists(
    st.one_of(
        st.text(),
        st.characters(codec=None, categories=["Cs"]),
        st.sampled_from(["]]>", "\x00", "\x1b[1m", "\ufffe", "\uffff", "</failure>", "\r", "&"]),
    )
).map("".join)


@settings(max_examples=150, deadline=None)
@given(name=hostile_text, reason=hostile_text, tail=hostile_text)
def test_any_text_yields_xml_that_parses(name: str, reason: str, tail: str) -> None:
    record = run(
        "failed",
        step(
            name,
            "failed",
            5,
            reason=reason,
            log_tail=tail,
            attempts=(AttemptRecord(1, 1, 2, error=reason), AttemptRecord(2, 1, 3)),
            tests=(Case(name, name, name, "failed", message=reason, output=tail),),
        ),
        step(reason, "skipped", reason=tail),
    )
    data = render_junit(record)

    root = ET.fromstring(data)
    JUnitXml.fromstring(data)
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == expected_xml_text(name)
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == (expected_xml_text(reason) or "failed")
