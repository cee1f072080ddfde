"""`ci-orchestrator comment`: a run's report as one sticky comment on its pull request.

The comment is found again by a hidden marker naming the pipeline, as its first line, AND by its
author: `--comment-author`, else the token's user, else (a GitHub Actions or GitHub App token,
which may not ask who it is) any bot account. So a comment someone else wrote or copied, or one
that quotes the marker, is never edited nor deleted. Few requests: the repository and the issue
are lazy PyGithub objects (no request), so updating costs GET /user (none with
`--comment-author`), the first page of comments and the PATCH. A POST that GitHub may have done
though it failed is never repeated into a second comment (see `client.GitHubClient.create`);
`recreate` posts the new comment before it deletes the old one, so a failure leaves the old one.

Reporting never changes a pipeline's result: any problem is one warning line and exit 0, unless
`--strict` (then exit 1 for GitHub's answers, 2 for configuration). A token that may not write
(a pull request from a fork) puts the report in the job summary instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ci_orchestrator.errors import CIOrchestratorError, ExitCode, UsageError
from ci_orchestrator.github.actions import append_summary, command, in_actions
from ci_orchestrator.gitinfo import pr_number_from_event
from ci_orchestrator.masking import Masker, mask_record
from ci_orchestrator.render.markdown import COMMENT_BUDGET, render_markdown

if TYPE_CHECKING:
    from github.IssueComment import IssueComment

    from ci_orchestrator.github.client import APIError, GitHubClient, Identity, Settings
    from ci_orchestrator.report_records import HealthReport

MODES = ("update", "recreate", "off")


@dataclass(frozen=True)
class CommentOptions:
    run_id: str | None = None
    pr: int | None = None
    token: str | None = None
    mode: str = "update"  # update | recreate | off
    strict: bool = False
    journal: str | None = None
    pipeline: str | None = None
    author: str | None = None  # the login our comment is written by; None: the token's user
    logs: str = "auto"  # auto | on | off: failed steps' log tails in the comment


def post_comment(options: CommentOptions, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Post or update the pull request comment; the exit code (see the module docstring)."""
    if options.mode == "off":
        out.write("comment: --comment-mode off, nothing posted\n")
        return ExitCode.OK
    try:
        return _post(options, env, out, err)
    except CIOrchestratorError as exc:
        if options.strict:
            raise
        warn(f"no pull request comment: {exc.format_message()}", env, err)
        return ExitCode.OK


