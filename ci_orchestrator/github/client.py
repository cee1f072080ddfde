"""The one door to GitHub's REST API: settings from the environment, a PyGithub client, one
retry policy around every call, and what makes a comment or an issue ours.

Only the commands import this module, and only when they run: it imports PyGithub, which
`ci-orchestrator run` must never pay for.

PyGithub's own retries are off (`retry=None`), so that tenacity is the single policy, the same for
reads and writes: 5xx answers, network errors and timeouts are retried with a jittered backoff;
rate limits (403/429 with `Retry-After`, or `X-RateLimit-Remaining: 0`) wait what GitHub asks, up
to a cap; 401, 404, 422 and any other 403 fail at once. What still fails becomes an `APIError`:
one line naming the answer (GitHub's reasons included), the request and what to check.

Writes are exact. Editing is the same whether done once or twice, but creating is not: a POST
that failed in a way GitHub may have done anyway (a 5xx, a timeout, a lost connection) is
followed by a look for what we posted before it is tried again (`GitHubClient.create`), and a
DELETE retried after such a failure takes 404 as done.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

from github import Auth, Github, GithubException
from github.GithubException import RateLimitExceededException
from github.GithubObject import GithubObject
from github.NamedUser import NamedUser
from github.Organization import Organization
from github.PaginatedList import PaginatedList
from github.Repository import Repository
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.errors import ExitCode, GitHubError, UsageError

T = TypeVar("T")
G = TypeVar("G", bound=GithubObject)
Account = NamedUser | Organization  # who wrote a comment or an issue, as PyGithub types it

DEFAULT_API_URL = "https://api.github.com"
PER_PAGE = 100  # GitHub's maximum: fewer requests for long comment threads and run histories
DEFAULT_TIMEOUT_S = 10
RATE_LIMIT_DEFAULT_WAIT_S = 60.0  # GitHub: with no header to go by, wait at least a minute
# Owner: letters, digits, hyphens; repository: letters, digits, '.', '_', '-'.
_REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*)/[A-Za-z0-9._-]+")
_HINTS = {
    401: "check the token",
    403: "check the token's permissions (pull-requests: write, issues: write, actions: read)",
    404: "check GITHUB_REPOSITORY, the number or file name, and that the token can see them",
    422: "GitHub refused the content",
}
log = logging.getLogger(__name__)


class APIError(GitHubError):
    """GitHub answered with an error, or could not be reached (not a usage mistake: exit 1)."""

    exit_code = ExitCode.STEP_FAILED

    def __init__(self, message: str, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def integration_forbidden(self) -> bool:
        """A GitHub App or Actions token that may not do this (a fork's pull request, a read-only
        `permissions:` block): the caller may have a way around it."""
        return self.status == 403 and "not accessible by integration" in self.reason.lower()


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep trying one API call."""

    attempts: int = 4
    backoff_s: float = 1.0  # first wait after a 5xx or a network error; then doubling, jittered
    max_wait_s: float = 60.0  # the longest wait a rate limit may ask for; longer fails at once


@dataclass(frozen=True)
class Settings:
    """Where and as whom to talk to GitHub."""

    repository: str  # owner/name
    token: str
    api_url: str = DEFAULT_API_URL
    timeout_s: int = DEFAULT_TIMEOUT_S
    retry: RetryPolicy = RetryPolicy()
    author: str | None = None  # who writes as this token; None: ask GitHub (GET /user)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], token: str | None = None, author: str | None = None
    ) -> Settings:
        """GITHUB_REPOSITORY, GITHUB_API_URL, the token (`--token` first, then GITHUB_TOKEN), the
        tuning knobs CI_ORCHESTRATOR_GITHUB_TIMEOUT (seconds per request) and
        CI_ORCHESTRATOR_GITHUB_BACKOFF (seconds before the first retry), and `author` (a login
        given by an option; empty is none). Each problem is one `UsageError` line."""
        backoff = _positive(env, "CI_ORCHESTRATOR_GITHUB_BACKOFF", RetryPolicy.backoff_s)
        return cls(
            repository=repository_from_env(env),
            token=token_from(token, env),
            api_url=api_url_from_env(env),
            timeout_s=max(1, round(_positive(env, "CI_ORCHESTRATOR_GITHUB_TIMEOUT", 10))),
            retry=RetryPolicy(backoff_s=backoff),
            author=(author or "").strip() or None,
        )


