"""The JUnit renderer: golden files, counts as junitparser reads them, Surefire rerun elements, and
text no log can use to break the XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser import Error, Failure, JUnitXml, xunit2

from ci_orchestrator.junit_reader import read_junit
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*
from ci_orchestrator.render.junit import OUTPUT_BUDGET, TAIL_LIMIT, render_junit, write_junit
from ci_orchestrator.render.text import strip_ansi
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
        Case("pytest", "tests.test_api", "test_get", "passed", 12.5, output="GET /items 200"),
        Case("pytest", "tests.test_api", "test_instant", "passed", 0.0),
        Case(
            "pytest",
            "tests.test_cli",
            "test_help",
            "skipped",
            message="needs a TTY",
            type="pytest.skip",
            body="tests/test_cli.py:12: needs a TTY",
        ),
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


TRACEBACK = "def test_total():\n>       assert total([1, 2]) == 4\nE       assert 3 == 4\n\ntests/test_cart.py:9: AssertionError"


def failing_run() -> RunRecord:
    retried = (AttemptRecord(1, 1, 900), AttemptRecord(2, 1, 950), AttemptRecord(3, 1, 1000))
    unit_tests = (
        Case("pytest", "tests.test_cart", "test_add", "passed", 3.0),
        Case(
            "pytest",
            "tests.test_cart",
            "test_total",
            "failed",
            5.0,
            message="assert 3 == 4",
            type="AssertionError",
            body=TRACEBACK,
            output="cart: [1, 2]",
            stderr="warning: rounding",
            reruns=1,
            attempt=2,
        ),
        Case(
            "pytest", "tests.test_cart", "test_db", "error", 1.0, message="fixture 'db' not found"
        ),
    )
    covered = (Case("pytest", "tests.test_x", "test_x", "passed", 1.0),)
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
            "unit",
            "failed",
            2000,
            reason="exit code 1",
            exit_code=1,
            attempts=(AttemptRecord(1, 1, 1000), AttemptRecord(2, 1, 1000)),
            tests=unit_tests,
        ),
        step(
            "coverage",
            "failed",
            700,
            reason="exit code 2",
            exit_code=2,
            attempts=(AttemptRecord(1, 2, 700),),
            log_tail="TOTAL 71% < 80%\n",
            tests=covered,
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
        step(
            "notify",
            "cancelled",
            5,
            reason="stopped: fail-fast after 'build' failed",
            attempts=(AttemptRecord(1, -15, 5),),
        ),
    )


def flaky_run() -> RunRecord:
    attempts = (
        AttemptRecord(1, 1, 1000),
        AttemptRecord(2, None, 1000, timed_out=True),
        ok(3, 1150),
    )
    tests = (
        Case("pytest", "tests.test_api", "test_get", "passed", 12.0, attempt=3),
        Case(
            "pytest",
            "tests.test_api",
            "test_retry",
            "passed",
            40.0,
            message="AssertionError: 503",
            type="AssertionError",
            body="tests/test_api.py:30: AssertionError",
            flaky=True,
            attempt=3,
            reruns=2,
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
        step(
            "deps",
            "completed",
            300,
            reason="passed on attempt 2",
            flaky=True,
            attempts=(AttemptRecord(1, 1, 100), ok(2, 200)),
        ),
    )


def skipped_run() -> RunRecord:
    return run(
        "passed",
        step("generate", "skipped", reason="not configured"),
        step("review", "skipped", reason='condition not met: [ "$GITHUB_REF" = refs/heads/main ]'),
        git_sha=None,
        branch=None,
        event=None,
    )


def interrupted_run() -> RunRecord:
    """Ctrl-C while `e2e` ran: it is cancelled, `deploy` never started."""
    tests = (Case("pytest", "tests.test_api", "test_get", "passed", 12.0, attempt=1),)
    return run(
        "interrupted",
        step("unit", "completed", 800, tests=tests),
        step(
            "e2e",
            "cancelled",
            1500,
            reason="run interrupted",
            attempts=(AttemptRecord(1, -2, 1500),),
            log_tail="starting browser\n",
        ),
        step("deploy", "skipped", reason="run interrupted", needs=("e2e",)),
    )


SAMPLES = {
    "passing": passing_run,
    "failing": failing_run,
    "flaky": flaky_run,
    "skipped": skipped_run,
    "interrupted": interrupted_run,
}


@pytest.mark.parametrize("name", SAMPLES)
def test_golden(name: str) -> None:
    data = render_junit(SAMPLES[name]())
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n")
    assert_golden(f"junit_{name}.xml", data.decode("utf-8"))
    assert render_junit(SAMPLES[name]()) == data  # deterministic


@pytest.mark.parametrize(
    ("name", "tests", "failures", "errors", "skipped"),
    [
        ("passing", 5, 0, 0, 1),  # lint, build, and the three tests of `test`: no case for it
        ("failing", 11, 5, 2, 1),  # unit: 2 failed tests, no case; coverage: its test and itself
        ("flaky", 4, 0, 0, 0),
        ("skipped", 2, 0, 0, 2),
        ("interrupted", 3, 0, 1, 1),
    ],
)
def test_counts_as_junitparser_reads_them(
    name: str, tests: int, failures: int, errors: int, skipped: int
) -> None:
    data = render_junit(SAMPLES[name]())
    document = JUnitXml.fromstring(data)

    assert (document.tests, document.failures, document.errors, document.skipped) == (
        tests,
        failures,
        errors,
        skipped,
    )
    cases = [case for suite in document for case in suite]
    assert len(cases) == tests
    assert sum(isinstance(r, Failure) for c in cases for r in c.result) == failures
    assert sum(isinstance(r, Error) for c in cases for r in c.result) == errors
    assert sum(case.is_skipped for case in cases) == skipped
    for suite in document:  # every suite's own counts add up too
        suite_cases = list(suite)
        assert suite.tests == len(suite_cases)
        assert suite.failures == sum(isinstance(r, Failure) for c in suite_cases for r in c.result)


def test_run_properties_and_timestamp() -> None:
    suite = ET.fromstring(render_junit(passing_run())).find("testsuite")
    assert suite is not None
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}

    assert suite.get("name") == "pipeline"
    assert properties == {
        "run_id": "R1",
        "status": "passed",
        "git_sha": "9f2c1e7d4b",
        "branch": "main",
        "event": "pull_request",
        "pull_request": "12",
        "trigger": "ci",
    }
    assert suite.get("timestamp") == "2024-05-01T12:00:00+00:00"
    assert ET.fromstring(render_junit(passing_run())).get("time") == "4.904"  # the run's wall time


def xunit2_suites(data: bytes) -> dict[str, dict[str, xunit2.TestCase]]:
    """Suite name -> case name -> case, read with junitparser's Surefire-aware flavour."""
    suites = {}
    for suite in xunit2.JUnitXml.fromstring(data):
        cases = list(suite)
        assert all(isinstance(case, xunit2.TestCase) for case in cases)
        suites[suite.name] = {c.name: c for c in cases if isinstance(c, xunit2.TestCase)}
    return suites


