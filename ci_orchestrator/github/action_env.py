"""The Python side of the composite action (`action.yml`): its inputs, which the action passes as
environment variables, checked and turned into a `ci-orchestrator run` or `comment` command line.

The action never writes `${{ inputs.* }}` into a shell script: each input reaches this module as an
environment variable, and the command runs from an argument list, never through a shell. A bad input
is one `::error::` line and exit code 2, before anything runs.

    python -m ci_orchestrator.github.action_env [run|comment|history-keys|history-restored|
                                                 history-stash|history-merge]
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from ci_orchestrator import schema
from ci_orchestrator.config import DEFAULT_FILE
from ci_orchestrator.errors import ExitCode, UsageError
from ci_orchestrator.github.actions import command, set_outputs
from ci_orchestrator.graph import closest
from ci_orchestrator.masking import MASK_ENV

# The action's inputs that reach this module, and the environment variable action.yml sets for
# each. (`github-token`, `python-version` and `working-directory` are used by action.yml itself.)
INPUT_ENV = {
    "pipeline": "INPUT_PIPELINE",
    "template": "INPUT_TEMPLATE",
    "steps": "INPUT_STEPS",
    "jobs": "INPUT_JOBS",
    "keep-going": "INPUT_KEEP_GOING",
    "junit-path": "INPUT_JUNIT_PATH",
    "comment": "INPUT_COMMENT",
    "comment-mode": "INPUT_COMMENT_MODE",
    "journal-path": "INPUT_JOURNAL_PATH",
    "mask-env": "INPUT_MASK_ENV",
    "comment-logs": "INPUT_COMMENT_LOGS",
    "comment-author": "INPUT_COMMENT_AUTHOR",
}
RUN_ID_ENV = "RUN_ID"  # the comment step's: the run step's `run-id` output
COMMENT_MODES = ("update", "recreate", "off")
COMMENT_LOGS = ("auto", "on", "off")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_Loader = schema.yaml12_loader(yaml.SafeLoader)
_WHOLE_NUMBER = re.compile(r"^[0-9]+$")
_KINDS = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "a mapping"}


@dataclass(frozen=True)
class ActionInputs:
    """The action's inputs, checked."""

    pipeline: str = DEFAULT_FILE
    template: str = ""
    steps: Mapping[str, str] = field(default_factory=dict)
    junit: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # `junit:` in `steps`
    jobs: int | None = None
    keep_going: bool = False
    junit_path: str = ""
    comment: bool = False  # checked here; action.yml's `if:` acts on it
    comment_mode: str = "update"
    journal_path: str = ""
    mask_env: tuple[str, ...] = ()
    comment_logs: str = "auto"
    comment_author: str = ""


def read_inputs(env: Mapping[str, str]) -> ActionInputs:
    """The inputs from the environment, or a `UsageError` naming the first bad one."""

    def get(name: str) -> str:
        return env.get(INPUT_ENV[name], "").strip()

    steps, junit = parse_steps(env.get(INPUT_ENV["steps"], ""))
    inputs = ActionInputs(
        pipeline=get("pipeline") or DEFAULT_FILE,
        template=get("template"),
        steps=steps,
        junit=junit,
        jobs=parse_jobs(get("jobs")),
        keep_going=parse_bool("keep-going", get("keep-going")),
        junit_path=get("junit-path"),
        comment=parse_bool("comment", get("comment")),
        comment_mode=parse_choice("comment-mode", get("comment-mode") or "update", COMMENT_MODES),
        journal_path=get("journal-path"),
        mask_env=parse_names("mask-env", get("mask-env")),
        comment_logs=parse_choice("comment-logs", get("comment-logs") or "auto", COMMENT_LOGS),
        comment_author=get("comment-author"),
    )
    check_target(inputs)
    return inputs


def parse_steps(text: str) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """The `steps` input: a YAML mapping of step name to shell command ('' for none), or to a
    mapping `{run: COMMAND, junit: GLOB or [GLOB, ...]}`; the commands, and the JUnit globs."""
    if not text.strip():
        return {}, {}
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader with YAML 1.2 booleans
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UsageError(
            f"steps input: not valid YAML{where}: {problem}; quote a command that contains ': '"
            " or starts with a YAML character, or write it as a block (`test: |`)"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            "steps input: expected a YAML mapping of step name to shell command, like"
            f" 'lint: ruff check .' (or to {{run: ..., junit: ...}}), got {_kind(data)}"
        )
    commands: dict[str, str] = {}
    junit: dict[str, tuple[str, ...]] = {}
    for key, value in data.items():
        name = _step_name(key)
        if isinstance(value, dict):
            _step_mapping(name, value, commands, junit)
        else:
            commands[name] = _step_command(key, value)
    return commands, junit


