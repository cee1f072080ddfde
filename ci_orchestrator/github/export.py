"""A pipeline as a GitHub Actions workflow: GitHub's runners as the distributed engine.

One job per step that has a command; a step that is not configured or skipped with `--skip` gets
none, and the jobs after it need what it needed. `needs:` mirrors the DAG. Each job checks out,
sets up Python, installs ci-orchestrator, unpacks the `artifacts:` of the jobs before it, and runs
its step alone after the pipeline's `setup:` (`ci-orchestrator run PIPELINE --only STEP --no-deps
--setup`); it hands its `$CI_ORCHESTRATOR_OUTPUT` values on as a job output, and uploads its own
`artifacts:` and its journal. A last job restores the history from the Actions cache (as
`action.yml` does), merges the journals with a record of the steps no job ran, writes the JUnit
XML, the job summary and the pull request comment, and saves the history.

Conditions are GitHub's to evaluate: `when: failure` is the job's `if: failure()` (a job it needs,
directly or not, failed), `when: always` is `!cancelled()`, and a job GitHub schedules runs its
step (`run --only STEP --no-deps` cuts the needs, so nothing upstream is checked again). A step's
`if:` stays inside ci-orchestrator.

Pure: a `Pipeline` in, YAML text out; and for the jobs' side (`run`, `export github-not-run`),
GitHub's `needs` context in, values and records out. Everything the workflow's shell sees is quoted
here, and a literal `${{` is escaped, so no step name or command can become a GitHub expression.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from ci_orchestrator import graph, schema
from ci_orchestrator.config import SETUP_STEP
from ci_orchestrator.errors import UsageError
from ci_orchestrator.model import Pipeline, Step

if TYPE_CHECKING:
    from ci_orchestrator.gitinfo import RunContext
    from ci_orchestrator.records import RunRecord
    from ci_orchestrator.runner import WorkflowResult

RUNS_ON = "ubuntu-latest"
BRANCHES = ("main",)  # pushes to these run the workflow; pull requests run it as pull_request
JOB_ID = re.compile(r"^[_a-zA-Z][a-zA-Z0-9_-]*$")
# The actions the workflow uses: name -> (commit, release). Pinned by commit by default, because a
# tag can be moved; Dependabot's `github-actions` updates keep both the commit and the comment.
# actions/cache is action.yml's, at the same commit (its `restore` and `save` sub-actions).
ACTIONS = {
    "actions/checkout": ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "actions/download-artifact": ("d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0"),
    "actions/cache": ("5a3ec84eff668545956fd18022155c47e93e2684", "v4.2.3"),
}
REPORT_JOB = "report"
MERGED_JOURNAL = "ci-orchestrator-journal.db"
JUNIT_FILE = "ci-orchestrator-junit.xml"
# GitHub's `needs` context as JSON, set on every job: the values of the jobs before (step jobs)
# and how each job ended (the last job). commands/run.py names it too.
NEEDS_ENV = "CI_ORCHESTRATOR_NEEDS"
VALUES = "values"  # the job output holding CIO_* values as a JSON object
# One run id for every job of a workflow run, so that the last job merges their journals into
# one run (from the environment: never `${{ }}` inside `run:`).
RUN_ID = '"gh-$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT"'
# timeout-minutes: the step's own time (every attempt, its kill grace and the waits between),
# plus this for checking out, installing and the set-up; a step without a timeout gets DEFAULT.
SETUP_MINUTES = 10
DEFAULT_MINUTES = 60
REPORT_MINUTES = 15
KILL_GRACE = 5.0  # the runner's default, shell.py
WHEN_IF = {"failure": "failure()", "always": "!cancelled()"}
UNPACKED = "ci-orchestrator-artifacts"  # under $RUNNER_TEMP: the archives of the jobs before
_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9_-]+")
_VALUE_NAME = re.compile(r"^CIO_[A-Z0-9_]+$")
_JOB_KEY = re.compile(r"\n(?=  [_a-zA-Z][a-zA-Z0-9_-]*:\n)")


class Expression(str):
    """A string that is meant as a GitHub expression, so it is written without escaping."""

    __slots__ = ()


@dataclass(frozen=True)
class ExportOptions:
    """How to export; `target` is how the jobs name the pipeline (a path from the repository
    root, or a template name)."""

    target: str
    python_version: str
    install: str  # the pip requirement that provides ci-orchestrator (CLI: this very source)
    pin: str = "sha"  # "sha": actions pinned by commit; "tag": by their major version tag
    runs_on: str = RUNS_ON
    branches: tuple[str, ...] = BRANCHES


def github_workflow(pipeline: Pipeline, options: ExportOptions) -> str:
    """The workflow for `pipeline`, as YAML text with a header comment; a `UsageError` when a step
    cannot be a job or no step has a command."""
    plan = make_plan(pipeline)
    jobs: dict[str, Any] = {plan.ids[name]: step_job(plan, name, options) for name in plan.needs}
    jobs[plan.report_id] = report_job(plan, options)
    workflow = {
        "name": pipeline.name,
        "on": {
            "push": {"branches": list(options.branches)},
            "pull_request": {},
            "workflow_dispatch": {},
        },
        "permissions": {"contents": "read"},
        "concurrency": {
            "group": Expression("${{ github.workflow }}-${{ github.ref }}"),
            "cancel-in-progress": Expression("${{ github.event_name == 'pull_request' }}"),
        },
        "jobs": jobs,
    }
    return _header(pipeline, options) + _spaced(_with_comments(_dump(workflow), options))


# --- which steps get a job ---


@dataclass(frozen=True)
class Plan:
    """The jobs: `ids` for every step (so they stay the same whichever steps get a job), and for
    each step with a job, in pipeline order, the steps with a job it needs."""

    pipeline: Pipeline
    ids: Mapping[str, str]
    needs: Mapping[str, tuple[str, ...]]
    report_id: str

    def ancestors(self, name: str) -> set[str]:
        return graph.ancestors({n: list(v) for n, v in self.needs.items()}, [name])

    def dependents(self, name: str) -> list[str]:
        return [n for n, needs in self.needs.items() if name in needs]

    def direct(self, name: str) -> list[str]:
        """The steps with a job that `name` names in its own `needs:`."""
        return [need for need in self.pipeline.steps[name].needs if need in self.needs]


def make_plan(pipeline: Pipeline) -> Plan:
    check_exportable(pipeline)
    ids = job_ids(pipeline.steps)
    needs = job_needs(pipeline)
    if not needs:
        raise UsageError(
            f"nothing to export: no step of {pipeline.name!r} has a command (`run:`) and is not"
            " skipped"
        )
    return Plan(pipeline, ids, needs, unique_id(REPORT_JOB, ids.values()))


def check_exportable(pipeline: Pipeline) -> None:
    """Only shell steps can be jobs: a Python callable (the library API) cannot."""
    for name, step in pipeline.steps.items():
        if callable(step.run) or callable(step.condition):
            what = "runs" if callable(step.run) else "has an if: condition that is"
            raise UsageError(
                f"step {name!r} {what} a Python callable, which a workflow cannot run; export a"
                " pipeline file whose steps are shell commands"
            )


def has_job(step: Step) -> bool:
    return step.run is not None and step.skip_reason is None


def job_needs(pipeline: Pipeline) -> dict[str, tuple[str, ...]]:
    """For each step with a job, the steps with a job it needs: a step without one stands for
    what it needs in turn."""
    steps = pipeline.steps
    through: dict[str, tuple[str, ...]] = {}

    def stand_ins(name: str) -> tuple[str, ...]:
        if has_job(steps[name]):
            return (name,)
        if name not in through:
            through[name] = _unique(n for need in steps[name].needs for n in stand_ins(need))
        return through[name]

    return {
        name: _unique(n for need in step.needs for n in stand_ins(need))
        for name, step in steps.items()
        if has_job(step)
    }


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def job_ids(names: Iterable[str]) -> dict[str, str]:
    """A valid, unique job id for each step name, in order; a name that is already a valid id keeps
    it. Ids are unique ignoring case, as GitHub compares them."""
    names = list(names)
    taken: set[str] = set()
    ids: dict[str, str] = {}
    for name in names:
        if JOB_ID.match(name) and name.lower() not in taken:
            ids[name] = name
            taken.add(name.lower())
    for name in names:
        if name not in ids:
            ids[name] = unique_id(_slug(name), taken)
            taken.add(ids[name].lower())
    return {name: ids[name] for name in names}


def unique_id(base: str, taken: Iterable[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is free (ignoring case)."""
    used = {t.lower() for t in taken}
    candidate, number = base, 1
    while candidate.lower() in used:
        number += 1
        candidate = f"{base}-{number}"
    return candidate


