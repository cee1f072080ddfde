"""`ci-orchestrator comment`, through the real PyGithub client against the fake GitHub."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.github_server import (
    ACTIONS_BOT,
    ACTIONS_TOKEN,
    APP_BOT,
    APP_TOKEN,
    BAD_GATEWAY,
    BODY_TOO_LONG,
    INTEGRATION_FORBIDDEN,
    MALFORMED,
    OCTOCAT,
    SECONDARY_RATE_LIMIT,
    SERVER_ERROR,
    USER_TOKEN,
    FakeGitHub,
    Reply,
    User,
    closed_port_url,
    error,
    github_fixture,  # noqa: F401 (the `github` fixture)
    invoke,
    performed,
    run_pipeline,
    slow,
)

EVENTS = Path(__file__).parent / "fixtures" / "events"
MARKER = "<!-- ci-orchestrator:comment pipeline=shop -->"
COMMENTS = "/repos/octo/shop/issues/42/comments"
MALLORY = User("mallory", 666)


def comment_requests(github: FakeGitHub) -> list[str]:
    return [str(r) for r in github.requests]


def ours(github: FakeGitHub, pr: int = 42) -> list[str]:
    return [c["body"] for c in github.comments.get(pr, []) if MARKER in c["body"]]


def test_first_run_creates_the_comment_and_the_next_run_edits_it(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    first = run_pipeline(steps={"lint": "echo linting", "test": "echo 'assert 1 == 2'; exit 1"})
    done = invoke("comment", "--pr", "42", "--logs", "on")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith(
        "posted comment https://github.com/octo/shop/pull/42#issuecomment-"
    )
    assert comment_requests(github) == ["GET /user", f"GET {COMMENTS}", f"POST {COMMENTS}"]
    [body] = ours(github)
    assert body.startswith(MARKER + "\n")
    assert first in body
    assert "assert 1 == 2" in body

    github.reset_log()
    second = run_pipeline()
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("updated comment ")
    # The comment exists on the first page: three requests, the PATCH included.
    assert len(github.requests) == 3
    assert [r.method for r in github.requests] == ["GET", "GET", "PATCH"]
    [body] = ours(github)
    assert second in body
    assert first not in body
    assert github.comments[42][0]["user"]["login"] == "octocat"


def test_every_request_carries_the_token(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42").code == 0
    assert github.requests
    for request in github.requests:
        assert request.headers["authorization"] == f"token {USER_TOKEN}"
        assert request.headers["user-agent"].startswith("ci-orchestrator/")
    assert github.requests[1].query["per_page"] == "100"


def test_an_unchanged_report_costs_no_write(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42").code == 0
    github.reset_log()
    done = invoke("comment", "--pr", "42")
    assert done.stdout.startswith("comment already up to date: https://github.com/")
    assert comment_requests(github) == ["GET /user", f"GET {COMMENTS}"]


def test_our_comment_on_the_second_page_is_found_and_edited(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    for n in range(100):
        github.add_comment(42, f"review remark {n}", MALLORY)
    github.add_comment(42, MARKER + "\nan old report", User("octocat", 583231))
    run_pipeline()
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("updated comment ")
    pages = [r.query.get("page") for r in github.requests_to("GET", COMMENTS)]
    assert pages == [None, "2"]  # PyGithub follows the Link header to page 2
    assert len(github.comments[42]) == 101
    [body] = ours(github)
    assert "an old report" not in body


def test_another_authors_comment_with_our_marker_is_never_edited(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    theirs = github.add_comment(42, MARKER + "\nI copied your marker", MALLORY)
    run_pipeline()
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("posted comment ")
    assert theirs["body"] == MARKER + "\nI copied your marker"
    assert [c["user"]["login"] for c in github.comments[42]] == ["mallory", "octocat"]
    assert not github.requests_to("PATCH")


def test_a_comment_of_another_pipeline_is_not_ours(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    github.add_comment(
        42, "<!-- ci-orchestrator:comment pipeline=shop-api -->\nx", User("octocat", 1)
    )
    run_pipeline()
    assert invoke("comment", "--pr", "42").stdout.startswith("posted comment ")
    assert len(github.comments[42]) == 2


def test_recreate_posts_a_new_comment_then_deletes_ours(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42").code == 0
    old_id = github.comments[42][0]["id"]
    github.reset_log()
    done = invoke("comment", "--pr", "42", "--comment-mode", "recreate")
    assert done.code == 0, done.stderr
    assert "(replacing the old one)" in done.stdout
    assert comment_requests(github) == [
        "GET /user",
        f"GET {COMMENTS}",
        f"POST {COMMENTS}",
        f"DELETE /repos/octo/shop/issues/comments/{old_id}",
    ]
    [comment] = github.comments[42]
    assert comment["id"] != old_id


def test_recreate_keeps_the_old_comment_when_the_new_one_cannot_be_posted(
    github: FakeGitHub,
) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42").code == 0
    [old] = github.comments[42]
    github.script("POST", COMMENTS, *[BAD_GATEWAY] * 4)
    done = invoke("comment", "--pr", "42", "--comment-mode", "recreate")
    assert done.code == 0
    assert done.stderr.startswith("warning: no pull request comment: GitHub answered 502")
    assert github.comments[42] == [old]
    assert not github.requests_to("DELETE")


@pytest.mark.parametrize("mode", ["update", "recreate"])
def test_a_comment_by_the_token_owner_that_quotes_the_marker_is_left_alone(
    github: FakeGitHub, mode: str
) -> None:
    github.add_pull_request(42)
    quoting = [
        f"Why does the report start with\n\n> {MARKER}\n\n?",
        f"`{MARKER}` is how the bot finds its comment",
        f" {MARKER}\nindented, so not the first line as written",
    ]
    for body in quoting:
        github.add_comment(42, body, OCTOCAT)
    for _ in range(2):
        run_pipeline()
        done = invoke("comment", "--pr", "42", "--comment-mode", mode)
        assert done.code == 0, done.stderr
    assert [c["body"] for c in github.comments[42][:3]] == quoting
    assert len(github.comments[42]) == 4


def test_comment_mode_off_talks_to_nobody(github: FakeGitHub) -> None:
    done = invoke("comment", "--comment-mode", "off")
    assert (done.code, done.stdout) == (0, "comment: --comment-mode off, nothing posted\n")
    assert not github.requests


def test_an_actions_token_writes_as_the_bot_and_finds_its_comment(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    github.add_comment(42, MARKER + "\nold", ACTIONS_BOT)
    run_pipeline()
    done = invoke("comment", "--pr", "42", GITHUB_TOKEN=ACTIONS_TOKEN)
    assert done.code == 0, done.stderr
    assert done.stdout.startswith("updated comment ")
    assert [r.method for r in github.requests] == ["GET", "GET", "PATCH"]  # GET /user was a 403
    assert len(github.comments[42]) == 1


def test_github_enterprise_api_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeGitHub(prefix="/api/v3").start()
    try:
        server.add_pull_request(42)
        for n in range(101):
            server.add_comment(42, f"remark {n}", MALLORY)
        run_pipeline()
        monkeypatch.setenv("GITHUB_REPOSITORY", server.repository)
        monkeypatch.setenv("GITHUB_TOKEN", USER_TOKEN)
        done = invoke("comment", "--pr", "42", GITHUB_API_URL=server.url + "/")
        assert done.code == 0, done.stderr
        assert server.url.endswith("/api/v3")
        assert len(server.requests_to("GET", COMMENTS)) == 2
        assert ours(server)
    finally:
        server.stop()


def test_a_github_app_token_keeps_one_comment_over_three_runs(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    copied = github.add_comment(42, MARKER + "\na user copied the whole comment", OCTOCAT)
    for _ in range(3):
        run_pipeline()
        done = invoke("comment", "--pr", "42", GITHUB_TOKEN=APP_TOKEN)
        assert done.code == 0, done.stderr
    first, ours_ = github.comments[42]
    assert first == copied
    assert ours_["user"]["login"] == "my-app[bot]"
    assert len(github.requests_to("POST")) == 1
    assert len(github.requests_to("PATCH")) == 2
    assert len(github.requests_to("GET", "/user")) == 3  # each answered 403


def test_the_comment_author_option_names_the_bot_and_skips_get_user(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    other_bot = github.add_comment(42, MARKER + "\nfrom the Actions token", ACTIONS_BOT)
    run_pipeline()
    args = ("comment", "--pr", "42", "--comment-author", "My-App[bot]")  # logins ignore case
    assert invoke(*args, GITHUB_TOKEN=APP_TOKEN).stdout.startswith("posted comment ")
    run_pipeline()
    github.reset_log()
    done = invoke(*args, GITHUB_TOKEN=APP_TOKEN)
    assert done.stdout.startswith("updated comment ")
    assert comment_requests(github) == [
        f"GET {COMMENTS}",
        f"PATCH /repos/octo/shop/issues/comments/{github.comments[42][1]['id']}",
    ]
    assert github.comments[42][0] == other_bot
    assert github.comments[42][1]["user"] == APP_BOT.json()


# --- retries ---


def test_a_502_is_retried_for_the_read_and_for_the_write(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("GET", COMMENTS, BAD_GATEWAY)
    github.script("POST", COMMENTS, BAD_GATEWAY, error(503, "Service Unavailable"))
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    # After a 5xx the POST may have been done: the comments are read again before each retry.
    assert comment_requests(github) == [
        "GET /user",
        f"GET {COMMENTS}",
        f"GET {COMMENTS}",
        f"POST {COMMENTS}",
        f"GET {COMMENTS}",
        f"POST {COMMENTS}",
        f"GET {COMMENTS}",
        f"POST {COMMENTS}",
    ]
    assert len(ours(github)) == 1


@pytest.mark.parametrize(
    "reply",
    [performed(SERVER_ERROR), performed(BAD_GATEWAY), slow(1.5)],  # 1.5 s: past the 1 s timeout
    ids=["500", "502", "timeout"],
)
@pytest.mark.parametrize("mode", ["update", "recreate"])
def test_a_comment_made_but_not_answered_is_not_posted_twice(
    github: FakeGitHub, reply: Reply, mode: str
) -> None:
    github.add_pull_request(42)
    run_pipeline()
    if mode == "recreate":
        assert invoke("comment", "--pr", "42").code == 0
    old = list(github.comments.get(42, []))
    github.reset_log()
    github.script("POST", COMMENTS, reply)  # GitHub makes the comment, the answer is lost
    done = invoke("comment", "--pr", "42", "--comment-mode", mode, "--strict")
    assert done.code == 0, done.stderr
    [comment] = github.comments[42]
    assert comment not in old
    assert done.stdout.startswith(f"posted comment {comment['html_url']}")
    assert len(github.requests_to("POST")) == 1


def test_a_delete_done_but_answered_500_is_done(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42").code == 0
    github.script("DELETE", "/repos/octo/shop/issues/comments/*", performed(SERVER_ERROR))
    done = invoke("comment", "--pr", "42", "--comment-mode", "recreate", "--strict")
    assert done.code == 0, done.stderr
    assert len(github.requests_to("DELETE")) == 2  # the retry found it gone: a 404
    assert len(github.comments[42]) == 1


def test_a_422_says_what_github_refused(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("POST", COMMENTS, BODY_TOO_LONG)
    done = invoke("comment", "--pr", "42", "--strict")
    assert done.code == 1
    assert done.stderr == (
        "error: GitHub answered 422 Validation Failed: body is too long (maximum is 65536"
        f" characters) for POST {COMMENTS}: GitHub refused the content\n"
    )
    assert len(github.requests_to("POST")) == 1  # a 422 is never retried


def test_a_write_that_fails_every_time_is_one_line_after_four_attempts(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("POST", COMMENTS, *[BAD_GATEWAY] * 4)
    done = invoke("comment", "--pr", "42", "--strict")
    assert done.code == 1
    assert done.stderr == (
        f"error: GitHub answered 502 Bad Gateway for POST {COMMENTS}:"
        " GitHub is having trouble; try again later (after 4 attempts)\n"
    )


def test_a_secondary_rate_limit_waits_what_retry_after_asks(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("POST", COMMENTS, SECONDARY_RATE_LIMIT)  # 403 with Retry-After: 1
    github.script("GET", COMMENTS, error(429, "Too Many Requests", {"Retry-After": "0"}))
    started = time.monotonic()
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    assert time.monotonic() - started >= 1.0
    assert len(github.requests_to("POST", COMMENTS)) == 2
    assert len(github.requests_to("GET", COMMENTS)) == 2
    assert len(ours(github)) == 1


def test_a_rate_limit_that_resets_much_later_fails_at_once(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    reset = str(int(time.time()) + 7200)
    github.script(
        "GET",
        COMMENTS,
        error(
            403,
            "API rate limit exceeded for user ID 583231.",
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
        ),
    )
    done = invoke("comment", "--pr", "42", "--strict")
    assert done.code == 1
    assert done.stderr.startswith(
        f"error: GitHub answered 403 API rate limit exceeded for user ID 583231. for GET {COMMENTS}:"
        " rate limited until "
    )
    assert len(github.requests_to("GET", COMMENTS)) == 1


def test_a_slow_answer_past_the_timeout_is_retried(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("GET", "/user", slow(1.5))  # the fixture sets a 1 s timeout
    done = invoke("comment", "--pr", "42")
    assert done.code == 0, done.stderr
    assert [str(r) for r in github.requests[:2]] == ["GET /user", "GET /user"]
    assert len(ours(github)) == 1


# --- failures: one line, exit 0 unless --strict ---


def test_bad_credentials_are_one_line_and_exit_0_or_1_with_strict(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    line = "GitHub answered 401 Bad credentials for GET /user: check the token\n"
    done = invoke("comment", "--pr", "42", GITHUB_TOKEN="ghp_revoked")
    assert (done.code, done.stdout, done.stderr) == (
        0,
        "",
        f"warning: no pull request comment: {line}",
    )
    done = invoke("comment", "--pr", "42", "--strict", GITHUB_TOKEN="ghp_revoked")
    assert (done.code, done.stderr) == (1, f"error: {line}")
    assert len(github.requests) == 2  # a 401 is never retried


def test_a_fork_pr_puts_the_report_in_the_job_summary(github: FakeGitHub, tmp_path: Path) -> None:
    github.add_pull_request(77)
    run_pipeline()
    summary = tmp_path / "summary.md"
    github.script("POST", "/repos/octo/shop/issues/77/comments", INTEGRATION_FORBIDDEN)
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_TOKEN": ACTIONS_TOKEN,
        "GITHUB_EVENT_NAME": "pull_request_target",
        "GITHUB_EVENT_PATH": str(EVENTS / "pull_request_target.json"),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    done = invoke("comment", **env)
    assert done.code == 0
    assert done.stderr.startswith(
        "::warning::cannot comment on pull request #77: GitHub answered 403"
    )
    assert done.stderr.endswith("; the report is in the job summary instead\n")
    assert done.stderr.count("\n") == 1
    assert summary.read_text().startswith(MARKER + "\n## ")
    assert len(github.requests_to("POST")) == 1  # a 403 is never retried
    github.script("POST", "/repos/octo/shop/issues/77/comments", INTEGRATION_FORBIDDEN)
    assert invoke("comment", "--strict", **env).code == 1


def test_a_deleted_pull_request_is_a_404_line(github: FakeGitHub) -> None:
    run_pipeline()
    done = invoke("comment", "--pr", "999", "--strict")
    assert done.code == 1
    assert done.stderr == (
        "error: GitHub answered 404 Not Found for GET /repos/octo/shop/issues/999/comments:"
        " check GITHUB_REPOSITORY, the number or file name, and that the token can see them\n"
    )


def test_an_answer_that_is_not_json_is_one_line(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    github.script("GET", COMMENTS, MALFORMED)
    done = invoke("comment", "--pr", "42")
    assert done.code == 0
    assert done.stderr == (
        f"warning: no pull request comment: GitHub answered GET {COMMENTS} with a body that is"
        " not JSON: a proxy or an outage page? Check GITHUB_API_URL\n"
    )


def test_an_unreachable_api_is_one_line(github: FakeGitHub) -> None:
    run_pipeline()
    url = closed_port_url()
    done = invoke("comment", "--pr", "42", "--strict", GITHUB_API_URL=url)
    assert done.code == 1
    assert done.stderr == (
        f"error: cannot reach GitHub at {url} for GET /user: connection refused (after 4 attempts)\n"
    )


def test_a_huge_log_is_trimmed_to_the_comment_limit(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    steps = {"big": "yes 'a very long line of compiler output' | head -c 5000000; exit 1"}
    steps |= {f"step{n}": f"yes 'x{n}' | tr -d '\\n' | head -c 9000; exit 1" for n in range(12)}
    run_pipeline(steps=steps)
    done = invoke("comment", "--pr", "42", "--logs", "on")
    assert done.code == 0, done.stderr
    [body] = ours(github)
    assert len(body) <= 65_536
    assert "Cut to fit GitHub's 65,536-character comment limit" in body


def test_secrets_are_masked_in_the_comment(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline(steps={"leak": f"echo token={USER_TOKEN} other=hunter2-secret; exit 1"})
    done = invoke("comment", "--pr", "42", "--logs", "on", ACTIONS_RUNTIME_TOKEN="hunter2-secret")
    assert done.code == 0, done.stderr
    [body] = ours(github)
    assert "token=*** other=***" in body
    assert USER_TOKEN not in body


def test_a_secret_that_looks_like_the_pipeline_name_spares_the_marker(github: FakeGitHub) -> None:
    github.add_pull_request(42)
    run_pipeline()
    assert invoke("comment", "--pr", "42", ACTIONS_RUNTIME_TOKEN="shop").code == 0
    run_pipeline()
    done = invoke("comment", "--pr", "42", ACTIONS_RUNTIME_TOKEN="shop")
    assert done.stdout.startswith("updated comment ")
    [body] = ours(github)
    assert "## ✅ \\*\\*\\* health: passed" in body  # escaped: it shows as ***


def test_no_run_in_the_journal(github: FakeGitHub) -> None:
    run_pipeline(name="other")
    done = invoke("comment", "--pr", "42", "--pipeline", "shop", "--strict")
    assert done.code == 2
    assert done.stderr.startswith(
        "error: .ci-orchestrator/journal.db has no run of 'shop' to report"
    )
    assert not github.requests


# --- the pull request from the event ---


@pytest.mark.parametrize(
    ("event", "fixture", "pr"),
    [
        ("pull_request", "pull_request.json", 42),
        ("pull_request_target", "pull_request_target.json", 77),
        ("workflow_run", "workflow_run.json", 42),
    ],
)
def test_the_pull_request_comes_from_the_event(
    github: FakeGitHub, event: str, fixture: str, pr: int
) -> None:
    github.add_pull_request(pr)
    run_pipeline()
    done = invoke("comment", GITHUB_EVENT_NAME=event, GITHUB_EVENT_PATH=str(EVENTS / fixture))
    assert done.code == 0, done.stderr
    assert f"/pull/{pr}#issuecomment-" in done.stdout
    assert ours(github, pr)


@pytest.mark.parametrize(
    ("event", "fixture", "message"),
    [
        ("push", "push.json", "no pull request to comment on in this push event; pass --pr N"),
        (
            "workflow_run",
            "workflow_run_from_fork.json",
            "no pull request to comment on in this workflow_run event (a workflow_run from a"
            " fork lists no pull requests); pass --pr N",
        ),
    ],
)
def test_an_event_without_a_pull_request_is_a_message_and_exit_0(
    github: FakeGitHub, event: str, fixture: str, message: str
) -> None:
    done = invoke(
        "comment", "--strict", GITHUB_EVENT_NAME=event, GITHUB_EVENT_PATH=str(EVENTS / fixture)
    )
    assert (done.code, done.stderr) == (0, "")
    assert done.stdout.startswith(message)
    assert not github.requests


def test_no_event_and_no_pr(github: FakeGitHub) -> None:
    done = invoke("comment")
    assert done.code == 0
    assert done.stdout == (
        "no pull request to comment on (GITHUB_EVENT_PATH is not set); pass --pr N\n"
    )


# --- bad configuration: one line, exit 0 (2 with --strict), no request ---


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GITHUB_TOKEN": None}, "no GitHub token: set GITHUB_TOKEN or pass --token"),
        ({"GITHUB_TOKEN": "  "}, "GITHUB_TOKEN is empty: pass a token"),
        ({"GITHUB_REPOSITORY": "shop"}, "GITHUB_REPOSITORY: expected OWNER/NAME, got 'shop'"),
        ({"GITHUB_REPOSITORY": "octo/shop/extra"}, "GITHUB_REPOSITORY: expected OWNER/NAME"),
        ({"GITHUB_REPOSITORY": None}, "GITHUB_REPOSITORY is not set"),
        ({"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL: expected a URL like https://"),
        ({"GITHUB_EVENT_PATH": "missing.json"}, "GITHUB_EVENT_PATH: cannot read missing.json:"),
        ({"GITHUB_EVENT_PATH": "event.txt"}, "GITHUB_EVENT_PATH: event.txt is not JSON: "),
        ({"GITHUB_EVENT_PATH": "list.json"}, "GITHUB_EVENT_PATH: list.json is not a JSON object"),
    ],
)
def test_bad_configuration_is_one_line(
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str | None],
    message: str,
) -> None:
    run_pipeline()
    Path("event.txt").write_text("pull_request: 42\n")
    Path("list.json").write_text("[42]\n")
    args = [] if "GITHUB_EVENT_PATH" in env else ["--pr", "42"]
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    done = invoke("comment", *args)
    assert done.code == 0
    assert done.stderr.startswith(f"warning: no pull request comment: {message}")
    assert done.stderr.count("\n") == 1
    done = invoke("comment", "--strict", *args)
    assert done.code == 2
    assert done.stderr.startswith(f"error: {message}")
    assert done.stderr.count("\n") == 1
    assert not github.requests


def test_an_empty_token_option(github: FakeGitHub) -> None:
    run_pipeline()
    done = invoke("comment", "--pr", "42", "--token", "", "--strict")
    assert done.code == 2
    assert done.stderr.startswith("error: --token is empty: pass a token")


def test_the_github_client_is_imported_only_when_a_command_talks_to_github() -> None:
    import subprocess
    import sys

    probe = (
        "import sys; import ci_orchestrator.cli, ci_orchestrator.github.cli,"
        " ci_orchestrator.github.comments, ci_orchestrator.github.issues,"
        " ci_orchestrator.github.history, ci_orchestrator.commands.run;"
        " print(sorted(m for m in sys.modules if m == 'github' or m.startswith('github.')"
        " or m == 'ci_orchestrator.github.client'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == "[]\n"
