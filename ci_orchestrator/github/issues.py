"""`ci-orchestrator report --publish-issue TITLE`: one open issue kept up to date with the report.

Our issue is an open issue with exactly that title, a hidden marker in its body, and (when the
token's user is known) written by that user. It is created once, then edited in place; a closed
issue with the same title is history and left alone. Costs GET /user, the pages of open issues
until ours, and one PATCH (or POST).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.actions import Masker
from ci_orchestrator.render.markdown import COMMENT_BUDGET

if TYPE_CHECKING:
    from github.Issue import Issue

    from ci_orchestrator.github.client import GitHubClient

ISSUE_MARKER = "<!-- ci-orchestrator:issue -->"
ISSUE_BODY_LIMIT = COMMENT_BUDGET  # GitHub's limit on an issue body: 65,536 characters
# What to render the report with (`render_markdown(report, budget=ISSUE_BUDGET)`): the body
# limit, less room for the marker line.
ISSUE_BUDGET = ISSUE_BODY_LIMIT - len(ISSUE_MARKER) - 1


def publish_report_issue(
    title: str, markdown: str, *, env: Mapping[str, str], token: str | None = None
) -> str:
    """Create or update our open issue titled `title` with `markdown` (render it with
    `budget=ISSUE_BUDGET`); returns a one-line message with the issue's URL.

    Raises `UsageError` for configuration (token, GITHUB_REPOSITORY) and `APIError` (exit 1)
    when GitHub refuses or cannot be reached."""
    title = " ".join(title.split())
    if not title:
        raise UsageError("--publish-issue: the title is empty")
    from ci_orchestrator.github.client import GitHubClient, Settings

    settings = Settings.from_env(env, token)
    body = issue_body(markdown, env, settings.token)
    with GitHubClient(settings) as client:
        return upsert_issue(client, title, body)


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


def upsert_issue(client: GitHubClient, title: str, body: str) -> str:
    """Edit our open issue with this title, or open it."""
    issue = find_issue(client, title, client.login())
    if issue is None:
        created = client.call(
            f"POST {client.path}/issues", lambda: client.repo.create_issue(title=title, body=body)
        )
        return f"opened issue {created.html_url}"
    if issue.body != body:
        found = issue
        client.call(f"PATCH {client.path}/issues/{issue.number}", lambda: found.edit(body=body))
    return f"updated issue {issue.html_url}"


def find_issue(client: GitHubClient, title: str, login: str) -> Issue | None:
    """Our open issue: exactly this title, our marker, written by `login`."""
    from ci_orchestrator.github.client import ACTIONS_BOT

    filters: dict[str, Any] = {"state": "open"}
    if login != ACTIONS_BOT:  # a bot's login is compared below instead
        # PyGithub takes a login here (its docstring says so), though annotated as NamedUser.
        filters["creator"] = login
    listing = client.repo.get_issues(**filters)
    for issue in client.each(f"GET {client.path}/issues", listing):
        author = issue.user.login if issue.user is not None else None
        if issue.title == title and author == login and ISSUE_MARKER in (issue.body or ""):
            return issue
    return None