def _slug(name: str) -> str:
    slug = _NOT_IN_ID.sub("-", name).strip("-") or "step"
    return slug if JOB_ID.match(slug) else f"step-{slug}"


# --- a step's job ---


def step_job(plan: Plan, name: str, options: ExportOptions) -> dict[str, Any]:
    """The job that runs one step: its files in, the step, its values and files out."""
    step = plan.pipeline.steps[name]
    job: dict[str, Any] = {"name": name}
    if plan.needs[name]:
        job["needs"] = [plan.ids[need] for need in plan.needs[name]]
    condition = job_condition(plan, name)
    if condition is not None:
        job["if"] = Expression(condition)
    job["runs-on"] = options.runs_on
    job["timeout-minutes"] = timeout_minutes(step)
    if plan.dependents(name):
        job["outputs"] = {VALUES: Expression(f"${{{{ steps.run.outputs.{VALUES} }}}}")}
    job["env"] = {NEEDS_ENV: Expression("${{ toJSON(needs) }}")}
    job["steps"] = [
        *preparation(options),
        *download_steps(plan, name, options),
        {"name": f"Run {name}", "id": "run", "run": run_command(plan, name, options)},
        *upload_steps(step, plan.ids[name], options),
        {
            "name": "Upload the journal",
            "if": Expression("always()"),
            "uses": _action("actions/upload-artifact", options),
            "with": {
                "name": f"journal-{plan.ids[name]}",
                "path": f"journal-{plan.ids[name]}.db",
                "if-no-files-found": "ignore",
            },
        },
    ]
    return job


