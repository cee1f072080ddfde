"""What a run looks like in a terminal: pre-commit-like status lines, output, and a summary.

The `format_*` functions are pure (data in, text out) and golden-tested; `TerminalReporter` is the
observer that decides when to print them and where each step's output goes.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Callable, Mapping
from typing import TextIO

from ci_orchestrator.durations import format_seconds
from ci_orchestrator.github.actions import ANNOTATIONS_PER_STEP, command
from ci_orchestrator.render import plural
from ci_orchestrator.runner import RunInfo, RunObserver, StepStatus, WorkflowResult, WorkflowStep

WIDTH = 79
TAIL_LINES = 20
LABELS = {
    StepStatus.COMPLETED: "Passed",
    StepStatus.FAILED: "Failed",
    StepStatus.SKIPPED: "Skipped",
    StepStatus.CANCELLED: "Cancelled",
    StepStatus.PENDING: "Pending",
    StepStatus.RUNNING: "Running",
}
_COLORS = {
    StepStatus.COMPLETED: "\033[42m",
    StepStatus.FAILED: "\033[41m",
    StepStatus.SKIPPED: "\033[43;30m",
    StepStatus.CANCELLED: "\033[45m",
}
_NORMAL = "\033[m"
_BOLD = "\033[1m"
_DIM = "\033[2m"


def use_color(stream: TextIO, env: Mapping[str, str]) -> bool:
    """Colours unless NO_COLOR is set or the stream is not a terminal (FORCE_COLOR forces them)."""
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    return stream.isatty() and env.get("TERM") != "dumb"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_NORMAL}" if color and code else text


def step_notes(step: WorkflowStep) -> str:
    """What follows the status: duration, attempts, flaky, or why it was skipped."""
    if step.status is StepStatus.SKIPPED:
        return f"({step.reason})" if step.reason else ""
    notes = []
    if len(step.attempts) > 1:
        notes.append(f"{len(step.attempts)} attempts")
    if step.flaky:
        notes.append("flaky")
    extra = f"  ({', '.join(notes)})" if notes else ""
    return f"{format_seconds(step.duration_ms / 1000):>6}{extra}"


def format_status_line(step: WorkflowStep, color: bool = False, width: int = WIDTH) -> str:
    """`name.....Passed   1.2s  (3 attempts, flaky)`, dots filling to `width`."""
    label = LABELS[step.status]
    dots = "." * max(3, width - len(step.name) - len(label))
    notes = step_notes(step)
    line = f"{step.name}{dots}{_paint(label, _COLORS.get(step.status, ''), color)}"
    return f"{line} {notes}" if notes else line


_NOT_FOUND = re.compile(r"([^\s:]+): (?:command )?not found")


def failure_reason(reason: str, exit_code: int | None, tail: str) -> str:
    """A failure's reason as people read it: exit code 127 is the shell not finding a command."""
    if exit_code != 127 or "exit code 127" not in reason:
        return reason
    names = _NOT_FOUND.findall(tail)
    found = f"command not found: {names[-1]}" if names else "command not found (exit code 127)"
    return reason.replace("exit code 127", found)


def format_failure(step: WorkflowStep, tail_lines: int | None = TAIL_LINES) -> list[str]:
    """The lines under a failed step: exit code or timeout, the log's path, the last lines."""
    lines = []
    if step.attempts and step.attempts[-1].timed_out:
        lines.append(f"- {step.reason}")
    elif step.exit_code == 127:
        lines.append(f"- {failure_reason('exit code 127', 127, step.tail)}")
    elif step.exit_code is not None:
        lines.append(f"- exit code: {step.exit_code}")
    elif step.reason:
        lines.append(f"- {step.reason}")
    if len(step.attempts) > 1:
        lines.append(f"- attempts: {len(step.attempts)}")
    if step.log_path:
        lines.append(f"- log: {step.log_path}")
    if tail_lines:
        tail = step.tail.rstrip("\n").splitlines()[-tail_lines:]
        lines.extend(f"  | {line}" for line in tail)
    return lines


