"""JUnit XML for a run (pure: a RunRecord in, bytes out; `write_junit` is the one file writer).

One `<testsuite>` for the run with one `<testcase>` per step, built by junit-xml; then one suite per
(step, suite) pair of the test cases the steps' own JUnit files reported. Maven Surefire's rerun
elements, which junit-xml does not know, are appended to the trees `build_xml_doc()` returns:
`flakyFailure` for each failed attempt of a step that passed in the end (it counts as passed), and
`rerunFailure` for the earlier attempts of a step that failed every time (its last attempt stays the
`<failure>`). Every text and attribute goes through `xml_safe` first: no log can break the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import junit_xml

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord, TestCaseRecord
from ci_orchestrator.render.markdown import strip_ansi

# The tail goes in both <failure> and <system-out>, so a testcase holds at most ~64 KiB of log.
TAIL_LIMIT = 32 * 1024

# What XML 1.0 does not allow at all (C0 controls but tab/newline/CR, surrogates, U+FFFE/U+FFFF);
# ElementTree escapes everything else, `]]>` included, but writes these through unchanged.
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_RESULT_TAGS = {"failure", "error", "skipped"}
_SKIP_PREFIX = {"cancelled": "cancelled", "pending": "not started", "running": "still running"}


def render_junit(run: RunRecord) -> bytes:
    """The run as a JUnit XML document (UTF-8, with an XML declaration)."""
    main = run_suite(run)
    suites = [main, *step_test_suites(run)]
    root = ET.Element("testsuites", {"name": xml_safe(run.pipeline)})
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    # The steps' tests ran inside the steps: the run's wall time is the whole document's time.
    root.set("time", main.get("time", "0"))
    root.extend(suites)
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(run: RunRecord, path: Path) -> None:
    """Write `render_junit(run)` to `path` atomically: readers see the old file or the new one."""
    data = render_junit(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of our own rather than mkstemp, so the file gets the usual umask permissions, not 0600.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "xb") as out:
            out.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise


def xml_safe(text: str) -> str:
    """`text` with every character XML 1.0 forbids replaced by U+FFFD."""
    return _INVALID_XML.sub("\ufffd", text)


def log_text(tail: str) -> str:
    """A log tail as XML-safe text: no terminal escapes, at most the last TAIL_LIMIT characters."""
    window = tail[-2 * TAIL_LIMIT :]  # what can be kept, with room for escapes that get stripped
    text = xml_safe(strip_ansi(window))  # else every colour code shows up as `�[31m`
    if len(window) == len(tail) and len(text) <= TAIL_LIMIT:
        return text
    kept = text[-TAIL_LIMIT:]
    newline = kept.find("\n")
    if 0 <= newline < len(kept) - 1:
        kept = kept[newline + 1 :]  # start on a whole line
    return f"[… {len(tail) - len(kept):,} earlier characters cut …]\n{kept}"


# --- the run's suite: one testcase per step ---


def run_suite(run: RunRecord) -> ET.Element:
    """The run's `<testsuite>`, with Surefire rerun elements added to retried steps."""
    cases = [step_case(run.pipeline, step) for step in run.steps]
    suite = junit_xml.TestSuite(
        xml_safe(run.pipeline),
        cases,
        timestamp=timestamp(run.started_at),
        properties=run_properties(run),
    )
    element: ET.Element = suite.build_xml_doc()
    if run.duration_ms is not None:
        element.set("time", seconds(run.duration_ms))
    else:
        element.set("time", seconds(sum(step.duration_ms for step in run.steps)))
    for step, case in zip(run.steps, element.findall("testcase"), strict=True):
        insert_results(case, rerun_elements(step))
    return element


def run_properties(run: RunRecord) -> dict[str, str]:
    """What identifies the run, in a fixed order, leaving out what is not known."""
    known = {
        "run_id": run.id,
        "git_sha": run.git_sha,
        "branch": run.branch,
        "event": run.event,
        "pull_request": str(run.pr_number) if run.pr_number is not None else None,
        "trigger": run.trigger,
    }
    return {key: xml_safe(value) for key, value in known.items() if value}


def step_case(pipeline: str, step: StepRecord) -> Any:
    """A junit_xml TestCase for one step (the library is untyped, hence Any)."""
    tail = log_text(step.log_tail)
    case = junit_xml.TestCase(
        xml_safe(step.name),
        classname=xml_safe(pipeline),
        elapsed_sec=step.duration_ms / 1000,
        stdout=system_out(step, tail) or None,
        stderr=junit_problems_note(step) or None,
    )
    if step.status == "failed":
        # junit_xml drops a failure with neither message nor output: the message is never empty.
        message = xml_safe(step.reason) or "failed"
        case.add_failure_info(message=message, output=tail or None, failure_type=failure_type(step))
    elif step.status != "completed":
        case.add_skipped_info(message=skip_message(step))
    return case


