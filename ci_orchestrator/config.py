"""Pipeline files to a `Pipeline` model: YAML with file:line errors, `extends`, and overrides.

The rules of the format live in `schema.py` and the model in `model.py`; this module reads files,
resolves `extends` (a built-in template or another file), merges per step, checks the graph,
applies command-line overrides, and loads the built-in templates as `WorkflowTemplate`s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from ci_orchestrator import graph
from ci_orchestrator.errors import (
    ConfigError,
    ConfigErrors,
    CycleError,
    UsageError,
    WorkflowError,
)
from ci_orchestrator.model import Pipeline, Retry, Step

if TYPE_CHECKING:
    import yaml

    from ci_orchestrator.templates import WorkflowTemplate

DEFAULT_FILE = ".ci-orchestrator.yml"


@cache
def _loader() -> Any:
    """PyYAML (and the rules) cost ~30 ms to import: only a pipeline not in the cache pays."""
    import yaml

    from ci_orchestrator.schema import yaml12_loader

    return yaml12_loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader))


# --- reading files ---


def resolve_target(target: str | None) -> Path:
    """The pipeline file a command names: a path, a template name, or the default file."""
    if target is None:
        return Path(DEFAULT_FILE)
    if "\x00" in target:
        raise UsageError(f"{target!r} cannot be a file name: it holds a NUL byte")
    if Path(target).exists():  # a file wins over a template's name (and needs no template)
        return Path(target)
    from ci_orchestrator.templates import template_path

    found = template_path(target)
    return Path(target) if found is None else found


def load_pipeline(target: str | Path | None = None, *, use_cache: bool = True) -> Pipeline:
    """Read a pipeline file (or a built-in template by name), resolving `extends`.

    A file read before, unchanged since (nor anything it extends), comes from the cache in the
    state folder without parsing YAML again.
    """
    from ci_orchestrator import pipeline_cache

    path = resolve_target(str(target) if target is not None else None)
    if use_cache and (found := pipeline_cache.cached(path)) is not None:
        return found
    raw = _resolve(path, ())
    pipeline = _build(raw, path)
    if use_cache:
        pipeline_cache.remember(path, raw.files, pipeline)
    return pipeline


@dataclass
class _Raw:
    """A file's checked contents, before the model: plain values plus where each step is."""

    label: str
    values: dict[str, Any]
    lines: dict[tuple[str, ...], int]
    where: dict[str, str] = field(default_factory=dict)  # step name -> file:line
    extended: bool = False
    files: list[Path] = field(default_factory=list)  # this file and every file it extends
    typos: dict[str, str] = field(default_factory=dict)  # added step -> the base step it is like


def _label(path: Path) -> str:
    """How errors name a file: `template:NAME`, or the path relative to here when it is below."""
    from ci_orchestrator.templates import TEMPLATE_DIR

    real = path.resolve()
    for root, prefix in ((TEMPLATE_DIR.resolve(), "template:"), (Path.cwd().resolve(), "")):
        if real.is_relative_to(root):
            relative = real.relative_to(root)
            return f"template:{relative.stem}" if prefix else str(relative)
    return str(path)


def read_yaml(path: Path, label: str) -> yaml.Node:
    if path.is_dir():
        raise ConfigError(f"{label} is a directory; expected a pipeline file")
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        hint = ""
        if label == DEFAULT_FILE:
            hint = (
                "; start one with `ci-orchestrator templates show ci_cd > .ci-orchestrator.yml`,"
                " or name a pipeline file or template"
            )
        raise ConfigError(f"{label}: no such file{hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror}") from None
    import yaml

    try:
        nodes = list(yaml.compose_all(text, Loader=_loader()))
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, label, text) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = f"character {exc.character!r}" if isinstance(exc.character, str) else "a byte"
        raise ConfigError(f"not valid YAML: {char} is not allowed", f"{label}:{line}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", label) from None
    if len(nodes) != 1 or nodes[0] is None:
        found = "nothing" if not nodes or nodes[0] is None else f"{len(nodes)} YAML documents"
        raise ConfigError(f"expected one pipeline mapping, found {found}", f"{label}:1")
    return nodes[0]


def _yaml_error(exc: yaml.MarkedYAMLError, label: str, text: str) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    line = f"{label}:{mark.line + 1}" if mark else label
    problem = exc.problem or "syntax error"
    source = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
    if "\t" in source[: mark.column + 1 if mark else 0] or "'\\t'" in problem:
        problem = "a tab character; YAML indents with spaces only"
    context = f" ({exc.context})" if exc.context else ""
    return ConfigError(f"not valid YAML: {problem}{context}", line)