def _step_mapping(
    name: str,
    value: dict[Any, Any],
    commands: dict[str, str],
    junit: dict[str, tuple[str, ...]],
) -> None:
    """`test: {run: pytest --junitxml=r.xml, junit: r.xml}`: either key may be left out."""
    unknown = [str(k) for k in value if k not in ("run", "junit")]
    if unknown:
        raise UsageError(
            f"steps input: {name!r} has {', '.join(map(repr, unknown))}; a step's mapping takes"
            " run (a shell command) and junit (JUnit XML files, globs allowed)"
        )
    if "run" in value:
        commands[name] = _step_command(name, value["run"])
    if "junit" in value:
        globs = value["junit"] if isinstance(value["junit"], list) else [value["junit"]]
        if not globs or not all(isinstance(g, str) and g.strip() for g in globs):
            raise UsageError(
                f"steps input: junit of {name!r} is {_kind(value['junit'])}; expected a path or"
                " glob, or a list of them"
            )
        junit[name] = tuple(globs)


def _step_name(key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise UsageError(f"steps input: step name {key!r} is not a name; quote it as a string")
    if "=" in key:
        raise UsageError(f"steps input: step name {key!r} contains '=', which --set cannot pass")
    return key.strip()


def _step_command(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UsageError(
            f"steps input: the command for {key!r} is {_kind(value)}; expected a shell command"
            " (quote it if YAML reads it as something else)"
        )
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return f"{_KINDS.get(type(value), type(value).__name__)} ({value!r:.40})"


def parse_jobs(text: str) -> int | None:
    """The `jobs` input: empty for the default (the CPU count), or a whole number ≥ 1."""
    if not text:
        return None
    if not _WHOLE_NUMBER.match(text) or int(text) < 1:
        raise UsageError(f"jobs input: expected a whole number of at least 1, got {text!r}")
    return int(text)


def parse_bool(name: str, text: str) -> bool:
    """`true` or `false` (any case); empty is false."""
    if text.lower() not in ("", "true", "false"):
        raise UsageError(f"{name} input: expected true or false, got {text!r}")
    return text.lower() == "true"


def parse_names(name: str, text: str) -> tuple[str, ...]:
    """Environment variable names, separated by commas, spaces or new lines."""
    names = tuple(part for part in re.split(r"[\s,]+", text) if part)
    for part in names:
        if not _ENV_NAME.match(part):
            raise UsageError(
                f"{name} input: {part!r} is not an environment variable name; list names"
                " (like DEPLOY_KEY), not values"
            )
    return names


def parse_choice(name: str, text: str, choices: Sequence[str]) -> str:
    """One of `choices`, exactly."""
    if text not in choices:
        hint = closest(text, choices)
        raise UsageError(f"{name} input: expected one of {', '.join(choices)}, got {text!r}{hint}")
    return text


def check_target(inputs: ActionInputs) -> None:
    """A template is a built-in name, and replaces the pipeline file rather than joining it."""
    if not inputs.template:
        return
    from ci_orchestrator.templates import template_names

    names = template_names()
    if inputs.template not in names:
        raise UsageError(
            f"template input: no template named {inputs.template!r}"
            f"{closest(inputs.template, names)}; the templates are {', '.join(names)}"
        )
    if inputs.pipeline != DEFAULT_FILE:
        raise UsageError(
            "pipeline and template inputs: give one of them (a template is a whole pipeline; to"
            " build on one, write a pipeline file with `extends:`)"
        )


def run_arguments(inputs: ActionInputs) -> list[str]:
    """`ci-orchestrator run ...` for these inputs (the words after `ci-orchestrator`).

    The JUnit path is made absolute so that the `junit-path` output names the file wherever the
    caller's next step runs.
    """
    target = inputs.template or inputs.pipeline
    args = ["run", f"./{target}" if target.startswith("-") else target]
    args += [f"--set={name}={command_}" for name, command_ in inputs.steps.items()]
    args += [f"--junit={name}={glob}" for name, globs in inputs.junit.items() for glob in globs]
    if inputs.jobs is not None:
        args.append(f"--jobs={inputs.jobs}")
    if inputs.keep_going:
        args.append("--keep-going")
    if inputs.junit_path:
        args.append(f"--junit={os.path.abspath(inputs.junit_path)}")
    if inputs.journal_path:
        args.append(f"--journal={inputs.journal_path}")
    return args


def comment_arguments(inputs: ActionInputs, run_id: str = "") -> list[str]:
    """`ci-orchestrator comment ...` about the run `run_id` (default: the journal's latest); the
    token comes from `GITHUB_TOKEN`, not the command line, which `ps` shows."""
    args = ["comment", f"--comment-mode={inputs.comment_mode}", f"--logs={inputs.comment_logs}"]
    if run_id:
        args.append(f"--run-id={run_id}")
    if inputs.journal_path:
        args.append(f"--journal={inputs.journal_path}")
    if inputs.comment_author:
        args.append(f"--comment-author={inputs.comment_author}")
    return args


# --- history: the journal in the Actions cache (see ci_orchestrator/github/cache.py) ---

HISTORY_MODES = ("history-keys", "history-restored", "history-stash", "history-merge")
HISTORY_CHOICES = ("cache", "off")
STASH = "ci-orchestrator-history/journal.db"  # under $RUNNER_TEMP: this job's journal, set aside
# The restore step's `cache-primary-key` output, for `history-restored`: empty when actions/cache
# looked nothing up (no cache service); unset (an older action.yml): assume it did.
LOOKED_UP_ENV = "CACHE_PRIMARY_KEY"


@dataclass(frozen=True)
class HistoryInputs:
    enabled: bool
    key: str
    days: int
    path: str  # the journal, relative to the workspace


def read_history_inputs(env: Mapping[str, str]) -> HistoryInputs:
    from ci_orchestrator.github.cache import DEFAULT_DAYS, cache_path

    choice = parse_choice(
        "history", env.get("INPUT_HISTORY", "").strip() or "cache", HISTORY_CHOICES
    )
    days_text = env.get("INPUT_HISTORY_DAYS", "").strip()
    if days_text and (not _WHOLE_NUMBER.match(days_text) or int(days_text) < 1):
        raise UsageError(
            f"history-days input: expected a whole number of days ≥ 1, got {days_text!r}"
        )
    path = cache_path(
        env.get("INPUT_JOURNAL_PATH", "").strip(), env.get("INPUT_WORKING_DIRECTORY", "").strip()
    )
    return HistoryInputs(
        choice == "cache",
        env.get("INPUT_HISTORY_KEY", "").strip(),
        int(days_text or DEFAULT_DAYS),
        path,
    )


def history(mode: str, env: Mapping[str, str]) -> int:
    """One of the action's history steps; only a bad input fails it (a cache problem never)."""
    from ci_orchestrator.github import cache

    inputs = read_history_inputs(env)
    if not inputs.enabled:
        return ExitCode.OK
    stash = Path(env.get("RUNNER_TEMP") or "/tmp") / STASH
    path = Path(inputs.path)
    if mode == "history-keys":
        keys = cache.cache_keys(env, inputs.path, inputs.key)
        restore = "\n".join(keys.restore_keys)
        set_outputs({"path": keys.path, "key": keys.key, "restore-keys": restore}, env)
        return ExitCode.OK
    if mode == "history-restored":
        looked_up = LOOKED_UP_ENV not in env or bool(env[LOOKED_UP_ENV].strip())
        lines = [cache.adopt_restored(path, looked_up)]
    elif mode == "history-stash":
        lines = [] if cache.stash(path, stash) else ["notice: this job wrote no journal to save"]
    else:
        lines = cache.merge_for_save(path, stash, inputs.days)
    for line in lines:
        level, _, message = line.partition(": ")
        print(command(level, message, title="ci-orchestrator history"), flush=True)
    return ExitCode.OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Check the inputs, then replace this process with the `ci-orchestrator` command."""
    argv = sys.argv[1:] if argv is None else argv
    mode = argv[0] if argv else "run"
    modes = ("run", "comment", *HISTORY_MODES)
    if mode not in modes:
        print(f"usage: python -m ci_orchestrator.github.action_env [{'|'.join(modes)}]")
        return ExitCode.USAGE
    env = os.environ if env is None else env
    if mode in HISTORY_MODES:
        try:
            return history(mode, env)
        except UsageError as exc:
            print(command("error", str(exc), title="ci-orchestrator"), flush=True)
            return ExitCode.USAGE
    try:
        inputs = read_inputs(env)
    except UsageError as exc:
        print(command("error", str(exc), title="ci-orchestrator"), flush=True)
        return ExitCode.USAGE
    if inputs.mask_env:  # both processes mask them: the run's outputs and the comment
        listed = [env.get(MASK_ENV, ""), *inputs.mask_env]
        os.environ[MASK_ENV] = ",".join(name for name in listed if name)
    if mode == "comment":
        return execute(comment_arguments(inputs, env.get(RUN_ID_ENV, "").strip()))
    return execute(run_arguments(inputs))


def execute(args: Sequence[str]) -> NoReturn:
    """Show the command, then become it: signals from the runner reach ci-orchestrator itself."""
    print(f"ci-orchestrator {shlex.join(args)}", flush=True)
    os.execv(sys.executable, [sys.executable, "-m", "ci_orchestrator", *args])


if __name__ == "__main__":
    sys.exit(main())
