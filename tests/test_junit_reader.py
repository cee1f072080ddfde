"""Reading the JUnit files steps write: real pytest output, Surefire reruns, and broken files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ci_orchestrator.errors import CIOrchestratorError
from ci_orchestrator.junit_reader import JUnitReadError, read_junit, read_junit_globs, seconds
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
    assert all(case.suite == "pytest" for case in cases.values())
    assert not any(case.flaky for case in cases.values())
    assert all(case.duration_ms >= 0 for case in cases.values())


def test_surefire_flaky_and_rerun_failures() -> None:
    cases = by_name(read_junit(FIXTURES / "surefire_reruns.xml", step="test"))

    flaky = cases["flakyThenPasses"]
    assert (flaky.status, flaky.flaky) == ("passed", True)
    assert flaky.message == "expected: <200> but was: <503>"
    assert (cases["flakyError"].status, cases["flakyError"].flaky) == ("passed", True)
    assert cases["flakyError"].message == "Connection reset"

    failed = cases["alwaysFails"]
    assert (failed.status, failed.flaky) == ("failed", False)
    assert failed.message == "timeout waiting for lock"
    assert failed.output == "waiting for lock..."
    assert failed.duration_ms == pytest.approx(1_001_250)  # "1,001.25" seconds

    assert (cases["passes"].status, cases["passes"].flaky) == ("passed", False)
    assert cases["passes"].duration_ms == pytest.approx(12)
    assert (cases["ignored"].status, cases["ignored"].message) == (
        "skipped",
        "Disabled: slow on CI",
    )
    crashed = cases["crashes"]
    assert crashed.status == "error"
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

    cases, problems = read_junit_globs(
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
    cases, problems = read_junit_globs(
        [str(tmp_path / "out" / "*.xml"), str(tmp_path / "out" / "x.xml")], tmp_path, "test"
    )

    assert cases == []
    assert problems == ["out/*.xml: no file matched", "out/x.xml: file not found"]


def test_globs_never_raise_on_hostile_files(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "billion_laughs.xml", tmp_path / "lol.xml")
    (tmp_path / "empty.xml").write_bytes(b"")
    (tmp_path / "dir.xml").mkdir()  # a directory that matches the pattern is not a report

    cases, problems = read_junit_globs(["*.xml", "["], tmp_path, "test")

    assert cases == []
    assert problems == [
        "empty.xml: empty file",
        "lol.xml: refused: the file declares a DOCTYPE, which JUnit XML never needs",
        "[: no file matched",
    ]
