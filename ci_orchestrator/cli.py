"""The click command line. Commands only parse options and call a plain function below them.

Imports of everything but click happen inside the commands, so `--version` and `--help` stay fast
and nothing on the run path imports PyGithub. The commands defined elsewhere (`comment`,
`import-github`, `export`) are imported by name only when they are named (or listed by --help):
see `LAZY_COMMANDS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import import_module
from typing import Any, TypeVar

import click

from ci_orchestrator.__about__ import __version__

F = TypeVar("F", bound=Callable[..., object])

# The commands defined in other modules: name -> "module.attribute". None of them is imported
# until a command line names it, or `--help` or shell completion lists the commands.
LAZY_COMMANDS = {
    "comment": "ci_orchestrator.github.cli.comment",
    "import-github": "ci_orchestrator.github.cli.import_github",
    "export": "ci_orchestrator.github.export_cli.export",
}


class _Group(click.Group):
    """Runs commands under the error handler and turns their int return into the exit code.

    `lazy` names commands defined in other modules (name -> "module.attribute"), imported when
    asked for, as in click's "Lazily Loading Subcommands": they list and resolve as if they had
    been added with `add_command`.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy:
            return command
        module, _, name = self.lazy[cmd_name].rpartition(".")
        command = getattr(import_module(module), name)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is no click command")
        return command

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's own errors as one line too: `error: No such option: --x (see ... --help)`."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.format_message())  # a bare group: its help, as asked
            sys.exit(0)
        except click.ClickException as exc:
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        from ci_orchestrator.error_handler import error_handler

        with error_handler():
            result = super().invoke(ctx)
        if isinstance(result, int) and not isinstance(result, bool):
            ctx.exit(result)
        return result


@click.group(
    cls=_Group, lazy=LAZY_COMMANDS, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, "-V", "--version", prog_name="ci-orchestrator")
def cli() -> None:
    """Run a CI pipeline as a DAG of shell steps, the same on a laptop and in GitHub Actions.

    \b
    Exit codes: 0 all passed (flaky included), 1 a step failed, 2 usage or
    configuration error, 3 a bug in ci-orchestrator, 130 interrupted.
    """


PIPELINE = click.argument("pipeline", required=False, metavar="[PIPELINE|TEMPLATE]")
JOURNAL = click.option(
    "--journal",
    metavar="PATH",
    help="The journal [default: $CI_ORCHESTRATOR_JOURNAL or .ci-orchestrator/journal.db].",
)


def author_option(name: str, thing: str, default: str = "") -> Callable[[F], F]:
    """`--comment-author` / `--issue-author`: whose comment or issue (with our marker) is ours."""
    return click.option(
        name,
        metavar="LOGIN",
        help=f"The account our {thing} is written by, e.g. my-app[bot] for a GitHub App token;"
        f" one by anyone else is never touched [default: {default}the token's user; any bot"
        " account when the token may not tell (GitHub Actions, GitHub App)].",
    )