def system_out(step: StepRecord, tail: str) -> str:
    """The log tail of a step that did not pass, and where the whole log is."""
    parts = (
        [tail.rstrip("\n")] if tail and step.status in ("failed", "cancelled", "running") else []
    )
    if step.log_path:
        parts.append(f"log: {xml_safe(step.log_path)}")
    return "\n".join(parts)


def junit_problems_note(step: StepRecord) -> str:
    """The step's JUnit files that could not be read, as a system-err note."""
    if not step.junit_problems:
        return ""
    lines = [f"- {xml_safe(problem)}" for problem in step.junit_problems]
    return "\n".join(["could not read the step's JUnit results:", *lines])


def failure_type(step: StepRecord) -> str:
    if step.timed_out:
        return "timeout"
    return "exit-code" if step.exit_code is not None else "error"


def skip_message(step: StepRecord) -> str:
    """Why a step did not run to an outcome; cancelled and unfinished steps say so first."""
    reason = xml_safe(step.reason)
    prefix = _SKIP_PREFIX.get(step.status)
    if prefix is None:
        return reason or "skipped"
    return f"{prefix}: {reason}" if reason else prefix


# --- Surefire rerun elements ---


def rerun_elements(step: StepRecord) -> list[ET.Element]:
    """flakyFailure per failed attempt of a step that passed; rerunFailure per earlier failed
    attempt of a step that failed (its last attempt is the <failure>)."""
    if step.status == "completed":
        return [attempt_element("flakyFailure", a) for a in step.attempts if not a.ok]
    if step.status == "failed":
        return [attempt_element("rerunFailure", a) for a in step.attempts[:-1] if not a.ok]
    return []


def attempt_element(tag: str, attempt: AttemptRecord) -> ET.Element:
    """One failed attempt; `type` is required by the schema."""
    return ET.Element(tag, {"message": attempt_message(attempt), "type": attempt_type(attempt)})


def attempt_message(attempt: AttemptRecord) -> str:
    took = format_seconds(attempt.duration_ms / 1000)
    if attempt.timed_out:
        what = "timed out"
    elif attempt.error:
        what = attempt.error
    else:
        what = f"exit code {attempt.exit_code}"
    return xml_safe(f"attempt {attempt.number}: {what} after {took}")


def attempt_type(attempt: AttemptRecord) -> str:
    if attempt.timed_out:
        return "timeout"
    return "error" if attempt.error else "exit-code"


def insert_results(case: ET.Element, extra: Iterable[ET.Element]) -> None:
    """Put elements right after the testcase's failure/skipped, before its system-out/err."""
    position = sum(1 for child in case if child.tag in _RESULT_TAGS)
    for offset, element in enumerate(extra):
        case.insert(position + offset, element)


# --- the tests the steps reported ---


def step_test_suites(run: RunRecord) -> list[ET.Element]:
    """One `<testsuite>` per (step, suite) pair, named `step: suite`."""
    suites = []
    for step in run.steps:
        for suite_name, tests in group_by_suite(step.tests).items():
            suites.append(reported_suite(step.name, suite_name, tests))
    return suites


def group_by_suite(tests: Iterable[TestCaseRecord]) -> dict[str, list[TestCaseRecord]]:
    groups: dict[str, list[TestCaseRecord]] = {}
    for test in tests:
        groups.setdefault(test.suite, []).append(test)
    return groups


def reported_suite(step: str, suite_name: str, tests: list[TestCaseRecord]) -> ET.Element:
    """A step's test suite; a flaky test gets a flakyFailure and counts as passed."""
    name = f"{step}: {suite_name}" if suite_name else step
    cases = [reported_case(test) for test in tests]
    suite = junit_xml.TestSuite(xml_safe(name), cases, properties={"step": xml_safe(step)})
    element: ET.Element = suite.build_xml_doc()
    element.set("time", seconds(sum(test.duration_ms for test in tests)))
    for test, case in zip(tests, element.findall("testcase"), strict=True):
        if test.flaky:
            message = xml_safe(test.message) or "failed, then passed on a rerun"
            insert_results(
                case, [ET.Element("flakyFailure", {"message": message, "type": "flaky"})]
            )
    return element


def reported_case(test: TestCaseRecord) -> Any:
    """A junit_xml TestCase for one test a step reported."""
    case = junit_xml.TestCase(
        xml_safe(test.name),
        classname=xml_safe(test.classname) or None,
        elapsed_sec=test.duration_ms / 1000,
        stdout=log_text(test.output) or None,
    )
    message = xml_safe(test.message)
    if test.status == "failed":
        case.add_failure_info(message=message or "failed")
    elif test.status == "error":
        case.add_error_info(message=message or "error")
    elif test.status == "skipped":
        case.add_skipped_info(message=message or None)
    return case


# --- formats ---


def timestamp(epoch: float) -> str:
    """ISO 8601 in UTC, to the second: the same document wherever it is rendered."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def seconds(ms: float) -> str:
    return f"{ms / 1000:.3f}"
