"""Hostile input: fuzzed pipeline files and options, shell metacharacters where names go."""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ci_orchestrator.cli import cli
from ci_orchestrator.config import load_pipeline
from ci_orchestrator.errors import ConfigError, ConfigErrors
from ci_orchestrator.hooks import install_hook
from ci_orchestrator.runner import WorkflowRunner
from ci_orchestrator.schema import json_schema, yaml12_loader
from tests.conftest import cli as run_cli

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SCHEMA = json_schema()
YAML12 = yaml12_loader(yaml.SafeLoader)
STEP_KEYS = [
    "run",
    "needs",
    "if",
    "when",
    "timeout",
    "kill_grace",
    "retry",
    "env",
    "cwd",
    "junit",
    "description",
    "nope",
]
TOP_KEYS = ["version", "name", "description", "extends", "defaults", "steps", "stepz"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 500), st.floats(-10, 1e6, allow_nan=False),
    st.text(max_size=12), st.sampled_from(["90", "15m", "1h30m", "0s", "-1", "success", "failure", "ci_cd", "a", "b"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
steps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "build", "x y", ""]),
    st.dictionaries(st.sampled_from(STEP_KEYS), values, max_size=4) | values,
    max_size=3,
)
documents = st.fixed_dictionaries(
    {}, optional={k: steps if k == "steps" else values for k in TOP_KEYS}
) | values  # fmt: skip


def check_one_line(error: ConfigError) -> None:
    """One line per mistake (a file with several gets each on its own line)."""
    for each in error.errors if isinstance(error, ConfigErrors) else [error]:
        message = each.format_message()
        assert "\n" not in message
        assert message.startswith("p.yml")


@FUZZ
@given(document=documents)
def test_any_document_loads_or_is_one_line_and_agrees_with_the_schema(
    document: Any, tmp_path: Path
) -> None:
    text = yaml.safe_dump(document, allow_unicode=True)
    (tmp_path / "p.yml").write_text(text)
    os.chdir(tmp_path)
    try:
        load_pipeline("p.yml")
        loaded = True
    except ConfigError as error:
        check_one_line(error)
        loaded = False
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(yaml.load(text, Loader=YAML12))
    if loaded:  # the loader adds rules JSON Schema cannot say (needs, cycles), never fewer
        assert schema_ok, text


@FUZZ
@given(text=st.text(alphabet=string.printable + "\t\x00é€", max_size=200))
def test_any_text_loads_or_is_one_line(text: str, tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text(text)
    os.chdir(tmp_path)
    try:
        load_pipeline("p.yml")
    except ConfigError as error:
        check_one_line(error)


WORDS = ["run", "validate", "graph", "schema", "templates", "list", "show", "ci_cd", "--dry-run",
         "--set", "--skip", "--only", "--no-deps", "-j", "--jobs", "--format", "mermaid", "dot",
         "--keep-going", "-q", "-v", "p.yml", "a=b", "a", "0", "-1", "report", "--since", "7d",
         "--last", "journal", "info", "export", "--journal", "x.db", "=", "--", "-"]  # fmt: skip


@FUZZ
@given(argv=st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=6))
def test_any_options_exit_0_or_2_with_one_line(argv: list[str], tmp_path: Path) -> None:
    os.chdir(tmp_path)
    (tmp_path / "p.yml").write_text("steps:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n")
    if "run" in argv and "--dry-run" not in argv:
        argv = [*argv, "--dry-run"]  # fuzz the options, never run arbitrary steps
    result = CliRunner().invoke(cli, argv, catch_exceptions=True)
    assert result.exit_code in (0, 2), (argv, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output


def test_step_names_and_env_values_never_reach_a_shell_unquoted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker}); `touch {marker}` | touch {marker}"
    runner = WorkflowRunner("evil", state_dir=tmp_path / "state")
    runner.add_step(
        evil, 'printf %s "$CI_ORCHESTRATOR_STEP" > "$OUT"', env={"OUT": str(tmp_path / "name")}
    )
    runner.add_step("env", 'printf %s "$EVIL"', env={"EVIL": evil}, condition='[ -n "$EVIL" ]')
    runner.add_step(
        "outputs", 'printf \'x=%s\\n\' "$EVIL" >> "$CI_ORCHESTRATOR_OUTPUT"', env={"EVIL": evil}
    )
    runner.add_step(
        "reader",
        'printf %s "$CIO_OUTPUTS_X" > "$OUT"',
        ["outputs"],
        env={"OUT": str(tmp_path / "x")},
    )
    result = runner.run()
    assert result.success, result.to_dict()
    assert (tmp_path / "name").read_text() == evil
    assert (tmp_path / "x").read_text() == evil
    assert not marker.exists()


def test_step_names_with_shell_syntax_through_the_cli(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    name = "$(touch pwned)"
    (tmp_path / "p.yml").write_text(f"steps:\n  '{name}': {{run: 'echo $CI_ORCHESTRATOR_STEP'}}\n")
    done = run_cli("run", "p.yml", "--junit", "j.xml", GITHUB_ACTIONS="true")
    assert done.returncode == 0, done.stderr
    assert name in done.stdout
    assert not (tmp_path / "pwned").exists()
    for fmt in ("text", "markdown"):
        assert run_cli("report", "--format", fmt).returncode == 0
    assert run_cli("graph", "p.yml", "--format", "dot").returncode == 0
    assert not (tmp_path / "pwned").exists()


def test_hook_quotes_the_pipeline_path(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    import subprocess

    subprocess.run(["git", "init", "-q"], check=True)
    install_hook("$(touch pwned).yml")
    hook = (tmp_path / ".git/hooks/pre-push").read_text()
    assert "'$(touch pwned).yml'" in hook
    done = subprocess.run(["sh", "-n", ".git/hooks/pre-push"], capture_output=True, check=False)
    assert done.returncode == 0
    assert not (tmp_path / "pwned").exists()