def test_failed_step_carries_reason_tail_and_log_path() -> None:
    cases = xunit2_suites(render_junit(failing_run()))["pipeline"]
    build = cases["build"]

    [failure] = build.result
    assert failure.message == "exit code 2"
    assert failure.type == "exit-code"
    assert "main.c:3: error: expected ';'" in failure.text
    assert "main.c:3: error" in build.system_out
    assert f"log: {LOGS}/build.log" in build.system_out
    assert build.classname == "web-app"
    [timeout] = cases["e2e"].result
    assert (timeout.message, timeout.type) == ("timed out after 10m", "timeout")
    assert cases["deploy"].result[0].message == "dependency 'build' failed"


def test_cancelled_and_interrupted_steps_are_errors() -> None:
    [cancelled] = xunit2_suites(render_junit(failing_run()))["pipeline"]["notify"].result
    assert isinstance(cancelled, Error)
    assert (cancelled.type, cancelled.message) == (
        "cancelled",
        "stopped: fail-fast after 'build' failed",
    )

    cases = xunit2_suites(render_junit(interrupted_run()))["pipeline"]
    [stopped] = cases["e2e"].result
    assert isinstance(stopped, Error)
    assert (stopped.type, stopped.message) == ("interrupted", "run interrupted")
    assert "starting browser" in (stopped.text or "")
    assert cases["deploy"].is_skipped  # it never started: a skip, with the reason
    assert "unit" not in cases  # its tests stand for it