def format_summary(result: WorkflowResult, color: bool = False, slowest: int = 3) -> list[str]:
    """The closing lines: counts, wall time, the slowest steps, and where failures are."""
    steps = list(result.steps.values())
    counts = [
        f"{result.failed_count} failed" if result.failed_count else "",
        f"{result.completed_count} passed"
        + (f" ({len(result.flaky_steps)} flaky)" if result.flaky_steps else ""),
        f"{result.skipped_count} skipped" if result.skipped_count else "",
        f"{result.cancelled_count} cancelled" if result.cancelled_count else "",
    ]
    verdict = {"passed": "Passed", "failed": "Failed", "interrupted": "Interrupted"}.get(
        result.status.value, result.status.value
    )
    code = {"Passed": "\033[32;1m", "Failed": "\033[31;1m"}.get(verdict, "\033[35;1m")
    wall = format_seconds(result.total_duration_ms / 1000)
    lines = [
        "",
        f"{_paint(verdict, code, color)}: {', '.join(c for c in counts if c)} in {wall}"
        f"  ({result.pipeline}, run {result.workflow_id})",
    ]
    ran = sorted((s for s in steps if s.attempts), key=lambda s: -s.duration_ms)[:slowest]
    if ran:
        slow = ", ".join(f"{s.name} {format_seconds(s.duration_ms / 1000)}" for s in ran)
        lines.append(f"slowest: {slow}")
    for step in steps:
        if step.status is StepStatus.FAILED:
            reason = failure_reason(step.reason, step.exit_code, step.tail)
            lines.append(f"failed: {step.name}: {reason}" + _where(step))
    return lines


def _where(step: WorkflowStep) -> str:
    return f" (log: {step.log_path})" if step.log_path else ""


Mask = Callable[[str], str]


