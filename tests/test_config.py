"""Pipeline files: the loader, its one-line errors, `extends`, overrides, and the JSON Schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import yaml

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.config import (
    SETUP_STEP,
    Overrides,
    apply_overrides,
    load_pipeline,
    setup_script,
    with_setup,
)
from ci_orchestrator.errors import ConfigError, UsageError
from ci_orchestrator.schema import json_schema, yaml12_loader
from tests.conftest import cli

YAML12 = yaml12_loader(yaml.SafeLoader)


def as_data(text: str) -> object:
    """What an editor's YAML 1.2 parser hands to the JSON Schema."""
    return yaml.load(text, Loader=YAML12)


Write = Callable[[str, str], Path]

VALID = {
    "minimal": "steps:\n  a: {run: 'true'}\n",
    "full": """
version: 1
name: web-app
description: everything at once
defaults:
  timeout: 15m
  kill_grace: 2s
  retry: {attempts: 1}
  env: {PYTHONUNBUFFERED: "1", DEBUG: true, LEVEL: 3}
setup:
  - python -m pip install -e '.[dev]'
  - npm ci
steps:
  lint: {run: ruff check .}
  build: {run: make, timeout: 90, artifacts: [dist/*.whl, build/**, .coverage]}
  test:
    run: pytest -q
    needs: [build]
    retry: {attempts: 3, delay: 2s, backoff: 2, max_delay: 30s, jitter: 500ms, on: [failure, timeout], exit_codes: [1, 75]}
    timeout: 1h30m
    junit: reports/pytest.xml
    env: {A: b}
    cwd: sub
  deploy:
    needs: [test]
    if: '[ "$GITHUB_REF" = refs/heads/main ]'
    run: ./deploy.sh
  notify:
    needs: [deploy]
    when: failure
    retry: 2
    run: ./notify.sh
    junit: [a.xml, b.xml]
  placeholder: {run: null, description: not configured on purpose}
""",
    "extends-template": "extends: ci_cd\nsteps:\n  lint: {run: ruff check .}\n",
    "setup-and-artifacts-as-strings": (
        "setup: make deps\nsteps:\n  a: {run: make, artifacts: out/app.tar.gz}\n"
    ),
}

INVALID = {
    "run-boolean": (
        "steps:\n  a:\n    run: true\n",
        "pipeline.yml:3: steps.a.run: expected a string, got true (a boolean); YAML read it as a boolean, quote it",
    ),
    "run-number": (
        "steps:\n  a: {run: 42}\n",
        "pipeline.yml:2: steps.a.run: expected a string, got 42 (a number); YAML read it as a number, quote it",
    ),
    "attempts-word": (
        "steps:\n  test:\n    run: x\n    retry:\n      attempts: three\n",
        'pipeline.yml:5: steps.test.retry.attempts: expected an integer ≥ 1 and ≤ 100, got "three"',
    ),
    "attempts-zero": (
        "steps:\n  t: {run: x, retry: {attempts: 0}}\n",
        "steps.t.retry.attempts: expected an integer ≥ 1",
    ),
    "timeout-negative": (
        "steps:\n  t: {run: x, timeout: -5}\n",
        "pipeline.yml:2: steps.t.timeout: expected a positive duration like 90, 90s, 15m or 1h30m, got -5 (a number)",
    ),
    "timeout-word": (
        "steps:\n  t: {run: x, timeout: soon}\n",
        'steps.t.timeout: expected a positive duration like 90, 90s, 15m or 1h30m, got "soon"',
    ),
    "timeout-zero": (
        "steps:\n  t: {run: x, timeout: 0s}\n",
        "steps.t.timeout: expected a positive duration",
    ),
    "needs-string": (
        "steps:\n  a: {run: x}\n  b: {run: x, needs: a}\n",
        'pipeline.yml:3: steps.b.needs: expected a list of strings, got "a"',
    ),
    "unknown-key": (
        "steps:\n  a: {run: x, neds: [b]}\n",
        "pipeline.yml:2: steps.a.neds: unknown key 'neds'; did you mean 'needs'?",
    ),
    "unknown-top-key": (
        "stepz:\n  a: {run: x}\n",
        "pipeline.yml:1: stepz: unknown key 'stepz'; did you mean 'steps'?",
    ),
    "missing-run": ("steps:\n  a: {needs: []}\n", "pipeline.yml:2: steps.a: missing key 'run'"),
    "when-bad": (
        "steps:\n  a: {run: x, when: sometimes}\n",
        'steps.a.when: expected one of success, failure, always, got "sometimes"',
    ),
    "retry-on-bad": (
        "steps:\n  a: {run: x, retry: {on: [crash]}}\n",
        'steps.a.retry.on.0: expected one of failure, timeout, got "crash"',
    ),
    "env-list": (
        "steps:\n  a: {run: x, env: [A]}\n",
        "steps.a.env: expected a mapping of names to strings, numbers or booleans, got a list",
    ),
    "env-bad-name": (
        "steps:\n  a: {run: x, env: {1A: b}}\n",
        "steps.a.env.1A: expected an environment variable name, got '1A'",
    ),
    "version-2": (
        "version: 2\nsteps:\n  a: {run: x}\n",
        "pipeline.yml:1: version: expected 1 (the only file format version ci-orchestrator"
        f" {__version__} reads), got 2 (a number)",
    ),
    "steps-list": (
        "steps:\n  - run: x\n",
        "pipeline.yml:2: steps: expected a mapping of names to step mappings",
    ),
    "top-list": ("- a\n", "pipeline.yml:1: expected a pipeline mapping"),
    "artifacts-absolute": (
        "steps:\n  a: {run: x, artifacts: [/tmp/out]}\n",
        "pipeline.yml:2: steps.a.artifacts.0: expected a relative path or glob inside the"
        ' repository (no leading / or ~, no ..), got "/tmp/out"',
    ),
    "artifacts-outside": (
        "steps:\n  a: {run: x, artifacts: dist/../../secrets}\n",
        "steps.a.artifacts: expected a relative path or glob inside the repository",
    ),
    "artifacts-home": (
        "steps:\n  a: {run: x, artifacts: ~/.cache}\n",
        "steps.a.artifacts: expected a relative path or glob inside the repository",
    ),
    "setup-number": (
        "setup: 42\nsteps:\n  a: {run: x}\n",
        "pipeline.yml:1: setup: expected a string, got 42 (a number); YAML read it as a number,"
        " quote it",
    ),
    "setup-mapping": (
        "setup: {run: x}\nsteps:\n  a: {run: x}\n",
        "pipeline.yml:1: setup: expected a list of strings, got a mapping",
    ),
    "needs-repeated": (
        "steps:\n  a: {run: x}\n  b: {run: x, needs: [a, a]}\n",
        "steps.b.needs: expected each entry once",
    ),
}

