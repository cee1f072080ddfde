"""A fake GitHub REST API on 127.0.0.1, for tests that go through the real PyGithub client.

Real HTTP (a `ThreadingHTTPServer` in a daemon thread), JSON bodies shaped like GitHub's (422s
with their `errors`), real pagination (`per_page`, `page`, and `Link` headers formatted as GitHub
formats them), state in memory, a log of every request, and faults scripted per route: a queue
of canned replies that are served before the route answers normally again. A canned reply may
come after the request was done all the same (`performed`: GitHub made the comment, then
answered 500), or be the normal answer sent late (`slow`: done at once, answered after a delay
a client may not wait for).

Tokens: `USER_TOKEN` belongs to the user `octocat`; `ACTIONS_TOKEN` is a GitHub Actions token
and `APP_TOKEN` a GitHub App installation token: GET /user answers them 403, and what they
write is authored by the bots `github-actions[bot]` and `my-app[bot]`. Any other Authorization
gets 401 "Bad credentials", as GitHub answers.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import math
import re
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
import pytest
from click.testing import CliRunner

from ci_orchestrator.journal import WorkflowJournal
from ci_orchestrator.runner import WorkflowRunner
from ci_orchestrator.state import STATE_DIR

USER_TOKEN = "ghp_fakeUserToken0123456789abcdef"
ACTIONS_TOKEN = "ghs_fakeActionsToken0123456789abc"
APP_TOKEN = "ghs_fakeAppInstallationToken01234"
REPOSITORY = "octo/shop"
WEB = "https://github.com"
DOCS = "https://docs.github.com/rest"
Json = dict[str, Any]


@dataclass(frozen=True)
class User:
    login: str
    id: int
    type: str = "User"

    def json(self) -> Json:
        return {
            "login": self.login,
            "id": self.id,
            "node_id": f"U_{self.id}",
            "type": self.type,
            "site_admin": False,
            "html_url": f"{WEB}/{self.login.removesuffix('[bot]')}",
        }


OCTOCAT = User("octocat", 583231)
ACTIONS_BOT = User("github-actions[bot]", 41898282, "Bot")
APP_BOT = User("my-app[bot]", 149000001, "Bot")


@dataclass(frozen=True)
class Reply:
    """A canned answer, sent after `delay_s`. `status=None` is the normal answer (the request is
    done when it arrives); `perform=True` does the request, then answers with this reply."""

    status: int | None = 200
    body: Any = None  # str/bytes as they are; anything else as JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    perform: bool = False

    @property
    def performs(self) -> bool:
        return self.status is None or self.perform


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Reply:
    """An error as GitHub words it: a JSON body with `message` and `documentation_url`."""
    body = {"message": message, "documentation_url": DOCS, "status": str(status)}
    return Reply(status, body, dict(headers or {}))


def validation_failed(resource: str, *errors: Json) -> Reply:
    """GitHub's 422: "Validation Failed" and why, in `errors` (`field`, `code`, `message`)."""
    listed = [{"resource": resource, **e} for e in errors]
    body = {"message": "Validation Failed", "errors": listed, "documentation_url": DOCS}
    return Reply(422, body)


BAD_CREDENTIALS = error(401, "Bad credentials")
NOT_FOUND = error(404, "Not Found")
INTEGRATION_FORBIDDEN = error(403, "Resource not accessible by integration")
SECONDARY_RATE_LIMIT = error(
    403,
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    " If you reach out to GitHub Support for help, please include the request ID.",
    {"Retry-After": "1"},
)
BODY_TOO_LONG = validation_failed(
    "IssueComment",
    {
        "field": "body",
        "code": "custom",
        "message": "body is too long (maximum is 65536 characters)",
    },
)
TITLE_TOO_LONG = validation_failed(
    "Issue",
    {
        "field": "title",
        "code": "custom",
        "message": "title is too long (maximum is 256 characters)",
    },
)
TOO_MANY_REQUESTS = error(429, "Too Many Requests", {"Retry-After": "1"})
SERVER_ERROR = error(500, "Server Error")
# GitHub's load balancers answer 502/503 with an HTML page, not JSON.
BAD_GATEWAY = Reply(502, "<html><body><h1>502 Bad Gateway</h1></body></html>\n")
UNAVAILABLE = Reply(503, "<html><body><h1>503 Service Unavailable</h1></body></html>\n")
MALFORMED = Reply(200, '{"id": 1, "body": "cut off in the midd')


def slow(seconds: float) -> Reply:
    """The normal answer, `seconds` late (the request itself is done at once)."""
    return Reply(status=None, delay_s=seconds)


