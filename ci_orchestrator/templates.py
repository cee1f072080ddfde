"""The built-in templates (YAML files shipped inside the wheel) and `WorkflowTemplate`.

Where the templates are and what they are called; the loader (`config.load_template`) reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_orchestrator.errors import UsageError
from ci_orchestrator.graph import closest

if TYPE_CHECKING:
    from ci_orchestrator.model import Step
    from ci_orchestrator.runner import WorkflowRunner


def _template_dir() -> Path:
    packaged = Path(__file__).parent / "templates"  # inside the wheel
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


TEMPLATE_DIR = _template_dir()


def template_names() -> list[str]:
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.yml"))


def template_path(name: str) -> Path | None:
    path = TEMPLATE_DIR / f"{name}.yml"
    return path if name in template_names() else None


def template_text(name: str) -> str:
    path = template_path(name)
    if path is None:
        hint = closest(name, template_names())
        raise UsageError(f"no template named {name!r}{hint}; see `ci-orchestrator templates list`")
    return path.read_text()


Override = str | Callable[..., Any]


@dataclass(frozen=True)
class WorkflowTemplate:
    """A reusable pipeline: named steps with needs and conditions, commands left to the user."""

    name: str
    description: str
    steps: Sequence[Step]

    def instantiate(
        self, overrides: Mapping[str, Override] | None = None, **runner_options: Any
    ) -> WorkflowRunner:
        """A runner for this template; each override is a shell command or a Python callable.

        Steps without an override keep the template's command, or are skipped as not configured.
        """
        from ci_orchestrator.model import add_to_runner
        from ci_orchestrator.runner import WorkflowRunner

        overrides = dict(overrides or {})
        names = [step.name for step in self.steps]
        for name in overrides:
            if name not in names:
                raise UsageError(
                    f"template {self.name!r} has no step {name!r}{closest(name, names)}"
                )
        runner = WorkflowRunner(self.name, **runner_options)
        for step in self.steps:
            add_to_runner(runner, step, overrides.get(step.name, step.run), Path.cwd())
        return runner
