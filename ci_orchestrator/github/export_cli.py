"""`ci-orchestrator export`: a pipeline in another CI system's format.

Only click at import time, like `cli.py`; the work is in `ci_orchestrator.github.export`.
Registered in `cli.py` with `cli.add_command(export)`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ci_orchestrator.__about__ import __version__

# The jobs install the release that wrote the workflow, never whatever is newest on the index.
DEFAULT_INSTALL = f"ci-orchestrator=={__version__}"


@click.group("export")
def export() -> None:
    """A pipeline in another CI system's format."""


@export.command("github-workflow")
@click.argument("pipeline", required=False, metavar="[PIPELINE|TEMPLATE]")
@click.option(
    "--python-version",
    default="3.12",
    show_default=True,
    help="The Python each job sets up (actions/setup-python).",
)
@click.option(
    "--install",
    default=DEFAULT_INSTALL,
    show_default=True,
    metavar="REQUIREMENT",
    help="What each job pip-installs to get ci-orchestrator: this version by default; '.' for the"
    " checked-out repository.",
)
@click.option(
    "--pin",
    type=click.Choice(["sha", "tag"]),
    default="sha",
    show_default=True,
    help="Pin actions by commit (with the release as a comment) or by major version tag.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the workflow here (e.g. .github/workflows/pipeline.yml) instead of stdout.",
)
def github_workflow(
    pipeline: str | None, python_version: str, install: str, pin: str, output: Path | None
) -> int:
    """Print a GitHub Actions workflow with one job per step and `needs:` mirroring the DAG.

    Each job runs its step alone (`run --only STEP --no-deps`) and uploads its journal; a last job
    merges the journals and writes JUnit XML, the job summary and the pull request comment.
    Give PIPELINE as a path from the repository root: the jobs run there.

    \b
    Examples:
      ci-orchestrator export github-workflow -o .github/workflows/pipeline.yml
      ci-orchestrator export github-workflow ci/pipeline.yml --install 'ci-orchestrator==1.*'
    """
    from ci_orchestrator.config import DEFAULT_FILE, load_pipeline
    from ci_orchestrator.github.export import ExportOptions, github_workflow, limitations

    loaded = load_pipeline(pipeline)
    target = workflow_target(pipeline or DEFAULT_FILE, Path.cwd())
    text = github_workflow(loaded, ExportOptions(target, python_version, install, pin))
    for note in limitations(loaded):
        click.echo(f"warning: {note}", err=True)
    if output is None:
        sys.stdout.write(text)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}", err=True)
    return 0


def workflow_target(target: str, cwd: Path) -> str:
    """How the jobs name the pipeline: a template name as is, a file as a path from `cwd`."""
    from ci_orchestrator.errors import UsageError

    path = Path(target)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{target} is outside {cwd}; run the export from the repository root and name the"
            " pipeline from there"
        ) from None
