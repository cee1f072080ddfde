"""`report --publish-issue TITLE`: one open issue kept up to date, against the fake GitHub."""

from __future__ import annotations

import os

import pytest

from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.cli import publish_issue
from ci_orchestrator.github.client import APIError
from ci_orchestrator.github.issues import (
    ISSUE_BUDGET,
    ISSUE_MARKER,
    issue_body,
    publish_report_issue,
)
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.render.markdown import render_markdown
from ci_orchestrator.report_records import HealthReport
from ci_orchestrator.reporting import ReportOptions, build_report
from ci_orchestrator.state import STATE_DIR
from tests.github_server import (
    ACTIONS_BOT,
    ACTIONS_TOKEN,
    APP_BOT,
    APP_TOKEN,
    BAD_GATEWAY,
    OCTOCAT,
    SERVER_ERROR,
    USER_TOKEN,
    FakeGitHub,
    Reply,
    User,
    github_fixture,  # noqa: F401 (the `github` fixture)
    invoke,
    performed,
    run_pipeline,
    slow,
)

TITLE = "Nightly pipeline health"
ISSUES = "/repos/octo/shop/issues"


def health_report() -> HealthReport:
    store = JournalStore(STATE_DIR / "journal.db", read_only=True)
    try:
        return build_report(store, ReportOptions())
    finally:
        store.close()


def report_markdown() -> str:
    return render_markdown(health_report(), budget=ISSUE_BUDGET)


def publish(markdown: str, token: str | None = None) -> str:
    return publish_report_issue(TITLE, markdown, env=os.environ, token=token)


def test_the_issue_is_opened_once_then_edited(github: FakeGitHub) -> None:
    first = run_pipeline()
    message = publish(report_markdown())
    assert message == "opened issue https://github.com/octo/shop/issues/1"
    assert [str(r) for r in github.requests] == [
        "GET /user",
        "GET /repos/octo/shop/issues",
        "POST /repos/octo/shop/issues",
    ]
    assert github.requests[1].query == {"state": "open", "creator": "octocat", "per_page": "100"}
    [issue] = github.issues.values()
    assert issue["title"] == TITLE
    assert issue["body"].startswith(ISSUE_MARKER + "\n## ")
    assert first in issue["body"]

    github.reset_log()
    second = run_pipeline()
    assert publish(report_markdown()) == "updated issue https://github.com/octo/shop/issues/1"
    assert [str(r) for r in github.requests] == [
        "GET /user",
        "GET /repos/octo/shop/issues",
        "GET /repos/octo/shop/issues/1",  # is it a pull request? The listing cannot say for free
        "PATCH /repos/octo/shop/issues/1",
    ]
    assert len(github.issues) == 1
    assert second in github.issues[1]["body"]


def test_a_closed_issue_with_the_title_is_history(github: FakeGitHub) -> None:
    closed = github.add_issue(TITLE, ISSUE_MARKER + "\nlast month", OCTOCAT, state="closed")
    run_pipeline()
    message = publish(report_markdown())
    assert message == "opened issue https://github.com/octo/shop/issues/2"
    assert closed["body"] == ISSUE_MARKER + "\nlast month"
    assert closed["state"] == "closed"


def test_issues_that_are_not_ours_are_left_alone(github: FakeGitHub) -> None:
    someone = User("someone", 7)
    github.add_issue(TITLE, "a user's issue with the same title", someone)
    github.add_issue(TITLE, ISSUE_MARKER + "\ncopied marker", someone)
    github.add_issue("Nightly pipeline health (old)", ISSUE_MARKER, OCTOCAT)
    github.add_issue(TITLE, f"Why does the report start with\n> {ISSUE_MARKER}", OCTOCAT)
    run_pipeline()
    assert publish(report_markdown()) == "opened issue https://github.com/octo/shop/issues/5"
    assert not github.requests_to("PATCH")


def test_an_actions_token_finds_the_bots_issue_without_a_creator_filter(
    github: FakeGitHub,
) -> None:
    github.add_issue(TITLE, ISSUE_MARKER + "\nyesterday", ACTIONS_BOT)
    run_pipeline()
    message = publish(report_markdown(), token=ACTIONS_TOKEN)
    assert message == "updated issue https://github.com/octo/shop/issues/1"
    assert "creator" not in github.requests_to("GET", "/repos/octo/shop/issues")[0].query
    assert "yesterday" not in github.issues[1]["body"]


def test_a_github_app_token_keeps_one_issue_over_three_runs(github: FakeGitHub) -> None:
    github.add_issue(TITLE, ISSUE_MARKER + "\nwritten by a person", OCTOCAT)
    messages = []
    for _ in range(3):
        run_pipeline()
        messages.append(publish(report_markdown(), token=APP_TOKEN))
    assert messages == [
        "opened issue https://github.com/octo/shop/issues/2",
        "updated issue https://github.com/octo/shop/issues/2",
        "updated issue https://github.com/octo/shop/issues/2",
    ]
    assert [i["user"]["login"] for i in github.issues.values()] == ["octocat", "my-app[bot]"]
    assert github.issues[1]["body"] == ISSUE_MARKER + "\nwritten by a person"


