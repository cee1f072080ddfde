"""Reading the JUnit XML files steps write (`junit:`): pytest's, Maven Surefire's and the like.

Streaming, so that a huge or hostile report costs bounded memory: expat is fed the file in chunks,
each text is capped as it arrives, and one budget caps the texts a whole read keeps. Characters
XML forbids (control characters, bytes of another encoding) become U+FFFD instead of failing the
file, with a note. A file that declares a DOCTYPE is refused the moment the parser meets it, before
any entity is declared or expanded (billion laughs); JUnit files never need one.

Runs of one test become one record: the reruns a file reports (Surefire's `rerunFailure` and
`flakyFailure`, a test written again as pytest-rerunfailures does) and the step's later attempts.
A test that failed and then passed is flaky.
"""

from __future__ import annotations

import codecs
import glob
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NamedTuple
from xml.parsers import expat

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.errors import CIOrchestratorError
from ci_orchestrator.records import TestCaseRecord

CHUNK_BYTES = 1 << 16
MESSAGE_LIMIT = 4096  # characters of a failure message kept (the start: the assertion)
BODY_LIMIT = 16 * 1024  # characters of a traceback kept (its start and its end)
OUTPUT_LIMIT = 16 * 1024  # characters of system-out/err kept (the end: closest to the failure)
NAME_LIMIT = 1024  # characters of a test's (or suite's) name and class name
TEXT_BUDGET = 8 * 1024 * 1024  # characters of texts one read keeps; then short messages only
SPARE_MESSAGE = 200  # characters of a message kept once the budget is spent
CASE_LIMIT = 250_000  # test cases one read keeps
# A file's modification time comes from the kernel's coarse clock, a few milliseconds behind
# time.time(): a file written right after an attempt started can look a little older.
MTIME_SLACK = 0.05

FAILED = ("failed", "error")
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
_RERUN_TAGS = ("rerunFailure", "rerunError")
_OUTPUT_TAGS = ("system-out", "system-err")
_CASE_CHILDREN = frozenset({tag for tag, _ in _OUTCOMES} | {*_FLAKY_TAGS, *_OUTPUT_TAGS})
_SUITE_TAGS = ("testsuite", "testsuites")
_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_GLOB_MAGIC = re.compile(r"[*?[]")
_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CHAR_REF = re.compile(r"&#(x[0-9a-fA-F]{1,8}|[0-9]{1,10});")
_DECLARED = re.compile(rb"\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z][\w.:-]*)[\"']")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (b"<\x00?\x00", "utf-16-le"),
    (b"\x00<\x00?", "utf-16-be"),
)


class JUnitReadError(CIOrchestratorError):
    """A JUnit file cannot be read; the message is one line, `path: what is wrong`. `cases` holds
    the tests read before the problem (a truncated file's complete test cases)."""

    def __init__(self, path: str, reason: str, cases: Sequence[TestCaseRecord] = ()) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.cases = list(cases)


class Report(NamedTuple):
    """One file's tests, and notes on what was read leniently or left out."""

    cases: list[TestCaseRecord]
    notes: list[str]


class Freshness(NamedTuple):
    """Which files an attempt wrote: modified at or after its start, and not the very version an
    earlier attempt of the step already read."""

    since: float  # the attempt's start, time.time()
    attempt: int = 1
    read: Mapping[str, tuple[int, int]] = {}  # file -> (st_mtime_ns, attempt that read it)


class JUnitFiles(NamedTuple):
    """What the `junit:` patterns of a step gave: tests, one line per problem, and the version
    (st_mtime_ns) and attempt of each file read."""

    cases: list[TestCaseRecord]
    problems: list[str]
    read: dict[str, tuple[int, int]]


def read_junit(path: Path, *, step: str) -> list[TestCaseRecord]:
    """The test cases of one JUnit XML file; a suite without a name is named after `step`.

    Raises JUnitReadError for a missing, empty, malformed or non-JUnit file, or one with a DOCTYPE.
    """
    return read_report(path, step=step).cases


def read_report(path: Path, *, step: str, budget: Budget | None = None, attempt: int = 0) -> Report:
    """`read_junit` with the notes: characters replaced, reruns folded, texts left out."""
    reader = _Reader(step, budget or Budget(), attempt)
    try:
        with open(path, "rb") as stream:
            _parse(stream, reader, str(path))
    except FileNotFoundError:
        raise JUnitReadError(str(path), "file not found") from None
    except OSError as exc:
        raise JUnitReadError(str(path), f"cannot read: {exc.strerror or exc}") from None
    return Report(reader.tests.records(), reader.notes())


