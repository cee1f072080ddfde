"""Test-level truth, end to end: real pytest runs through the real CLI, JUnit read after every
attempt (only files the attempt wrote), and JUnit out counted the way its consumers count it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped, xunit2

from ci_orchestrator.journal import JournalStore
from ci_orchestrator.records import RunRecord
from ci_orchestrator.render.junit import render_junit
from tests.conftest import cli
from tests.test_render_junit import SAMPLES

FIXTURES = Path(__file__).parent / "fixtures" / "junit"

TESTS = """
import pathlib

import pytest

COUNTER = pathlib.Path(__file__).parent.parent / "counter.txt"


def test_stable():
    assert 1 + 1 == 2


def test_flaky():
    runs = int(COUNTER.read_text()) if COUNTER.exists() else 0
    COUNTER.write_text(str(runs + 1))
    assert runs >= 1, f"fails on its first run (run {runs})"


@pytest.mark.skip(reason="not on CI")
def test_skipped():
    pass
"""

PIPELINE = f"""
name: app
steps:
  test:
    run: "{sys.executable} -m pytest -q -p no:cacheprovider --junitxml=reports/pytest.xml tests"
    retry: {{attempts: 2}}
    junit: reports/pytest.xml
"""


class Counts(NamedTuple):
    tests: int
    failures: int
    errors: int
    skipped: int


def git_repo(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip("\n"))
    (root / ".gitignore").write_text("reports/\ncounter.txt\n*.xml\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tests"]):
        subprocess.run([*git, *command], cwd=root, check=True, capture_output=True)


def latest(pipeline: str) -> RunRecord:
    run = JournalStore(".ci-orchestrator/journal.db").latest_run(pipeline, finished=True)
    assert run is not None
    return run


# --- how consumers count a JUnit file ---


def junitparser_counts(data: bytes) -> Counts:
    """junitparser's totals (the root's attributes), checked against its own view of the cases."""
    document = JUnitXml.fromstring(data)
    results = [result for suite in document for case in suite for result in case.result]
    by_cases = Counts(
        sum(1 for suite in document for _ in suite),
        sum(isinstance(r, Failure) for r in results),
        sum(isinstance(r, Error) for r in results),
        sum(isinstance(r, Skipped) for r in results),
    )
    totals = Counts(document.tests, document.failures, document.errors, document.skipped)
    assert totals == by_cases
    return totals


_SEVERITY = ("error", "failure", "success", "skipped")


def publish_action_counts(data: bytes) -> Counts:
    """The counts of EnricoMi/publish-unit-test-result-action, by its rules (python/publish/junit.py
    and unittestresults.py), reimplemented here minimally, not copied:

    - "runs" come from the attributes of the root's `<testsuite>`s (skipped plus disabled);
    - "tests" are the distinct (classname, name) of all testcases in them, nested suites included;
      a case's state is its most severe result child (error > failure > success > skipped, no
      result child = success; Surefire rerun/flaky elements are not results), and a test's state
      is the most severe of its cases.

    Both must agree, and are returned once checked."""
    root = ET.fromstring(data)
    suites = list(root.iter("testsuite")) if root.tag == "testsuites" else [root]
    top = [s for s in suites if s in list(root)] if root.tag == "testsuites" else suites

    def attr(name: str) -> int:
        return sum(int(suite.get(name) or 0) for suite in top)

    runs = Counts(
        attr("tests"), attr("failures"), attr("errors"), attr("skipped") + attr("disabled")
    )
    states: dict[tuple[str | None, str | None], set[str]] = {}
    for case in (case for suite in top for case in suite.iter("testcase")):
        found = {child.tag for child in case if child.tag in ("error", "failure", "skipped")}
        state = next((s for s in _SEVERITY if s in found), "success")
        states.setdefault((case.get("classname"), case.get("name")), set()).add(state)
    test_states = [next(s for s in _SEVERITY if s in seen) for seen in states.values()]
    tests = Counts(
        len(test_states),
        test_states.count("failure"),
        test_states.count("error"),
        test_states.count("skipped"),
    )
    assert runs == tests
    return tests


def assert_counted_as(data: bytes, truth: Counts) -> None:
    assert junitparser_counts(data) == truth
    assert publish_action_counts(data) == truth


def xunit2_cases(data: bytes, suite: str) -> dict[str, xunit2.TestCase]:
    [found] = [s for s in xunit2.JUnitXml.fromstring(data) if s.name == suite]
    return {case.name: case for case in found if isinstance(case, xunit2.TestCase)}


# --- real runs ---


def test_a_flaky_test_in_a_retried_step_is_flaky_in_the_journal_and_in_junit(
    tmp_path: Path,
) -> None:
    git_repo(tmp_path, {"pipeline.yml": PIPELINE, "tests/test_app.py": TESTS})

    done = cli("run", "pipeline.yml", "--junit", "out.xml")

    assert done.returncode == 0, done.stdout + done.stderr
    step = latest("app").step("test")
    assert (step.status, len(step.attempts), step.flaky) == ("completed", 2, True)
    tests = {test.name: test for test in step.tests}
    flaky = tests["test_flaky"]
    assert (flaky.status, flaky.flaky, flaky.reruns, flaky.attempt) == ("passed", True, 1, 2)
    assert "fails on its first run (run 0)" in flaky.message  # what the failed attempt said
    assert "test_app.py" in flaky.body
    assert (tests["test_stable"].flaky, tests["test_stable"].attempt) == (False, 2)
    skipped = tests["test_skipped"]
    assert (skipped.status, skipped.message, skipped.type) == (
        "skipped",
        "not on CI",
        "pytest.skip",
    )
    assert step.junit_problems == ()

    data = Path("out.xml").read_bytes()
    cases = xunit2_cases(data, "test")  # one suite named after the step, no case for the step
    assert sorted(cases) == ["test_flaky", "test_skipped", "test_stable"]
    assert cases["test_flaky"].is_passed
    [flaky_failure] = cases["test_flaky"].flaky_failures()
    assert "fails on its first run (run 0)" in flaky_failure.message
    assert "test_app.py" in (flaky_failure.stack_trace or "")
    assert [r.type for r in cases["test_skipped"].result] == ["pytest.skip"]
    assert xunit2_cases(data, "pipeline") == {}
    assert_counted_as(data, Counts(tests=3, failures=0, errors=0, skipped=1))

    # The next run crashes before pytest runs: the report it left is stale, not this run's tests.
    again = cli("run", "pipeline.yml", "--set", "test=exit 4", "--junit", "out.xml")

    assert again.returncode == 1, again.stdout + again.stderr
    step = latest("app").step("test")
    assert (step.status, step.exit_code, step.tests) == ("failed", 4, ())
    assert len(step.junit_problems) == 2
    for number, problem in enumerate(step.junit_problems, 1):
        assert problem.startswith(f"attempt {number}: reports/pytest.xml: ignored: last written ")
        assert problem.endswith(
            " before this attempt started (a stale file, from an earlier run or attempt)"
        )
    data = Path("out.xml").read_bytes()
    assert b"test_flaky" not in data
    [failure] = xunit2_cases(data, "pipeline")["test"].result
    assert failure.message == "exit code 4"
    assert "reports/pytest.xml: ignored" in (
        xunit2_cases(data, "pipeline")["test"].system_err or ""
    )
    assert_counted_as(data, Counts(tests=1, failures=1, errors=0, skipped=0))


INTERRUPTED = """
name: stop
steps:
  unit:
    run: |
      mkdir -p reports
      echo '<testsuite name="u"><testcase classname="u" name="t1" time="0"/></testsuite>' > reports/unit.xml
    junit: reports/unit.xml
  e2e:
    needs: [unit]
    run: touch e2e.started && sleep 30
  deploy:
    needs: [e2e]
    run: "true"
