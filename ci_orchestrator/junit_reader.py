"""Reading the JUnit XML files steps write (`junit:`): pytest's and Maven Surefire's flavours.

Standard library only. A file that declares a DOCTYPE is refused the moment the parser meets it,
before any entity is declared or expanded, so a hostile report cannot exhaust memory (billion
laughs); JUnit files never need one.
"""

from __future__ import annotations

import glob
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from xml.parsers import expat

from ci_orchestrator.errors import CIOrchestratorError
from ci_orchestrator.records import TestCaseRecord

MESSAGE_LIMIT = 4096  # characters of a failure message kept (the start: the assertion)
OUTPUT_LIMIT = 16 * 1024  # characters of system-out kept (the end: closest to the failure)

# First match wins: a final failure/error decides the outcome; Surefire writes rerunFailure and
# rerunError only next to one, but a file holding only reruns still failed.
_OUTCOMES = (
    ("failure", "failed"),
    ("error", "error"),
    ("rerunFailure", "failed"),
    ("rerunError", "error"),
    ("skipped", "skipped"),
)
_FLAKY_TAGS = ("flakyFailure", "flakyError")
_SUITE_TAGS = ("testsuite", "testsuites")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_GLOB_MAGIC = re.compile(r"[*?[]")


class JUnitReadError(CIOrchestratorError):
    """A JUnit file cannot be read; the message is one line, `path: what is wrong`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _DoctypeRefused(Exception):
    pass


class _NoDoctypeBuilder(ET.TreeBuilder):
    """A TreeBuilder that stops the parser at the start of a DOCTYPE declaration."""

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _DoctypeRefused(name)


def read_junit(path: Path, *, step: str) -> list[TestCaseRecord]:
    """The test cases of one JUnit XML file; a suite without a name is named after `step`.

    Raises JUnitReadError for a missing, empty, malformed or non-JUnit file, or one with a DOCTYPE.
    """
    root = parse(path)
    return list(collect_cases(root, step))


def read_junit_globs(
    patterns: Sequence[str], base: Path, step: str
) -> tuple[list[TestCaseRecord], list[str]]:
    """The test cases of every file the glob patterns (relative to `base`) match, and one line per
    problem: a pattern that matched nothing, a file that could not be read. Never raises."""
    cases: list[TestCaseRecord] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for pattern in patterns:
        paths = expand(pattern, base)
        if not paths:
            problems.append(f"{shown(Path(pattern), base)}: no file matched")
        for path in (p for p in paths if p not in seen):
            seen.add(path)
            try:
                cases.extend(read_junit(base / path, step=step))
            except JUnitReadError as exc:
                problems.append(f"{shown(path, base)}: {exc.reason}")
    return cases, problems


def expand(pattern: str, base: Path) -> list[Path]:
    """Files matching `pattern` under `base`, sorted; a plain path is returned as it is, so that a
    missing file is reported as missing rather than as an empty match."""
    if not _GLOB_MAGIC.search(pattern):
        return [Path(pattern)]
    matches = glob.glob(pattern, root_dir=base, recursive=True)
    return sorted(Path(m) for m in matches if (base / m).is_file())


def shown(path: Path, base: Path) -> str:
    """`path` relative to `base` when it is inside it: the form the pipeline file uses."""
    try:
        return str(path.relative_to(base)) if path.is_absolute() else str(path)
    except ValueError:
        return str(path)


# --- parsing ---


def parse(path: Path) -> ET.Element:
    """The root `<testsuites>` or `<testsuite>` element of a JUnit file."""
    data = read_bytes(path)
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(data)
        root: ET.Element = parser.close()
    except _DoctypeRefused:
        reason = "refused: the file declares a DOCTYPE, which JUnit XML never needs"
        raise JUnitReadError(str(path), reason) from None
    except ET.ParseError as exc:
        line = exc.position[0]
        reason = f"not valid XML: {expat.ErrorString(exc.code)} at line {line}"
        raise JUnitReadError(str(path), reason) from None
    if local_name(root.tag) not in _SUITE_TAGS:
        reason = f"not a JUnit report: the root element is <{local_name(root.tag)}>"
        raise JUnitReadError(str(path), f"{reason}, expected <testsuites> or <testsuite>")
    return root


def read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise JUnitReadError(str(path), "file not found") from None
    except OSError as exc:
        raise JUnitReadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if not data.strip():
        raise JUnitReadError(str(path), "empty file")
    return data


def local_name(tag: str) -> str:
    """A tag without its `{namespace}`: some tools put JUnit elements in one."""
    return tag.rpartition("}")[2]


def collect_cases(root: ET.Element, default_suite: str) -> Iterator[TestCaseRecord]:
    """Every testcase in document order; each belongs to its innermost named suite. Iterative, so
    deeply nested suites cannot exhaust the stack."""
    pending = [(root, default_suite)]
    while pending:
        element, suite = pending.pop()
        if local_name(element.tag) == "testsuite":
            suite = element.get("name") or suite
        children = [child for child in element if local_name(child.tag) in _SUITE_TAGS]
        yield from (
            case_record(child, suite) for child in element if local_name(child.tag) == "testcase"
        )
        pending.extend((child, suite) for child in reversed(children))


def case_record(element: ET.Element, suite: str) -> TestCaseRecord:
    """One `<testcase>`: its outcome from the first result element; flaky when Surefire says it
    failed and then passed on a rerun."""
    children: dict[str, ET.Element] = {}
    for child in element:
        children.setdefault(local_name(child.tag), child)
    status, result = outcome(children)
    flaky = status == "passed" and any(tag in children for tag in _FLAKY_TAGS)
    if flaky:
        result = children.get(_FLAKY_TAGS[0], children.get(_FLAKY_TAGS[1]))
    return TestCaseRecord(
        suite=suite,
        classname=element.get("classname") or element.get("class") or "",
        name=element.get("name", ""),
        status=status,
        duration_ms=seconds(element.get("time")) * 1000,
        message=message(result),
        output=output(children.get("system-out")),
        flaky=flaky,
    )


def outcome(children: dict[str, ET.Element]) -> tuple[str, ET.Element | None]:
    for tag, status in _OUTCOMES:
        if tag in children:
            return status, children[tag]
    return "passed", None


def seconds(value: str | None) -> float:
    """A `time` attribute: `1.5`, `1,234.5` (Surefire's thousands), `0,5` (a decimal comma), or
    missing or nonsense (0)."""
    text = (value or "").strip()
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    try:
        number = float(text.replace(",", "."))
    except ValueError:
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def message(result: ET.Element | None) -> str:
    """The `message` attribute, else the element's text; the first MESSAGE_LIMIT characters."""
    if result is None:
        return ""
    text = (result.get("message") or result.text or "").strip()
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def output(system_out: ET.Element | None) -> str:
    """What the test printed; the last OUTPUT_LIMIT characters."""
    text = (system_out.text or "").strip("\n") if system_out is not None else ""
    return text if len(text) <= OUTPUT_LIMIT else "…" + text[-(OUTPUT_LIMIT - 1) :]