class TerminalReporter(RunObserver):
    """Prints the run. Output of a step streams live while it is the only one running; otherwise
    it is printed as one block when the step ends (in GitHub Actions, inside a ::group::)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        color: bool = False,
        verbosity: int = 1,
        github: bool = False,
        mask: Mask | None = None,
    ) -> None:
        self.stream = stream
        self.color = color
        self.verbosity = verbosity  # 0 quiet, 1 normal, 2 verbose
        self.github = github
        self.mask = mask or (lambda text: text)
        self.tty = stream.isatty() and not github
        self.lock = threading.Lock()
        self.running: dict[str, WorkflowStep] = {}
        self.live: str | None = None
        self.printed: dict[str, int] = {}  # bytes of a step's log already shown live
        self.decoders: dict[str, codecs.IncrementalDecoder] = {}
        self.status_shown = False
        self.closed = False
        self.annotated = 0  # ::error annotations written (GitHub shows 10 per step)
        self.unannotated: list[str] = []  # failed steps past that: named in one last annotation

    # --- the observer ---

    def run_started(self, run: RunInfo) -> None:
        if self.verbosity >= 2:
            steps = plural(len(run.steps), "step")
            self.write(f"{run.pipeline}: {steps}, up to {run.jobs} at once")

    def step_started(self, step: WorkflowStep) -> None:
        with self.lock:
            self.running[step.name] = step
            if len(self.running) == 1 and not self.github and self.verbosity >= 1:
                self.live = step.name
            else:
                self.live = None
        if self.verbosity >= 2 and step.command:
            self.write(f"{_paint('$', _DIM, self.color)} {step.name}: {step.command}")
        self.show_running()

    def output(self, step: WorkflowStep, chunk: bytes) -> None:
        with self.lock:
            if self.live != step.name:
                return
            self.clear_status()
            self.write_bytes(chunk, step.name)
            self.printed[step.name] = self.printed.get(step.name, 0) + len(chunk)

    def step_finished(self, step: WorkflowStep) -> None:
        with self.lock:
            self.running.pop(step.name, None)
            if self.live == step.name:
                self.live = None
            self.clear_status()
            self.report(step)
        self.show_running()

    def run_finished(self, result: WorkflowResult) -> None:
        self.clear_status()
        if self.unannotated:
            names = ", ".join(self.unannotated)
            more = f"{len(self.unannotated)} more steps failed: {names}"
            self.write(command("error", more[:4000], title="more failures (see the summary)"))
        for line in format_summary(result, self.color):
            self.write(line)

    # --- printing ---

    def report(self, step: WorkflowStep) -> None:
        shown = self.printed.pop(step.name, 0)
        self.decoders.pop(step.name, None)
        if shown and not self.ends_with_newline(step, shown):
            self.write("")
        line = format_status_line(step, self.color)
        if self.github:
            self.write(f"::group::{line}")
            self.block(step, 0)
            self.write("::endgroup::")
        else:
            if self.verbosity >= 1:
                self.block(step, shown)
            self.write(line)
        for problem in step.junit_problems:
            self.write(f"- JUnit {problem}")
        if step.status is StepStatus.FAILED:
            quiet_tail = TAIL_LINES if self.verbosity == 0 else 0
            for detail in format_failure(step, quiet_tail):
                self.write(detail)
            if self.github:
                self.annotate(step)

    def annotate(self, step: WorkflowStep) -> None:
        """An `::error` for the failed step; past the 9th, the rest are named in one last error
        when the run ends (GitHub shows 10 per step and drops the others unsaid)."""
        if self.annotated < ANNOTATIONS_PER_STEP - 1:
            self.write(github_error(step))
            self.annotated += 1
        else:
            self.unannotated.append(step.name)

    def block(self, step: WorkflowStep, offset: int) -> None:
        """The part of a step's log not shown live, read back from disk."""
        if not step.log_path or step.status is StepStatus.SKIPPED:
            return
        try:
            with open(step.log_path, "rb") as log:
                log.seek(offset)
                data = log.read(1 << 20)
                last = b"\n"
                while data:
                    self.write_bytes(data, step.name)
                    last = data[-1:]
                    data = log.read(1 << 20)
        except OSError:
            return
        if last != b"\n":
            self.write("")

    def ends_with_newline(self, step: WorkflowStep, size: int) -> bool:
        try:
            with open(step.log_path or "", "rb") as log:
                log.seek(size - 1)
                return log.read(1) == b"\n"
        except OSError:
            return True

    def show_running(self) -> None:
        if not self.tty or len(self.running) < 2 or self.live is not None:
            return
        with self.lock:
            names = ", ".join(self.running)
            text = f"running: {names}"[: WIDTH - 1]
            self.emit(f"\r\033[K{_paint(text, _DIM, self.color)}")
            self.status_shown = True

    def clear_status(self) -> None:
        if self.status_shown:
            self.emit("\r\033[K")
            self.status_shown = False

    def write(self, line: str) -> None:
        self.emit(self.mask(line) + "\n")

    def add_mask(self, value: str) -> None:
        """Pass a step's `::add-mask::` on to the GitHub runner with the real value (escaped as
        the runner reads it), the moment it is seen: the one line never masked."""
        with self.lock:
            self.emit(command("add-mask", value) + "\n")

    def emit(self, text: str) -> None:
        """Write and flush; a reader that went away (`| head`) does not stop the run."""
        if self.closed:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            self.closed = True

    def write_bytes(self, data: bytes, step: str) -> None:
        if step not in self.decoders:
            self.decoders[step] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.emit(self.mask(self.decoders[step].decode(data)))


def github_error(step: WorkflowStep) -> str:
    """A `::error` workflow command for a failed step: its reason and the last lines of its log."""
    lines = [step.reason, *step.tail.rstrip("\n").splitlines()[-10:]]
    return command("error", "\n".join(lines), title=f"{step.name} failed")