def test_the_issue_author_option_of_report(github: FakeGitHub) -> None:
    github.add_issue(TITLE, ISSUE_MARKER + "\nfrom the Actions token", ACTIONS_BOT)
    run_pipeline()
    args = ("report", "--publish-issue", TITLE, "--issue-author", "my-app[bot]")
    done = invoke(*args, GITHUB_TOKEN=APP_TOKEN)
    assert done.code == 0, done.stderr
    assert done.stderr == "opened issue https://github.com/octo/shop/issues/2\n"
    assert invoke(*args, GITHUB_TOKEN=APP_TOKEN).stderr.startswith("updated issue ")
    assert not github.requests_to("GET", "/user")
    assert github.issues[1]["body"] == ISSUE_MARKER + "\nfrom the Actions token"
    assert github.issues[2]["user"] == APP_BOT.json()


def test_a_pull_request_with_the_title_and_marker_is_never_edited(github: FakeGitHub) -> None:
    description = ISSUE_MARKER + "\nThis PR changes the nightly health issue"
    pull = github.add_pull_request(7, TITLE, description, OCTOCAT)
    run_pipeline()
    assert publish(report_markdown()) == "opened issue https://github.com/octo/shop/issues/8"
    assert publish(report_markdown()) == "updated issue https://github.com/octo/shop/issues/8"
    assert pull["body"] == description
    assert not github.requests_to("PATCH", f"{ISSUES}/7")


@pytest.mark.parametrize(
    "reply", [performed(SERVER_ERROR), slow(1.5)], ids=["500", "timeout"]
)  # 1.5 s: past the 1 s timeout
def test_an_issue_opened_but_not_answered_is_not_opened_twice(
    github: FakeGitHub, reply: Reply
) -> None:
    run_pipeline()
    github.script("POST", ISSUES, reply)  # GitHub opens the issue, the answer is lost
    assert publish(report_markdown()) == "opened issue https://github.com/octo/shop/issues/1"
    assert len(github.issues) == 1
    assert len(github.requests_to("POST")) == 1


def test_a_422_says_what_github_refused(github: FakeGitHub) -> None:
    run_pipeline()
    with pytest.raises(APIError) as refused:
        publish_report_issue("x" * 300, report_markdown(), env=os.environ)
    assert refused.value.format_message() == (
        "GitHub answered 422 Validation Failed: title is too long (maximum is 256 characters)"
        " for POST /repos/octo/shop/issues: GitHub refused the content"
    )
    assert not github.issues


def test_our_issue_on_a_later_page_and_a_502_on_the_way(github: FakeGitHub) -> None:
    github.add_issue(TITLE, ISSUE_MARKER + "\nold", OCTOCAT)
    for n in range(120):
        github.add_issue(f"Bug {n}", "", OCTOCAT)
    github.script("GET", "/repos/octo/shop/issues", BAD_GATEWAY)
    github.script("PATCH", "/repos/octo/shop/issues/1", BAD_GATEWAY)
    run_pipeline()
    assert publish(report_markdown()) == "updated issue https://github.com/octo/shop/issues/1"
    pages = [r.query.get("page") for r in github.requests_to("GET", "/repos/octo/shop/issues")]
    assert pages == [None, None, "2"]
    assert len(github.requests_to("PATCH")) == 2


def test_the_function_the_report_command_calls(github: FakeGitHub) -> None:
    run_pipeline(steps={"leak": f"echo {USER_TOKEN}; exit 1"})
    message = publish_issue(TITLE, health_report(), os.environ)
    assert message.startswith("opened issue https://github.com/")
    body = github.issues[1]["body"]
    assert len(body) <= 65_536
    assert USER_TOKEN not in body


def test_bad_configuration(github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match=r"^--publish-issue: the title is empty$"):
        publish_report_issue("  ", "x", env=os.environ)
    monkeypatch.setenv("GITHUB_REPOSITORY", "no-slash")
    with pytest.raises(UsageError, match=r"^GITHUB_REPOSITORY: expected OWNER/NAME"):
        publish("x")
    assert not github.requests


def test_a_body_over_githubs_limit_is_our_bug_not_a_422() -> None:
    with pytest.raises(ValueError, match="render it with budget=ISSUE_BUDGET"):
        issue_body("x" * 65_536, {}, USER_TOKEN)
    assert len(issue_body("x" * ISSUE_BUDGET, {}, USER_TOKEN)) == 65_536