def job_condition(plan: Plan, name: str) -> str | None:
    """The job's `if:`, as `run` decides: `when: failure` and `when: always` as GitHub's status
    functions; with `when: success`, GitHub's default (every job it needs succeeded), except that
    a job needed through a step without a job only has to be over: a step skipped on purpose
    does not hold back the steps after it."""
    step = plan.pipeline.steps[name]
    if step.when in WHEN_IF:
        return WHEN_IF[step.when]
    direct = plan.direct(name)
    if set(direct) == set(plan.needs[name]):
        return None
    passed = [f"needs.{plan.ids[need]}.result == 'success'" for need in direct]
    return " && ".join(["!cancelled()", *passed])


def run_command(plan: Plan, name: str, options: ExportOptions) -> str:
    args = ["ci-orchestrator", "run", options.target, "--only", name, "--no-deps"]
    if plan.pipeline.setup:
        args.append("--setup")
    args += ["--journal", f"journal-{plan.ids[name]}.db"]  # a job id: nothing to quote
    return f"{shlex.join(args)} --run-id {RUN_ID}"


def timeout_minutes(step: Step) -> int:
    """Every attempt with its kill grace, the waits between them, and the set-up's slack."""
    if step.timeout is None:
        return DEFAULT_MINUTES
    retry = step.retry
    attempt = step.timeout + (step.kill_grace if step.kill_grace is not None else KILL_GRACE)
    ceiling = retry.max_delay if retry.max_delay is not None else max(retry.delay, 3600.0)
    jitter = retry.jitter if retry.jitter is not None else retry.delay / 10
    waits = sum(
        min(retry.delay * retry.backoff**n, ceiling) + jitter for n in range(retry.attempts - 1)
    )
    return SETUP_MINUTES + math.ceil((retry.attempts * attempt + waits) / 60)


