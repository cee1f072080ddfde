"""JUnit XML for a run (pure: a RunRecord in, bytes out; `write_junit` is the one file writer).

What consumers count is what happened. A step with JUnit files contributes their tests as one
`<testsuite>` named after the step, each case as the tool wrote it (class name, name, time even
when zero, failure/error type, message and body, skip message and type, system-out/err within a
budget) and no testcase for the step itself, unless its tests cannot tell its outcome (it failed
with no failing test, or was cancelled). Every other step is one testcase of the `pipeline` suite.
Cancelled steps, and steps an interrupted run left unfinished, are `<error>`s: an interrupted run
never reads as a pass.

The trees come from junit-xml's `build_xml_doc()`; what it cannot write is set on them afterwards:
zero times, types and messages as given, and Maven Surefire's rerun elements: `flakyFailure` for
each failed run of a test or step that passed in the end (it counts as passed), `rerunFailure`
(`rerunError`) for the earlier runs of one that failed every time. Every text and attribute goes
through `xml_safe` first: no log can break the file.
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
from ci_orchestrator.render.text import strip_ansi

# The tail goes in both <failure> and <system-out>, so a testcase holds at most ~64 KiB of log.
TAIL_LIMIT = 32 * 1024
# Characters of system-out/err the tests of one step may write in all; the rest is left out.
OUTPUT_BUDGET = 4 * 1024 * 1024
RERUN_LIMIT = 20  # rerun elements written for one test; more only repeat the same message
PIPELINE_SUITE = "pipeline"

# What XML 1.0 does not allow at all (C0 controls but tab/newline/CR, surrogates, U+FFFE/U+FFFF);
# ElementTree escapes everything else, `]]>` included, but writes these through unchanged.
_INVALID_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_RESULT_TAGS = {"failure", "error", "skipped"}
_FAILED = ("failed", "error")
_STOPPED_RUN = ("interrupted", "abandoned")
_UNFINISHED = {"pending": "not started", "running": "did not finish"}


def render_junit(run: RunRecord) -> bytes:
    """The run as a JUnit XML document (UTF-8, with an XML declaration)."""
    suites = [pipeline_suite(run), *(step_suite(step) for step in run.steps if step.tests)]
    root = ET.Element("testsuites", {"name": xml_safe(run.pipeline)})
    for key in ("tests", "failures", "errors", "skipped"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in suites)))
    root.set("time", seconds(run_ms(run)))  # the steps ran in parallel: the run's wall time
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


# --- which steps are testcases of the pipeline suite ---


def stands_alone(step: StepRecord) -> bool:
    """A step is a testcase of its own unless its tests tell its outcome: it passed, or it failed
    and a test failed too."""
    if not step.tests:
        return True
    if step.status == "completed":
        return False
    return step.status != "failed" or not any(test.status in _FAILED for test in step.tests)


def stopped_unfinished(run: RunRecord, step: StepRecord) -> bool:
    """A step that never reached an outcome because the run stopped (or died) around it."""
    return step.status in _UNFINISHED and run.status != "running"


def interruption_shown(run: RunRecord) -> bool:
    """Whether some step's error already says that the run did not run to its end."""
    return any(s.status == "cancelled" or stopped_unfinished(run, s) for s in run.steps)


# --- the pipeline suite: one testcase per step without tests of its own ---


def pipeline_suite(run: RunRecord) -> ET.Element:
    """The `pipeline` suite, with the run's properties: the steps that stand alone, and the run
    itself when it was stopped and no step says so."""
    steps = [step for step in run.steps if stands_alone(step)]
    cases = [step_case(run, step) for step in steps]
    if run.status in _STOPPED_RUN and not interruption_shown(run):
        cases.append(run_stopped_case(run))  # stopped between steps: the counts must still say so
    suite = junit_xml.TestSuite(
        PIPELINE_SUITE,
        cases,
        timestamp=timestamp(run.started_at),
        properties=run_properties(run),
    )
    element: ET.Element = suite.build_xml_doc()
    element.set("time", seconds(sum(step.duration_ms for step in steps)))
    found = element.findall("testcase")
    for step, case in zip(steps, found, strict=False):
        set_time(case, step.duration_ms)
        insert_results(case, rerun_elements(step))
    for case in found[len(steps) :]:
        set_time(case, 0.0)
    return element