def test_an_interrupted_run_never_reads_as_a_pass() -> None:
    """Stopped between steps (nothing running, nothing cancelled): the run itself is the error."""
    record = run("interrupted", step("lint", "completed", 5), step("test", "skipped", reason="x"))
    document = JUnitXml.fromstring(render_junit(record))
    assert document.errors == 1
    [case] = [c for s in document for c in s if c.name == "(run)"]
    assert case.result[0].message == "the run was interrupted"

    abandoned = run("abandoned", step("lint", "completed", 5), step("test", "running"))
    cases = xunit2_suites(render_junit(abandoned))["pipeline"]
    [error] = cases["test"].result
    assert (error.type, error.message) == ("interrupted", "did not finish")
    assert "(run)" not in cases

    live = run("running", step("lint", "completed", 5), step("test", "running"))
    assert xunit2_suites(render_junit(live))["pipeline"]["test"].is_skipped  # not over yet


def test_flaky_step_has_flaky_failures_and_counts_as_passed() -> None:
    data = render_junit(flaky_run())
    case = xunit2_suites(data)["pipeline"]["deps"]

    assert case.is_passed
    assert JUnitXml.fromstring(data).failures == 0
    assert [(f.message, f.type) for f in case.flaky_failures()] == [
        ("attempt 1: exit code 1 after 100ms", "exit-code")
    ]
    assert case.rerun_failures() == []


def test_finally_failed_retried_step_has_rerun_failures() -> None:
    case = xunit2_suites(render_junit(failing_run()))["pipeline"]["integration"]

    assert not case.is_passed
    [failure] = case.result
    assert failure.message == "exit code 1"
    assert [f.message for f in case.rerun_failures()] == [
        "attempt 1: exit code 1 after 900ms",
        "attempt 2: exit code 1 after 950ms",
    ]
    assert case.flaky_failures() == []
    assert "reports/integration.xml: file not found" in case.system_err


def test_a_step_with_tests_is_one_suite_named_after_it_and_no_case_of_its_own() -> None:
    document = JUnitXml.fromstring(render_junit(passing_run()))
    suites = {s.name: s for s in document}

    assert list(suites) == ["pipeline", "test"]
    assert [c.name for c in suites["pipeline"]] == ["lint", "build"]
    tests = suites["test"]
    assert (tests.tests, tests.failures, tests.skipped) == (3, 0, 1)
    assert [(c.classname, c.name) for c in tests] == [
        ("tests.test_api", "test_get"),
        ("tests.test_api", "test_instant"),
        ("tests.test_cli", "test_help"),
    ]


def test_test_cases_are_written_as_the_tool_wrote_them() -> None:
    root = ET.fromstring(render_junit(failing_run()))
    unit = {c.get("name"): c for c in root.iterfind("testsuite[@name='unit']/testcase")}
    total = unit["test_total"]

    assert total.attrib == {"name": "test_total", "classname": "tests.test_cart", "time": "0.005"}
    failure = total.find("failure")
    assert failure is not None
    assert failure.attrib == {"message": "assert 3 == 4", "type": "AssertionError"}
    assert failure.text == TRACEBACK
    assert total.findtext("system-out") == "cart: [1, 2]"
    assert total.findtext("system-err") == "warning: rounding"
    [rerun] = total.findall("rerunFailure")
    assert rerun.attrib == {"message": "assert 3 == 4", "type": "AssertionError"}
    error = unit["test_db"].find("error")
    assert error is not None
    assert error.attrib == {"message": "fixture 'db' not found"}  # no type was given: none added

    test = {c.get("name"): c for c in ET.fromstring(render_junit(passing_run())).iter("testcase")}
    assert test["test_instant"].get("time") == "0.000"  # a zero time is a time
    skipped = test["test_help"].find("skipped")
    assert skipped is not None
    assert skipped.attrib == {"message": "needs a TTY", "type": "pytest.skip"}
    assert skipped.text == "tests/test_cli.py:12: needs a TTY"


def test_a_step_whose_tests_do_not_tell_its_failure_is_a_case_too() -> None:
    suites = xunit2_suites(render_junit(failing_run()))

    assert "unit" not in suites["pipeline"]  # its failed tests tell it
    assert suites["coverage"]["test_x"].is_passed
    [failure] = suites["pipeline"]["coverage"].result
    assert failure.message == "exit code 2"


def test_flaky_test_gets_flaky_failures_with_the_stack_trace() -> None:
    cases = xunit2_suites(render_junit(flaky_run()))["test"]

    retry = cases["test_retry"]
    assert retry.is_passed
    failures = retry.flaky_failures()
    assert [(f.message, f.type) for f in failures] == [
        ("AssertionError: 503", "AssertionError")
    ] * 2
    assert failures[0].stack_trace == "tests/test_api.py:30: AssertionError"
    assert cases["test_get"].flaky_failures() == []