def _split_env(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


@cli.command()
@PIPELINE
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="STEP=CMD",
    help="Run CMD for STEP instead of its command (repeatable).",
)
@click.option("--skip", multiple=True, metavar="STEP", help="Skip STEP (repeatable); env SKIP=a,b.")
@click.option(
    "--only", multiple=True, metavar="STEP", help="Run only STEP and what it needs (repeatable)."
)
@click.option("--no-deps", is_flag=True, help="With --only: run just the named steps.")
@click.option(
    "--changed-since",
    metavar="REF",
    help="Apply the steps' `paths:` filters to what changed since REF (its merge base with HEAD),"
    " uncommitted files included. The pre-push hook and GitHub Actions know their range.",
)
@click.option(
    "--force",
    multiple=True,
    is_flag=False,
    flag_value="*",
    metavar="[STEP]",
    help="Run every step (or STEP, repeatable) even when its `paths:` saw no change or its"
    " `inputs:` are up to date.",
)
@click.option("--dry-run", is_flag=True, help="Print the plan (order, skips and why); run nothing.")
@click.option(
    "--setup",
    "setup",
    is_flag=True,
    help="First run the pipeline's `setup:` commands, as a step `set-up` every step needs (each"
    " job of an exported workflow does; a plain run leaves them to you).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Steps running at once [default: CPU count].",
)
@click.option("--keep-going", is_flag=True, help="After a failure, finish every unaffected branch.")
@click.option("-q", "--quiet", is_flag=True, help="Only status lines, and the tail of failures.")
@click.option("-v", "--verbose", is_flag=True, help="Also commands and the run's set-up.")
@click.option(
    "--rerun-failed", is_flag=True, help="Run what did not pass last time, and what needs it."
)
@click.option(
    "--junit",
    "junit",
    multiple=True,
    metavar="STEP=GLOB|FILE",
    help="STEP=GLOB: STEP writes JUnit XML files matching GLOB, as `junit:` in a pipeline file"
    " (repeatable; with --set for a template's steps). FILE: write the run's JUnit XML there.",
)
@JOURNAL
@click.option("--no-journal", is_flag=True, help="Do not record this run.")
@click.option(
    "--run-id",
    metavar="ID",
    help="Record the run under this id: jobs that each run part of one pipeline share it"
    " (their journals merge with `journal import`).",
)
@click.option(
    "--mask-env",
    multiple=True,
    metavar="NAME",
    help="Also mask the value of variable NAME in every output (repeatable; env"
    " CI_ORCHESTRATOR_MASK_ENV=A,B). Secret-looking names (*TOKEN*, *SECRET*, *_KEY, ...)"
    " always are.",
)
def run(
    pipeline: str | None,
    assignments: tuple[str, ...],
    skip: tuple[str, ...],
    only: tuple[str, ...],
    no_deps: bool,
    changed_since: str | None,
    force: tuple[str, ...],
    dry_run: bool,
    setup: bool,
    jobs: int | None,
    keep_going: bool,
    quiet: bool,
    verbose: bool,
    rerun_failed: bool,
    junit: tuple[str, ...],
    journal: str | None,
    no_journal: bool,
    run_id: str | None,
    mask_env: tuple[str, ...],
) -> int:
    """Run a pipeline file (default .ci-orchestrator.yml) or a built-in template.

    \b
    Examples:
      ci-orchestrator run
      ci-orchestrator run ci_cd --set lint='ruff check .' --set test='pytest -q'
      ci-orchestrator run ci_cd --set test='pytest --junitxml=r.xml' --junit test=r.xml
      ci-orchestrator run pipeline.yml --only test --jobs 4
      ci-orchestrator run --changed-since main --dry-run
    """
    from ci_orchestrator.commands.run import RunOptions
    from ci_orchestrator.commands.run import run as run_pipeline
    from ci_orchestrator.config import Overrides, parse_assignment

    if no_deps and not only:
        raise click.UsageError("--no-deps goes with --only STEP")
    overrides = Overrides(
        commands=dict(parse_assignment(a) for a in assignments),
        skip=skip,
        skip_env=_split_env(os.environ.get("SKIP")),
        only=only,
        with_deps=not no_deps,
    )
    options = RunOptions(
        target=pipeline,
        overrides=overrides,
        jobs=jobs,
        keep_going=keep_going,
        dry_run=dry_run,
        verbosity=0 if quiet else 2 if verbose else 1,
        journal=journal,
        use_journal=not no_journal,
        rerun_failed=rerun_failed,
        junit_args=junit,
        run_id=run_id,
        setup=setup,
        changed_since=changed_since,
        force=force,
    )
    env = dict(os.environ)
    if mask_env:
        from ci_orchestrator.masking import MASK_ENV

        env[MASK_ENV] = ",".join([*_split_env(env.get(MASK_ENV)), *mask_env])
    return run_pipeline(options, env=env)


@cli.command()
@PIPELINE
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail (exit 2) on likely typos that are otherwise warnings, such as a step added"
    " under `extends` whose name is close to one of the template's.",
)
def validate(pipeline: str | None, strict: bool) -> int:
    """Check a pipeline file without running it (exit 2 with file:line for every error)."""
    from ci_orchestrator.commands.inspect import validate as validate_pipeline

    return validate_pipeline(pipeline, sys.stdout, strict)


@cli.command()
@PIPELINE
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot"]),
    default="text",
    show_default=True,
)
@click.option(
    "--changed-since",
    metavar="REF",
    help="Mark the steps a run would skip because nothing under their `paths:` changed since REF"
    " (or their `inputs:` are up to date).",
)
def graph(pipeline: str | None, fmt: str, changed_since: str | None) -> int:
    """Print the pipeline's DAG as text, a Mermaid flowchart or Graphviz DOT; steps a run would
    skip as unchanged or up to date are marked."""
    from ci_orchestrator.commands.inspect import graph as print_graph

    return print_graph(pipeline, fmt, sys.stdout, changed_since)


@cli.command()
def schema() -> int:
    """Print the JSON Schema of pipeline files (for editors)."""
    from ci_orchestrator.commands.inspect import schema as print_schema

    return print_schema(sys.stdout)


@cli.group(cls=_Group)
def templates() -> None:
    """The built-in templates: ci_cd, code_review, data_pipeline."""


@templates.command("list")
def templates_list() -> int:
    """List the templates and their steps."""
    from ci_orchestrator.commands.inspect import templates_list as list_templates

    return list_templates(sys.stdout)


@templates.command("show")
@click.argument("name")
def templates_show(name: str) -> int:
    """Print a template's YAML (a starting point for .ci-orchestrator.yml)."""
    from ci_orchestrator.commands.inspect import templates_show as show_template

    return show_template(name, sys.stdout)