def preparation(options: ExportOptions) -> list[dict[str, Any]]:
    """Check out (without keeping the token on disk), set up Python, install ci-orchestrator."""
    return [
        {
            "uses": _action("actions/checkout", options),
            "with": {"persist-credentials": False},
        },
        {
            "uses": _action("actions/setup-python", options),
            "with": {"python-version": options.python_version},
        },
        {
            "name": "Install ci-orchestrator",
            "run": shlex.join(["python", "-m", "pip", "install", options.install]),
        },
    ]


# --- files between jobs: a tar archive per job, so paths, modes and hidden files survive ---


def download_steps(plan: Plan, name: str, options: ExportOptions) -> list[dict[str, Any]]:
    """The archives of every job before this one that has `artifacts:`, unpacked in place. By
    pattern, which matches nothing when that job did not run (a `when: always` job after a skip)."""
    before = plan.ancestors(name)
    producers = [n for n in plan.needs if n in before and plan.pipeline.steps[n].artifacts]
    if not producers:
        return []
    steps: list[dict[str, Any]] = [
        {
            "name": f"Download the artifacts of {producer}",
            "uses": _action("actions/download-artifact", options),
            "with": {
                "pattern": artifact_name(plan.ids[producer]),
                "path": Expression(f"${{{{ runner.temp }}}}/{UNPACKED}"),
                "merge-multiple": True,
            },
        }
        for producer in producers
    ]
    steps.append({"name": "Unpack the artifacts", "run": UNPACK_SCRIPT})
    return steps


def upload_steps(step: Step, job_id: str, options: ExportOptions) -> list[dict[str, Any]]:
    """After the step, whatever its result: its `artifacts:` in one archive, then uploaded."""
    if not step.artifacts:
        return []
    archive = Expression(f"${{{{ runner.temp }}}}/{artifact_name(job_id)}.tar")
    return [
        {
            "name": f"Pack the artifacts of {step.name}",
            "if": Expression("!cancelled()"),
            "env": {"STEP": step.name, "ARTIFACTS": "\n".join(step.artifacts), "ARCHIVE": archive},
            "run": PACK_SCRIPT,
        },
        {
            "name": f"Upload the artifacts of {step.name}",
            "if": Expression("!cancelled()"),
            "uses": _action("actions/upload-artifact", options),
            "with": {"name": artifact_name(job_id), "path": archive, "if-no-files-found": "ignore"},
        },
    ]


def artifact_name(job_id: str) -> str:
    return f"artifacts-{job_id}"


# One glob per line in $ARTIFACTS, expanded by bash (`**` included, IFS empty: no word splitting);
# one that matches nothing is a warning, and the step's result stands.
PACK_SCRIPT = """\
shopt -s nullglob globstar
IFS=
files=()
while read -r pattern; do
  [ -n "$pattern" ] || continue
  found=0
  for path in $pattern; do
    if [ -e "$path" ]; then
      files+=("$path")
      found=1
    fi
  done
  if [ "$found" = 0 ]; then
    echo "::warning::${STEP//%/%25}: artifacts: $pattern matched no file; no job after it gets it"
  fi
done <<< "$ARTIFACTS"
if [ "${#files[@]}" -eq 0 ]; then
  tar -cf "$ARCHIVE" --files-from /dev/null
else
  tar -cf "$ARCHIVE" -- "${files[@]}"
fi
"""
UNPACK_SCRIPT = f"""\
shopt -s nullglob
for archive in "$RUNNER_TEMP"/{UNPACKED}/*.tar; do
  tar -xf "$archive"
done
"""