def read_junit_globs(
    patterns: Sequence[str], base: Path, step: str, fresh: Freshness | None = None
) -> JUnitFiles:
    """The test cases of every file the glob patterns (relative to `base`) match, and one line per
    problem: a pattern that matched nothing, a file that could not be read, a stale file (with
    `fresh`: one the attempt did not write). A test found in several files is folded as reruns.
    Never raises."""
    cases: list[TestCaseRecord] = []
    problems: list[str] = []
    read: dict[str, tuple[int, int]] = {}
    seen: set[Path] = set()
    budget = Budget()
    attempt = fresh.attempt if fresh else 0
    for pattern in patterns:
        paths = expand(pattern, base)
        if not paths:
            problems.append(f"{shown(Path(pattern), base)}: no file matched")
        for path in (p for p in paths if p not in seen):
            seen.add(path)
            name = shown(path, base)
            version = modified_ns(base / path)
            stale = staleness(name, version, fresh)
            if stale:
                problems.append(f"{name}: {stale}")
                continue
            try:
                report = read_report(base / path, step=step, budget=budget, attempt=attempt)
            except JUnitReadError as exc:
                problems.append(f"{name}: {exc.reason}{kept_note(exc.cases)}")
                report = Report(exc.cases, [])
            if version is not None:
                read[name] = (version, attempt)
            cases = merge_runs(cases, report.cases)
            problems.extend(f"{name}: {note}" for note in report.notes)
    return JUnitFiles(cases, problems, read)


def kept_note(cases: Sequence[TestCaseRecord]) -> str:
    return f"; kept the {len(cases):,} tests read before it" if cases else ""