def test_our_reader_reads_our_output(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(failing_run(), path)
    cases = {(c.suite, c.name): c for c in read_junit(path, step="all")}

    assert {name: c.status for (suite, name), c in cases.items() if suite == "pipeline"} == {
        "lint": "passed",
        "build": "failed",
        "coverage": "failed",
        "integration": "failed",
        "e2e": "failed",
        "deploy": "skipped",
        "notify": "error",
    }
    total = cases["unit", "test_total"]
    assert (total.status, total.type, total.body, total.reruns) == (
        "failed",
        "AssertionError",
        TRACEBACK,
        1,
    )
    flaky = read_junit(write_and_return(flaky_run(), tmp_path / "flaky.xml"), step="all")
    assert [(c.name, c.flaky, c.reruns) for c in flaky if c.flaky] == [
        ("deps", True, 1),  # the pipeline suite comes first
        ("test_retry", True, 2),
    ]


def write_and_return(record: RunRecord, path: Path) -> Path:
    write_junit(record, path)
    return path


def test_write_junit_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "ci.xml"
    write_junit(failing_run(), path)
    write_junit(passing_run(), path)

    assert path.read_bytes() == render_junit(passing_run())
    assert [p.name for p in path.parent.iterdir()] == ["ci.xml"]


def test_test_output_has_a_budget_per_suite() -> None:
    tests = tuple(
        Case("s", "c", f"t{i}", "passed", output=f"{i} " + "x" * 30_000) for i in range(200)
    )
    data = render_junit(run("passed", step("big", "completed", 1, tests=tests)))

    assert len(data) < OUTPUT_BUDGET + 200 * 200
    suite = xunit2_suites(data)["big"]
    assert len(suite) == 200  # every test is there, only output is left out
    assert suite["t0"].system_out.startswith("0 xxx")
    assert suite["t199"].system_out is None
    note = ET.fromstring(data).findtext("testsuite[@name='big']/system-err") or ""
    assert "system-out/err of " in note
    assert "tests left out: over the 4 MiB of one suite" in note


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
            tests=(Case(text, text, text, "passed", message=text, output=text),),
        ),
        step(
            "x",
            "completed",
            5,
            tests=(
                Case(text, text, text, "passed", message=text, body=text, type=text, flaky=True),
                Case("s", "c", "t", "failed", message=text, body=text, type=text, stderr=text),
            ),
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
    reported = root.find("testsuite[@name='x']/testcase[@name='t']")
    assert reported is not None
    failure = reported.find("failure")
    assert failure is not None
    assert failure.get("type") == expected_xml_text(HOSTILE)
    assert failure.text == expected_xml_text(HOSTILE)
    assert reported.findtext("system-err") == expected_xml_text(strip_ansi(HOSTILE))


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
            tests=(
                Case(
                    name, name, name, "skipped", message=reason, output=tail, body=tail, type=name
                ),
            ),
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


# The element structure of the JUnit schema Jenkins' xUnit plugin validates against (junit-10.xsd):
# what a testcase may hold, and the attributes a rerun element must carry.
TESTCASE_CHILDREN = {
    "skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure", "flakyError",
    "system-out", "system-err",
}  # fmt: skip
RERUN_TAGS = {"rerunFailure", "rerunError", "flakyFailure", "flakyError"}


@pytest.mark.parametrize("name", SAMPLES)
def test_elements_follow_the_schema(name: str) -> None:
    root = ET.fromstring(render_junit(SAMPLES[name]()))

    assert root.tag == "testsuites"
    assert {child.tag for child in root} == {"testsuite"}
    for suite in root:
        assert {"name", "tests", "failures", "errors"} <= set(suite.attrib)
        assert {child.tag for child in suite} <= {
            "properties",
            "testcase",
            "system-out",
            "system-err",
        }
    for case in root.iter("testcase"):
        assert "name" in case.attrib
        assert {child.tag for child in case} <= TESTCASE_CHILDREN
        for rerun in (child for child in case if child.tag in RERUN_TAGS):
            assert "type" in rerun.attrib  # required on the rerun type
            assert {child.tag for child in rerun} <= {"stackTrace", "system-out", "system-err"}