# --- the last job ---


def report_job(plan: Plan, options: ExportOptions) -> dict[str, Any]:
    """Unless the run was cancelled: the history, the journals merged, the reports."""
    merged = "steps.merge.outputs.merged == 'true'"
    return {
        "name": "Report",
        "needs": [plan.ids[name] for name in plan.needs],
        "if": Expression("!cancelled()"),
        "runs-on": options.runs_on,
        "timeout-minutes": REPORT_MINUTES,
        "permissions": {"contents": "read", "pull-requests": "write"},
        "env": {"CI_ORCHESTRATOR_JOURNAL": MERGED_JOURNAL},
        "steps": [
            *preparation(options),
            *history_restore(options),
            {
                "name": "Download the journals",
                "uses": _action("actions/download-artifact", options),
                "with": {"pattern": "journal-*", "path": "journals", "merge-multiple": True},
            },
            {
                "name": "Record the steps no job ran",
                "env": {NEEDS_ENV: Expression("${{ toJSON(needs) }}")},
                "run": not_run_command(plan, options),
            },
            {"name": "Merge the journals", "id": "merge", "run": MERGE_SCRIPT},
            {
                "name": "Write JUnit XML and the job summary",
                "if": Expression(merged),
                "run": REPORT_SCRIPT,
            },
            {
                "name": "Upload JUnit XML",
                "if": Expression(merged),
                "uses": _action("actions/upload-artifact", options),
                "with": {"name": "ci-orchestrator-junit", "path": JUNIT_FILE},
            },
            {
                "name": "Comment on the pull request",
                "if": Expression(f"{merged} && github.event.pull_request"),
                "env": {"GITHUB_TOKEN": Expression("${{ github.token }}")},
                "run": f"ci-orchestrator comment --run-id {RUN_ID}",
            },
            *history_save(options, merged),
        ],
    }


def not_run_command(plan: Plan, options: ExportOptions) -> str:
    args = ["ci-orchestrator", "export", "github-not-run", options.target]
    for name, step in plan.pipeline.steps.items():
        if step.run is not None and step.skip_reason is not None:
            args += ["--skip", name]
    return f"mkdir -p journals\n{shlex.join(args)} --run-id {RUN_ID} > journals/not-run.jsonl\n"


# The history, as action.yml keeps it (ci_orchestrator/github/cache.py): restored before the
# journals are merged into it, then set aside, merged with the newest cache, pruned and saved.
_HISTORY_ENV = {"INPUT_JOURNAL_PATH": MERGED_JOURNAL}
_HISTORY_KEY = "steps.history.outputs.key != ''"
_CACHE_WITH = {
    "path": Expression("${{ steps.history.outputs.path }}"),
    "key": Expression("${{ steps.history.outputs.key }}"),
    "restore-keys": Expression("${{ steps.history.outputs.restore-keys }}"),
}


def _history_step(name: str, mode: str, condition: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name}
    if condition is not None:
        step["if"] = Expression(condition)
    step["env"] = dict(_HISTORY_ENV)
    step["run"] = f"python -m ci_orchestrator.github.action_env {mode}"
    return step


def history_restore(options: ExportOptions) -> list[dict[str, Any]]:
    find = _history_step("Find the pipeline's history", "history-keys")
    return [
        {"name": find["name"], "id": "history", "env": find["env"], "run": find["run"]},
        {
            "name": "Restore the pipeline's history",
            "if": Expression(_HISTORY_KEY),
            "uses": _action("actions/cache", options, "restore"),
            "with": dict(_CACHE_WITH),
        },
        _history_step("Check the restored history", "history-restored", _HISTORY_KEY),
    ]


