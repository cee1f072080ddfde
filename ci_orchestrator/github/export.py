"""A pipeline as a GitHub Actions workflow: GitHub's runners as the distributed engine.

One job per step, `needs:` mirroring the DAG; each job runs its step alone
(`ci-orchestrator run PIPELINE --only STEP --no-deps`) and uploads its journal, and a last job
merges the journals and writes the JUnit XML, the job summary and the pull request comment.
A step's `if:` stays inside ci-orchestrator (the job runs the step, which checks its condition);
its `when:` becomes the job's `if:`.

Pure: a `Pipeline` in, YAML text out. Everything the workflow's shell sees is quoted here, and a
literal `${{` is escaped, so no step name or command can become a GitHub expression.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ci_orchestrator import schema
from ci_orchestrator.config import Pipeline, Step

RUNS_ON = "ubuntu-latest"
JOB_ID = re.compile(r"^[_a-zA-Z][a-zA-Z0-9_-]*$")
# The actions the workflow uses: name -> (commit, release). Pinned by commit by default, because a
# tag can be moved; Dependabot's `github-actions` updates keep both the commit and the comment.
ACTIONS = {
    "actions/checkout": ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "actions/download-artifact": ("d3f86a106a0bac45b974a628896c90dbdf5c8093", "v4.3.0"),
}
REPORT_JOB = "report"
MERGED_JOURNAL = "ci-orchestrator-journal.db"
JUNIT_FILE = "ci-orchestrator-junit.xml"
_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9_-]+")
_WRITES_OUTPUT = re.compile(r'>\s*"?\$\{?CI_ORCHESTRATOR_OUTPUT\b')
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
    install: str  # the pip requirement that provides ci-orchestrator (CLI: this very version)
    pin: str = "sha"  # "sha": actions pinned by commit; "tag": by their major version tag


def github_workflow(pipeline: Pipeline, options: ExportOptions) -> str:
    """The workflow for `pipeline`, as YAML text with a header comment."""
    ids = job_ids(pipeline.steps)
    report_id = unique_id(REPORT_JOB, ids.values())
    jobs: dict[str, Any] = {
        ids[name]: step_job(step, ids, options) for name, step in pipeline.steps.items()
    }
    jobs[report_id] = report_job(list(ids.values()), options)
    workflow = {
        "name": pipeline.name,
        "on": ["push", "pull_request", "workflow_dispatch"],
        "permissions": {"contents": "read"},
        "concurrency": {
            "group": Expression("${{ github.workflow }}-${{ github.ref }}"),
            "cancel-in-progress": Expression("${{ github.event_name == 'pull_request' }}"),
        },
        "jobs": jobs,
    }
    return _header(pipeline, options) + _spaced(_with_comments(_dump(workflow), options))


# --- job ids ---


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


# --- jobs ---


def step_job(step: Step, ids: Mapping[str, str], options: ExportOptions) -> dict[str, Any]:
    """The job that runs one step and uploads its journal."""
    job_id = ids[step.name]
    journal = f"journal-{job_id}.db"
    job: dict[str, Any] = {"name": step.name}
    if step.needs:
        job["needs"] = [ids[need] for need in step.needs]
    if step.when in ("always", "failure"):
        job["if"] = Expression(f"{step.when}()")
    run = shlex.join(
        ["ci-orchestrator", "run", options.target, "--only", step.name, "--no-deps", "--journal"]
    )
    run += f" {journal}"  # a job id: nothing to quote
    # One run id for every job of this workflow run, so the last job merges their journals
    # into one run (from the environment: never `${{ }}` inside `run:`).
    run += ' --run-id "gh-$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT"'
    job["runs-on"] = RUNS_ON
    job["steps"] = [
        *setup_steps(options),
        {"name": f"Run {step.name}", "run": run},
        {
            "name": "Upload the journal",
            "if": Expression("always()"),
            "uses": _action("actions/upload-artifact", options),
            "with": {"name": f"journal-{job_id}", "path": journal, "if-no-files-found": "ignore"},
        },
    ]
    return job


def setup_steps(options: ExportOptions) -> list[dict[str, Any]]:
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


def report_job(needs: Sequence[str], options: ExportOptions) -> dict[str, Any]:
    """The last job: whatever happened, merge the journals and report."""
    merged = Expression("steps.merge.outputs.merged == 'true'")
    return {
        "name": "Report",
        "needs": list(needs),
        "if": Expression("always()"),
        "runs-on": RUNS_ON,
        "permissions": {"contents": "read", "pull-requests": "write"},
        "env": {"CI_ORCHESTRATOR_JOURNAL": MERGED_JOURNAL},
        "steps": [
            *setup_steps(options),
            {
                "name": "Download the journals",
                "uses": _action("actions/download-artifact", options),
                "with": {"pattern": "journal-*", "path": "journals", "merge-multiple": True},
            },
            {"name": "Merge the journals", "id": "merge", "run": MERGE_SCRIPT},
            {"name": "Write JUnit XML and the job summary", "if": merged, "run": REPORT_SCRIPT},
            {
                "name": "Upload JUnit XML",
                "if": merged,
                "uses": _action("actions/upload-artifact", options),
                "with": {"name": "ci-orchestrator-junit", "path": JUNIT_FILE},
            },
            {
                "name": "Comment on the pull request",
                "if": Expression(f"{merged} && github.event.pull_request"),
                "env": {"GITHUB_TOKEN": Expression("${{ github.token }}")},
                "run": "ci-orchestrator comment",
            },
        ],
    }


MERGE_SCRIPT = """\
shopt -s nullglob
exports=()
for db in journals/*.db; do
  ci-orchestrator journal export --journal "$db" > "${db%.db}.jsonl"
  exports+=("${db%.db}.jsonl")
done
if [ "${#exports[@]}" -eq 0 ]; then
  echo "::warning::no step job left a journal to report on"
  exit 0
fi
ci-orchestrator journal import "${exports[@]}"
echo "merged=true" >> "$GITHUB_OUTPUT"
"""
REPORT_SCRIPT = f"""\
ci-orchestrator report --junit {JUNIT_FILE}
ci-orchestrator report --format markdown >> "$GITHUB_STEP_SUMMARY"
"""


def _action(name: str, options: ExportOptions) -> str:
    commit, release = ACTIONS[name]
    return f"{name}@{commit if options.pin == 'sha' else release.split('.')[0]}"


# --- what the export cannot carry over ---


def limitations(pipeline: Pipeline) -> list[str]:
    """Where the exported workflow behaves differently from one `ci-orchestrator run`."""
    dependents = _dependents(pipeline)
    notes = []
    for name, step in pipeline.steps.items():
        if _WRITES_OUTPUT.search(step.run or "") and dependents[name]:
            notes.append(
                f"step {name!r} hands values on through $CI_ORCHESTRATOR_OUTPUT; jobs do not"
                f" share them, so {', '.join(dependents[name])} will not see its CIO_* variables"
            )
        if step.condition and any(pipeline.steps[d].when == "success" for d in dependents[name]):
            notes.append(
                f"step {name!r} has an if: condition; when it is not met its job still succeeds,"
                f" so the jobs after it run (one `ci-orchestrator run` would skip them)"
            )
        if step.when == "failure":
            notes.append(
                f"step {name!r} (when: failure) runs alone in its job, where ci-orchestrator sees"
                " no failed dependency and skips it"
            )
    return notes


def _dependents(pipeline: Pipeline) -> dict[str, list[str]]:
    after: dict[str, list[str]] = {name: [] for name in pipeline.steps}
    for name, step in pipeline.steps.items():
        for need in step.needs:
            after[need].append(name)
    return after


# --- YAML ---


def _header(pipeline: Pipeline, options: ExportOptions) -> str:
    command = shlex.join(["ci-orchestrator", "export", "github-workflow", options.target])
    lines = [
        f"Generated by `{command}`:",
        f"one job per step of the pipeline {pipeline.name!r}, `needs:` mirroring its DAG, and a",
        "last job that merges the steps' journals and reports. Edit the pipeline and export",
        "again rather than editing this file.",
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
            text = text.replace(f"uses: {name}@{commit}\n", f"uses: {name}@{commit} # {release}\n")
    return text


def _spaced(text: str) -> str:
    """A blank line before `jobs:` and between jobs (the only keys alone on a line, two deep)."""
    text = text.replace("\njobs:\n", "\n\njobs:\n")
    return _JOB_KEY.sub("\n\n", text).replace("jobs:\n\n", "jobs:\n")


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