def run_properties(run: RunRecord) -> dict[str, str]:
    """What identifies the run, in a fixed order, leaving out what is not known."""
    known = {
        "run_id": run.id,
        "status": run.status,
        "git_sha": run.git_sha,
        "branch": run.branch,
        "event": run.event,
        "pull_request": str(run.pr_number) if run.pr_number is not None else None,
        "trigger": run.trigger,
    }
    return {key: xml_safe(value) for key, value in known.items() if value}


def step_case(run: RunRecord, step: StepRecord) -> Any:
    """A junit_xml TestCase for one step (the library is untyped, hence Any)."""
    tail = log_text(step.log_tail)
    case = junit_xml.TestCase(
        xml_safe(step.name),
        classname=xml_safe(run.pipeline),
        elapsed_sec=step.duration_ms / 1000,
        stdout=system_out(step, tail) or None,
        stderr=junit_problems_note(step) or None,
    )
    if step.status == "failed":
        # junit_xml drops a failure with neither message nor output: the message is never empty.
        message = xml_safe(step.reason) or "failed"
        case.add_failure_info(message=message, output=tail or None, failure_type=failure_type(step))
    elif step.status == "cancelled" or stopped_unfinished(run, step):
        kind = "interrupted" if run.status in _STOPPED_RUN else "cancelled"
        case.add_error_info(message=stop_message(step), output=tail or None, error_type=kind)
    elif step.status != "completed":
        case.add_skipped_info(message=skip_message(step))
    return case


def run_stopped_case(run: RunRecord) -> Any:
    """The run itself, when it was stopped while no step was running."""
    case = junit_xml.TestCase("(run)", classname=xml_safe(run.pipeline))
    case.add_error_info(message=f"the run was {run.status}", error_type="interrupted")
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
    """The step's JUnit files that could not be read (or were left out), as a system-err note."""
    if not step.junit_problems:
        return ""
    lines = [f"- {xml_safe(problem)}" for problem in step.junit_problems]
    return "\n".join(["problems with the step's JUnit results:", *lines])


def failure_type(step: StepRecord) -> str:
    if step.timed_out:
        return "timeout"
    return "exit-code" if step.exit_code is not None else "error"


def stop_message(step: StepRecord) -> str:
    """Why a step was stopped: the reason; an unfinished one says so first."""
    reason = xml_safe(step.reason)
    prefix = _UNFINISHED.get(step.status, "")
    if not prefix:
        return reason or step.status
    return f"{prefix}: {reason}" if reason else prefix


def skip_message(step: StepRecord) -> str:
    """Why a step was skipped; in a run still going, that it has not finished yet."""
    reason = xml_safe(step.reason)
    prefix = {"pending": "not started", "running": "still running"}.get(step.status)
    if prefix is None:
        return reason or "skipped"
    return f"{prefix}: {reason}" if reason else prefix


# --- Surefire rerun elements of a step ---


def rerun_elements(step: StepRecord) -> list[ET.Element]:
    """flakyFailure per failed attempt of a step that passed; rerunFailure per earlier failed
    attempt of a step that failed or was cancelled (its last attempt is the <failure>/<error>)."""
    if step.status == "completed":
        return [attempt_element("flakyFailure", a) for a in step.attempts if not a.ok]
    if step.status in ("failed", "cancelled"):
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


# --- a step's own tests: one suite named after the step ---


class OutputBudget:
    """Characters of system-out/err the tests of one suite may still write."""

    def __init__(self, chars: int = OUTPUT_BUDGET) -> None:
        self.chars = chars
        self.left = chars
        self.dropped = 0

    def take(self, text: str) -> str | None:
        if not text:
            return None
        kept = log_text(text)
        if len(kept) > self.left:
            self.dropped += 1
            return None
        self.left -= len(kept)
        return kept

    def note(self) -> str:
        if not self.dropped:
            return ""
        size = f"{self.chars / 1024 / 1024:g} MiB"
        return f"system-out/err of {self.dropped:,} tests left out: over the {size} of one suite"