def history_save(options: ExportOptions, merged: str) -> list[dict[str, Any]]:
    """After the reports, even when one of them failed; a cache problem never fails the job."""
    condition = f"always() && {_HISTORY_KEY} && {merged}"
    steps = [
        _history_step("Set this job's history aside", "history-stash", condition),
        {
            "name": "Restore the newest history again",
            "if": Expression(condition),
            "uses": _action("actions/cache", options, "restore"),
            "with": dict(_CACHE_WITH),
        },
        _history_step("Merge and prune the history", "history-merge", condition),
        {
            "name": "Save the pipeline's history",
            "if": Expression(condition),
            "uses": _action("actions/cache", options, "save"),
            "with": {"path": _CACHE_WITH["path"], "key": _CACHE_WITH["key"]},
        },
    ]
    return [{"name": s["name"], "if": s["if"], "continue-on-error": True, **s} for s in steps]


MERGE_SCRIPT = """\
shopt -s nullglob
journals=(journals/*.db)
if [ "${#journals[@]}" -eq 0 ]; then
  echo "::warning::no step job left a journal to report on"
fi
for db in "${journals[@]}"; do
  ci-orchestrator journal export --journal "$db" > "${db%.db}.jsonl"
done
runs=(journals/*.jsonl)
[ "${#runs[@]}" -gt 0 ] || exit 0
ci-orchestrator journal import "${runs[@]}"
echo "merged=true" >> "$GITHUB_OUTPUT"
"""
REPORT_SCRIPT = f"""\
ci-orchestrator report --run-id {RUN_ID} --junit {JUNIT_FILE}
ci-orchestrator report --run-id {RUN_ID} --format markdown >> "$GITHUB_STEP_SUMMARY"
"""


def _action(name: str, options: ExportOptions, sub: str = "") -> str:
    commit, release = ACTIONS[name]
    path = f"{name}/{sub}" if sub else name
    return f"{path}@{commit if options.pin == 'sha' else release.split('.')[0]}"


# --- inside the jobs: values in and out, and the steps no job ran ---


def values_from_needs(needs_json: str) -> dict[str, str]:
    """The CIO_* variables the jobs a job needs handed on: GitHub's `needs` context (as JSON),
    each job's `values` output a JSON object. Anything else in it is ignored."""
    values: dict[str, str] = {}
    for job in _object(needs_json).values():
        outputs = job.get("outputs") if isinstance(job, dict) else None
        handed = _object(outputs.get(VALUES)) if isinstance(outputs, dict) else {}
        values.update(
            {k: v for k, v in handed.items() if _VALUE_NAME.match(k) and isinstance(v, str)}
        )
    return values


def values_output(needs_json: str, result: WorkflowResult, mask: Callable[[str], str] = str) -> str:
    """This job's `values` output: what it got from the jobs before and what its steps wrote to
    $CI_ORCHESTRATOR_OUTPUT (masked), as a JSON object of CIO_<STEP>_<KEY> names."""
    from ci_orchestrator.runner import output_values

    values = values_from_needs(needs_json)
    for name, step in result.steps.items():
        if name != SETUP_STEP:
            values.update({k: mask(v) for k, v in output_values(step).items()})
    return json.dumps(values, sort_keys=True)


def not_run_steps(pipeline: Pipeline, needs_json: str) -> list[tuple[Step, str]]:
    """The steps no job ran, with the reason a local run would give: not configured, skipped by
    --skip, or skipped by GitHub as `needs`/`if:` decided (from the last job's `needs` context)."""
    plan = make_plan(pipeline)
    jobs = _object(needs_json)
    results = {
        name: str(jobs[plan.ids[name]].get("result"))
        for name in plan.needs
        if isinstance(jobs.get(plan.ids[name]), dict)
    }
    found = []
    for name, step in pipeline.steps.items():
        if name not in plan.needs:
            found.append((step, step.skip_reason or "not configured"))
        elif results.get(name) == "skipped":
            found.append((step, _skipped_by_github(step, plan.direct(name), results)))
    return found