def _check(path: Path) -> _Raw:
    from ci_orchestrator import schema

    label = _label(path)
    node = read_yaml(path, label)
    ctx = schema.Context(label, errors=[])
    values = schema.PIPELINE.check(node, ctx)
    if ctx.errors:
        raise _every(ctx.errors)
    where = {
        key[1]: f"{label}:{line}"
        for key, line in ctx.lines.items()
        if len(key) == 2 and key[0] == "steps"
    }
    for key, line in ctx.lines.items():
        if len(key) == 4 and key[0] == "steps" and key[2] == "needs":
            where[f"{key[1]}\0needs\0{key[3]}"] = f"{label}:{line}"
    return _Raw(label, values, ctx.lines, where, files=[path])


def _every(errors: list[ConfigError]) -> ConfigError:
    """One error as itself; several as one error that shows each on its line."""
    return errors[0] if len(errors) == 1 else ConfigErrors(errors)


def _resolve(path: Path, chain: tuple[Path, ...]) -> _Raw:
    """Read a file and everything it extends, merged; the file's own keys win."""
    real = path.resolve()
    if real in chain:
        names = " -> ".join(_label(p) for p in (*chain, real))
        raise ConfigError(f"extends loop: {names}")
    raw = _check(path)
    parent = raw.values.get("extends")
    if parent is None:
        _require_run(raw)
        return raw
    base = _resolve(_extends_path(parent, path, raw), (*chain, real))
    return _merge(base, raw)


def _extends_path(parent: str, path: Path, raw: _Raw) -> Path:
    from ci_orchestrator.templates import template_names, template_path

    found = template_path(parent)
    if found is not None:
        return found
    candidate = path.parent / parent
    if candidate.is_file():
        return candidate
    where = f"{raw.label}:{raw.lines.get(('extends',), 1)}"
    choices = ", ".join(template_names())
    raise ConfigError(
        f"no template or file named {parent!r} (templates: {choices})", where, "extends"
    )


def _require_run(raw: _Raw) -> None:
    errors = [
        ConfigError(
            "missing key 'run' (write `run: null` to leave a step not configured)",
            raw.where[name],
            f"steps.{name}",
        )
        for name, step in raw.values.get("steps", {}).items()
        if "run" not in step
    ]
    if errors:
        raise _every(errors)


def _merge(base: _Raw, child: _Raw) -> _Raw:
    values = {**base.values, **child.values}
    values.pop("extends", None)
    defaults = {**base.values.get("defaults", {}), **child.values.get("defaults", {})}
    defaults["env"] = _env(base.values.get("defaults", {}), child.values.get("defaults", {}))
    values["defaults"] = defaults
    steps = dict(base.values.get("steps", {}))
    for name, step in child.values.get("steps", {}).items():
        steps[name] = {**steps.get(name, {}), **step, "env": _env(steps.get(name, {}), step)}
    values["steps"] = steps
    where = {**base.where, **child.where}
    typos = {**base.typos, **_typos(base, child)}
    return _Raw(child.label, values, child.lines, where, True, [*child.files, *base.files], typos)


def _typos(base: _Raw, child: _Raw) -> dict[str, str]:
    """Steps the child adds whose name is close to a base step it leaves alone (`tset`)."""
    import difflib

    base_steps = base.values.get("steps", {})
    child_steps = child.values.get("steps", {})
    untouched = [name for name in base_steps if name not in child_steps]
    typos = {}
    for name in child_steps:
        match = difflib.get_close_matches(name, untouched, n=1, cutoff=0.6)
        if name not in base_steps and match:
            typos[name] = match[0]
    return typos


def _env(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, str]:
    return {**base.get("env", {}), **child.get("env", {})}


def _build(raw: _Raw, path: Path) -> Pipeline:
    values = raw.values
    if not values.get("steps"):
        raise ConfigError("expected at least one step under `steps`", f"{raw.label}:1", "steps")
    defaults = values.get("defaults", {})
    steps = {
        name: _step(name, spec, defaults, raw.where.get(name, raw.label))._replace(
            need_locations=_need_locations(raw, name, spec),
            typo_of=raw.typos.get(name),
        )
        for name, spec in values["steps"].items()
    }
    pipeline = Pipeline(
        name=values.get("name") or _default_name(path, raw.label),
        steps=steps,
        source=raw.label,
        base_dir=path.parent if not raw.label.startswith("template:") else Path.cwd(),
        description=values.get("description", ""),
        setup=_strings(values.get("setup", ())),
    )
    check_graph(pipeline)
    return pipeline