@dataclass(frozen=True)
class Identity:
    """What makes a comment or an issue ours: `marker` as its first line (a quote of the marker
    further down is someone's text), written by `login` (GitHub logins ignore case); when the
    login cannot be known (None), by any bot account, since a token that may not ask GET /user
    belongs to a bot."""

    marker: str
    login: str | None

    def owns(self, body: str | None, user: Account | None) -> bool:
        first_line = (body or "").partition("\n")[0].removesuffix("\r")
        return first_line == self.marker and user is not None and self.wrote(user)

    def wrote(self, user: Account) -> bool:
        if self.login is not None:
            return bool(user.login.casefold() == self.login.casefold())
        return is_bot(user)


def is_bot(user: Account) -> bool:
    """A bot account: github-actions[bot], a GitHub App's `<app>[bot]`."""
    return bool(user.login.endswith("[bot]") or user.type == "Bot")


def repository_from_env(env: Mapping[str, str]) -> str:
    """`owner/name` from GITHUB_REPOSITORY, validated."""
    value = env.get("GITHUB_REPOSITORY", "").strip()
    if not value:
        raise UsageError("GITHUB_REPOSITORY is not set: set it to OWNER/NAME (Actions sets it)")
    if not _REPOSITORY.fullmatch(value) or value.split("/")[1] in (".", ".."):
        raise UsageError(f"GITHUB_REPOSITORY: expected OWNER/NAME, got {value!r}")
    return value


def token_from(option: str | None, env: Mapping[str, str]) -> str:
    """The token from `--token`, else GITHUB_TOKEN; missing or empty is a usage error."""
    if option is not None:
        source, value = "--token", option
    elif "GITHUB_TOKEN" in env:
        source, value = "GITHUB_TOKEN", env["GITHUB_TOKEN"]
    else:
        raise UsageError(
            "no GitHub token: set GITHUB_TOKEN or pass --token"
            " (in a workflow: env: GITHUB_TOKEN: ${{ github.token }})"
        )
    if not value.strip():
        raise UsageError(
            f"{source} is empty: pass a token (a secret that is not available here, as in a"
            " pull request from a fork, expands to nothing)"
        )
    return value.strip()


def api_url_from_env(env: Mapping[str, str]) -> str:
    """GITHUB_API_URL (GitHub Enterprise: https://HOST/api/v3), default api.github.com."""
    value = env.get("GITHUB_API_URL", "").strip() or DEFAULT_API_URL
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"GITHUB_API_URL: expected a URL like https://github.example.com/api/v3, got {value!r}"
        )
    return value.rstrip("/")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise UsageError(f"{name}: expected a number of seconds, got {text!r}")
    return value


