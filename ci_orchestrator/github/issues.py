"""`ci-orchestrator report --publish-issue TITLE`: one open issue kept up to date with the report.

Our issue is an open issue (not a pull request: GitHub lists those among issues too) with exactly
that title, a hidden marker as the first line of its body, and written by us: `--issue-author`,
else the token's user, else (a GitHub Actions or GitHub App token, which may not ask who it is)
any bot account. It is created once, then edited in place; a closed issue with the same title is
history and left alone. Costs GET /user (none with `--issue-author`), the pages of open
issues until ours (only the user's when a user writes), one GET of ours (the listing cannot
tell it from a pull request without it), and one PATCH (or POST). A POST that GitHub may have
done though it failed is never repeated into a second issue (see `client.GitHubClient.create`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.actions import Masker
from ci_orchestrator.render.markdown import COMMENT_BUDGET

if TYPE_CHECKING:
    from github.Issue import Issue

    from ci_orchestrator.github.client import GitHubClient, Identity

ISSUE_MARKER = "<!-- ci-orchestrator:issue -->"
ISSUE_BODY_LIMIT = COMMENT_BUDGET  # GitHub's limit on an issue body: 65,536 characters
# What to render the report with (`render_markdown(report, budget=ISSUE_BUDGET)`): the body
# limit, less room for the marker line.
ISSUE_BUDGET = ISSUE_BODY_LIMIT - len(ISSUE_MARKER) - 1


def publish_report_issue(
    title: str,
    markdown: str,
    *,
    env: Mapping[str, str],
    token: str | None = None,
    author: str | None = None,
) -> str:
    """Create or update our open issue titled `title` with `markdown` (render it with
    `budget=ISSUE_BUDGET`); returns a one-line message with the issue's URL. `author`: the
    login the issue is written by (default: the token's user, see the module docstring).

    Raises `UsageError` for configuration (token, GITHUB_REPOSITORY) and `APIError` (exit 1)
    when GitHub refuses or cannot be reached."""
    title = " ".join(title.split())
    if not title:
        raise UsageError("--publish-issue: the title is empty")
    from ci_orchestrator.github.client import GitHubClient, Settings

    settings = Settings.from_env(env, token, author)
    body = issue_body(markdown, env, settings.token)
    with GitHubClient(settings) as client:
        return upsert_issue(client, title, body, client.identity(ISSUE_MARKER))


def issue_body(markdown: str, env: Mapping[str, str], token: str) -> str:
    """The marker line, then the report with every known secret masked."""
    masker = Masker.from_env(env)
    masker.add(token)
    body = f"{ISSUE_MARKER}\n{masker(markdown)}"
    if len(body) > ISSUE_BODY_LIMIT:
        raise ValueError(
            f"the report has {len(body):,} characters, over GitHub's {ISSUE_BODY_LIMIT:,}:"
            " render it with budget=ISSUE_BUDGET"
        )
    return body


def upsert_issue(client: GitHubClient, title: str, body: str, ours: Identity) -> str:
    """Edit our open issue with this title, or open it."""
    issue = find_issue(client, title, ours)
    if issue is None:
        created = client.create(
            f"POST {client.path}/issues",
            lambda: client.repo.create_issue(title=title, body=body),
            lambda: find_issue(client, title, ours),
        )
        return f"opened issue {created.html_url}"
    if issue.body != body:
        found = issue
        client.call(f"PATCH {client.path}/issues/{issue.number}", lambda: found.edit(body=body))
    return f"updated issue {issue.html_url}"


def find_issue(client: GitHubClient, title: str, ours: Identity) -> Issue | None:
    """Our open issue: exactly this title, ours (marker and author), and not a pull request."""
    filters: dict[str, Any] = {"state": "open"}
    if ours.login is not None and not ours.login.endswith("[bot]"):
        # A user's issues are filtered by GitHub; a bot's login is compared below instead.
        # PyGithub takes a login here (its docstring says so), though annotated as NamedUser.
        filters["creator"] = ours.login
    what = f"GET {client.path}/issues"
    for issue in client.each(what, client.repo.get_issues(**filters)):
        if issue.title == title and ours.owns(issue.body, issue.user):
            # A listed issue lacks the `pull_request` key: reading it costs a GET of the issue.
            pull = client.call(f"GET {client.path}/issues/{issue.number}", partial(_pull, issue))
            if not pull:
                return issue
    return None


def _pull(issue: Issue) -> bool:
    return issue.pull_request is not None