def step_suite(step: StepRecord) -> ET.Element:
    """The tests a step's JUnit files reported, as their tools wrote them."""
    budget = OutputBudget()
    cases = [reported_case(test, budget) for test in step.tests]
    notes = [note for note in (junit_problems_note(step), budget.note()) if note]
    suite = junit_xml.TestSuite(
        xml_safe(step.name),
        cases,
        timestamp=timestamp(step.started_at) if step.started_at is not None else None,
        properties=step_properties(step),
        stdout=f"log: {xml_safe(step.log_path)}" if step.log_path else None,
        stderr="\n".join(notes) or None,
    )
    element: ET.Element = suite.build_xml_doc()
    element.set("time", seconds(step.duration_ms))
    for test, case in zip(step.tests, element.findall("testcase"), strict=True):
        set_time(case, test.duration_ms)
        if test.status != "passed":
            set_result_attributes(case, test)
        if test.flaky or test.reruns:
            insert_results(case, reported_rerun_elements(test))
    return element


def step_properties(step: StepRecord) -> dict[str, str]:
    """How the step itself ended, which its tests alone may not tell."""
    known = {
        "status": step.status,
        "attempts": str(len(step.attempts)),
        "flaky": "true" if step.flaky else "",
        "reason": step.reason,
    }
    return {key: xml_safe(value) for key, value in known.items() if value}


def reported_case(test: TestCaseRecord, budget: OutputBudget) -> Any:
    """A junit_xml TestCase for one test a step reported."""
    case = junit_xml.TestCase(
        xml_safe(test.name),
        classname=xml_safe(test.classname) or None,
        elapsed_sec=test.duration_ms / 1000,
        stdout=budget.take(test.output),
        stderr=budget.take(test.stderr),
    )
    body = xml_safe(test.body) or None
    # junit_xml drops a result with neither message nor body: a stand-in, set right afterwards.
    if test.status == "failed":
        case.add_failure_info(message="failed", output=body)
    elif test.status == "error":
        case.add_error_info(message="error", output=body)
    elif test.status == "skipped":
        case.add_skipped_info(message="skipped", output=body)
    return case


def set_result_attributes(case: ET.Element, test: TestCaseRecord) -> None:
    """The result's message and type as the tool gave them, and none that it did not."""
    result = next((child for child in case if child.tag in _RESULT_TAGS), None)
    if result is not None:
        result.attrib = given_attributes(test.message, test.type)


def given_attributes(message: str, kind: str) -> dict[str, str]:
    attributes = {"message": xml_safe(message)} if message else {}
    return {**attributes, "type": xml_safe(kind)} if kind else attributes


def reported_rerun_elements(test: TestCaseRecord) -> list[ET.Element]:
    """flakyFailure per failed run of a flaky test (the first with its stack trace);
    rerunFailure/rerunError per failed run before a test's final failure/error."""
    if test.flaky:
        message = test.message or "failed, then passed on a rerun"
        tag, count = "flakyFailure", max(1, test.reruns)
    elif test.status in _FAILED and test.reruns:
        message = test.message or test.status
        tag = "rerunFailure" if test.status == "failed" else "rerunError"
        count = test.reruns
    else:
        return []
    # The schema requires a type on rerun elements.
    attributes = given_attributes(message, test.type or ("flaky" if test.flaky else test.status))
    elements = [ET.Element(tag, attributes) for _ in range(min(count, RERUN_LIMIT))]
    if test.flaky and test.body:
        ET.SubElement(elements[0], "stackTrace").text = xml_safe(test.body)
    return elements


# --- formats ---


def set_time(case: ET.Element, ms: float) -> None:
    """The time after the name and class name, even when it is zero (junit_xml leaves out a zero
    time, and writes six decimals)."""
    keys = ("name", "classname")
    attributes = {key: case.attrib[key] for key in keys if key in case.attrib}
    attributes["time"] = seconds(ms)
    case.attrib = attributes


def run_ms(run: RunRecord) -> float:
    if run.duration_ms is not None:
        return run.duration_ms
    return sum(step.duration_ms for step in run.steps)


def timestamp(epoch: float) -> str:
    """ISO 8601 in UTC, to the second: the same document wherever it is rendered."""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def seconds(ms: float) -> str:
    return f"{ms / 1000:.3f}"
