"""Reading the JUnit files steps write: real pytest output, Surefire reruns, and broken files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from ci_orchestrator.errors import CIOrchestratorError
from ci_orchestrator.junit_reader import (
    Budget,
    Freshness,
    JUnitReadError,
    merge_runs,
    read_junit,
    read_junit_globs,
    read_report,
    seconds,
)
from ci_orchestrator.records import TestCaseRecord as Case  # pytest would collect Test*

FIXTURES = Path(__file__).parent / "fixtures" / "junit"

PYTEST_SAMPLE = """
import pytest

def test_pass():
    print("all good")

def test_fail():
    print("about to fail")
    assert 1 == 2

@pytest.mark.skip(reason="not today")
def test_skip():
    pass

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

def test_error(broken):
    pass
"""


def by_name(cases: list[Case]) -> dict[str, Case]:
    return {case.name: case for case in cases}


@pytest.fixture(scope="module")
def pytest_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JUnit file written by a real pytest run (in a subprocess, outside this test session)."""
    root = tmp_path_factory.mktemp("pytest-run")
    (root / "test_sample.py").write_text(textwrap.dedent(PYTEST_SAMPLE))
    report = root / "reports" / "pytest.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-o", "junit_logging=system-out", f"--junitxml={report}", "test_sample.py"]
    result = subprocess.run(
        command, cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr  # a test failed, as written
    return report


def test_pytest_output_pass_fail_skip_error(pytest_report: Path) -> None:
    cases = by_name(read_junit(pytest_report, step="test"))

    assert set(cases) == {"test_pass", "test_fail", "test_skip", "test_error"}
    assert {name: case.status for name, case in cases.items()} == {
        "test_pass": "passed",
        "test_fail": "failed",
        "test_skip": "skipped",
        "test_error": "error",
    }
    assert cases["test_fail"].classname == "test_sample"
    assert cases["test_fail"].id == "test_sample.test_fail"
    assert "assert 1 == 2" in cases["test_fail"].message
    assert "about to fail" in cases["test_fail"].output
    assert cases["test_skip"].message == "not today"
    assert "fixture exploded" in cases["test_error"].message
    # the rest as pytest wrote it: the traceback, the skip's own type and location
    assert "assert 1 == 2" in cases["test_fail"].body
    assert "test_sample.py:" in cases["test_fail"].body
    assert "RuntimeError" in cases["test_error"].body
    assert cases["test_skip"].type == "pytest.skip"
    assert cases["test_skip"].body.endswith("not today")
    assert all(case.suite == "pytest" for case in cases.values())
    assert not any(case.flaky for case in cases.values())
    assert all(case.duration_ms >= 0 for case in cases.values())


def test_surefire_flaky_and_rerun_failures() -> None:
    cases = by_name(read_junit(FIXTURES / "surefire_reruns.xml", step="test"))

    flaky = cases["flakyThenPasses"]
    assert (flaky.status, flaky.flaky, flaky.reruns) == ("passed", True, 1)
    assert flaky.message == "expected: <200> but was: <503>"
    assert flaky.type == "org.opentest4j.AssertionFailedError"
    assert flaky.body.endswith("at com.example.ApiTest.flakyThenPasses(ApiTest.java:42)")
    assert (cases["flakyError"].status, cases["flakyError"].flaky) == ("passed", True)
    assert cases["flakyError"].message == "Connection reset"

    failed = cases["alwaysFails"]
    assert (failed.status, failed.flaky) == ("failed", False)
    assert failed.message == "timeout waiting for lock"
    assert (failed.type, failed.reruns) == ("java.lang.AssertionError", 2)
    assert failed.body.endswith("at com.example.ApiTest.alwaysFails(ApiTest.java:57)")
    assert failed.output == "waiting for lock..."
    assert failed.duration_ms == pytest.approx(1_001_250)  # "1,001.25" seconds

    assert (cases["passes"].status, cases["passes"].flaky) == ("passed", False)
    assert cases["passes"].duration_ms == pytest.approx(12)
    assert (cases["ignored"].status, cases["ignored"].message) == (
        "skipped",
        "Disabled: slow on CI",
    )
    crashed = cases["crashes"]
    assert (crashed.status, crashed.type) == ("error", "java.lang.NullPointerException")
    assert crashed.message.startswith("java.lang.NullPointerException: client is null")
    assert crashed.duration_ms == 0  # no time attribute
    assert {case.suite for case in cases.values()} == {"com.example.ApiTest"}


def test_nested_suites_name_their_cases() -> None:
    cases = read_junit(FIXTURES / "nested.xml", step="unit")

    assert [(c.suite, c.name, c.status) for c in cases] == [
        ("outer", "top", "passed"),
        ("inner", "deep", "failed"),
        ("inner", "deeper", "passed"),  # an unnamed suite belongs to the one around it
        ("second", "last", "passed"),
    ]
    assert cases[1].message == "deep failure"
    assert cases[2].duration_ms == pytest.approx(500)  # "0,5": a decimal comma


def test_a_bare_testsuite_root_without_a_name_is_named_after_the_step(tmp_path: Path) -> None:
    path = tmp_path / "bare.xml"
    path.write_text('<testsuite tests="1"><testcase name="only" classname="m"/></testsuite>')

    assert read_junit(path, step="unit") == [Case("unit", "m", "only", "passed")]


def test_namespaced_elements_are_read(tmp_path: Path) -> None:
    path = tmp_path / "ns.xml"
    path.write_text(
        '<testsuites xmlns="urn:example"><testsuite name="s">'
        '<testcase name="t"><failure message="no"/></testcase></testsuite></testsuites>'
    )

    [case] = read_junit(path, step="x")
    assert (case.suite, case.name, case.status, case.message) == ("s", "t", "failed", "no")


def test_long_messages_and_output_are_truncated(tmp_path: Path) -> None:
    path = tmp_path / "long.xml"
    path.write_text(
        f'<testsuite name="s"><testcase name="t"><failure>{"m" * 50_000}</failure>'
        f"<system-out>{'o' * 100_000}END</system-out></testcase></testsuite>"
    )

    [case] = read_junit(path, step="x")
    assert 1000 < len(case.message) <= 4096
    assert case.message.endswith("…")
    assert 1000 < len(case.output) <= 16 * 1024
    assert case.output.endswith("END")  # the end of the output is kept
    assert len(case.body) < 17 * 1024
    assert "characters cut" in case.body  # its start and its end are kept


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", 1.5),
        ("1,234.5", 1234.5),
        ("12,345,678", 12_345_678),
        ("0,25", 0.25),
        (" 3 ", 3.0),
        (None, 0.0),
        ("", 0.0),
        ("soon", 0.0),
        ("-1", 0.0),
        ("nan", 0.0),
        ("inf", 0.0),
    ],
)
def test_time_attributes(value: str | None, expected: float) -> None:
    assert seconds(value) == pytest.approx(expected)