class GitHubClient:
    """A PyGithub client for one repository, with `call` and `each` as the only ways to reach
    the network. Objects come lazy (`lazy=True`): getting the repository or an issue by number
    costs no request; only the calls made through `call`/`each` do."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.github = Github(
            base_url=settings.api_url,
            auth=Auth.Token(settings.token),
            timeout=settings.timeout_s,
            user_agent=f"ci-orchestrator/{__version__}",
            per_page=PER_PAGE,
            retry=None,
            lazy=True,
            # PyGithub spaces requests out by default (0.25 s, 1 s between writes); we make a
            # handful, and rate limits are handled by waiting what GitHub asks for.
            seconds_between_requests=None,
            seconds_between_writes=None,
        )
        self.repo: Repository = self.github.get_repo(settings.repository)
        self.path = f"/repos/{settings.repository}"  # for messages: "PATCH /repos/o/r/..."

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.github.close()

    def call(self, what: str, action: Callable[[], T]) -> T:
        """Run `action` (anything that may reach GitHub) under the retry policy. `what` names
        the request in messages ("GET /repos/o/r/issues/5/comments")."""
        retrying = self._retrying()
        try:
            return retrying(action)
        except GithubException as exc:
            raise self._answer_error(exc, what, retrying) from None
        except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors
            raise APIError(
                f"cannot reach GitHub at {self.settings.api_url} for {what}:"
                f" {network_reason(exc, self.settings.timeout_s)}{_tries(retrying)}"
            ) from None
        except json.JSONDecodeError:
            raise APIError(
                f"GitHub answered {what} with a body that is not JSON: a proxy or an outage"
                " page? Check GITHUB_API_URL"
            ) from None

    def each(self, what: str, items: PaginatedList[G]) -> Iterator[G]:
        """Every item of a paginated list. Indexing fetches at most one page, and leaves the list
        as it was when that fails, so each page is one retried call."""
        index = 0
        while True:
            try:
                item = self.call(what, partial(items.__getitem__, index))
            except IndexError:
                return
            yield item
            index += 1

    def identity(self, marker: str) -> Identity:
        """Ours: `marker` first, by the configured author (no request), else by the token's user
        (GET /user). GitHub Actions and GitHub App installation tokens may not ask: then any bot
        account (github-actions[bot], my-app[bot]) is a candidate."""
        if self.settings.author:
            return Identity(marker, self.settings.author)
        try:
            login = self.call("GET /user", lambda: self.github.get_user().login)
        except APIError as exc:
            if not exc.integration_forbidden:
                raise
            login = None
        return Identity(marker, login)

    def create(self, what: str, post: Callable[[], T], adopt: Callable[[], T | None]) -> T:
        """POST something new exactly once. After an attempt that GitHub may have done though
        it failed, `adopt` looks for what we posted (None: not there) before the next attempt,
        so that a retry never makes a duplicate."""
        unsure = False

        def attempt() -> T:
            nonlocal unsure
            found = adopt() if unsure else None
            if found is not None:
                return found
            try:
                return post()
            except (GithubException, OSError) as exc:
                unsure = may_have_happened(exc)
                raise

        return self.call(what, attempt)

    def delete(self, what: str, action: Callable[[], object]) -> None:
        """DELETE under the retry policy; a 404 after an attempt GitHub may have done is done."""
        unsure = False

        def attempt() -> None:
            nonlocal unsure
            try:
                action()
            except (GithubException, OSError) as exc:
                if unsure and isinstance(exc, GithubException) and exc.status == 404:
                    return  # the attempt before did it
                unsure = may_have_happened(exc)
                raise

        self.call(what, attempt)

    def _retrying(self) -> Retrying:
        policy = self.settings.retry
        return Retrying(
            stop=stop_after_attempt(policy.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            before_sleep=_log_retry,
            reraise=True,
        )

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, GithubException):
            if exc.status >= 500:
                return True
            wait = rate_limit_wait(exc, time.time())
            return wait is not None and wait <= self.settings.retry.max_wait_s
        return isinstance(exc, OSError)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = rate_limit_wait(exc, time.time()) if exc else None
        if asked is not None:
            return asked
        # Exponential with jitter, written out: tenacity renamed the parameters of its own.
        backoff = self.settings.retry.backoff_s
        exponential = backoff * 2.0 ** (state.attempt_number - 1)
        return min(exponential, backoff * 8) + random.uniform(0, backoff)

    def _answer_error(self, exc: GithubException, what: str, retrying: Retrying) -> APIError:
        reason = answer_reason(exc)
        return APIError(
            f"GitHub answered {exc.status} {reason} for {what}: {hint(exc)}{_tries(retrying)}",
            status=exc.status,
            reason=reason,
        )


def rate_limit_wait(exc: BaseException, now: float) -> float | None:
    """Seconds GitHub asks us to wait when `exc` is a rate limit, else None."""
    if not isinstance(exc, GithubException) or exc.status not in (403, 429):
        return None
    headers = {k.lower(): str(v) for k, v in (exc.headers or {}).items()}
    if "retry-after" in headers:
        return _seconds(headers["retry-after"])
    if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
        # The reset time is in whole seconds: one more, so as not to wake up a moment early.
        return max(0.0, _seconds(headers["x-ratelimit-reset"]) - now) + 1
    if exc.status == 429 or isinstance(exc, RateLimitExceededException):
        return RATE_LIMIT_DEFAULT_WAIT_S
    return None


def _seconds(text: str) -> float:
    try:
        return max(0.0, float(text))
    except ValueError:
        return RATE_LIMIT_DEFAULT_WAIT_S


def may_have_happened(exc: BaseException) -> bool:
    """Whether a request that failed may have been done all the same: GitHub answered 5xx, or
    its answer was lost (a timeout, a dropped connection). A refused connection never was."""
    if isinstance(exc, GithubException):
        return exc.status >= 500
    return not any(isinstance(cause, ConnectionRefusedError) for cause in _causes(exc))


def answer_reason(exc: GithubException) -> str:
    """GitHub's `message` and the reasons it lists in `errors` ("Validation Failed: body is too
    long (maximum is 65536 characters)"), else the HTTP reason phrase ("Bad Gateway"), on one
    short line."""
    data: Any = exc.data
    message = exc.message or (data.get("message") if isinstance(data, dict) else None)
    if not isinstance(message, str) or not message.strip():
        try:
            message = HTTPStatus(exc.status).phrase
        except ValueError:
            message = "(no message)"
    reasons = error_reasons(data.get("errors") if isinstance(data, dict) else None)
    if reasons:
        message = f"{message.rstrip(' .:')}: {'; '.join(reasons)}"
    line = " ".join(message.split())
    return line if len(line) <= 300 else line[:299] + "…"


def error_reasons(errors: Any) -> list[str]:
    """GitHub's `errors` list as words: each error's `message`, else `field code` ("title
    missing_field"); an error may also be a plain string."""
    reasons = []
    for item in errors if isinstance(errors, list) else ():
        if isinstance(item, str):
            reasons.append(item)
        elif isinstance(item, dict):
            text = item.get("message") or " ".join(
                str(item[key]) for key in ("field", "code") if item.get(key)
            )
            if text:
                reasons.append(str(text))
    return reasons


def hint(exc: GithubException) -> str:
    """What to do about an error answer."""
    wait = rate_limit_wait(exc, time.time())
    if wait is not None:
        resets = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + wait))
        return f"rate limited until {resets}; try again later"
    if exc.status >= 500:
        return "GitHub is having trouble; try again later"
    if exc.status == 403 and "not accessible by integration" in answer_reason(exc).lower():
        return "the token may not do this here (a pull request from a fork gets a read-only token)"
    return _HINTS.get(exc.status, "see GitHub's answer")


def network_reason(exc: BaseException, timeout_s: int) -> str:
    """'connection refused', 'no answer within 10 s', ...: the root cause that requests and
    urllib3 wrap several layers deep."""
    chain = list(_causes(exc))
    if any(isinstance(e, TimeoutError) or "timeout" in type(e).__name__.lower() for e in chain):
        return f"no answer within {timeout_s} s"
    for cause in reversed(chain):
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[0].lower() + cause.strerror[1:]
    return type(exc).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: causes, contexts, urllib3's `reason`, exceptions in `args`."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(current.args)
        todo += [e for e in linked if isinstance(e, BaseException)]


def _tries(retrying: Retrying) -> str:
    attempts = int(retrying.statistics.get("attempt_number", 1))
    return f" (after {attempts} attempts)" if attempts > 1 else ""


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.info("GitHub call failed (%s); retrying in %.1fs", exc, wait)
