"""The composite action: its metadata (schema, zizmor, docs and CLI in sync) and its Python entry
point run as GitHub runs it, in a subprocess with the variables the runner sets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ci_orchestrator import schema
from ci_orchestrator.cli import cli
from ci_orchestrator.errors import UsageError
from ci_orchestrator.github.action_env import (
    INPUT_ENV,
    ActionInputs,
    comment_arguments,
    read_inputs,
    run_arguments,
)
from ci_orchestrator.github.cli import comment
from tests.github_server import (
    USER_TOKEN,
    FakeGitHub,
    github_fixture,  # noqa: F401 (the `github` fixture)
)
from tests.test_actions_mode import read_outputs

Write = Callable[[str, str], Path]

ROOT = Path(__file__).parent.parent
ACTION = ROOT / "action.yml"
DOCS = ROOT / "docs" / "action.md"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
_Loader = schema.yaml12_loader(yaml.SafeLoader)

# Inputs that action.yml uses itself instead of handing them to action_env.
HISTORY_INPUTS = ("history", "history-key", "history-days")  # the history steps read them
ACTION_ONLY_INPUTS = {"github-token", "python-version", "working-directory", *HISTORY_INPUTS}


# --- helpers shared with test_export.py ---


def load_yaml(path: Path) -> Any:
    """YAML as GitHub reads it (1.2 booleans: `on` is a key)."""
    return yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader with YAML 1.2 booleans


def check_jsonschema(schema_name: str, *files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of its built-in (vendored, offline) schemas."""
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", schema_name, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def zizmor_findings(*paths: Path) -> list[dict[str, Any]]:
    """zizmor's findings (regular persona) as JSON, with every online audit and request off."""
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN")}
    done = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-exit-codes", "--format", "json"]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        env={**env, "ZIZMOR_OFFLINE": "true", "NO_COLOR": "1"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    findings: list[dict[str, Any]] = json.loads(done.stdout)
    return findings


def summarize(findings: list[dict[str, Any]]) -> list[str]:
    return [f"{f['ident']} ({f['determinations']['severity']})" for f in findings]


def serious(findings: list[dict[str, Any]]) -> list[str]:
    """Template injections, and anything of medium or high severity."""
    return [
        summary
        for finding, summary in zip(findings, summarize(findings), strict=True)
        if finding["ident"] == "template-injection"
        or finding["determinations"]["severity"] in ("Medium", "High")
    ]


def run_scripts(document: Mapping[str, Any]) -> list[str]:
    """Every `run:` of an action's or a workflow's steps."""
    steps = list(document.get("runs", {}).get("steps", []))
    for job in document.get("jobs", {}).values():
        steps += job.get("steps", [])
    return [step["run"] for step in steps if "run" in step]


# --- metadata ---


def test_action_validates_against_the_actions_schema() -> None:
    done = check_jsonschema("vendor.github-actions", ACTION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_validate_against_the_workflows_schema() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "nightly-health.yml"}
    done = check_jsonschema("vendor.github-workflows", *WORKFLOWS)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_no_expression_inside_a_run_script(path: Path) -> None:
    scripts = run_scripts(load_yaml(path))
    assert scripts
    for script in scripts:
        assert "${{" not in script


def test_zizmor_finds_nothing_serious_in_the_action_and_workflows() -> None:
    assert summarize(zizmor_findings(ACTION)) == []
    # ci.yml's `uses: ./` is reported as low (zizmor prefers a newer self-repository syntax).
    assert serious(zizmor_findings(*WORKFLOWS, ROOT / ".pre-commit-hooks.yaml")) == []


def test_zizmor_would_report_an_injected_input(tmp_path: Path) -> None:
    """The check above can fail: an input in a script is a template injection, offline too."""
    bad = load_yaml(ACTION)
    bad["runs"]["steps"][1]["run"] = (
        "echo ${{ inputs.steps }} ${{ github.event.pull_request.title }}"
    )
    path = tmp_path / "action.yml"
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    assert "template-injection (High)" in summarize(zizmor_findings(path))


