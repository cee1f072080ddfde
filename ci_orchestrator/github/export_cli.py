"""`ci-orchestrator export`: a pipeline in another CI system's format.

Only click at import time, like `cli.py`; the work is in `ci_orchestrator.github.export`.
`cli.py` names it in its `LAZY_COMMANDS`: imported only when `export` runs (or `--help` lists it).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ci_orchestrator.__about__ import __version__

# Without --install, the jobs install the source and version that wrote the workflow, never
# whatever is newest on the index: this release from the index, or the commit or archive it was
# installed from (`default_install`).
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
    "--runs-on",
    default="ubuntu-latest",
    show_default=True,
    metavar="LABEL",
    help="The runner every job runs on (`runs-on:`).",
)
@click.option(
    "--install",
    metavar="REQUIREMENT",
    help="What each job pip-installs to get ci-orchestrator [default: what runs this export:"
    f" {DEFAULT_INSTALL} from the index, or the commit or archive URL it came from]; '.' for"
    " the checked-out repository.",
)
@click.option(
    "--branch",
    "branches",
    multiple=True,
    metavar="NAME",
    help="A branch whose pushes run the workflow (repeatable) [default: main]; pull requests"
    " run it once, as pull_request events.",
)
@click.option(
    "--skip",
    multiple=True,
    metavar="STEP",
    help="Give STEP no job (repeatable): the jobs after it need what it needed, and the report"
    " shows it skipped by --skip.",
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
    pipeline: str | None,
    python_version: str,
    runs_on: str,
    install: str | None,
    branches: tuple[str, ...],
    skip: tuple[str, ...],
    pin: str,
    output: Path | None,
) -> int:
    """Print a GitHub Actions workflow with one job per step and `needs:` mirroring the DAG.

    Each job runs the pipeline's `setup:`, then its step alone (`run --only STEP --no-deps
    --setup`), with the files (`artifacts:`) and values ($CI_ORCHESTRATOR_OUTPUT) of the jobs
    before it; a last job merges the journals and writes JUnit XML, the job summary and the pull
    request comment. Steps without a command get no job. Give PIPELINE as a path from the
    repository root: the jobs run there.

    \b
    Examples:
      ci-orchestrator export github-workflow -o .github/workflows/pipeline.yml
      ci-orchestrator export github-workflow ci/pipeline.yml --runs-on ubuntu-24.04 --install .
    """
    from ci_orchestrator.config import DEFAULT_FILE, Overrides, apply_overrides, load_pipeline
    from ci_orchestrator.github.export import BRANCHES, ExportOptions, github_workflow, limitations

    loaded = apply_overrides(load_pipeline(pipeline), Overrides(skip=skip))
    target = workflow_target(pipeline or DEFAULT_FILE, Path.cwd())
    notes = []
    if install is None:
        install, note = default_install()
        notes += [note] if note else []
    options = ExportOptions(target, python_version, install, pin, runs_on, branches or BRANCHES)
    text = github_workflow(loaded, options)
    for note in [*notes, *limitations(loaded)]:
        click.echo(f"warning: {note}", err=True)
    if output is None:
        sys.stdout.write(text)
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    click.echo(f"wrote {output}", err=True)
    return 0


@export.command("github-not-run", hidden=True)
@click.argument("pipeline", required=False, metavar="[PIPELINE|TEMPLATE]")
@click.option("--run-id", required=True, metavar="ID", help="The workflow run's run id.")
@click.option("--skip", multiple=True, metavar="STEP", help="As the export was given it.")
def github_not_run(pipeline: str | None, run_id: str, skip: tuple[str, ...]) -> int:
    """The last job of an exported workflow: the steps no job ran (not configured, --skip, or
    skipped by GitHub, as $CI_ORCHESTRATOR_NEEDS tells), as a `journal export` line to import
    with the jobs' journals; nothing when every step's job ran."""
    from ci_orchestrator.config import Overrides, apply_overrides, load_pipeline
    from ci_orchestrator.github.export import NEEDS_ENV, not_run_record
    from ci_orchestrator.gitinfo import detect
    from ci_orchestrator.journal import run_to_json
    from ci_orchestrator.masking import Masker, mask_record

    loaded = apply_overrides(load_pipeline(pipeline), Overrides(skip=skip))
    record = not_run_record(loaded, os.environ.get(NEEDS_ENV, "{}"), run_id, detect(os.environ))
    if record is not None:
        masked = mask_record(record, Masker.from_env(os.environ))
        sys.stdout.write(json.dumps(run_to_json(masked), separators=(",", ":")) + "\n")
    return 0


def default_install() -> tuple[str, str | None]:
    """The requirement that installs the ci-orchestrator running now, and a note when the jobs
    cannot reach its source (a local checkout): then this version from the index."""
    from importlib import metadata

    try:
        text = metadata.distribution("ci-orchestrator").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return DEFAULT_INSTALL, None
    return install_requirement(json.loads(text) if text else None)


def install_requirement(direct_url: Mapping[str, Any] | None) -> tuple[str, str | None]:
    """From PEP 610's direct_url.json (None: installed from an index): a commit of a repository
    or an archive URL as they are, pinned; a local folder or file cannot be reached by the jobs."""
    if direct_url is None:
        return DEFAULT_INSTALL, None
    url = str(direct_url.get("url", ""))
    vcs = direct_url.get("vcs_info")
    archive = direct_url.get("archive_info")
    if isinstance(vcs, dict) and vcs.get("commit_id") and not url.startswith("file:"):
        return f"ci-orchestrator @ {vcs.get('vcs', 'git')}+{url}@{vcs['commit_id']}", None
    if isinstance(archive, dict) and url.startswith("https://"):
        hashes = archive.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        return f"ci-orchestrator @ {url}" + (f"#sha256={sha256}" if sha256 else ""), None
    return DEFAULT_INSTALL, (
        f"ci-orchestrator runs from {url}, which the jobs cannot reach: they install"
        f" {DEFAULT_INSTALL} from the package index (--install chooses another source)"
    )


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