_ENDED = {"failure": "failed", "skipped": "was skipped", "cancelled": "cancelled"}


def _skipped_by_github(step: Step, needs: Sequence[str], results: Mapping[str, str]) -> str:
    if step.when == "failure":
        return "nothing it depends on failed (when: failure)"
    for need in needs:
        if results.get(need, "success") != "success":
            return f"dependency {need!r} {_ENDED.get(results[need], results[need])}"
    return "skipped by GitHub"


def not_run_record(
    pipeline: Pipeline, needs_json: str, run_id: str, context: RunContext
) -> RunRecord | None:
    """The steps no job ran as a part of run `run_id`, for `journal import` to merge with the
    jobs' parts; None when every step had a job that ran."""
    from ci_orchestrator.records import RunRecord, StepRecord

    steps = tuple(
        StepRecord(step.name, "skipped", reason, command=step.run, needs=step.needs)
        for step, reason in not_run_steps(pipeline, needs_json)
    )
    if not steps:
        return None
    now = time.time()
    return RunRecord(
        id=run_id,
        pipeline=pipeline.name,
        status="passed",
        started_at=now,
        finished_at=now,
        duration_ms=0.0,
        git_sha=context.sha,
        branch=context.branch,
        event=context.event,
        pr_number=context.pr_number,
        trigger=context.trigger,
        steps=steps,
    )


