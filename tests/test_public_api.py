"""The public names stay importable, and importing the package stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import ci_orchestrator

FIXED = [
    "WorkflowRunner", "WorkflowStep", "StepStatus", "WorkflowResult", "Workflow", "Task",
    "TaskStatus", "TaskResult", "RetryPolicy", "chain", "parallel", "fan_out_fan_in",
    "WorkflowJournal", "JournalEntry", "WorkflowAnalytics", "WorkflowInsight", "WorkflowTemplate",
    "ci_cd_template", "code_review_template", "data_pipeline_template", "WorkflowError",
    "CycleError", "TaskFailedError", "ConfigError",
]  # fmt: skip


@pytest.mark.parametrize("name", FIXED)
def test_fixed_public_names(name: str) -> None:
    assert getattr(ci_orchestrator, name) is not None
    assert name in ci_orchestrator.__all__


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = ci_orchestrator.Nope


def test_the_run_path_never_imports_pygithub() -> None:
    code = (
        "import sys\n"
        "from ci_orchestrator.cli import cli\n"
        "from ci_orchestrator.commands import run, report\n"
        "import ci_orchestrator.journal, ci_orchestrator.analytics\n"
        "print('github' in sys.modules, 'tenacity' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