def _post(options: CommentOptions, env: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    # Configuration first, all of it before the first request.
    pr = options.pr or pr_from_event(env)
    if pr is None:
        out.write(no_pull_request(env) + "\n")
        return ExitCode.OK
    from ci_orchestrator.github.client import Settings

    settings = Settings.from_env(env, options.token, options.author)
    masker = Masker.from_env(env)
    masker.add(settings.token)
    health = report_for(options, env)
    assert health.run is not None
    marker = comment_marker(health.run.pipeline)  # the pipeline's name, even if it is a "secret"
    health = mask_record(health, masker)  # raw text, before any escaping
    if not logs_allowed(options.logs, env):
        health = without_log_tails(health, options.logs)
    body = render_markdown(health, budget=COMMENT_BUDGET, marker=marker)
    body = masked(body, masker)  # "***" is never longer than a secret: still fits
    return publish(settings, pr, marker, body, options, env, out, err)


def publish(
    settings: Settings,
    pr: int,
    marker: str,
    body: str,
    options: CommentOptions,
    env: Mapping[str, str],
    out: TextIO,
    err: TextIO,
) -> int:
    """Talk to GitHub; a token that may not write sends the report to the job summary."""
    from ci_orchestrator.github.client import APIError, GitHubClient

    with GitHubClient(settings) as client:
        try:
            done = upsert_comment(client, pr, client.identity(marker), body, options.mode)
        except APIError as exc:
            if not exc.integration_forbidden:
                raise
            return report_to_summary(body, pr, exc, env, err, options.strict)
    out.write(done + "\n")
    return ExitCode.OK


def upsert_comment(client: GitHubClient, pr: int, ours: Identity, body: str, mode: str) -> str:
    """Edit our comment, or create it (`recreate`: create a new one, then delete ours); says
    what it did."""
    old = find_comment(client, pr, ours)
    if old is None or mode == "recreate":
        new = create_comment(client, pr, ours, body, old)
        if old is None:
            return f"posted comment {new.html_url}"
        client.delete(f"DELETE {client.path}/issues/comments/{old.id}", old.delete)
        return f"posted comment {new.html_url} (replacing the old one)"
    if old.body == body:
        return f"comment already up to date: {old.html_url}"
    client.call(f"PATCH {client.path}/issues/comments/{old.id}", lambda: old.edit(body))
    return f"updated comment {old.html_url}"


def create_comment(
    client: GitHubClient, pr: int, ours: Identity, body: str, old: IssueComment | None
) -> IssueComment:
    """POST the comment once: after a failure GitHub may have done anyway, a comment of ours
    other than `old` is the one we posted."""
    issue = client.repo.get_issue(pr)  # lazy: no request
    skip = old.id if old is not None else None
    return client.create(
        f"POST {client.path}/issues/{pr}/comments",
        lambda: issue.create_comment(body),
        lambda: find_comment(client, pr, ours, skip),
    )


def find_comment(
    client: GitHubClient, pr: int, ours: Identity, skip: int | None = None
) -> IssueComment | None:
    """Our first comment on the pull request (other than the one numbered `skip`)."""
    issue = client.repo.get_issue(pr)
    for comment in client.each(f"GET {client.path}/issues/{pr}/comments", issue.get_comments()):
        if comment.id != skip and ours.owns(comment.body, comment.user):
            return comment
    return None


def report_to_summary(
    body: str, pr: int, exc: APIError, env: Mapping[str, str], err: TextIO, strict: bool
) -> int:
    """The report where this token can write it: the job summary; a warning either way."""
    if append_summary(body, env):
        where = "the report is in the job summary instead"
    else:
        where = "and there is no job summary to put the report in"
    warn(f"cannot comment on pull request #{pr}: {exc.format_message()}; {where}", env, err)
    return ExitCode.STEP_FAILED if strict else ExitCode.OK


def comment_marker(pipeline: str) -> str:
    """The hidden first line of a pipeline's comment (and the way to find it again)."""
    name = " ".join(pipeline.split()).replace("--", "- -").replace(">", "")
    return f"<!-- ci-orchestrator:comment pipeline={name} -->"


def report_for(options: CommentOptions, env: Mapping[str, str]) -> HealthReport:
    """The health report of the chosen run (default: the latest) from the journal."""
    from ci_orchestrator.reporting import ReportOptions, build_report, open_store

    store = open_store(options.journal, env)
    try:
        report_options = ReportOptions(
            journal=options.journal, pipeline=options.pipeline, run_id=options.run_id
        )
        health = build_report(store, report_options, env)
    finally:
        store.close()
    if health.run is None:
        which = f"of {options.pipeline!r} " if options.pipeline else ""
        raise UsageError(f"{store.label} has no run {which}to report: run the pipeline first")
    return health


def masked(body: str, masker: Masker) -> str:
    """`body` with every known secret replaced by `***` once more, below the marker line (which
    must stay intact to be found again). The report's texts were masked before rendering; this
    catches a secret that only the rendering put together."""
    marker, _, report = body.partition("\n")
    return f"{marker}\n{masker(report)}"


# --- log tails: public repositories get none ---

LOG_CHOICES = ("auto", "on", "off")


def logs_allowed(choice: str, env: Mapping[str, str]) -> bool:
    """`on`/`off` as said; `auto`: only when the event says the repository is not public (a
    comment on a public repository is public, and a log may hold a secret we were never told)."""
    if choice != "auto":
        return choice == "on"
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return False
    repository = read_event_file(Path(path)).get("repository")
    if not isinstance(repository, dict):
        return False
    visibility = repository.get("visibility")
    if isinstance(visibility, str):
        return visibility in ("private", "internal")
    return repository.get("private") is True


def without_log_tails(health: HealthReport, choice: str) -> HealthReport:
    """The report with no step's log tail, and a note saying where the logs are."""
    if health.run is None:
        return health
    steps = tuple(step._replace(log_tail="") for step in health.run.steps)
    why = "unless the repository is private" if choice == "auto" else ""
    note = f"Log tails are left out of this comment (comment-logs: {choice}{why and ', '}{why});"
    note += " the job's log has them."
    return health._replace(run=health.run._replace(steps=steps), notes=(*health.notes, note))


# --- the pull request, from the event ---


def pr_from_event(env: Mapping[str, str]) -> int | None:
    """The pull request of the event in GITHUB_EVENT_PATH (pull_request, pull_request_target,
    workflow_run); None when there is no event or it has none. An event file that cannot be read
    is a usage error."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return None
    return pr_number_from_event(env.get("GITHUB_EVENT_NAME"), read_event_file(Path(path)))


def read_event_file(path: Path) -> dict[str, Any]:
    """The event payload, strictly: missing, unreadable or not a JSON object is one clear line."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"GITHUB_EVENT_PATH: cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"GITHUB_EVENT_PATH: {path} is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UsageError(f"GITHUB_EVENT_PATH: {path} is not a JSON object")
    return payload


def no_pull_request(env: Mapping[str, str]) -> str:
    """Why there is nothing to comment on, and what to do about it."""
    if not env.get("GITHUB_EVENT_PATH"):
        return "no pull request to comment on (GITHUB_EVENT_PATH is not set); pass --pr N"
    event = env.get("GITHUB_EVENT_NAME") or "GitHub"
    why = " (a workflow_run from a fork lists no pull requests)" if event == "workflow_run" else ""
    return f"no pull request to comment on in this {event} event{why}; pass --pr N to comment"


def warn(message: str, env: Mapping[str, str], err: TextIO) -> None:
    """One warning line on stderr: in GitHub Actions a `::warning::` annotation (the runner reads
    workflow commands on stderr too), elsewhere plain text."""
    line = command("warning", message) if in_actions(env) else f"warning: {message}"
    err.write(line + "\n")