def test_every_input_passes_through_env() -> None:
    """The run step gets each of action_env's inputs in the variable action_env reads."""
    action = load_yaml(ACTION)
    steps = {step.get("id"): step for step in action["runs"]["steps"]}
    env = steps["run"]["env"]
    assert env == {var: f"${{{{ inputs.{name} }}}}" for name, var in INPUT_ENV.items()}
    assert set(action["inputs"]) == set(INPUT_ENV) | ACTION_ONLY_INPUTS
    assert "GITHUB_TOKEN" not in env  # the pipeline's steps never see the token


def test_comment_step_keeps_the_pipelines_result() -> None:
    action = load_yaml(ACTION)
    [step] = [s for s in action["runs"]["steps"] if s["name"] == "Comment on the pull request"]
    assert step["continue-on-error"] is True
    assert step["if"].startswith("always() && inputs.comment == 'true'")
    assert step["env"]["GITHUB_TOKEN"] == "${{ inputs.github-token }}"
    assert step["env"]["RUN_ID"] == "${{ steps.run.outputs.run-id }}"
    assert action["inputs"]["github-token"]["default"] == "${{ github.token }}"


def _docs_table(section: str) -> dict[str, str]:
    """`name -> default column` of the table under `## section` in docs/action.md."""
    text = DOCS.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \|([^|]*)\|", text, re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_docs_describe_every_input_and_output() -> None:
    action = load_yaml(ACTION)
    documented_inputs = _docs_table("Inputs")
    assert set(documented_inputs) == set(action["inputs"])
    for name, spec in action["inputs"].items():
        assert spec["description"].strip()
        if spec.get("default"):
            assert f"`{spec['default']}`" == documented_inputs[name], name
    assert set(_docs_table("Outputs")) == set(action["outputs"])
    for name, spec in action["outputs"].items():
        assert spec["description"].strip()
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def _passed_options(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def test_the_options_the_action_passes_exist_in_the_cli() -> None:
    every_input = ActionInputs(
        steps={"lint": "ruff check ."},
        jobs=2,
        keep_going=True,
        junit_path="junit.xml",
        journal_path="journal.db",
    )
    args = run_arguments(every_input)
    assert args[0] == "run"
    passed = _passed_options(args)
    assert passed == {"--set", "--jobs", "--keep-going", "--junit", "--journal"}
    assert passed <= _options(cli.commands["run"])
    passed = _passed_options(comment_arguments(every_input, "20260101T000000Z-abcdef"))
    assert passed == {"--comment-mode", "--logs", "--run-id", "--journal"}
    assert passed <= _options(comment)


# --- turning inputs into a command line ---


def test_inputs_to_run_arguments() -> None:
    inputs = read_inputs(
        {
            "INPUT_PIPELINE": "ci/pipeline.yml",
            "INPUT_STEPS": "lint: ruff check .\ntest: |\n  pytest -q \"$ARGS\"; echo 'done'\n",
            "INPUT_JOBS": " 4 ",
            "INPUT_KEEP_GOING": "True",
            "INPUT_JUNIT_PATH": "out/junit.xml",
            "INPUT_JOURNAL_PATH": "j.db",
        }
    )
    assert run_arguments(inputs) == [
        "run",
        "ci/pipeline.yml",
        "--set=lint=ruff check .",
        "--set=test=pytest -q \"$ARGS\"; echo 'done'\n",
        "--jobs=4",
        "--keep-going",
        f"--junit={os.path.abspath('out/junit.xml')}",
        "--journal=j.db",
    ]


def test_defaults_and_template() -> None:
    assert run_arguments(read_inputs({})) == ["run", ".ci-orchestrator.yml"]
    assert run_arguments(read_inputs({"INPUT_TEMPLATE": "ci_cd", "INPUT_KEEP_GOING": "false"})) == [
        "run",
        "ci_cd",
    ]
    assert run_arguments(read_inputs({"INPUT_PIPELINE": "-odd.yml"}))[1] == "./-odd.yml"
    assert comment_arguments(read_inputs({"INPUT_COMMENT_MODE": "recreate"})) == [
        "comment",
        "--comment-mode=recreate",
        "--logs=auto",
    ]
    assert read_inputs({"INPUT_MASK_ENV": "DEPLOY_KEY, OPAQUE\nOTHER"}).mask_env == (
        "DEPLOY_KEY",
        "OPAQUE",
        "OTHER",
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"INPUT_STEPS": "- lint\n- test"}, "steps input: expected a YAML mapping"),
        ({"INPUT_STEPS": "ruff check ."}, "steps input: expected a YAML mapping"),
        ({"INPUT_STEPS": "lint: [ruff"}, "steps input: not valid YAML (line 1)"),
        ({"INPUT_STEPS": "lint: 3"}, "the command for 'lint' is a number (3)"),
        ({"INPUT_STEPS": "lint:"}, "the command for 'lint' is empty"),
        ({"INPUT_STEPS": "a=b: x"}, "contains '='"),
        ({"INPUT_JOBS": "four"}, "jobs input: expected a whole number of at least 1, got 'four'"),
        ({"INPUT_JOBS": "0"}, "jobs input"),
        ({"INPUT_JOBS": "-2"}, "jobs input"),
        ({"INPUT_JOBS": "1.5"}, "jobs input"),
        ({"INPUT_KEEP_GOING": "yes"}, "keep-going input: expected true or false, got 'yes'"),
        ({"INPUT_COMMENT": "1"}, "comment input"),
        ({"INPUT_COMMENT_MODE": "edit"}, "comment-mode input: expected one of update,"),
        ({"INPUT_TEMPLATE": "ci-cd"}, "no template named 'ci-cd' (did you mean 'ci_cd'?)"),
        ({"INPUT_TEMPLATE": "ci_cd", "INPUT_PIPELINE": "p.yml"}, "give one of them"),
        ({"INPUT_MASK_ENV": "KEY=value"}, "mask-env input: 'KEY=value' is not an environment"),
        ({"INPUT_COMMENT_LOGS": "yes"}, "comment-logs input: expected one of auto, on, off"),
    ],
)
def test_bad_inputs(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_inputs(env)
    assert message in str(caught.value)


# --- the action's step, as GitHub runs it ---

PIPELINE = """
version: 1
name: shop
steps:
  build:
    run: echo building
  flaky:
    needs: [build]
    retry: {attempts: 3}
    run: |
      n=$(( $(cat counter 2>/dev/null || echo 0) + 1 )); echo "$n" > counter
      [ "$n" -ge 2 ] || { echo "connection reset" >&2; exit 1; }
"""


@pytest.fixture
def github_env(tmp_path: Path) -> dict[str, str]:
    """The variables GitHub's runner sets for a composite action's step, with empty files."""
    workspace, runner_temp = tmp_path / "workspace", tmp_path / "runner-temp"
    workspace.mkdir()
    runner_temp.mkdir()
    files = {name: runner_temp / name for name in ("output", "summary.md", "event.json")}
    for path in files.values():
        path.write_text("")
    files["event.json"].write_text(json.dumps({"ref": "refs/heads/main", "repository": {}}))
    return {
        **os.environ,
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_STEP_SUMMARY": str(files["summary.md"]),
        "GITHUB_EVENT_PATH": str(files["event.json"]),
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": "0" * 40,
        "GITHUB_REPOSITORY": "octo/shop",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(runner_temp),
        "INPUT_PIPELINE": "pipeline.yml",
        "INPUT_TEMPLATE": "",
        "INPUT_STEPS": "",
        "INPUT_JOBS": "2",
        "INPUT_KEEP_GOING": "false",
        "INPUT_JUNIT_PATH": "ci-orchestrator-junit.xml",
        "INPUT_COMMENT": "true",
        "INPUT_COMMENT_MODE": "update",
        "INPUT_JOURNAL_PATH": "",
    }


def run_action(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m ci_orchestrator.github.action_env`, as the action's run step starts it."""
    return subprocess.run(
        [sys.executable, "-m", "ci_orchestrator.github.action_env", *args],
        cwd=env["GITHUB_WORKSPACE"],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_action_runs_the_pipeline(github_env: dict[str, str]) -> None:
    workspace = Path(github_env["GITHUB_WORKSPACE"])
    (workspace / "pipeline.yml").write_text(PIPELINE)
    done = run_action(github_env, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ci-orchestrator run pipeline.yml --jobs=2 --junit=")
    assert (workspace / "counter").read_text().strip() == "2"
    junit = workspace / "ci-orchestrator-junit.xml"
    assert junit.is_file()
    # The rest needs `ci-orchestrator run` to set the action's outputs and write the job summary
    # when GITHUB_ACTIONS=true (commands/run.py: finish).
    outputs = read_outputs(Path(github_env["GITHUB_OUTPUT"]))
    assert outputs["success"] == "true"
    assert outputs["failed-steps"] == ""
    assert outputs["flaky-steps"].split(",") == ["flaky"]
    assert outputs["junit-path"] == str(junit)
    assert outputs["run-id"]
    summary = Path(github_env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "shop" in summary
    assert "flaky" in summary
    assert outputs["run-id"] in summary


def test_action_fails_with_the_pipeline(github_env: dict[str, str]) -> None:
    workspace = Path(github_env["GITHUB_WORKSPACE"])
    (workspace / "pipeline.yml").write_text(PIPELINE)
    env = {**github_env, "INPUT_STEPS": "build: echo 'compiler says no'; exit 4"}
    done = run_action(env, "run")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "compiler says no" in done.stdout
    assert not (workspace / "counter").exists()  # `flaky` needs `build`: never started
    outputs = read_outputs(Path(github_env["GITHUB_OUTPUT"]))
    assert outputs["success"] == "false"
    assert outputs["failed-steps"] == "build"


def test_action_comments_on_the_pull_request(
    github: FakeGitHub, github_env: dict[str, str]
) -> None:
    """The run step, then the comment step about that run, against the fake GitHub."""
    github.add_pull_request(42)
    workspace = Path(github_env["GITHUB_WORKSPACE"])
    (workspace / "pipeline.yml").write_text(PIPELINE)
    Path(github_env["GITHUB_EVENT_PATH"]).write_text(json.dumps({"pull_request": {"number": 42}}))
    env = {**github_env, "GITHUB_EVENT_NAME": "pull_request"}
    assert run_action(env, "run").returncode == 0
    run_id = read_outputs(Path(github_env["GITHUB_OUTPUT"]))["run-id"]
    done = run_action({**env, "RUN_ID": run_id, "GITHUB_TOKEN": USER_TOKEN}, "comment")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(
        f"ci-orchestrator comment --comment-mode=update --logs=auto --run-id={run_id}"
    )
    [comment] = github.comments[42]
    assert run_id in comment["body"]
    assert "flaky" in comment["body"]


def test_inputs_never_pass_through_a_shell(github_env: dict[str, str]) -> None:
    workspace = Path(github_env["GITHUB_WORKSPACE"])
    env = {**github_env, "INPUT_PIPELINE": "p.yml; touch injected", "INPUT_JOURNAL_PATH": "$(id)"}
    done = run_action(env, "run")
    assert done.returncode == 2
    assert "p.yml; touch injected: no such file" in done.stderr
    assert not (workspace / "injected").exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INPUT_STEPS", "- lint\n- test"),
        ("INPUT_STEPS", "just a command"),
        ("INPUT_STEPS", "lint: {command: x}"),
        ("INPUT_JOBS", "many"),
        ("INPUT_JOBS", "0"),
    ],
)
def test_a_bad_input_is_one_error_line(github_env: dict[str, str], name: str, value: str) -> None:
    done = run_action({**github_env, name: value}, "run")
    assert done.returncode == 2
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1
    assert done.stdout.startswith("::error title=ci-orchestrator::")
    assert not (Path(github_env["GITHUB_WORKSPACE"]) / ".ci-orchestrator").exists()


def test_an_unknown_mode_is_a_usage_error(github_env: dict[str, str]) -> None:
    done = run_action(github_env, "deploy")
    assert done.returncode == 2
    assert "usage:" in done.stdout


def test_pre_commit_hook() -> None:
    hooks = load_yaml(ROOT / ".pre-commit-hooks.yaml")
    assert hooks == [
        {
            "id": "ci-orchestrator",
            "name": "ci-orchestrator",
            "description": hooks[0]["description"],
            "entry": "ci-orchestrator run",
            "language": "python",
            "pass_filenames": False,
            "always_run": True,
            "require_serial": True,
            "stages": ["pre-push"],
            "minimum_pre_commit_version": "3.2.0",
        }
    ]


def test_project_pipeline_is_valid() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ci_orchestrator",
            "validate",
            str(ROOT / ".github/ci-pipeline.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "3 steps (3 configured)" in done.stdout