# Rules JSON Schema cannot state: they need the whole file, other files, or the YAML source.
LOADER_ONLY = {
    "duplicate-key": (
        "steps:\n  a: {run: x}\n  a: {run: y}\n",
        "pipeline.yml:3: steps.a: this key appears twice",
    ),
    "unknown-need": (
        "steps:\n  build: {run: x}\n  test: {run: x, needs: [biuld]}\n",
        "pipeline.yml:3: steps.test.needs: 'biuld' is not a step (did you mean 'build'?)",
    ),
    "cycle": (
        "steps:\n  build: {run: x, needs: [test]}\n  test: {run: x, needs: [build]}\n",
        "steps: dependency cycle: build -> test -> build",
    ),
    "no-steps": ("name: x\n", "pipeline.yml:1: steps: expected at least one step"),
    "missing-template": (
        "extends: ci_cdd\n",
        "pipeline.yml:1: extends: no template or file named 'ci_cdd'",
    ),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_files_load_and_match_the_schema(name: str, write: Write) -> None:
    path = write("pipeline.yml", VALID[name])
    load_pipeline(path)
    jsonschema.validate(as_data(VALID[name]), json_schema())


@pytest.mark.parametrize("name", INVALID)
def test_invalid_files_get_one_line_with_file_line_and_key(name: str, write: Write) -> None:
    text, expected = INVALID[name]
    path = write("pipeline.yml", text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = info.value.format_message()
    assert "\n" not in message
    assert expected in message
    assert message.startswith("pipeline.yml:")
    assert info.value.exit_code == 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(as_data(text), json_schema())


@pytest.mark.parametrize("name", LOADER_ONLY)
def test_rules_beyond_the_schema(name: str, write: Write) -> None:
    text, expected = LOADER_ONLY[name]
    with pytest.raises(ConfigError) as info:
        load_pipeline(write("pipeline.yml", text))
    assert expected in info.value.format_message()


def test_yaml_syntax_errors_and_tabs(write: Write) -> None:
    with pytest.raises(
        ConfigError, match=r"pipeline.yml:3: .*tab character; YAML indents with spaces"
    ):
        load_pipeline(write("pipeline.yml", "steps:\n  a:\n\trun: x\n"))
    with pytest.raises(ConfigError, match=r"pipeline.yml:\d+: not valid YAML"):
        load_pipeline(write("pipeline.yml", "steps: {a: [\n"))


def test_files_that_cannot_be_pipelines(tmp_path: Path, write: Write) -> None:
    (tmp_path / "dir.yml").mkdir()
    with pytest.raises(ConfigError, match=r"dir.yml is a directory; expected a pipeline file"):
        load_pipeline(tmp_path / "dir.yml")
    with pytest.raises(ConfigError, match=r"missing.yml: no such file"):
        load_pipeline(tmp_path / "missing.yml")
    with pytest.raises(
        ConfigError, match=r"empty.yml:1: expected one pipeline mapping, found nothing"
    ):
        load_pipeline(write("empty.yml", ""))
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_pipeline(tmp_path / "binary.yml")


def test_durations_and_defaults(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    test = pipeline.steps["test"]
    assert test.timeout == 5400
    assert test.retry.attempts == 3
    assert test.retry.delay == 2
    assert test.retry.max_delay == 30
    assert test.env == {"PYTHONUNBUFFERED": "1", "DEBUG": "true", "LEVEL": "3", "A": "b"}
    assert pipeline.steps["build"].timeout == 90
    assert pipeline.steps["lint"].timeout == 900
    assert pipeline.steps["notify"].retry.attempts == 2
    assert pipeline.steps["notify"].junit == ("a.xml", "b.xml")
    assert pipeline.steps["placeholder"].run is None
    assert pipeline.name == "web-app"


def test_extends_merges_per_step(write: Write) -> None:
    write(
        "base.yml",
        """
        defaults: {timeout: 10m, env: {A: "1"}}
        steps:
          build: {run: make, timeout: 5m, env: {X: "1"}}
          test: {run: pytest, needs: [build]}
    """,
    )
    child = write(
        "child.yml",
        """
        extends: base.yml
        defaults: {env: {B: "2"}}
        steps:
          build: {run: make all, env: {Y: "2"}}
          docs: {run: mkdocs build, needs: [build]}
    """,
    )
    pipeline = load_pipeline(child)
    assert list(pipeline.steps) == ["build", "test", "docs"]
    build = pipeline.steps["build"]
    assert (build.run, build.timeout) == ("make all", 300)
    assert build.env == {"A": "1", "B": "2", "X": "1", "Y": "2"}
    assert pipeline.steps["test"].timeout == 600
    assert build.location == "child.yml:4"
    assert pipeline.steps["test"].location == "base.yml:4"


def test_extends_a_template_leaves_unset_steps_not_configured(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["extends-template"]))
    assert pipeline.steps["lint"].run == "ruff check ."
    assert pipeline.steps["build"].run is None
    assert pipeline.steps["deploy"].condition is not None


def test_extends_loop(write: Write) -> None:
    write("a.yml", "extends: b.yml\nsteps:\n  x: {run: 'true'}\n")
    write("b.yml", "extends: a.yml\nsteps:\n  y: {run: 'true'}\n")
    with pytest.raises(ConfigError, match=r"extends loop: a.yml -> b.yml -> a.yml"):
        load_pipeline("a.yml")


def test_overrides_set_skip_and_only(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    changed = apply_overrides(
        pipeline,
        Overrides(commands={"lint": "echo lint"}, skip=["build"], skip_env=["nope", "deploy"]),
    )
    assert changed.steps["lint"].run == "echo lint"
    assert changed.steps["build"].skip_reason == "skipped by --skip"
    assert changed.steps["deploy"].skip_reason == "skipped by SKIP"
    only = apply_overrides(pipeline, Overrides(only=["test"]))
    assert list(only.steps) == ["build", "test"]
    alone = apply_overrides(pipeline, Overrides(only=["test"], with_deps=False))
    assert list(alone.steps) == ["test"]
    assert alone.steps["test"].needs == ()


def test_override_of_an_unknown_step_suggests_the_closest(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    with pytest.raises(UsageError, match=r"--set: no step named 'tset' .*did you mean 'test'"):
        apply_overrides(pipeline, Overrides(commands={"tset": "x"}))
    with pytest.raises(UsageError, match=r"--only: no step named 'deplyo'"):
        apply_overrides(pipeline, Overrides(only=["deplyo"]))


def test_a_failure_handler_selected_alone_runs(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    alone = apply_overrides(pipeline, Overrides(only=["notify"], with_deps=False))
    assert (alone.steps["notify"].needs, alone.steps["notify"].when) == ((), "always")
    with_deps = apply_overrides(pipeline, Overrides(only=["notify"]))
    assert with_deps.steps["notify"].when == "failure"


def test_the_cache_serves_unchanged_files_and_notices_every_change(write: Write) -> None:
    from ci_orchestrator import pipeline_cache

    Path(".ci-orchestrator").mkdir()
    write(
        "base.yml", "steps:\n  a: {run: echo a, timeout: 5m, retry: {attempts: 2, on: [timeout]}}\n"
    )
    child = write("pipeline.yml", "extends: base.yml\nsteps:\n  b: {run: echo b, needs: [a]}\n")
    first = load_pipeline(child)
    assert pipeline_cache.CACHE_FILE.exists()
    assert pipeline_cache.cached(Path(child)) == first
    assert load_pipeline(child) == first
    write("base.yml", "steps:\n  a: {run: echo changed}\n")  # a file it extends changed
    assert load_pipeline(child).steps["a"].run == "echo changed"
    write("pipeline.yml", "extends: base.yml\nsteps:\n  b: {run: true}\n")
    with pytest.raises(ConfigError, match="quote it"):
        load_pipeline(child)  # a broken file is never served from the cache


# --- setup: and artifacts: ---


def test_setup_and_artifacts_load(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    assert pipeline.setup == ("python -m pip install -e '.[dev]'", "npm ci")
    assert pipeline.steps["build"].artifacts == ("dist/*.whl", "build/**", ".coverage")
    assert pipeline.steps["lint"].artifacts == ()
    short = load_pipeline(write("short.yml", VALID["setup-and-artifacts-as-strings"]))
    assert (short.setup, short.steps["a"].artifacts) == (("make deps",), ("out/app.tar.gz",))
    child = write("child.yml", "extends: pipeline.yml\nsetup: make\nsteps: {}\n")
    assert load_pipeline(child).setup == ("make",)  # the file's own setup: wins


def test_a_pipeline_with_setup_is_read_from_its_file_every_time(write: Write) -> None:
    """The pipeline cache does not carry `setup:`; such a pipeline is never cached."""
    Path(".ci-orchestrator").mkdir()
    path = write("pipeline.yml", VALID["full"])
    assert load_pipeline(path).setup
    assert load_pipeline(path).setup  # not lost to the cache


def test_with_setup_puts_a_step_before_every_step(write: Write) -> None:
    pipeline = load_pipeline(write("pipeline.yml", VALID["full"]))
    ready = with_setup(pipeline)
    assert next(iter(ready.steps)) == SETUP_STEP
    assert ready.steps[SETUP_STEP].run == "set -e\npython -m pip install -e '.[dev]'\nnpm ci"
    assert all(s.needs[0] == SETUP_STEP for n, s in ready.steps.items() if n != SETUP_STEP)
    assert ready.steps["test"].needs == (SETUP_STEP, "build")
    assert setup_script(["make deps"]) == "make deps"
    plain = load_pipeline(write("plain.yml", VALID["minimal"]))
    assert with_setup(plain) is plain


def test_a_step_named_like_the_setup_is_refused_with_setup(write: Write) -> None:
    path = write("pipeline.yml", "setup: make\nsteps:\n  set-up: {run: x}\n")
    pipeline = load_pipeline(path)  # fine without --setup
    with pytest.raises(ConfigError, match=r"pipeline.yml:3: steps.set-up: a step named 'set-up'"):
        with_setup(pipeline)


def test_run_leaves_the_setup_to_you_unless_asked(write: Write, tmp_path: Path) -> None:
    write(
        "pipeline.yml",
        """
        setup: [echo one > setup.log, echo two >> setup.log]
        steps:
          build: {run: cat setup.log 2>/dev/null || echo no setup}
        """,
    )
    plan = cli("run", "pipeline.yml", "--dry-run", cwd=tmp_path).stdout
    assert "set-up not run (--setup runs it first): $ echo one > setup.log && $ echo two" in plan
    assert "1. build" in plan
    plan = cli("run", "pipeline.yml", "--dry-run", "--setup", cwd=tmp_path).stdout
    assert "not run" not in plan
    assert "1. set-up  $ echo one > setup.log && $ echo two >> setup.log" in plan
    assert "2. build   $ cat setup.log" in plan
    plain = cli("run", "pipeline.yml", "--no-journal", "-v", cwd=tmp_path)
    assert plain.returncode == 0
    assert "no setup" in plain.stdout
    asked = cli("run", "pipeline.yml", "--no-journal", "-v", "--setup", cwd=tmp_path)
    assert asked.returncode == 0, asked.stdout
    assert "one\ntwo" in asked.stdout