# --- files that cannot be read ---


def read_error(path: Path) -> str:
    with pytest.raises(JUnitReadError) as info:
        read_junit(path, step="test")
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, CIOrchestratorError)
    return message


def test_malformed_xml_names_the_problem_and_line(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "x.xml"
    path.parent.mkdir()
    shutil.copy(FIXTURES / "malformed.xml", path)

    assert read_error(path) == f"{path}: not valid XML: mismatched tag at line 3"


def test_missing_file(tmp_path: Path) -> None:
    assert read_error(tmp_path / "nope.xml") == f"{tmp_path / 'nope.xml'}: file not found"


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_text("  \n")
    assert read_error(path) == f"{path}: empty file"


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    assert read_error(tmp_path).startswith(f"{tmp_path}: cannot read: ")


def test_a_non_junit_root_is_refused() -> None:
    message = read_error(FIXTURES / "not_junit.xml")
    assert message.endswith(
        "not a JUnit report: the root element is <html>, expected <testsuites> or <testsuite>"
    )


def test_a_doctype_is_refused_before_entities_expand() -> None:
    message = read_error(FIXTURES / "billion_laughs.xml")
    assert "refused: the file declares a DOCTYPE" in message


def test_a_doctype_in_utf16_is_refused_too(tmp_path: Path) -> None:
    text = (FIXTURES / "billion_laughs.xml").read_text()
    path = tmp_path / "utf16.xml"
    path.write_bytes(
        text.replace('version="1.0"', 'version="1.0" encoding="utf-16"').encode("utf-16")
    )
    assert "refused: the file declares a DOCTYPE" in read_error(path)


# --- globs ---


def test_globs_collect_cases_and_one_line_problems(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    shutil.copy(FIXTURES / "nested.xml", reports / "a.xml")
    shutil.copy(FIXTURES / "malformed.xml", reports / "b.xml")
    (reports / "sub").mkdir()
    shutil.copy(FIXTURES / "surefire_reruns.xml", reports / "sub" / "c.xml")

    cases, problems, _ = read_junit_globs(
        ["reports/*.xml", "missing/*.xml", "reports/none.xml", "reports/**/c.xml", "reports/a.xml"],
        tmp_path,
        "test",
    )

    nested = ["top", "deep", "deeper", "last"]
    surefire = ["passes", "flakyThenPasses", "flakyError", "alwaysFails", "ignored", "crashes"]
    assert [c.name for c in cases] == [*nested, *surefire]  # a.xml once, though matched twice
    assert problems == [
        "reports/b.xml: not valid XML: mismatched tag at line 3",
        "missing/*.xml: no file matched",
        "reports/none.xml: file not found",
    ]


def test_absolute_patterns_are_shown_relative_to_base(tmp_path: Path) -> None:
    cases, problems, _ = read_junit_globs(
        [str(tmp_path / "out" / "*.xml"), str(tmp_path / "out" / "x.xml")], tmp_path, "test"
    )

    assert cases == []
    assert problems == ["out/*.xml: no file matched", "out/x.xml: file not found"]


def test_globs_never_raise_on_hostile_files(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "billion_laughs.xml", tmp_path / "lol.xml")
    (tmp_path / "empty.xml").write_bytes(b"")
    (tmp_path / "dir.xml").mkdir()  # a directory that matches the pattern is not a report

    cases, problems, _ = read_junit_globs(["*.xml", "["], tmp_path, "test")

    assert cases == []
    assert problems == [
        "empty.xml: empty file",
        "lol.xml: refused: the file declares a DOCTYPE, which JUnit XML never needs",
        "[: no file matched",
    ]


# --- reruns inside one file, and runs over attempts ---


def test_pytest_rerunfailures_writes_a_test_again_for_each_rerun() -> None:
    report = read_report(FIXTURES / "pytest_rerunfailures.xml", step="test")
    cases = by_name(report.cases)

    assert [c.name for c in report.cases] == ["test_flaky", "test_always", "test_ok"]
    flaky = cases["test_flaky"]
    assert (flaky.status, flaky.flaky, flaky.reruns) == ("passed", True, 1)
    assert flaky.output.endswith("run 0\nrun 1")  # the run that passed
    always = cases["test_always"]
    assert (always.status, always.flaky, always.reruns) == ("failed", False, 2)
    assert always.message == "AssertionError: nope\nassert False"
    assert (cases["test_ok"].status, cases["test_ok"].reruns) == ("passed", 0)
    assert report.notes == [
        "2 tests appear more than once, read as reruns: test_f.test_flaky, test_f.test_always"
    ]


def test_failures_then_a_pass_over_attempts_is_flaky() -> None:
    first = [
        Case("s", "c", "flips", "failed", 5, message="boom", type="E", body="trace", attempt=1),
        Case("s", "c", "stays", "failed", 5, message="again", attempt=1),
        Case("s", "c", "fine", "passed", 5, attempt=1),
        Case("s", "c", "gone", "failed", 5, message="only once", attempt=1),
    ]
    second = [
        Case("s", "c", "fine", "passed", 4, attempt=2),
        Case("s", "c", "flips", "passed", 4, attempt=2),
        Case("s", "c", "stays", "failed", 4, message="again!", attempt=2),
        Case("s", "c", "new", "passed", 4, attempt=2),
    ]

    merged = by_name(merge_runs(first, second))

    assert list(merged) == ["flips", "stays", "fine", "gone", "new"]  # first-seen order
    flips = merged["flips"]
    assert (flips.status, flips.flaky, flips.reruns, flips.attempt) == ("passed", True, 1, 2)
    assert (flips.message, flips.type, flips.body) == ("boom", "E", "trace")  # what failed
    stays = merged["stays"]
    assert (stays.status, stays.flaky, stays.reruns, stays.message) == (
        "failed",
        False,
        1,
        "again!",
    )
    assert merged["fine"] == second[0]
    assert merged["gone"] == first[3]  # not run again: its last outcome stands
    third = by_name(merge_runs(merged.values(), [Case("s", "c", "stays", "passed", attempt=3)]))
    assert (third["stays"].flaky, third["stays"].reruns, third["stays"].message) == (
        True,
        2,
        "again!",
    )


# --- which files an attempt wrote ---


def test_a_file_older_than_the_attempt_is_ignored_with_a_note(tmp_path: Path) -> None:
    report = tmp_path / "reports" / "pytest.xml"
    report.parent.mkdir()
    shutil.copy(FIXTURES / "nested.xml", report)
    started = time.time()
    os.utime(report, (started - 3600, started - 3600))  # left by a run an hour ago

    found = read_junit_globs(["reports/*.xml"], tmp_path, "test", Freshness(started))

    assert found.cases == []
    assert found.problems == [
        "reports/pytest.xml: ignored: last written 1h00m before this attempt started"
        " (a stale file, from an earlier run or attempt)"
    ]
    assert found.read == {}


def test_an_attempt_reads_only_what_it_wrote(tmp_path: Path) -> None:
    report = tmp_path / "pytest.xml"
    shutil.copy(FIXTURES / "nested.xml", report)
    first = read_junit_globs(["pytest.xml"], tmp_path, "test", Freshness(time.time() - 0.01))
    assert len(first.cases) == 4
    assert {case.attempt for case in first.cases} == {1}

    # attempt 2 starts within the clock's slack of the file's time, and never rewrites it
    second = read_junit_globs(
        ["pytest.xml"], tmp_path, "test", Freshness(time.time(), 2, first.read)
    )
    assert second.cases == []
    assert second.problems == ["pytest.xml: ignored: not rewritten since attempt 1 read it"]

    report.write_text('<testsuite name="s"><testcase name="t"/></testsuite>')  # attempt 3 does
    later = first.read["pytest.xml"][0] + 1_000_000  # a coarse clock could give the same time
    os.utime(report, ns=(later, later))
    third = read_junit_globs(
        ["pytest.xml"], tmp_path, "test", Freshness(time.time() - 0.01, 3, first.read)
    )
    assert [(c.name, c.attempt) for c in third.cases] == [("t", 3)]


# --- bad input: a note naming the file, bounded memory ---


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_other_encodings_as_declared(tmp_path: Path) -> None:
    suite = '<testsuite name="s"><testcase name="{}"><failure message="{}"/></testcase></testsuite>'
    latin1 = '<?xml version="1.0" encoding="ISO-8859-1"?>' + suite.format("café", "échec")
    cp1252 = '<?xml version="1.0" encoding="windows-1252"?>' + suite.format("€uro", "‰")
    utf16 = '<?xml version="1.0" encoding="UTF-16"?>' + suite.format("über", "ß")

    [a] = read_junit(write_bytes(tmp_path / "a.xml", latin1.encode("latin-1")), step="x")
    [b] = read_junit(write_bytes(tmp_path / "b.xml", cp1252.encode("cp1252")), step="x")
    [c] = read_junit(write_bytes(tmp_path / "c.xml", utf16.encode("utf-16")), step="x")
    assert [(t.name, t.message) for t in (a, b, c)] == [
        ("café", "échec"),
        ("€uro", "‰"),
        ("über", "ß"),
    ]
    unknown = b'<?xml version="1.0" encoding="x-martian"?><testsuite/>'
    message = read_error(write_bytes(tmp_path / "d.xml", unknown))
    assert message.endswith("d.xml: unknown encoding 'x-martian'")


def test_control_characters_and_bad_bytes_are_replaced_with_a_note(tmp_path: Path) -> None:
    data = (
        b'<testsuite name="s"><testcase name="a\x1b[31mb" classname="c">'
        b'<failure message="nul\x00here">bell\x07 &#27; &#x1B; &#xFFFE; &#10;&amp;</failure>'
        b"<system-out>latin-1 byte \xe9 in UTF-8</system-out></testcase></testsuite>"
    )
    path = write_bytes(tmp_path / "ctl.xml", data)

    report = read_report(path, step="x")

    [case] = report.cases
    assert case.name == "a\ufffd[31mb"
    assert case.message == "nul\ufffdhere"
    assert case.body == "bell\ufffd \ufffd \ufffd \ufffd \n&"
    assert case.output == "latin-1 byte \ufffd in UTF-8"
    assert report.notes == ["6 characters XML does not allow, replaced by U+FFFD"]


def test_a_truncated_file_keeps_the_tests_read_before_the_cut(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    whole = (FIXTURES / "surefire_reruns.xml").read_bytes()
    (reports / "cut.xml").write_bytes(whole[: whole.index(b'<testcase name="ignored"')] + b"<test")
    (reports / "binary.xml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

    cases, problems, _ = read_junit_globs(["reports/*.xml"], tmp_path, "test")

    assert problems == [
        "reports/binary.xml: not valid XML: not well-formed (invalid token) at line 1",
        "reports/cut.xml: not valid XML: unclosed token at line 31"
        " (the file ends too early: cut short?); kept the 4 tests read before it",
    ]
    assert [c.name for c in cases] == ["passes", "flakyThenPasses", "flakyError", "alwaysFails"]


def test_a_huge_file_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """50 MB, mostly one test's output and traceback: read in chunks, texts capped as they come."""
    path = tmp_path / "huge.xml"
    block = ("x" * 99 + "\n") * 10_000  # 1 MB
    with path.open("w") as out:
        out.write('<testsuite name="s"><testcase name="big"><failure message="m">START')
        for _ in range(25):
            out.write(block)
        out.write("<![CDATA[ END ]]></failure><system-out>")
        for _ in range(25):
            out.write(block)
        out.write('END</system-out></testcase><testcase name="after"/></testsuite>')
    assert path.stat().st_size > 50_000_000

    tracemalloc.start()
    try:
        [big, after] = read_junit(path, step="x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert peak < 4_000_000  # a 50 MB file, read in well under 4 MB
    assert big.body.startswith("STARTxxx")
    assert big.body.endswith("x\n END ")
    assert "[… 24,983,6" in big.body
    assert len(big.output) == 16 * 1024
    assert big.output.endswith("x\nEND")
    assert (after.name, after.status) == ("after", "passed")


def test_one_read_keeps_texts_within_its_budget(tmp_path: Path) -> None:
    cases = "".join(
        f'<testcase name="t{i}"><failure message="{"m" * 300}">{"b" * 5000}</failure>'
        f"<system-out>{'o' * 5000}</system-out></testcase>"
        for i in range(40)
    )
    path = write_bytes(tmp_path / "many.xml", f'<testsuite name="s">{cases}</testsuite>'.encode())

    report = read_report(path, step="x", budget=Budget(100_000))

    kept = [c for c in report.cases if c.body]
    assert 5 <= len(kept) < 40
    assert (
        sum(len(c.body) + len(c.output) + len(c.message) for c in report.cases) < 100_000 + 40 * 200
    )
    cut = report.cases[-1]
    assert (cut.status, cut.body, cut.output, cut.message) == ("failed", "", "", "m" * 200)
    assert report.notes == [
        f"texts of {40 - len(kept)} tests cut short: over the 0.0953674 MiB one read keeps"
    ]


def test_huge_names_are_capped(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "n.xml", f'<testsuite><testcase name="{"n" * 100_000}"/></testsuite>'.encode()
    )
    [case] = read_junit(path, step="x")
    assert len(case.name) == 1024
    assert case.name.endswith("…")
