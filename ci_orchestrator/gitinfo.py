"""Where a run happens: commit, branch, ref, default branch, event, pull request, and what
triggered it.

In GitHub Actions everything comes from the environment and the event file; locally from git.
What a pull request's author chooses (the head branch's name) never decides whether a deploy-like
step runs: steps get the event and the ref GitHub ran for, and the default branch from the event's
repository (see `RunContext.env`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from ci_orchestrator.gitdir import outside_repository


class RunContext(NamedTuple):
    sha: str | None = None
    branch: str | None = None
    default_branch: str | None = None
    event: str | None = None
    pr_number: int | None = None
    trigger: str = "local"  # local | ci | pre-push
    ref: str | None = None  # refs/heads/main; refs/pull/12/merge for a pull request
    url: str | None = None  # the GitHub Actions run (attempt) this runs in

    @property
    def event_name(self) -> str:
        """GitHub's event name in Actions; `pre-push` in the hook; `local` anywhere else."""
        if self.event:
            return self.event
        return "pre-push" if self.trigger == "pre-push" else "local"

    def env(self) -> dict[str, str]:
        """What steps see of it. Deploy-like `if:` conditions use CI_ORCHESTRATOR_EVENT and
        CI_ORCHESTRATOR_REF against CI_ORCHESTRATOR_DEFAULT_BRANCH: a pull request's author
        chooses its branch name (CI_ORCHESTRATOR_BRANCH), never the event or the ref."""
        values = {
            "CI_ORCHESTRATOR_SHA": self.sha,
            "CI_ORCHESTRATOR_BRANCH": self.branch,
            "CI_ORCHESTRATOR_DEFAULT_BRANCH": self.default_branch,
            "CI_ORCHESTRATOR_TRIGGER": self.trigger,
            "CI_ORCHESTRATOR_EVENT": self.event_name,
            "CI_ORCHESTRATOR_REF": self.ref,
            "CI_ORCHESTRATOR_PR": None if self.pr_number is None else str(self.pr_number),
        }
        # Unknown is exported empty, so that a value in the runner's own environment never
        # stands in for it.
        return {k: v or "" for k, v in values.items()}


GIT_TIMEOUT_S = 10.0
_HEAD = ("rev-parse", "HEAD", "--abbrev-ref", "HEAD")
_ORIGIN_HEAD = ("symbolic-ref", "--short", "refs/remotes/origin/HEAD")
_CONFIGURED_DEFAULT = ("config", "init.defaultBranch")


def _read_git(cwd: Path | None) -> tuple[list[str], list[str], list[str]]:
    """What git answers for HEAD, origin/HEAD and, only when origin/HEAD is unset, the
    configured default branch: the processes overlap (origin/HEAD's first, as the third waits
    for its answer), so the wall time is about one process's, not the sum of them."""
    origin = _start(_ORIGIN_HEAD, cwd)
    processes = [origin, _start(_HEAD, cwd)]
    try:
        default = _output(origin)
        configured = None if default else _start(_CONFIGURED_DEFAULT, cwd)
        processes.append(configured)
        return _output(processes[1]), default, _output(configured)
    finally:
        for process in processes:
            if process is not None and process.returncode is None:
                process.kill()
                process.wait()
                if process.stdout is not None:
                    process.stdout.close()


def _start(args: tuple[str, ...], cwd: Path | None) -> subprocess.Popen[str] | None:
    try:
        return subprocess.Popen(
            ["git", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    except OSError:
        return None


def _output(process: subprocess.Popen[str] | None) -> list[str]:
    if process is None:
        return []
    try:
        out, _ = process.communicate(timeout=GIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return []
    return out.split() if process.returncode == 0 else []


def read_event(env: Mapping[str, str]) -> dict[str, Any]:
    """The GitHub event payload, or {} when there is none or it cannot be read."""
    import json

    path = env.get("GITHUB_EVENT_PATH")
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pr_number_from_event(event_name: str | None, payload: Mapping[str, Any]) -> int | None:
    """The pull request of a pull_request(_target) or workflow_run event, if any."""
    if event_name in ("pull_request", "pull_request_target") or "pull_request" in payload:
        number = (payload.get("pull_request") or {}).get("number", payload.get("number"))
        return number if isinstance(number, int) else None
    if event_name == "workflow_run" or "workflow_run" in payload:
        prs = (payload.get("workflow_run") or {}).get("pull_requests") or []
        number = prs[0].get("number") if prs and isinstance(prs[0], dict) else None
        return number if isinstance(number, int) else None
    return None


def detect(env: Mapping[str, str], cwd: Path | None = None) -> RunContext:
    """Where this run happens: from `env` in GitHub Actions, else from git at `cwd` (default:
    here). Outside any repository (`outside_repository`) git could only fail to read HEAD and
    origin/HEAD, so only the configured default branch is asked; in a repository the git processes
    overlap (`_read_git`)."""
    if env.get("GITHUB_ACTIONS") == "true":
        return _from_github(env)
    trigger = "pre-push" if env.get("CI_ORCHESTRATOR_TRIGGER") == "pre-push" else "local"
    if env.get("CI", "").lower() in ("true", "1"):
        trigger = "ci"
    if outside_repository(cwd):
        head: list[str] = []
        default: list[str] = []
        configured = _output(_start(_CONFIGURED_DEFAULT, cwd))
    else:
        head, default, configured = _read_git(cwd)
    branch = head[1] if len(head) > 1 and head[1] != "HEAD" else None
    return RunContext(
        sha=head[0] if head else None,
        branch=branch,
        default_branch=default[0].split("/", 1)[-1] if default else _or_main(configured),
        event=None,
        trigger=trigger,
        ref=f"refs/heads/{branch}" if branch else None,
    )


def _or_main(configured: list[str]) -> str:
    """`git config init.defaultBranch`'s answer, or git's own default."""
    return configured[0] if configured else "main"


def _from_github(env: Mapping[str, str]) -> RunContext:
    payload = read_event(env)
    event = env.get("GITHUB_EVENT_NAME")
    return RunContext(
        sha=env.get("GITHUB_SHA"),
        branch=env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
        default_branch=_payload_default_branch(payload),
        event=event,
        pr_number=pr_number_from_event(event, payload),
        trigger="ci",
        ref=env.get("GITHUB_REF") or None,
        url=actions_run_url(env),
    )


def actions_run_url(env: Mapping[str, str]) -> str | None:
    """The page of this GitHub Actions run at this attempt (where its logs are), or None.
    `CI_ORCHESTRATOR_JOB_ID`, a job's numeric id, makes it the job's page."""
    server, repo, run_id = (
        env.get(n, "") for n in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    )
    if env.get("GITHUB_ACTIONS") != "true" or not (server and repo and run_id.isdigit()):
        return None
    url = f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}"
    job, attempt = env.get("CI_ORCHESTRATOR_JOB_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "")
    if job.isdigit():
        return f"{url}/job/{job}"
    return f"{url}/attempts/{attempt}" if attempt.isdigit() else url


def _payload_default_branch(payload: Mapping[str, Any]) -> str | None:
    """The repository's default branch as the event says (the base repository for a pull request).
    None when the event does not say: a guess could let a deploy-like step run."""
    repo = payload.get("repository")
    branch = repo.get("default_branch") if isinstance(repo, dict) else None
    return branch if isinstance(branch, str) and branch else None