@cli.command()
@click.option("--since", metavar="AGE", help="Only runs started in the last AGE (7d, 12h, 90m).")
@click.option("--branch", help="Only runs on this branch.")
@click.option(
    "--pipeline", help="Only this pipeline [default: every pipeline in the journal, worst first]."
)
@click.option("--last", type=click.IntRange(min=1), metavar="N", help="Only the last N runs.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html"]),
    default="text",
    show_default=True,
    help="html: one self-contained file (inline CSS and SVG charts), best with -o.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the report to FILE instead of stdout.",
)
@click.option("--run-id", metavar="ID", help="The run to detail [default: the latest].")
@click.option(
    "--publish-issue",
    metavar="TITLE",
    help="Also keep one open GitHub issue titled TITLE up to date with this report.",
)
@author_option("--issue-author", "issue (--publish-issue)", "$CI_ORCHESTRATOR_ISSUE_AUTHOR, else ")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write the run's JUnit XML.")
@JOURNAL
def report(
    since: str | None,
    branch: str | None,
    pipeline: str | None,
    last: int | None,
    fmt: str,
    output: str | None,
    run_id: str | None,
    publish_issue: str | None,
    issue_author: str | None,
    junit: str | None,
    journal: str | None,
) -> int:
    """Pipeline health from the journal: hotspots, flaky steps, reliability, durations.

    \b
    Examples:
      ci-orchestrator report --since 7d
      ci-orchestrator report --branch main --format markdown >> "$GITHUB_STEP_SUMMARY"
      ci-orchestrator report --since 30d --format html -o report.html
    """
    from pathlib import Path  # not click.Path's path_type: every command would import pathlib

    from ci_orchestrator.commands.report import report as make_report
    from ci_orchestrator.github.cli import with_issue_author
    from ci_orchestrator.reporting import ReportOptions

    junit_file = None if junit is None else Path(junit)
    output_file = None if output is None else Path(output)
    options = ReportOptions(
        journal, since, branch, pipeline, last, fmt, run_id, junit_file, publish_issue, output_file
    )
    return make_report(options, sys.stdout, with_issue_author(os.environ, issue_author))


@cli.group(cls=_Group, name="journal")
def journal_group() -> None:
    """The journal of runs: export, import (merge), prune, info."""


@journal_group.command("export")
@click.option("--since", metavar="AGE", help="Only runs started in the last AGE.")
@JOURNAL
def journal_export(since: str | None, journal: str | None) -> int:
    """Write every run as JSON lines to stdout (steps, attempts and tests inside)."""
    from ci_orchestrator.commands.report import journal_export as export

    return export(journal, since, sys.stdout, os.environ)


@journal_group.command("import")
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@JOURNAL
def journal_import(files: tuple[str, ...], journal: str | None) -> int:
    """Add runs from `journal export` files ('-' for stdin); importing twice adds nothing."""
    from ci_orchestrator.commands.report import journal_import as import_files

    return import_files(journal, files, sys.stdout, os.environ)


journal_group.add_command(journal_import, "merge")


@journal_group.command("prune")
@click.option(
    "--older-than", required=True, metavar="AGE", help="Remove runs older than AGE (90d)."
)
@JOURNAL
def journal_prune(older_than: str, journal: str | None) -> int:
    """Remove old runs."""
    from ci_orchestrator.commands.report import journal_prune as prune_runs

    return prune_runs(journal, older_than, sys.stdout, os.environ)


@journal_group.command("info")
@JOURNAL
def journal_info(journal: str | None) -> int:
    """Where the journal is, how many runs it holds, and of which pipelines."""
    from ci_orchestrator.commands.report import journal_info as info

    return info(journal, sys.stdout, os.environ)


@cli.command("install-hook")
@click.argument("pipeline", required=False)
@click.option(
    "--isolated",
    is_flag=True,
    help="Test the pushed commit itself, checked out in a temporary git worktree (removed after),"
    " instead of the working tree with its uncommitted and untracked files.",
)
def install_hook(pipeline: str | None, isolated: bool) -> int:
    """Run the pipeline before every `git push` (an existing pre-push hook is kept and chained).

    The hook says which tree it tested; `git push --no-verify` skips it.
    """
    from ci_orchestrator.hooks import install_hook as install

    click.echo(install(pipeline, isolated=isolated))
    return 0


@cli.command("uninstall-hook")
def uninstall_hook() -> int:
    """Remove the pre-push hook and restore the one that was there before."""
    from ci_orchestrator.hooks import uninstall_hook as uninstall

    click.echo(uninstall())
    return 0


def main() -> None:
    try:
        cli(prog_name="ci-orchestrator")
    finally:
        _quiet_broken_pipe()


def _quiet_broken_pipe() -> None:
    """After `| head` closed our stdout, let Python exit without a BrokenPipeError on flush."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
