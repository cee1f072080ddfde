"""`ci-orchestrator import-github`: the repository's GitHub Actions history, into the journal.

Workflow runs (of every workflow, or of one file), newest first back to `--since`, and for each
the jobs of its latest attempt, become runs and steps: pipeline = the workflow's name (or its
file name when the run has none), one step per job. Run ids are `github-<run id>-<attempt>`, so
importing again adds nothing, and a run already in the journal costs no request for its jobs.
Finished runs that ran nothing (skipped, stale) are not imported; unfinished ones are left for a
later import.

The listing is read without GitHub's `created` filter: a filtered listing stops at 1,000 runs,
while the plain one, newest first, reads back to any date and stops at the first older run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TextIO

from ci_orchestrator.errors import ExitCode
from ci_orchestrator.journal import ImportResult, JournalStore, import_runs, journal_path
from ci_orchestrator.records import AttemptRecord, RunRecord, StepRecord

if TYPE_CHECKING:
    from github.PaginatedList import PaginatedList
    from github.WorkflowJob import WorkflowJob
    from github.WorkflowRun import WorkflowRun

    from ci_orchestrator.github.client import GitHubClient

# A run's conclusion as our run status. Finished runs that ran nothing (NOTHING_RAN) are not
# imported; unfinished runs (and those waiting for approval) are left for a later import.
NOTHING_RAN = ("skipped", "stale")
RUN_STATUS = {
    "success": "passed",
    "neutral": "passed",
    "failure": "failed",
    "timed_out": "failed",
    "startup_failure": "failed",
    "cancelled": "interrupted",
}
JOB_STATUS = {
    "success": "completed",
    "neutral": "completed",
    "failure": "failed",
    "timed_out": "failed",
    "startup_failure": "failed",
    "cancelled": "cancelled",
    "skipped": "skipped",
    "action_required": "skipped",
}
_FINE = (None, "success", "skipped", "neutral")  # step conclusions that are not where it broke


@dataclass(frozen=True)
class ImportOptions:
    workflow: str | None = None  # a workflow file name (ci.yml); None: every workflow
    since: str = "30d"
    token: str | None = None
    journal: str | None = None
    exclude: tuple[str, ...] = ()  # workflow files not to import (their runs use ci-orchestrator)


@dataclass
class Fetched:
    """What reading the history found."""

    runs: list[RunRecord] = field(default_factory=list)
    present: int = 0  # already in the journal: not read again
    unfinished: int = 0
    excluded: int = 0
    idle: int = 0  # finished, but ran nothing (skipped, stale)


@dataclass(frozen=True)
class RunHead:
    """What a listed run says about itself, before its jobs are read."""

    github_id: int
    id: str
    pipeline: str
    workflow: str  # the file name: ci.yml
    status: str | None  # ours (passed, failed, interrupted); None: not to be imported
    idle: bool  # finished, but ran nothing: never to be imported
    created: float
    started: float
    finished: float
    git_sha: str | None
    branch: str | None
    event: str | None
    pr_number: int | None

    @classmethod
    def of(cls, run: WorkflowRun) -> RunHead:
        started = (run.run_started_at or run.created_at).timestamp()
        prs = run.pull_requests
        finished = run.status == "completed"
        return cls(
            github_id=run.id,
            id=f"github-{run.id}-{run.run_attempt or 1}",
            pipeline=run.name or workflow_file(run.path),
            workflow=workflow_file(run.path or ""),
            status=RUN_STATUS.get(run.conclusion or "") if finished else None,
            idle=finished and run.conclusion in NOTHING_RAN,
            created=run.created_at.timestamp(),
            started=started,
            finished=max(started, run.updated_at.timestamp()),
            git_sha=run.head_sha,
            branch=run.head_branch,
            event=run.event,
            pr_number=prs[0].number if prs else None,
        )

    def record(self, steps: Iterable[StepRecord]) -> RunRecord:
        assert self.status is not None
        return RunRecord(
            id=self.id,
            pipeline=self.pipeline,
            status=self.status,
            started_at=self.started,
            finished_at=self.finished,
            duration_ms=(self.finished - self.started) * 1000,
            git_sha=self.git_sha,
            branch=self.branch,
            event=self.event,
            pr_number=self.pr_number,
            trigger="ci",
            steps=unique_names(steps),
        )


def import_github(options: ImportOptions, env: Mapping[str, str], out: TextIO) -> int:
    """Read the history into the journal and print one line of what was added."""
    from ci_orchestrator.github.client import GitHubClient, Settings
    from ci_orchestrator.reporting import since_timestamp

    since = since_timestamp(options.since) or 0.0
    settings = Settings.from_env(env, options.token)
    store = JournalStore(journal_path(options.journal, env))
    try:
        with GitHubClient(settings) as client:
            fetched = fetch_history(client, store, options.workflow, since, options.exclude)
        result = import_runs(store, fetched.runs, source="github")
    finally:
        store.close()
    source = (
        f"{settings.repository} ({options.workflow})" if options.workflow else settings.repository
    )
    out.write(summary(result, fetched, source) + "\n")
    return ExitCode.OK


def fetch_history(
    client: GitHubClient,
    store: JournalStore,
    workflow: str | None,
    since: float,
    exclude: tuple[str, ...] = (),
) -> Fetched:
    """Runs created since `since` that the journal lacks, with their jobs (none of the workflow
    files in `exclude`)."""
    listing, what = run_listing(client, workflow)
    fetched = Fetched()
    for run in client.each(what, listing):
        # Attributes are read inside a call: a lazy object may complete itself with a request.
        head = client.call(what, partial(RunHead.of, run))
        if head.created < since:
            break  # newest first: the rest is older
        if head.workflow in exclude:
            fetched.excluded += 1
        elif head.idle:
            fetched.idle += 1
        elif head.status is None:
            fetched.unfinished += 1
        elif known(store, head.id):
            fetched.present += 1
        else:
            fetched.runs.append(head.record(read_jobs(client, run, head)))
    return fetched


def workflow_file(path: str) -> str:
    """The file name of a run's workflow path: `.github/workflows/ci.yml@main` -> `ci.yml`."""
    return path.partition("@")[0].rstrip("/").rpartition("/")[2]