def _need_locations(raw: _Raw, name: str, spec: Mapping[str, Any]) -> tuple[str, ...]:
    step_at = raw.where.get(name, raw.label)
    return tuple(
        raw.where.get(f"{name}\0needs\0{i}", step_at) for i in range(len(spec.get("needs", ())))
    )


def _default_name(path: Path, label: str) -> str:
    if label.startswith("template:"):
        return label.split(":", 1)[1]
    stem = path.name.removeprefix(".").removesuffix(".yml").removesuffix(".yaml")
    return stem or path.name


def _step(name: str, spec: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> Step:
    retry_raw = spec.get("retry", defaults.get("retry"))
    if isinstance(defaults.get("retry"), dict) and isinstance(spec.get("retry"), dict):
        retry_raw = {**defaults["retry"], **spec["retry"]}
    return Step(
        name=name,
        run=spec.get("run"),
        needs=tuple(spec.get("needs", ())),
        condition=spec.get("if"),
        when=spec.get("when", "success"),
        timeout=spec.get("timeout", defaults.get("timeout")),
        kill_grace=spec.get("kill_grace", defaults.get("kill_grace")),
        retry=Retry.parse(retry_raw),
        env={**defaults.get("env", {}), **spec.get("env", {})},
        cwd=spec.get("cwd"),
        junit=_strings(spec.get("junit", ())),
        artifacts=_strings(spec.get("artifacts", ())),
        paths=_strings(spec.get("paths", defaults.get("paths", ()))),
        inputs=_strings(spec.get("inputs", ())),
        outputs=_strings(spec.get("outputs", ())),
        cache=spec.get("cache", "local"),
        description=spec.get("description", ""),
        location=where,
    )


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    """A key that takes one string or a list of them."""
    return (value,) if isinstance(value, str) else tuple(value)


def check_graph(pipeline: Pipeline) -> None:
    """Unknown needs (each, at its line) and cycles as configuration errors."""
    errors = []
    for name, step in pipeline.steps.items():
        for index, need in enumerate(step.needs):
            if need not in pipeline.steps:
                hint = graph.closest(need, pipeline.steps)
                where = step.need_locations[index] if index < len(step.need_locations) else ""
                errors.append(
                    ConfigError(
                        f"{need!r} is not a step{hint}",
                        where or step.location,
                        f"steps.{name}.needs",
                    )
                )
    if errors:
        raise _every(errors)
    try:
        graph.validate(pipeline.graph())
    except CycleError as exc:
        first = pipeline.steps[exc.cycle[0]].location
        raise ConfigError(str(exc), first, "steps") from None
    except WorkflowError as exc:
        raise ConfigError(str(exc), pipeline.source, "steps") from None


# --- overrides from the command line ---


class Overrides(NamedTuple):
    """What the command line changes: commands, skips and a selection of steps."""

    commands: Mapping[str, str] = MappingProxyType({})  # --set STEP=CMD
    skip: Iterable[str] = ()  # --skip STEP
    skip_env: Iterable[str] = ()  # SKIP=a,b (unknown names ignored: pre-commit shares it)
    only: Iterable[str] = ()  # --only STEP
    with_deps: bool = True  # False with --no-deps
    junit: Mapping[str, tuple[str, ...]] = MappingProxyType({})  # --junit STEP=GLOB


def parse_assignment(text: str, option: str = "--set") -> tuple[str, str]:
    name, sep, command = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{option}: expected STEP=COMMAND, got {text!r}")
    return name.strip(), command


def split_junit(
    values: Iterable[str], steps: Iterable[str]
) -> tuple[Path | None, dict[str, tuple[str, ...]]]:
    """`--junit` values: STEP=GLOB (the step's JUnit files, as `junit:` names them) or the FILE
    to write the run's JUnit XML to. A value is STEP=GLOB when the part before `=` is a step, or
    a name without `/` (then a misspelt step: an error that suggests one)."""
    steps = list(steps)
    out: Path | None = None
    globs: dict[str, tuple[str, ...]] = {}
    for value in values:
        name, sep, glob = value.partition("=")
        if sep and (name in steps or "/" not in name):
            if name not in steps:
                hint = graph.closest(name, steps)
                raise UsageError(
                    f"--junit: no step named {name!r}{hint}; for a FILE to write, write ./{value}"
                )
            if not glob:
                raise UsageError(f"--junit: expected STEP=GLOB, got {value!r}")
            globs[name] = (*globs.get(name, ()), glob)
        elif out is not None:
            raise UsageError(f"--junit: one FILE to write, got {str(out)!r} and {value!r}")
        else:
            out = Path(value)
    return out, globs


def apply_overrides(pipeline: Pipeline, overrides: Overrides) -> Pipeline:
    steps = dict(pipeline.steps)
    for name, command in overrides.commands.items():
        steps[name] = pipeline.step(name, "--set")._replace(run=command or None)
    for name, globs in overrides.junit.items():
        pipeline.step(name, "--junit")
        steps[name] = steps[name]._replace(junit=globs)
    for name in overrides.skip:
        pipeline.step(name, "--skip")
        steps[name] = steps[name]._replace(skip_reason="skipped by --skip")
    for name in overrides.skip_env:
        if name in steps:
            steps[name] = steps[name]._replace(skip_reason="skipped by SKIP")
    only = list(overrides.only)
    if only:
        for name in only:
            pipeline.step(name, "--only")
        keep = set(only) | (
            graph.ancestors(pipeline.graph(), only) if overrides.with_deps else set()
        )
        steps = {name: _only(step, keep) for name, step in steps.items() if name in keep}
    return pipeline._replace(steps=steps)


def typo_warnings(pipeline: Pipeline) -> list[str]:
    """Steps a file adds under `extends` that look like a misspelt step of what it extends."""
    out = []
    for name, step in pipeline.steps.items():
        if step.typo_of is None or step.typo_of not in pipeline.steps:
            continue
        left = pipeline.steps[step.typo_of].run is None
        effect = f" ({step.typo_of!r} stays not configured)" if left else ""
        out.append(
            f"{step.location}: steps.{name}: adds a step that the pipeline it extends does not"
            f" have; did you mean {step.typo_of!r}?{effect}"
        )
    return out


def unknown_skip_env(pipeline: Pipeline, names: Iterable[str]) -> str | None:
    """One warning for the names in SKIP that are no step (kept: pre-commit reads SKIP too)."""
    unknown = [name for name in dict.fromkeys(names) if name not in pipeline.steps]
    if not unknown:
        return None
    shown = ", ".join(f"{n!r}{graph.closest(n, pipeline.steps)}" for n in unknown)
    return (
        f"SKIP: no step named {shown} in {pipeline.source}; ignored here"
        " (other tools that read SKIP, such as pre-commit, may use it)"
    )


def _only(step: Step, keep: set[str]) -> Step:
    """A selected step without the needs left out; one that reacts to an upstream failure
    (`when: failure`) lost that upstream, so whoever selected it decided: it runs."""
    needs = tuple(n for n in step.needs if n in keep)
    when = "always" if step.when == "failure" and needs != step.needs else step.when
    return step._replace(needs=needs, when=when)


# --- the set-up ---

SETUP_STEP = "set-up"


def with_setup(pipeline: Pipeline) -> Pipeline:
    """The pipeline with its `setup:` commands as a first step, `set-up`, that every step needs
    (`run --setup`, and each job of an exported workflow): when it fails, the steps are skipped
    with `dependency 'set-up' failed` and the run fails, naming the set-up, not a step."""
    if not pipeline.setup:
        return pipeline
    if SETUP_STEP in pipeline.steps:
        where = pipeline.steps[SETUP_STEP].location
        raise ConfigError(
            f"a step named {SETUP_STEP!r} would clash with the set-up; rename the step",
            where,
            f"steps.{SETUP_STEP}",
        )
    first = Step(
        SETUP_STEP,
        setup_script(pipeline.setup),
        description="The pipeline's `setup:` commands.",
        location=pipeline.source,
    )
    steps = {name: s._replace(needs=(SETUP_STEP, *s.needs)) for name, s in pipeline.steps.items()}
    return pipeline._replace(steps={SETUP_STEP: first, **steps})


def setup_script(commands: Iterable[str]) -> str:
    """The set-up commands as one script that stops at the first one that fails."""
    commands = list(commands)
    return commands[0] if len(commands) == 1 else "\n".join(["set -e", *commands])


# --- the built-in templates ---


def load_template(name: str) -> WorkflowTemplate:
    """The built-in template `name`, loaded like any pipeline file."""
    from ci_orchestrator.templates import WorkflowTemplate, template_path, template_text

    template_text(name)  # a clear error for an unknown name
    pipeline = load_pipeline(template_path(name))
    return WorkflowTemplate(pipeline.name, pipeline.description, tuple(pipeline.steps.values()))


def ci_cd_template() -> WorkflowTemplate:
    """lint -> build -> test -> deploy (deploy only on the default branch)."""
    return load_template("ci_cd")


def code_review_template() -> WorkflowTemplate:
    """generate -> test -> review -> merge (merge only on the default branch)."""
    return load_template("code_review")


def data_pipeline_template() -> WorkflowTemplate:
    """ingest -> validate -> transform -> export."""
    return load_template("data_pipeline")
