"""The click commands that talk to GitHub: `comment` and `import-github`, and what `report`
needs for `--publish-issue` (`with_issue_author`, which carries its `--issue-author`, and
`publish_issue`).

`ci_orchestrator/cli.py` names them in its `LAZY_COMMANDS`: this module is imported only when one
of them runs (or `--help` lists them), and takes the options it shares with `report` and `run`
from there. Like every command they only parse options and call a function below them;
everything else, PyGithub included, is imported when they run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from ci_orchestrator.cli import JOURNAL, author_option

if TYPE_CHECKING:
    from ci_orchestrator.report_records import HealthReport

# How `report --issue-author` reaches `publish_issue` below: through the environment the report
# command is given (and a workflow may set it instead of the option).
ISSUE_AUTHOR_ENV = "CI_ORCHESTRATOR_ISSUE_AUTHOR"

TOKEN = click.option(
    "--token",
    metavar="TOKEN",
    help="A GitHub token [default: $GITHUB_TOKEN; prefer the variable: options show in `ps`].",
)


@click.command()
@click.option("--run-id", metavar="ID", help="The run to report [default: the latest].")
@click.option(
    "--pr",
    type=click.IntRange(min=1),
    metavar="N",
    help="The pull request [default: from the event in $GITHUB_EVENT_PATH].",
)
@TOKEN
@click.option(
    "--comment-mode",
    type=click.Choice(["update", "recreate", "off"]),
    default="update",
    show_default=True,
    help="Edit our comment in place, post a new one then delete ours, or post nothing.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Fail when the comment cannot be posted (exit 1; 2 for a configuration error).",
)
@author_option("--comment-author", "comment")
@JOURNAL
@click.option(
    "--pipeline", help="The pipeline whose latest run to report [default: the latest run's]."
)
@click.option(
    "--logs",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Failed steps' log tails in the comment; auto: only when the event says the repository"
    " is private or internal (a public repository's comments are public).",
)
def comment(
    run_id: str | None,
    pr: int | None,
    token: str | None,
    comment_mode: str,
    strict: bool,
    comment_author: str | None,
    journal: str | None,
    pipeline: str | None,
    logs: str,
) -> int:
    """Post the run's report as one sticky comment on the pull request.

    The comment is edited in place on later runs. Repository from $GITHUB_REPOSITORY, API from
    $GITHUB_API_URL (GitHub Enterprise), token from $GITHUB_TOKEN. Problems are a warning and
    exit 0 (the pipeline's result stands) unless --strict.

    \b
    Examples:
      ci-orchestrator comment                     # in a pull_request workflow
      ci-orchestrator comment --pr 42 --pipeline web-app
      ci-orchestrator comment --comment-mode recreate --strict
    """
    from ci_orchestrator.github.comments import CommentOptions, post_comment

    options = CommentOptions(
        run_id, pr, token, comment_mode, strict, journal, pipeline, comment_author, logs=logs
    )
    return post_comment(options, os.environ, sys.stdout, sys.stderr)


@click.command("import-github")
@click.option(
    "--workflow",
    metavar="FILE",
    help="Only runs of this workflow file, e.g. ci.yml [default: every workflow].",
)
@click.option(
    "--since",
    default="30d",
    show_default=True,
    metavar="AGE",
    help="Runs created in the last AGE (7d, 12h, 90m).",
)
@click.option(
    "--exclude",
    multiple=True,
    metavar="FILE",
    help="Skip this workflow file, e.g. one whose runs ci-orchestrator already journals"
    " step by step (repeatable).",
)
@TOKEN
@JOURNAL
def import_github(
    workflow: str | None,
    since: str,
    exclude: tuple[str, ...],
    token: str | None,
    journal: str | None,
) -> int:
    """Import the repository's GitHub Actions runs and jobs into the journal.

    One pipeline per workflow, one step per job, so that `report` works on CI history that never
    ran through ci-orchestrator. Importing again adds only new runs.

    \b
    Examples:
      GITHUB_REPOSITORY=owner/repo ci-orchestrator import-github
      ci-orchestrator import-github --workflow ci.yml --since 7d
      ci-orchestrator import-github --exclude ci.yml   # ci.yml's runs are journaled already
      ci-orchestrator import-github && ci-orchestrator report --pipeline CI
    """
    from ci_orchestrator.github.history import ImportOptions
    from ci_orchestrator.github.history import import_github as import_history

    options = ImportOptions(workflow, since, token, journal, exclude=exclude)
    return import_history(options, os.environ, sys.stdout)


def publish_issue(
    title: str, report: HealthReport, env: Mapping[str, str], token: str | None = None
) -> str:
    """For `report --publish-issue TITLE`: render the report for an issue body and keep our open
    issue titled TITLE up to date with it; returns the one-line message to print (stderr: the
    report itself may be JSON on stdout). The issue's author is $CI_ORCHESTRATOR_ISSUE_AUTHOR
    when set (`--issue-author`). Raises `UsageError` (exit 2) for configuration and `APIError`
    (exit 1) when GitHub refuses or cannot be reached."""
    from ci_orchestrator.github.issues import ISSUE_BUDGET, publish_report_issue
    from ci_orchestrator.render.markdown import render_markdown

    markdown = render_markdown(report, budget=ISSUE_BUDGET)
    author = env.get(ISSUE_AUTHOR_ENV)
    return publish_report_issue(title, markdown, env=env, token=token, author=author)


def with_issue_author(env: Mapping[str, str], author: str | None) -> Mapping[str, str]:
    """The environment for `report`, carrying `--issue-author` to `publish_issue`."""
    return env if author is None else {**env, ISSUE_AUTHOR_ENV: author}