def run_listing(
    client: GitHubClient, workflow: str | None
) -> tuple[PaginatedList[WorkflowRun], str]:
    """The runs of one workflow file or of all, and the request for messages (no request yet)."""
    if workflow:
        path = f"{client.path}/actions/workflows/{workflow}/runs"
        return client.repo.get_workflow(workflow).get_runs(), f"GET {path}"
    return client.repo.get_workflow_runs(), f"GET {client.path}/actions/runs"


def read_jobs(client: GitHubClient, run: WorkflowRun, head: RunHead) -> list[StepRecord]:
    """The jobs of the run's latest attempt, across pages, as steps."""
    what = f"GET {client.path}/actions/runs/{head.github_id}/jobs"
    jobs = client.call(what, run.jobs)
    return [client.call(what, partial(step_record, job)) for job in client.each(what, jobs)]


def known(store: JournalStore, run_id: str) -> bool:
    """Whether the journal has this run already (then its jobs need not be read)."""
    return bool(store.query("SELECT 1 FROM runs WHERE id = ?", (run_id,)))


def step_record(job: WorkflowJob) -> StepRecord:
    """One job as a step: status from its conclusion, duration from its timings, and the first
    failed step of the job as the reason."""
    conclusion = job.conclusion or ""
    status = JOB_STATUS.get(conclusion, "cancelled")
    started = job.started_at.timestamp() if job.started_at else None
    ended = job.completed_at.timestamp() if job.completed_at else None
    duration = max(0.0, ended - started) * 1000 if started and ended else 0.0
    reason = job_reason(job, conclusion)
    attempts: tuple[AttemptRecord, ...] = ()
    if status != "skipped":
        failed = status == "failed"
        timed_out = conclusion == "timed_out"
        attempts = (AttemptRecord(1, None, duration, timed_out, reason if failed else ""),)
    return StepRecord(
        name=job.name,
        status=status,
        reason=reason,
        duration_ms=duration,
        attempts=attempts,
        started_at=started,
    )


def job_reason(job: WorkflowJob, conclusion: str) -> str:
    """Why a job did not pass, naming the step where it broke: "failed at step 'Run tests'"."""
    broken = next((s.name for s in job.steps or () if s.conclusion not in _FINE), None)
    at = f" at step '{broken}'" if broken else ""
    reasons = {
        "failure": f"failed{at}",
        "timed_out": f"timed out{at}",
        "startup_failure": "could not start",
        "cancelled": f"cancelled{at}",
        "skipped": "skipped by GitHub Actions (its condition or needs not met)",
        "action_required": "waiting for approval",
        "success": "",
        "neutral": "",
    }
    return reasons.get(conclusion, f"did not finish ({job.status})")


def unique_names(steps: Iterable[StepRecord]) -> tuple[StepRecord, ...]:
    """Steps are keyed by name in a run; two jobs of the same name become `name`, `name (2)`."""
    seen: dict[str, int] = {}
    named = []
    for step in steps:
        seen[step.name] = seen.get(step.name, 0) + 1
        count = seen[step.name]
        named.append(step if count == 1 else step._replace(name=f"{step.name} ({count})"))
    return tuple(named)


def summary(result: ImportResult, fetched: Fetched, source: str) -> str:
    """`imported 12 runs (30 jobs) from owner/repo, 3 already present`."""
    jobs = sum(len(run.steps) for run in fetched.runs)
    line = (
        f"imported {result.added} runs ({jobs} jobs) from {source},"
        f" {fetched.present + result.present} already present"
    )
    if fetched.idle:
        line += f", {fetched.idle} skipped or stale (nothing ran)"
    if fetched.excluded:
        line += f", {fetched.excluded} of excluded workflows"
    if fetched.unfinished:
        line += f", {fetched.unfinished} not finished (left for a later import)"
    return line