def performed(reply: Reply) -> Reply:
    """Do what the request asks, then answer `reply` (a 500 for a comment that was made)."""
    return replace(reply, perform=True)


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str  # without the query and the API prefix
    query: dict[str, str]
    headers: dict[str, str]
    body: Any

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub:
    """The server and its state. Start with `start()` (or the `github` fixture)."""

    def __init__(self, repository: str = REPOSITORY, prefix: str = "") -> None:
        self.repository = repository
        self.prefix = prefix  # "/api/v3" serves like GitHub Enterprise
        self.tokens: dict[str, User] = {
            USER_TOKEN: OCTOCAT,
            ACTIONS_TOKEN: ACTIONS_BOT,
            APP_TOKEN: APP_BOT,
        }
        self.issues: dict[int, Json] = {}
        self.comments: dict[int, list[Json]] = {}
        self.runs: list[Json] = []
        self.jobs: dict[int, list[Json]] = {}
        self.requests: list[Request] = []
        self.scripts: list[tuple[str, str, deque[Reply]]] = []
        self.lock = threading.RLock()
        self._ids = itertools.count(1_000_001)
        self._clock = itertools.count(1_700_000_000, 60)
        self._server: ThreadingHTTPServer | None = None
        self._routes = self._route_table()

    # --- lifecycle ---

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    def start(self) -> FakeGitHub:
        handler = type("Handler", (_Handler,), {"github": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        # A short poll interval: stop() waits for the serving loop to notice.
        serve = partial(self._server.serve_forever, poll_interval=0.02)
        threading.Thread(target=serve, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- scripting and inspection ---

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Serve `replies`, one per matching request, before answering normally again. `path`
        may hold `*` wildcards; `method` may be `*`."""
        with self.lock:
            self.scripts.append((method, path, deque(replies)))

    def requests_to(self, method: str = "*", path: str = "*") -> list[Request]:
        return [r for r in self.requests if _matches(method, path, r)]

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()

    # --- state, GitHub-shaped ---

    def now(self) -> str:
        return iso(next(self._clock))

    def add_pull_request(
        self, number: int, title: str = "Add a feature", body: str = "", user: User = OCTOCAT
    ) -> Json:
        return self._put_issue(number, title, body, user, "open", pull=True)

    def add_issue(
        self, title: str, body: str = "", user: User = OCTOCAT, state: str = "open"
    ) -> Json:
        number = max(self.issues, default=0) + 1
        return self._put_issue(number, title, body, user, state)

    def add_comment(self, issue: int, body: str, user: User = OCTOCAT) -> Json:
        comment_id = next(self._ids)
        stamp = self.now()
        comment = {
            "id": comment_id,
            "node_id": f"IC_{comment_id}",
            "url": self._api(f"/issues/comments/{comment_id}"),
            "html_url": self._web_issue(issue) + f"#issuecomment-{comment_id}",
            "issue_url": self._api(f"/issues/{issue}"),
            "body": body,
            "user": user.json(),
            "created_at": stamp,
            "updated_at": stamp,
            "author_association": "OWNER" if user == OCTOCAT else "NONE",
        }
        with self.lock:
            self.comments.setdefault(issue, []).append(comment)
        return comment

    def add_run(
        self,
        workflow: str | None = "CI",
        conclusion: str | None = "success",
        *,
        file: str = "ci.yml",
        ref: str = "",
        created: float | None = None,
        attempt: int = 1,
        pull: int | None = None,
        jobs: list[Json] | None = None,
    ) -> Json:
        """A workflow run (and its jobs); the newest first in listings, as GitHub sorts them.
        `workflow=None`: a run whose workflow has no name; `ref`: its path ends with `@ref`."""
        run_id = next(self._ids)
        start = created if created is not None else time.time() - 3600
        run = {
            "id": run_id,
            "name": workflow,
            "node_id": f"WFR_{run_id}",
            "path": f".github/workflows/{file}" + (f"@{ref}" if ref else ""),
            "workflow_id": zlib.crc32(file.encode()),
            "run_number": len(self.runs) + 1,
            "run_attempt": attempt,
            "event": "pull_request" if pull else "push",
            "status": "completed" if conclusion else "in_progress",
            "conclusion": conclusion,
            "head_branch": "feature" if pull else "main",
            "head_sha": f"{run_id:040x}",
            "display_title": "Add a feature",
            "created_at": iso(start),
            "run_started_at": iso(start + 5),
            "updated_at": iso(start + 125),
            "url": self._api(f"/actions/runs/{run_id}"),
            "html_url": f"{WEB}/{self.repository}/actions/runs/{run_id}",
            "jobs_url": self._api(f"/actions/runs/{run_id}/jobs"),
            "pull_requests": [self._run_pull(pull)] if pull else [],
        }
        with self.lock:
            self.runs.append(run)
            self.runs.sort(key=lambda r: str(r["created_at"]), reverse=True)
            self.jobs[run_id] = [self._job(run, i, j) for i, j in enumerate(jobs or [])]
        return run

    # --- internals ---

    def _put_issue(
        self, number: int, title: str, body: str, user: User, state: str, pull: bool = False
    ) -> Json:
        stamp = self.now()
        kind = "pull" if pull else "issues"
        issue: Json = {
            "id": next(self._ids),
            "node_id": f"I_{number}",
            "number": number,
            "title": title,
            "body": body,
            "state": state,
            "user": user.json(),
            "url": self._api(f"/issues/{number}"),
            "html_url": f"{WEB}/{self.repository}/{kind}/{number}",
            "comments": 0,
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": stamp if state == "closed" else None,
        }
        if pull:
            issue["pull_request"] = {"url": self._api(f"/pulls/{number}")}
        with self.lock:
            self.issues[number] = issue
        return issue

    def _job(self, run: Json, index: int, spec: Json) -> Json:
        """A job from a short spec: name, conclusion, seconds, and `failed_step`."""
        job_id = next(self._ids)
        started = datetime.strptime(run["run_started_at"], "%Y-%m-%dT%H:%M:%SZ")
        begin = started.replace(tzinfo=timezone.utc).timestamp() + index
        end = begin + float(spec.get("seconds", 30))
        conclusion = spec.get("conclusion", "success")
        steps = [("Set up job", "success"), ("Run tests", "success"), ("Complete job", "success")]
        if spec.get("failed_step"):
            steps = [("Set up job", "success"), (spec["failed_step"], "failure")]
        return {
            "id": job_id,
            "run_id": run["id"],
            "run_attempt": run["run_attempt"],
            "node_id": f"CR_{job_id}",
            "head_sha": run["head_sha"],
            "head_branch": run["head_branch"],
            "workflow_name": run["name"],
            "name": spec["name"],
            "status": "completed",
            "conclusion": conclusion,
            "created_at": iso(begin),
            "started_at": iso(begin),
            "completed_at": iso(begin if conclusion == "skipped" else end),
            "url": self._api(f"/actions/jobs/{job_id}"),
            "html_url": f"{WEB}/{self.repository}/actions/runs/{run['id']}/job/{job_id}",
            "run_url": run["url"],
            "labels": ["ubuntu-latest"],
            "runner_name": "GitHub Actions 2",
            "steps": [
                {
                    "name": name,
                    "status": "completed",
                    "conclusion": outcome,
                    "number": number,
                    "started_at": iso(begin),
                    "completed_at": iso(end),
                }
                for number, (name, outcome) in enumerate(steps, 1)
            ],
        }

    def _run_pull(self, number: int) -> Json:
        return {
            "url": self._api(f"/pulls/{number}"),
            "id": number + 500,
            "number": number,
            "head": {"ref": "feature", "sha": "0" * 40},
            "base": {"ref": "main", "sha": "1" * 40},
        }

    def _api(self, path: str) -> str:
        return f"{self.url}/repos/{self.repository}{path}"

    def _web_issue(self, number: int) -> str:
        issue = self.issues.get(number)
        return str(issue["html_url"]) if issue else f"{WEB}/{self.repository}/issues/{number}"

    def _scripted(self, request: Request) -> Reply | None:
        with self.lock:
            for method, path, replies in self.scripts:
                if replies and _matches(method, path, request):
                    return replies.popleft()
        return None

    # --- routing ---

    def _route_table(self) -> list[tuple[str, re.Pattern[str], Callable[..., Answer]]]:
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        table: list[tuple[str, str, Callable[..., Answer]]] = [
            ("GET", r"/user", self._get_user),
            ("GET", repo, self._get_repo),
            ("GET", repo + r"/issues", self._list_issues),
            ("POST", repo + r"/issues", self._create_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)", self._get_issue),
            ("PATCH", repo + r"/issues/(?P<number>\d+)", self._edit_issue),
            ("GET", repo + r"/issues/(?P<number>\d+)/comments", self._list_comments),
            ("POST", repo + r"/issues/(?P<number>\d+)/comments", self._create_comment),
            ("PATCH", repo + r"/issues/comments/(?P<comment>\d+)", self._edit_comment),
            ("DELETE", repo + r"/issues/comments/(?P<comment>\d+)", self._delete_comment),
            ("GET", repo + r"/actions/runs", self._list_runs),
            ("GET", repo + r"/actions/workflows/(?P<file>[^/]+)/runs", self._list_runs),
            ("GET", repo + r"/actions/runs/(?P<run>\d+)/jobs", self._list_jobs),
        ]
        return [(method, re.compile(pattern), answer) for method, pattern, answer in table]

    def answer(self, request: Request) -> Answer:
        user = self._authenticated(request)
        if user is None:
            return _reply(BAD_CREDENTIALS)
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                params = match.groupdict()
                if "owner" in params and f"{params.pop('owner')}/{params.pop('repo')}" != (
                    self.repository
                ):
                    return _reply(NOT_FOUND)
                with self.lock:
                    return handler(request, user, **params)
        return _reply(NOT_FOUND)

    def _authenticated(self, request: Request) -> User | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer"):
            return None
        return self.tokens.get(token)

    # --- handlers ---

    def _get_user(self, request: Request, user: User) -> Answer:
        if user.type == "Bot":
            return _reply(INTEGRATION_FORBIDDEN)
        return Answer(200, {**user.json(), "name": "The Octocat", "public_repos": 8})

    def _get_repo(self, request: Request, user: User) -> Answer:
        owner, name = self.repository.split("/")
        return Answer(
            200,
            {
                "id": 1296269,
                "name": name,
                "full_name": self.repository,
                "owner": {**OCTOCAT.json(), "login": owner},
                "private": False,
                "html_url": f"{WEB}/{self.repository}",
                "url": f"{self.url}/repos/{self.repository}",
                "default_branch": "main",
            },
        )

    def _list_issues(self, request: Request, user: User) -> Answer:
        state = request.query.get("state", "open")
        creator = request.query.get("creator")
        issues = [
            issue
            for issue in sorted(self.issues.values(), key=lambda i: -int(i["number"]))
            if state in ("all", issue["state"]) and creator in (None, issue["user"]["login"])
        ]
        return self._page(request, issues)

    def _create_issue(self, request: Request, user: User) -> Answer:
        body = request.body or {}
        title = body.get("title")
        if not title:
            return _reply(validation_failed("Issue", {"field": "title", "code": "missing_field"}))
        if len(title) > 256:
            return _reply(TITLE_TOO_LONG)
        return Answer(201, self.add_issue(title, body.get("body") or "", user))

    def _get_issue(self, request: Request, user: User, number: str) -> Answer:
        issue = self.issues.get(int(number))
        return Answer(200, issue) if issue else _reply(NOT_FOUND)

    def _edit_issue(self, request: Request, user: User, number: str) -> Answer:
        issue = self.issues.get(int(number))
        if issue is None:
            return _reply(NOT_FOUND)
        issue.update({k: v for k, v in (request.body or {}).items() if k in ("title", "body")})
        issue["updated_at"] = self.now()
        return Answer(200, issue)

    def _list_comments(self, request: Request, user: User, number: str) -> Answer:
        if int(number) not in self.issues:
            return _reply(NOT_FOUND)
        return self._page(request, self.comments.get(int(number), []))

    def _create_comment(self, request: Request, user: User, number: str) -> Answer:
        if int(number) not in self.issues:
            return _reply(NOT_FOUND)
        text = (request.body or {}).get("body")
        if not isinstance(text, str) or len(text) > 65_536:
            return _reply(BODY_TOO_LONG)
        return Answer(201, self.add_comment(int(number), text, user))

    def _find_comment(self, comment_id: str) -> tuple[int, Json] | None:
        for issue, comments in self.comments.items():
            for comment in comments:
                if comment["id"] == int(comment_id):
                    return issue, comment
        return None

    def _edit_comment(self, request: Request, user: User, comment: str) -> Answer:
        found = self._find_comment(comment)
        if found is None:
            return _reply(NOT_FOUND)
        text = (request.body or {}).get("body")
        if not isinstance(text, str) or len(text) > 65_536:
            return _reply(BODY_TOO_LONG)
        found[1].update(body=text, updated_at=self.now())
        return Answer(200, found[1])

    def _delete_comment(self, request: Request, user: User, comment: str) -> Answer:
        found = self._find_comment(comment)
        if found is None:
            return _reply(NOT_FOUND)
        self.comments[found[0]].remove(found[1])
        return Answer(204)

    def _list_runs(self, request: Request, user: User, file: str | None = None) -> Answer:
        runs = self.runs
        if file is not None:
            runs = [r for r in runs if r["path"].partition("@")[0] == f".github/workflows/{file}"]
            if not runs:
                return _reply(NOT_FOUND)
        return self._page(request, runs, "workflow_runs")

    def _list_jobs(self, request: Request, user: User, run: str) -> Answer:
        if int(run) not in self.jobs:
            return _reply(NOT_FOUND)
        return self._page(request, self.jobs[int(run)], "jobs")

    # --- pagination ---

    def _page(self, request: Request, items: list[Json], key: str | None = None) -> Answer:
        """One page, and a Link header with prev/next/last/first as GitHub writes it."""
        per_page = max(1, min(100, int(request.query.get("per_page", 30))))
        page = max(1, int(request.query.get("page", 1)))
        last = max(1, math.ceil(len(items) / per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        links = []
        for rel, number in (("prev", page - 1), ("next", page + 1), ("last", last), ("first", 1)):
            wanted = page > 1 if rel in ("prev", "first") else page < last
            if wanted:
                query = urlencode({**request.query, "page": number})
                links.append(f'<{self.url}{request.path}?{query}>; rel="{rel}"')
        headers = {"Link": ", ".join(links)} if links else {}
        body: Any = {"total_count": len(items), key: chunk} if key else chunk
        return Answer(200, body, headers)


def _matches(method: str, path: str, request: Request) -> bool:
    return method in ("*", request.method) and fnmatch.fnmatchcase(request.path, path)


def _reply(reply: Reply) -> Answer:
    return Answer(reply.status or 200, reply.body, dict(reply.headers))


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) before the answer: not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    server_version = "GitHub.com"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `FakeGitHub.requests` instead."""

    def _serve(self) -> None:
        request = self._request()
        with self.github.lock:
            self.github.requests.append(request)
        reply = self.github._scripted(request)
        if reply is None or reply.performs:
            answer = self.github.answer(request)
        if reply is not None:
            time.sleep(reply.delay_s)
            if reply.status is not None:
                answer = _reply(reply)
        self._send(answer)

    def _request(self) -> Request:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = parts.path.removeprefix(self.github.prefix) or "/"
        return Request(
            method=self.command,
            path=path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=json.loads(raw) if raw else None,
        )

    def _send(self, answer: Answer) -> None:
        body = answer.body
        if body is None:
            data = b""
        elif isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Request-Id": f"FAKE:{len(self.github.requests)}",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            **answer.headers,
        }
        try:
            self.send_response(answer.status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up waiting (a slow-response test)


def closed_port_url() -> str:
    """An http://127.0.0.1 URL where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(name="github")
def github_fixture(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The fake GitHub, running, with GITHUB_API_URL, GITHUB_REPOSITORY and GITHUB_TOKEN set.

    Also our own tuning knobs (not PyGithub's): a 1 s request timeout and near-zero backoff, so
    retry tests take no real time beyond what a `Retry-After` asks for."""
    server = FakeGitHub().start()
    monkeypatch.setenv("GITHUB_API_URL", server.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", server.repository)
    monkeypatch.setenv("GITHUB_TOKEN", USER_TOKEN)
    monkeypatch.setenv("CI_ORCHESTRATOR_GITHUB_TIMEOUT", "1")
    monkeypatch.setenv("CI_ORCHESTRATOR_GITHUB_BACKOFF", "0.01")
    yield server
    server.stop()


# --- for the tests that use it: the real command line, and a journal from a real run ---


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def command_line() -> click.Group:
    """The real `ci-orchestrator` command group (it loads the GitHub commands when named)."""
    from ci_orchestrator.cli import cli

    return cli


def invoke(*args: str, **env: str) -> Outcome:
    """Run `ci-orchestrator ARGS` in this process (the environment plus `env`)."""
    result = CliRunner().invoke(command_line(), list(args), env=env, catch_exceptions=False)
    return Outcome(result.exit_code, result.stdout, result.stderr)


STEPS = {"lint": "echo linting", "test": "echo testing"}


def run_pipeline(name: str = "shop", steps: Mapping[str, str] | None = None) -> str:
    """Really run a small pipeline (independent shell steps, keep-going) into the default
    journal; returns the run id."""
    journal = WorkflowJournal(STATE_DIR / "journal.db")
    runner = WorkflowRunner(name, observers=[journal], state_dir=STATE_DIR, fail_fast=False)
    for step, command in (steps or STEPS).items():
        runner.add_step(step, command)
    try:
        return runner.run().workflow_id
    finally:
        journal.close()
