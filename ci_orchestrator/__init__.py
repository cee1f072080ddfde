"""ci-orchestrator: run a CI pipeline as a DAG of shell steps, and learn from every run.

The public API is imported lazily (PEP 562), so that the command line starts fast:

    from ci_orchestrator import WorkflowRunner, WorkflowJournal, WorkflowAnalytics
"""

from __future__ import annotations

from importlib import import_module

from ci_orchestrator.__about__ import __version__

# Not typing's: importing typing would cost `ci-orchestrator --version` a third of its time
# (mypy reads any TYPE_CHECKING as true).
TYPE_CHECKING = False

_EXPORTS = {
    "WorkflowRunner": "runner",
    "WorkflowStep": "runner",
    "StepStatus": "runner",
    "WorkflowResult": "runner",
    "RunObserver": "runner",
    "RunStatus": "runner",
    "Workflow": "workflow",
    "Task": "workflow",
    "TaskStatus": "workflow",
    "TaskResult": "workflow",
    "chain": "workflow",
    "parallel": "workflow",
    "fan_out_fan_in": "workflow",
    "RetryPolicy": "retry",
    "WorkflowJournal": "journal",
    "JournalEntry": "journal",
    "WorkflowAnalytics": "analytics",
    "WorkflowInsight": "analytics",
    "WorkflowTemplate": "templates",
    "ci_cd_template": "config",
    "code_review_template": "config",
    "data_pipeline_template": "config",
    "WorkflowError": "errors",
    "CycleError": "errors",
    "TaskFailedError": "errors",
    "ConfigError": "errors",
}

__all__ = [
    "ConfigError",
    "CycleError",
    "JournalEntry",
    "RetryPolicy",
    "RunObserver",
    "RunStatus",
    "StepStatus",
    "Task",
    "TaskFailedError",
    "TaskResult",
    "TaskStatus",
    "Workflow",
    "WorkflowAnalytics",
    "WorkflowError",
    "WorkflowInsight",
    "WorkflowJournal",
    "WorkflowResult",
    "WorkflowRunner",
    "WorkflowStep",
    "WorkflowTemplate",
    "__version__",
    "chain",
    "ci_cd_template",
    "code_review_template",
    "data_pipeline_template",
    "fan_out_fan_in",
    "parallel",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ci_orchestrator' has no attribute {name!r}")
    value = getattr(import_module(f"ci_orchestrator.{module}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from typing import Any

    from ci_orchestrator.analytics import WorkflowAnalytics, WorkflowInsight
    from ci_orchestrator.config import ci_cd_template, code_review_template, data_pipeline_template
    from ci_orchestrator.errors import ConfigError, CycleError, TaskFailedError, WorkflowError
    from ci_orchestrator.journal import JournalEntry, WorkflowJournal
    from ci_orchestrator.retry import RetryPolicy
    from ci_orchestrator.runner import (
        RunObserver,
        RunStatus,
        StepStatus,
        WorkflowResult,
        WorkflowRunner,
        WorkflowStep,
    )
    from ci_orchestrator.templates import WorkflowTemplate
    from ci_orchestrator.workflow import (
        Task,
        TaskResult,
        TaskStatus,
        Workflow,
        chain,
        fan_out_fan_in,
        parallel,
    )