"""


def test_an_interrupted_run_is_never_read_as_a_pass(write: Callable[[str, str], Path]) -> None:
    write("pipeline.yml", INTERRUPTED)
    command = [sys.executable, "-m", "ci_orchestrator", "run", "pipeline.yml", "--junit", "out.xml"]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not Path("e2e.started").exists():
            assert time.monotonic() < deadline, "e2e never started"
            assert runner.poll() is None, "the run ended before e2e started"
            time.sleep(0.05)
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 130
    finally:
        if runner.poll() is None:
            runner.kill()
        assert runner.stdout is not None
        runner.stdout.close()

    data = Path("out.xml").read_bytes()
    [error] = xunit2_cases(data, "pipeline")["e2e"].result
    assert isinstance(error, Error)
    assert (error.type, error.message) == ("interrupted", "run interrupted")
    assert xunit2_cases(data, "unit")["t1"].time == 0
    assert b'name="t1" classname="u" time="0.000"' in data  # a zero time is written
    assert_counted_as(data, Counts(tests=3, failures=0, errors=1, skipped=1))
    assert latest("stop").status == "interrupted"


def many_cases(count: int) -> str:
    rows = "\n".join(
        f'<testcase classname="pkg.mod{i % 10}" name="test_{i}" time="0.001"/>'
        for i in range(count)
    )
    return f'<?xml version="1.0"?>\n<testsuites><testsuite name="big">\n{rows}\n</testsuite></testsuites>\n'


BAD_FILES = {
    "cut.xml": b'<testsuite name="cut"><testcase name="whole"/><testcase name="half"><failure mess',
    "png.xml": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR not xml at all",
    "latin1.xml": '<?xml version="1.0" encoding="ISO-8859-1"?>\n<testsuite name="l"><testcase '
    'name="café"><failure message="échec">à la ligne 3</failure></testcase></testsuite>'.encode(
        "latin-1"
    ),
    "ctl.xml": b'<testsuite name="c"><testcase name="bell\x07"><system-out>\x1b[31mred\x00'
    b"</system-out></testcase></testsuite>",
    "dups.xml": b'<testsuite name="d"><testcase classname="d" name="again"/>'
    b'<testcase classname="d" name="again"/></testsuite>',
}

BAD_PIPELINE = """
name: bad
steps:
  test:
    run: mkdir -p reports && cp bad/* reports/
    junit: reports/*.xml
"""


def test_bad_reports_are_notes_and_the_step_and_journal_stand(
    write: Callable[[str, str], Path],
) -> None:
    write("pipeline.yml", BAD_PIPELINE)
    bad = Path("bad")
    bad.mkdir()
    for name, data in BAD_FILES.items():
        (bad / name).write_bytes(data)
    (bad / "many.xml").write_text(many_cases(100_000))
    shutil.copy(FIXTURES / "billion_laughs.xml", bad / "lol.xml")

    done = cli("run", "pipeline.yml", "--junit", "out.xml")

    assert done.returncode == 0, done.stdout + done.stderr  # the step's own status stands
    store = JournalStore(".ci-orchestrator/journal.db")  # SQL: 100,000 records load slowly
    [step] = store.query("SELECT * FROM steps WHERE pipeline = 'bad' AND name = 'test'")
    assert step["status"] == "completed"
    assert json.loads(step["junit_problems"]) == [
        "reports/ctl.xml: 3 characters XML does not allow, replaced by U+FFFD",
        "reports/cut.xml: not valid XML: unclosed token at line 1"
        " (the file ends too early: cut short?); kept the 1 tests read before it",
        "reports/dups.xml: 1 tests appear more than once, read as reruns: d.again",
        "reports/lol.xml: refused: the file declares a DOCTYPE, which JUnit XML never needs",
        "reports/png.xml: not valid XML: not well-formed (invalid token) at line 1",
    ]
    [(count,)] = store.query("SELECT count(*) FROM tests WHERE run_id = ?", (step["run_id"],))
    assert count == 100_004  # nothing lost on the way into the journal
    rows = store.query(
        "SELECT * FROM tests WHERE run_id = ? AND (suite != 'big' OR name = 'test_99999')",
        (step["run_id"],),
    )
    tests = {(row["suite"], row["name"]): row for row in rows}
    assert (tests["l", "café"]["message"], tests["l", "café"]["body"]) == ("échec", "à la ligne 3")
    assert tests["c", "bell\ufffd"]["status"] == "passed"
    assert (tests["d", "again"]["flaky"], tests["d", "again"]["reruns"]) == (1, 1)
    assert (tests["cut", "whole"]["status"], tests["big", "test_99999"]["status"]) == (
        "passed",
        "passed",
    )

    data = Path("out.xml").read_bytes()
    truth = Counts(tests=100_004, failures=1, errors=0, skipped=0)
    document = JUnitXml.fromstring(data)  # its totals; its case by case count is slow at 100,000
    assert (document.tests, document.failures, document.errors, document.skipped) == truth
    assert publish_action_counts(data) == truth
    assert "cut short" in (ET.fromstring(data).findtext("testsuite[@name='test']/system-err") or "")


# --- the renderer's samples, counted by both consumers ---


@pytest.mark.parametrize(
    ("name", "truth"),
    [
        ("passing", Counts(tests=5, failures=0, errors=0, skipped=1)),
        ("failing", Counts(tests=11, failures=5, errors=2, skipped=1)),
        ("flaky", Counts(tests=4, failures=0, errors=0, skipped=0)),
        ("skipped", Counts(tests=2, failures=0, errors=0, skipped=2)),
        ("interrupted", Counts(tests=3, failures=0, errors=1, skipped=1)),
    ],
)
def test_consumers_count_the_truth(name: str, truth: Counts) -> None:
    """What happened, by hand: passing (lint, build, 3 tests of `test`, 1 skipped); failing
    (lint ok; build, coverage, integration, e2e fail; unit's tests: 1 ok, 1 failed, 1 error; coverage's
    test ok; deploy skipped; notify cancelled); flaky (lint, deps, 2 tests: all passed in the end);
    skipped (2 steps skipped); interrupted (1 test ok; e2e stopped; deploy never started)."""
    assert_counted_as(render_junit(SAMPLES[name]()), truth)


def test_the_publish_action_rules_are_not_fooled_by_rerun_elements() -> None:
    """The rules above, on a file of Surefire's: flaky tests pass, a rerun-failed one fails once."""
    data = (FIXTURES / "surefire_reruns.xml").read_bytes()
    assert publish_action_counts(data) == Counts(tests=6, failures=1, errors=1, skipped=1)


@pytest.fixture(autouse=True)
def _no_host_pytest_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest inside the pipelines must not inherit this session's options."""
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    assert os.environ.get("NO_COLOR") == "1"