def _object(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# --- what the export cannot carry over ---


def limitations(pipeline: Pipeline) -> list[str]:
    """Where the exported workflow behaves differently from one `ci-orchestrator run`."""
    return [*condition_notes(pipeline), *file_notes(pipeline)]


def condition_notes(pipeline: Pipeline) -> list[str]:
    needs = job_needs(pipeline)
    notes = []
    for name, step in pipeline.steps.items():
        after = [n for n, its in needs.items() if name in its]
        if (
            name in needs
            and step.condition
            and any(pipeline.steps[n].when == "success" for n in after)
        ):
            notes.append(
                f"step {name!r} has an if: condition; when it is not met its job still succeeds,"
                f" so the jobs after it run (one `ci-orchestrator run` would skip them)"
            )
    return notes


# Where steps commonly leave files for later ones; any top folder of a `junit:` or `artifacts:`
# path counts too.
COMMON_FOLDERS = ("dist", "build", "reports")
_OUTPUT_FLAG = re.compile(
    r"(?:(?:^|\s)(?:-[wod]|--(?:out-?dir|output(?:-dir)?|wheel-dir|dist-dir|dest|junit-?xml"
    r"|junit-xml|cov-report[= ]\w+:))[= ]?\s*['\"]?|>>?\s*|mkdir\s+(?:-p\s+)?)$"
)


def file_notes(pipeline: Pipeline) -> list[str]:
    """A step that reads a path that a step it needs writes, where no `artifacts:` carries it to
    its job, as far as the pipeline file shows: `junit:` and `artifacts:` paths, and commands that
    name dist/, build/, reports/ or one of those paths (after an output option such as `-w`,
    `-o`, `--junitxml=`, or `>`: a write; elsewhere: a read)."""
    steps = {n: s for n, s in pipeline.steps.items() if has_job(s)}
    paths = _candidate_paths(steps.values())
    writes = {n: _declared(s) | _mentions(s.run or "", paths, write=True) for n, s in steps.items()}
    dag = pipeline.graph()
    notes = []
    for reader, step in steps.items():
        before = graph.ancestors(dag, [reader])
        for path in sorted(_mentions(step.run or "", paths, write=False) - writes[reader]):
            shown = f"{path}/" if paths[path] else path
            notes += [
                f"step {reader!r} reads {shown}, which step {writer!r} writes, but jobs share no"
                f" files: give {writer!r} `artifacts:` for {shown}"
                for writer in steps
                if writer in before
                and path in writes[writer]
                and path not in _declared(steps[writer], artifacts_only=True)
            ]
    return notes


def _top(pattern: str) -> tuple[str, bool] | None:
    """The first part of a path and whether it is a folder; None for a glob at the top."""
    first, slash, _ = pattern.removeprefix("./").partition("/")
    if not first or any(c in first for c in "*?["):
        return None
    return first, bool(slash)


def _declared(step: Step, artifacts_only: bool = False) -> set[str]:
    patterns = step.artifacts if artifacts_only else (*step.junit, *step.artifacts)
    return {top[0] for top in map(_top, patterns) if top}


def _candidate_paths(steps: Iterable[Step]) -> dict[str, bool]:
    paths = dict.fromkeys(COMMON_FOLDERS, True)
    for step in steps:
        for top in map(_top, (*step.junit, *step.artifacts)):
            if top:
                paths[top[0]] = paths.get(top[0], False) or top[1]
    return paths


def _mentions(command: str, paths: Mapping[str, bool], *, write: bool) -> set[str]:
    """The paths `command` names for writing (after an output option or `>`) or for reading (a
    folder named with its slash, or a file, anywhere else)."""
    found = set()
    for path, folder in paths.items():
        for match in re.finditer(
            rf"(?<![\w.$/-])(?:\./)?{re.escape(path)}(?=/|[\s'\";|&)]|$)", command
        ):
            after_flag = bool(_OUTPUT_FLAG.search(command[: match.start()]))
            with_slash = command[match.end() : match.end() + 1] == "/"
            if after_flag == write and (after_flag or with_slash or not folder):
                found.add(path)
    return found


# --- YAML ---


def _header(pipeline: Pipeline, options: ExportOptions) -> str:
    command = shlex.join(["ci-orchestrator", "export", "github-workflow", options.target])
    lines = [
        f"Generated by `{command}`:",
        f"one job per step of the pipeline {pipeline.name!r}, `needs:` mirroring its DAG, and a",
        "last job that merges the steps' journals and reports. Edit the pipeline and export",
        "again rather than editing this file.",
        f"It runs for a push to {', '.join(options.branches)} and for pull requests (a pull",
        "request's pushes run once, as pull_request: its branch is none of those).",
    ]
    return "".join(f"# {_one_line(line)}\n" for line in lines)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _with_comments(text: str, options: ExportOptions) -> str:
    """The comments a reviewer looks for, which PyYAML cannot write: why each permission is
    there, and the release a commit pin stands for (`uses: owner/name@commit # vX.Y.Z`)."""
    text = text.replace("\n  contents: read\n", "\n  contents: read # to check out the code\n", 1)
    text = text.replace(
        "  pull-requests: write\n", "  pull-requests: write # to post the pull request comment\n"
    )
    if options.pin == "sha":
        for name, (commit, release) in ACTIONS.items():
            pinned = re.compile(rf"(uses: {re.escape(name)}(?:/[\w-]+)?@{commit})\n")
            text = pinned.sub(rf"\1 # {release}\n", text)
    return text


def _spaced(text: str) -> str:
    """A blank line before `jobs:` and between jobs (the only keys alone on a line, two deep)."""
    head, _, jobs = text.partition("\njobs:\n")
    return f"{head}\n\njobs:\n" + _JOB_KEY.sub("\n\n", "\n" + jobs)[1:].lstrip("\n")


def _literal(text: str) -> str:
    """GitHub evaluates `${{ ... }}` in almost every string; this one stays as written."""
    return text.replace("${{", "${{ '${{' }}")


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as workflows are usually written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# YAML 1.2 booleans, as GitHub reads workflows: `on` is a plain key, not the boolean True.
_Dumper: type[Any] = schema.yaml12_loader(_IndentedDumper)


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", _literal(text), style=style)


def _represent_expression(dumper: yaml.SafeDumper, text: Expression) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(text))


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Expression, _represent_expression)


def _dump(data: Mapping[str, Any]) -> str:
    return str(yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000, allow_unicode=True))
