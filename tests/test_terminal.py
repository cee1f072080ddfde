"""The terminal renderer: status lines, failure details and the summary (golden, colours off)."""

from __future__ import annotations

import io

from ci_orchestrator.render.terminal import (
    TerminalReporter,
    format_failure,
    format_status_line,
    format_summary,
)
from ci_orchestrator.runner import Attempt, RunStatus, StepStatus, WorkflowResult, WorkflowStep
from tests.conftest import assert_golden


def _step(
    name: str, status: StepStatus, ms: float, codes: list[int | None], **kw: object
) -> WorkflowStep:
    attempts = [Attempt(i + 1, c, ms / len(codes), False, 0.0) for i, c in enumerate(codes)]
    step = WorkflowStep(name, action="true", status=status, duration_ms=ms, attempts=attempts)
    for key, value in kw.items():
        setattr(step, key, value)
    return step


def sample_result() -> WorkflowResult:
    steps = [
        _step("lint", StepStatus.COMPLETED, 420, [0]),
        _step(
            "unit-tests",
            StepStatus.COMPLETED,
            3150,
            [1, 1, 0],
            flaky=True,
            reason="passed on attempt 3",
        ),
        _step(
            "build",
            StepStatus.FAILED,
            1234,
            [2],
            exit_code=2,
            reason="exit code 2",
            log_path=".ci-orchestrator/runs/R1/build.log",
            tail="compiling\nerror: no such file\n",
        ),
        _step("deploy", StepStatus.SKIPPED, 0, [], reason="dependency 'build' failed"),
        _step(
            "a-step-with-a-rather-long-name-that-does-not-fit-nicely",
            StepStatus.CANCELLED,
            61000,
            [None],
        ),
    ]
    return WorkflowResult(
        "R1", "web-app", RunStatus.FAILED, {s.name: s for s in steps}, 65432.0, 0.0, 65.4
    )


def test_terminal_output_golden() -> None:
    result = sample_result()
    lines = [format_status_line(step) for step in result.steps.values()]
    lines += format_failure(result.steps["build"])
    lines += format_summary(result)
    assert_golden("terminal_summary.txt", "\n".join(lines) + "\n")


def test_colours_only_when_asked() -> None:
    step = sample_result().steps["lint"]
    assert "\033[" not in format_status_line(step)
    assert "\033[42m" in format_status_line(step, color=True)


def test_reporter_prints_blocks_and_masks() -> None:
    out = io.StringIO()
    reporter = TerminalReporter(out, mask=lambda text: text.replace("s3cret", "***"))
    result = sample_result()
    reporter.run_finished(result)
    reporter.write("token s3cret")
    assert "***" in out.getvalue()
    assert "s3cret" not in out.getvalue()
    assert "Failed: 1 failed, 2 passed (1 flaky), 1 skipped, 1 cancelled in 1m05s" in out.getvalue()