def modified_ns(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:  # reading it says what is wrong
        return None


def staleness(name: str, version: int | None, fresh: Freshness | None) -> str:
    """Why a file does not belong to the attempt, or "" when it does."""
    if fresh is None or version is None:
        return ""
    earlier = fresh.read.get(name)
    if earlier is not None and earlier[0] == version:
        return f"ignored: not rewritten since attempt {earlier[1]} read it"
    age = fresh.since - version / 1e9
    if age <= MTIME_SLACK:
        return ""
    return (
        f"ignored: last written {format_seconds(age)} before this attempt started"
        " (a stale file, from an earlier run or attempt)"
    )


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


# --- runs of one test ---


def case_key(test: TestCaseRecord) -> tuple[str, str, str]:
    return test.suite, test.classname, test.name


def merge_runs(
    earlier: Iterable[TestCaseRecord], later: Iterable[TestCaseRecord]
) -> list[TestCaseRecord]:
    """The tests after `later` ran (another attempt, another file): each test's latest run, with
    the failures before it counted; first-seen order."""
    merged = {case_key(test): test for test in earlier}
    for test in later:
        key = case_key(test)
        before = merged.get(key)
        merged[key] = test if before is None else rerun(before, test)
    return list(merged.values())


def failed_runs(test: TestCaseRecord) -> int:
    """How many runs of the test a record says failed: its reruns, and itself if it failed."""
    return test.reruns + (test.status in FAILED)


def rerun(before: TestCaseRecord, test: TestCaseRecord) -> TestCaseRecord:
    """`test`, run again after `before`: a pass after failures is flaky and tells what failed
    (message, type, body); a failure counts the failed runs before it as reruns."""
    failures = failed_runs(before) + test.reruns
    if test.status != "passed" or test.flaky or not failures:
        return test._replace(reruns=failures)
    return test._replace(
        flaky=True, reruns=failures, message=before.message, type=before.type, body=before.body
    )


def as_rerun(test: TestCaseRecord) -> TestCaseRecord:
    """An earlier occurrence of a test in the same file: the tool ran it again, so it failed, even
    when (as pytest-rerunfailures writes it) it carries no failure."""
    return test._replace(status="failed", flaky=False) if test.status == "passed" else test


class _Tests:
    """A file's test cases in document order, a repeated one folded into the first as a rerun."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], TestCaseRecord] = {}
        self.repeated: dict[tuple[str, str, str], None] = {}
        self.dropped = 0

    def add(self, test: TestCaseRecord) -> None:
        key = case_key(test)
        before = self.by_key.get(key)
        if before is not None:
            self.repeated[key] = None
            self.by_key[key] = rerun(as_rerun(before), test)
        elif len(self.by_key) < CASE_LIMIT:
            self.by_key[key] = test
        else:
            self.dropped += 1

    def records(self) -> list[TestCaseRecord]:
        return list(self.by_key.values())

    def notes(self) -> list[str]:
        notes = []
        if self.repeated:
            names = [self.by_key[key].id for key in list(self.repeated)[:3]]
            more = len(self.repeated) - len(names)
            listed = ", ".join(names) + (f" and {more:,} more" if more else "")
            notes.append(
                f"{len(self.repeated):,} tests appear more than once, read as reruns: {listed}"
            )
        if self.dropped:
            notes.append(f"{self.dropped:,} tests beyond the first {CASE_LIMIT:,} not kept")
        return notes


# --- texts, and the budget for them ---


class Budget:
    """Characters of texts one read may still keep. Passing tests' texts may use only the first
    half, so that the failures later in a big file keep theirs."""

    def __init__(self, chars: int = TEXT_BUDGET) -> None:
        self.chars = chars
        self.left = chars
        self.cut = 0  # tests whose texts were cut short for it

    def charge(self, test: TestCaseRecord) -> TestCaseRecord:
        cost = len(test.message) + len(test.body) + len(test.output) + len(test.stderr)
        quiet = test.status in ("passed", "skipped") and not test.flaky
        if cost <= self.left - (self.chars // 2 if quiet else 0):
            self.left -= cost
            return test
        self.cut += 1
        return test._replace(message=test.message[:SPARE_MESSAGE], body="", output="", stderr="")


class _Text:
    """The characters of one element as they arrive, holding at most the first and the last
    `limit` of them."""

    def __init__(self, limit: int = max(MESSAGE_LIMIT, BODY_LIMIT, OUTPUT_LIMIT)) -> None:
        self.limit = limit
        self.head = ""
        self.tail: deque[str] = deque()
        self.tail_size = 0
        self.size = 0

    def add(self, data: str) -> None:
        self.size += len(data)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail.append(data)
            self.tail_size += len(data)
            while self.tail_size - len(self.tail[0]) >= self.limit:
                self.tail_size -= len(self.tail.popleft())

    def first(self, count: int) -> str:
        return (self.head + "".join(self.tail))[:count]

    def last(self, count: int) -> str:
        return (self.head + "".join(self.tail))[-count:] if count else ""

    def whole(self) -> str | None:
        """The text, when nothing of it was dropped."""
        kept = len(self.head) + self.tail_size
        return self.head + "".join(self.tail) if kept == self.size else None


@dataclass
class _Child:
    """A result or output element of a test case: its attributes and its text."""

    attrs: dict[str, str]
    text: _Text = field(default_factory=_Text)


@dataclass
class _OpenCase:
    suite: str
    attrs: dict[str, str]
    depth: int
    children: dict[str, _Child] = field(default_factory=dict)  # the first of each tag
    counts: dict[str, int] = field(default_factory=dict)  # how many of each tag


class _Reader:
    """The expat handlers: suites on a stack, the open test case, the text being collected."""

    def __init__(self, step: str, budget: Budget, attempt: int) -> None:
        self.suites = [step]
        self.depth = 0
        self.case: _OpenCase | None = None
        self.text: _Text | None = None
        self.text_depth = 0
        self.rerun_text = False  # a Surefire rerun element: its <stackTrace> is the body
        self.in_trace = False
        self.tests = _Tests()
        self.budget = budget
        self.cut_before = budget.cut
        self.attempt = attempt
        self.replaced = 0

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self.depth += 1
        name = local_name(tag)
        if self.depth == 1 and name not in _SUITE_TAGS:
            raise _NotJUnit(name)
        if self.case is not None:
            if self.depth == self.case.depth + 1 and name in _CASE_CHILDREN:
                self.open_child(self.case, name, attrs)
            elif self.rerun_text and self.depth == self.text_depth + 1:
                self.in_trace = name == "stackTrace"
        elif name == "testsuite":
            self.suites.append(capped(attrs.get("name", "")) or self.suites[-1])
        elif name == "testcase":
            self.case = _OpenCase(self.suites[-1], attrs, self.depth)

    def open_child(self, case: _OpenCase, name: str, attrs: dict[str, str]) -> None:
        case.counts[name] = case.counts.get(name, 0) + 1
        if name not in case.children:
            child = case.children[name] = _Child(attrs)
            self.text, self.text_depth = child.text, self.depth
            self.rerun_text = name in _FLAKY_TAGS or name in _RERUN_TAGS

    def data(self, text: str) -> None:
        if self.text is None:
            return
        if self.depth == self.text_depth:
            if not self.rerun_text or text.strip():
                self.text.add(text)
        elif self.in_trace and self.depth == self.text_depth + 1:
            self.text.add(text)

    def end(self, tag: str) -> None:
        if self.text is not None and self.depth == self.text_depth:
            self.text, self.rerun_text = None, False
        self.in_trace = False
        if self.case is not None and self.depth == self.case.depth:
            self.tests.add(self.budget.charge(case_record(self.case, self.attempt)))
            self.case = None
        elif self.case is None and local_name(tag) == "testsuite":
            self.suites.pop()
        self.depth -= 1

    def notes(self) -> list[str]:
        notes = []
        if self.replaced:
            notes.append(f"{self.replaced:,} characters XML does not allow, replaced by U+FFFD")
        notes += self.tests.notes()
        cut = self.budget.cut - self.cut_before
        if cut:
            size = f"{self.budget.chars / 1024 / 1024:g} MiB"
            notes.append(f"texts of {cut:,} tests cut short: over the {size} one read keeps")
        return notes


# --- one test case ---


def case_record(case: _OpenCase, attempt: int) -> TestCaseRecord:
    """One `<testcase>`: its outcome from the first result element; flaky when Surefire says it
    failed and then passed on a rerun; the reruns it reports counted."""
    children = case.children
    attrs = case.attrs
    if not children:  # most tests: passed, nothing printed (positional: 100,000 of them add up)
        name, classname = attrs.get("name", ""), attrs.get("classname") or attrs.get("class") or ""
        ms = seconds(attrs.get("time")) * 1000
        return TestCaseRecord(
            case.suite, capped(classname), capped(name), "passed", ms, attempt=attempt
        )
    status, tag = outcome(children)
    flaky = status == "passed" and any(tag in children for tag in _FLAKY_TAGS)
    if flaky:
        tag = next(tag for tag in _FLAKY_TAGS if tag in children)
    result = children.get(tag) if tag else None
    return TestCaseRecord(
        suite=case.suite,
        classname=capped(attrs.get("classname") or attrs.get("class") or ""),
        name=capped(attrs.get("name", "")),
        status=status,
        duration_ms=seconds(attrs.get("time")) * 1000,
        message=message(result),
        output=output(children.get("system-out")),
        flaky=flaky,
        type=result.attrs.get("type", "") if result else "",
        body=body(result),
        stderr=output(children.get("system-err")),
        attempt=attempt,
        reruns=reruns(case.counts, tag, flaky),
    )


def outcome(children: Mapping[str, _Child]) -> tuple[str, str]:
    for tag, status in _OUTCOMES:
        if tag in children:
            return status, tag
    return "passed", ""


def reruns(counts: Mapping[str, int], tag: str, flaky: bool) -> int:
    """Failed runs before the outcome: the flaky elements of a flaky test; the rerun elements of
    a failed one (but the one that stands for its outcome)."""
    if flaky:
        return sum(counts.get(t, 0) for t in _FLAKY_TAGS)
    total = sum(counts.get(t, 0) for t in _RERUN_TAGS)
    return total - 1 if tag in _RERUN_TAGS else total


def seconds(value: str | None) -> float:
    """A `time` attribute: `1.5`, `1,234.5` (Surefire's thousands), `0,5` (a decimal comma), or
    missing or nonsense (0)."""
    text = (value or "").strip()
    if "," in text:
        text = text.replace(",", "") if _THOUSANDS.fullmatch(text) else text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def message(result: _Child | None) -> str:
    """The `message` attribute, else the element's text; the first MESSAGE_LIMIT characters."""
    if result is None:
        return ""
    text = (result.attrs.get("message") or result.text.first(MESSAGE_LIMIT + 1)).strip()
    return capped(text, MESSAGE_LIMIT)


def body(result: _Child | None) -> str:
    """The element's text (a traceback): its start and its end when it is long."""
    if result is None:
        return ""
    whole = result.text.whole()
    if whole is not None and len(whole) <= BODY_LIMIT:
        return whole.strip("\r\n") if not whole.isspace() else ""
    half = BODY_LIMIT // 2
    cut = result.text.size - 2 * half
    return f"{result.text.first(half)}\n[… {cut:,} characters cut …]\n{result.text.last(half)}"


def output(element: _Child | None) -> str:
    """What the test printed; the last OUTPUT_LIMIT characters."""
    if element is None:
        return ""
    whole = element.text.whole()
    if whole is not None and len(whole.strip("\n")) <= OUTPUT_LIMIT:
        return whole.strip("\n")
    return "…" + element.text.last(OUTPUT_LIMIT + 1).rstrip("\n")[-(OUTPUT_LIMIT - 1) :]


def capped(text: str, limit: int = NAME_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def local_name(tag: str) -> str:
    """A tag without its `namespace}`: some tools put JUnit elements in one."""
    return tag.rpartition("}")[2]


# --- streaming parse ---


class _DoctypeRefused(Exception):
    pass


class _NotJUnit(Exception):
    pass


def _parse(stream: BinaryIO, reader: _Reader, path: str) -> None:
    """Feed `stream` to expat in chunks, decoded and cleaned by us first: every encoding reaches
    expat as UTF-8, and no character XML forbids reaches it at all."""
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator="}")
    parser.buffer_text = True
    parser.buffer_size = CHUNK_BYTES
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.data
    parser.StartDoctypeDeclHandler = _refuse_doctype
    cleaner: _Cleaner | None = None
    ending = False
    try:
        while chunk := stream.read(CHUNK_BYTES):
            cleaner = cleaner or _Cleaner(chunk, path)
            parser.Parse(cleaner.feed(chunk), False)
        if cleaner is None or not cleaner.content:
            raise JUnitReadError(path, "empty file")
        ending = True
        parser.Parse(cleaner.feed(b"", final=True), True)
    except _DoctypeRefused:
        reason = "refused: the file declares a DOCTYPE, which JUnit XML never needs"
        raise JUnitReadError(path, reason) from None
    except _NotJUnit as exc:
        reason = f"not a JUnit report: the root element is <{exc}>"
        raise JUnitReadError(path, f"{reason}, expected <testsuites> or <testsuite>") from None
    except expat.ExpatError as exc:
        reason = f"not valid XML: {expat.ErrorString(exc.code)} at line {exc.lineno}"
        if ending:
            reason += " (the file ends too early: cut short?)"
        raise JUnitReadError(path, reason, reader.tests.records()) from None
    reader.replaced = cleaner.replaced


def _refuse_doctype(name: str, *_: object) -> None:
    raise _DoctypeRefused(name)


class _Cleaner:
    """Decodes chunks (in the encoding the BOM or the XML declaration names, UTF-8 by default) and
    replaces what XML 1.0 forbids with U+FFFD: raw control characters, undecodable bytes, and
    character references to forbidden characters."""

    def __init__(self, head: bytes, path: str) -> None:
        encoding = sniff_encoding(head)
        try:
            self.decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        except LookupError:
            raise JUnitReadError(path, f"unknown encoding {encoding!r}") from None
        self.carry = ""  # the start of a character reference the chunk cut
        self.replaced = 0
        self.content = False  # anything but white space yet

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        text = self.carry + self.decoder.decode(chunk, final)
        amp = text.rfind("&", max(0, len(text) - 16))
        if not final and amp >= 0 and ";" not in text[amp:]:
            text, self.carry = text[:amp], text[amp:]
        else:
            self.carry = ""
        self.content = self.content or (bool(text) and not text.isspace())
        text, count = _FORBIDDEN.subn("\ufffd", text)
        self.replaced += count
        if "&#" in text:
            text = _CHAR_REF.sub(self.reference, text)
        return text.encode("utf-8")

    def reference(self, match: re.Match[str]) -> str:
        """A character reference, unless it names a character XML forbids."""
        value = match.group(1)
        code = int(value[1:], 16) if value[0] == "x" else int(value)
        if code == 0 or code > 0x10FFFF or _FORBIDDEN.match(chr(code)):
            self.replaced += 1
            return "\ufffd"
        return match.group(0)


def sniff_encoding(head: bytes) -> str:
    """The encoding a file's first bytes announce: a byte-order mark, else the declaration."""
    for mark, encoding in _BOMS:
        if head.startswith(mark):
            return encoding
    declared = _DECLARED.match(head)
    return declared.group(1).decode("ascii") if declared else "utf-8"
