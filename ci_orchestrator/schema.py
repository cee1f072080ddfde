"""The rules of the pipeline file, written once: they check YAML nodes and they print a JSON Schema.

Each rule checks a composed YAML node (which knows its line) and returns plain Python, or raises
`ConfigError` naming the file, line and key path and saying what was expected. `json_schema()`
turns the same rules into the JSON Schema that `ci-orchestrator schema` prints, so editors accept
exactly what the loader accepts.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.durations import (
    DURATION_PATTERN,
    ZERO_PATTERN,
    is_zero_duration,
    parse_duration,
)
from ci_orchestrator.errors import ConfigError

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"
JSONSchema = dict[str, Any]


@dataclass
class Context:
    """Where we are while checking: the file, the key path, and the lines seen so far."""

    file: str
    path: tuple[str, ...] = ()
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    errors: list[ConfigError] | None = None  # a list: collect every error instead of raising

    def at(self, key: str) -> Context:
        return Context(self.file, (*self.path, key), self.lines, self.errors)

    def report(self, error: ConfigError) -> None:
        """Raise `error`, or keep it and go on when collecting every error of a file."""
        if self.errors is None:
            raise error
        self.errors.append(error)

    def checked(self, rule: Rule, node: yaml.Node, out: dict[str, Any], name: str) -> None:
        """`out[name]`: the value `rule` makes of `node`, unless it is wrong (then reported)."""
        try:
            out[name] = rule.check(node, self.at(name))
        except ConfigError as exc:
            self.report(exc)

    def error(self, node: yaml.Node, message: str) -> ConfigError:
        key = ".".join(_shown(part) for part in self.path) or None
        return ConfigError(message, f"{self.file}:{node.start_mark.line + 1}", key)


def _shown(key: str) -> str:
    """A key as the error shows it: quoted and escaped when it holds odd characters."""
    return key if key.isprintable() and key and "." not in key else json.dumps(key)


def describe(node: yaml.Node) -> str:
    """How a value reads in an error message."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing (null)"
    if node.tag == BOOL:
        return f"{node.value} (a boolean)"
    if node.tag in (INT, FLOAT):
        return f"{node.value} (a number)"
    return json.dumps(node.value)


class Rule:
    expected = "a value"
    plural = ""  # for "a list of ...": derived from `expected` when empty

    def many(self) -> str:
        return self.plural or _plural(self.expected)

    def check(self, node: yaml.Node, ctx: Context) -> Any:
        raise NotImplementedError

    def schema(self) -> JSONSchema:
        raise NotImplementedError

    def fail(self, node: yaml.Node, ctx: Context, hint: str = "") -> ConfigError:
        return ctx.error(node, f"expected {self.expected}, got {describe(node)}{hint}")


def _scalar(node: yaml.Node, *tags: str) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag in tags


@dataclass
class Str(Rule):
    pattern: str | None = None
    expected: str = "a string"
    quote_hint: bool = False  # `run: true`: say to quote it

    def check(self, node: yaml.Node, ctx: Context) -> str:
        if not _scalar(node, STR):
            hint = ""
            if self.quote_hint and _scalar(node, BOOL, INT, FLOAT):
                hint = (
                    f"; YAML read it as a {'boolean' if node.tag == BOOL else 'number'}, quote it"
                )
            raise self.fail(node, ctx, hint)
        value = str(node.value)
        if not value:
            raise ctx.error(node, f"expected {self.expected}, got an empty string")
        if self.pattern and not re.search(self.pattern, value):
            raise self.fail(node, ctx)
        return value

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "string", "minLength": 1}
        if self.pattern:
            out["pattern"] = self.pattern
        return out


@dataclass
class Nullable(Rule):
    rule: Rule

    def __post_init__(self) -> None:
        self.expected = f"{self.rule.expected} or null"

    def check(self, node: yaml.Node, ctx: Context) -> Any:
        return None if _scalar(node, NULL) else self.rule.check(node, ctx)

    def schema(self) -> JSONSchema:
        return {"anyOf": [self.rule.schema(), {"type": "null"}]}


@dataclass
class Int(Rule):
    minimum: int = 0
    maximum: int | None = None
    says: str = ""  # what is expected, in words, when the range alone would read oddly

    def __post_init__(self) -> None:
        top = f" and ≤ {self.maximum}" if self.maximum is not None else ""
        self.expected = self.says or f"an integer ≥ {self.minimum}{top}"

    def check(self, node: yaml.Node, ctx: Context) -> int:
        if not _scalar(node, INT):
            raise self.fail(node, ctx)
        value = int(_CONSTRUCTOR.construct_object(node))
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise self.fail(node, ctx)
        return value

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass
class Number(Rule):
    minimum: float = 0

    def __post_init__(self) -> None:
        self.expected = f"a number ≥ {self.minimum:g}"

    def check(self, node: yaml.Node, ctx: Context) -> float:
        if not _scalar(node, INT, FLOAT):
            raise self.fail(node, ctx)
        value = float(_CONSTRUCTOR.construct_object(node))
        if not value >= self.minimum:  # also rejects .nan
            raise self.fail(node, ctx)
        return value

    def schema(self) -> JSONSchema:
        return {"type": "number", "minimum": self.minimum}


@dataclass
class Duration(Rule):
    """A duration; `zero_ok` also takes 0 (`delay`), else `zero_hint` says why 0 is wrong."""

    zero_ok: bool = False
    zero_hint: str = ""

    def __post_init__(self) -> None:
        kind = "a duration (0 or more)" if self.zero_ok else "a positive duration"
        self.expected = f"{kind} like 90, 90s, 15m or 1h30m"

    def check(self, node: yaml.Node, ctx: Context) -> float:
        value = _CONSTRUCTOR.construct_object(node) if _scalar(node, INT, FLOAT, STR) else None
        if not isinstance(value, (int, float, str)):
            raise self.fail(node, ctx)
        if is_zero_duration(value):
            if self.zero_ok:
                return 0.0
            raise self.fail(node, ctx, f"; {self.zero_hint}" if self.zero_hint else "")
        seconds = parse_duration(value)
        if seconds is None or not math.isfinite(seconds):
            raise self.fail(node, ctx)
        return seconds

    def schema(self) -> JSONSchema:
        number: JSONSchema = {
            "type": "number",
            "minimum" if self.zero_ok else "exclusiveMinimum": 0,
        }
        strings: list[JSONSchema] = [{"type": "string", "pattern": DURATION_PATTERN}]
        if self.zero_ok:
            strings.append({"type": "string", "pattern": ZERO_PATTERN})
        return {"anyOf": [number, *strings]}


@dataclass
class Enum(Rule):
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        self.expected = "one of " + ", ".join(self.values)

    def check(self, node: yaml.Node, ctx: Context) -> str:
        if not _scalar(node, STR) or node.value not in self.values:
            raise self.fail(node, ctx)
        return str(node.value)

    def schema(self) -> JSONSchema:
        return {"enum": list(self.values)}


class EnvValue(Rule):
    expected = "a string, number or boolean"
    plural = "strings, numbers or booleans"

    def check(self, node: yaml.Node, ctx: Context) -> str:
        if not _scalar(node, STR, INT, FLOAT, BOOL):
            raise self.fail(node, ctx)
        if node.tag == BOOL:
            return "true" if _CONSTRUCTOR.construct_object(node) else "false"
        return str(node.value)

    def schema(self) -> JSONSchema:
        return {"type": ["string", "number", "boolean"]}


@dataclass
class List(Rule):
    item: Rule
    unique: bool = False

    def __post_init__(self) -> None:
        self.expected = f"a list of {self.item.many()}"

    def check(self, node: yaml.Node, ctx: Context) -> list[Any]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, ctx)
        for i, item in enumerate(node.value):
            item_path = (*ctx.path, str(i))
            ctx.lines[item_path] = item.start_mark.line + 1
        values = [self.item.check(n, ctx.at(str(i))) for i, n in enumerate(node.value)]
        if self.unique and len(set(values)) != len(values):
            raise ctx.error(node, "expected each entry once, got a repeated entry")
        return values

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "array", "items": self.item.schema()}
        if self.unique:
            out["uniqueItems"] = True
        return out


@dataclass
class Either(Rule):
    """One of two shapes, told apart by the node kind (a scalar shorthand or the long form)."""

    short: Rule
    long: Rule

    def __post_init__(self) -> None:
        self.expected = f"{self.short.expected}, or {self.long.expected}"

    def check(self, node: yaml.Node, ctx: Context) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.short.check(node, ctx)
        return self.long.check(node, ctx)

    def schema(self) -> JSONSchema:
        return {"anyOf": [self.short.schema(), self.long.schema()]}


def _pairs(node: yaml.Node, ctx: Context, rule: Rule) -> list[tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise rule.fail(node, ctx)
    _CONSTRUCTOR.flatten_mapping(node)
    seen: set[str] = set()
    for key, _ in node.value:
        if not _scalar(key, STR, INT, FLOAT, BOOL):
            raise ctx.error(key, f"expected a name as the key, got {describe(key)}")
        if key.value in seen:
            raise ctx.at(key.value).error(key, "this key appears twice in the mapping")
        seen.add(key.value)
    return list(node.value)


@dataclass
class Map(Rule):
    """A mapping of user-chosen names to values of one rule (steps, env)."""

    value: Rule
    key_pattern: str | None = None
    key_expected: str = "a name"

    def __post_init__(self) -> None:
        self.expected = f"a mapping of names to {self.value.many()}"

    def check(self, node: yaml.Node, ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in _pairs(node, ctx, self):
            name = str(key.value)
            if self.key_pattern and not re.search(self.key_pattern, name):
                ctx.report(ctx.at(name).error(key, f"expected {self.key_expected}, got {name!r}"))
                continue
            key_path = (*ctx.path, name)
            ctx.lines[key_path] = key.start_mark.line + 1
            ctx.checked(self.value, value, out, name)
        return out

    def schema(self) -> JSONSchema:
        out: JSONSchema = {"type": "object", "additionalProperties": self.value.schema()}
        if self.key_pattern:
            out["propertyNames"] = {"pattern": self.key_pattern}
        return out


@dataclass
class Obj(Rule):
    """A mapping with known keys; unknown keys get the closest valid one suggested."""

    fields: Mapping[str, Rule]
    description: str = "a mapping"
    docs: Mapping[str, str] = field(default_factory=dict)
    plural: str = "mappings"

    def __post_init__(self) -> None:
        self.expected = self.description

    def check(self, node: yaml.Node, ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in _pairs(node, ctx, self):
            name = str(key.value)
            rule = self.fields.get(name)
            if rule is None:
                ctx.report(ctx.at(name).error(key, self.unknown(name)))
                continue
            key_path = (*ctx.path, name)
            ctx.lines[key_path] = key.start_mark.line + 1
            ctx.checked(rule, value, out, name)
        return out

    def unknown(self, name: str) -> str:
        match = difflib.get_close_matches(name, list(self.fields), n=1, cutoff=0.5)
        if match:
            return f"unknown key {name!r}; did you mean {match[0]!r}?"
        return f"unknown key {name!r}; expected one of {', '.join(self.fields)}"

    def schema(self) -> JSONSchema:
        props = {}
        for name, rule in self.fields.items():
            props[name] = rule.schema()
            if name in self.docs:
                props[name]["description"] = self.docs[name]
        return {"type": "object", "properties": props, "additionalProperties": False}


def _plural(expected: str) -> str:
    for article in ("an ", "a "):
        if expected.startswith(article):
            word, _, rest = expected[len(article) :].partition(" ")
            return f"{word}s {rest}".strip()
    return expected


_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def yaml12_loader(base: type[Any]) -> type[Any]:
    """`base` with YAML 1.2 booleans: only true/false, so `on:` and `yes` stay strings.

    GitHub Actions reads YAML the same way; PyYAML's 1.1 default turns `on` into True.
    """
    loader: type[Any] = type("Loader", (base,), {})
    resolvers = {
        first: [(tag, regex) for tag, regex in entries if tag != BOOL]
        for first, entries in base.yaml_implicit_resolvers.items()
    }
    loader.yaml_implicit_resolvers = resolvers
    loader.add_implicit_resolver(
        BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )
    return loader


# --- the rules of a pipeline file ---

TIMEOUT = Duration(
    zero_hint="a zero timeout would stop the step at once; leave `timeout` out for no limit"
)
STEP_NAME = r"^[^\x00-\x1f\x7f]{1,100}$"
RETRY = Either(
    Int(1),
    Obj(
        {
            "attempts": Int(1, 100),
            "delay": Duration(zero_ok=True),
            "backoff": Number(1),
            "max_delay": Duration(),
            "jitter": Duration(),
            "on": List(Enum(("failure", "timeout")), unique=True),
            "exit_codes": List(Int(0, 255), unique=True),
        },
        "a retry mapping (attempts, delay, backoff, max_delay, jitter, on, exit_codes)",
        {
            "attempts": "How many times to run the step at most (1 = no retry).",
            "delay": "Wait before the second attempt.",
            "backoff": "Multiply the wait by this after each attempt (exponential backoff).",
            "max_delay": "Never wait longer than this between attempts.",
            "jitter": "Add a random wait of up to this much (default: a tenth of the delay).",
            "on": "Retry on failure (non-zero exit) and/or timeout. Default: both.",
            "exit_codes": "Retry a failure only when the step exited with one of these codes.",
        },
    ),
)
ENV = Map(EnvValue(), r"^[A-Za-z_][A-Za-z0-9_]*$", "an environment variable name")
# A path or glob inside the repository: not absolute, not from the home folder, no `..`, one line.
ARTIFACT = Str(
    r"^(?![/~])(?![\s\S]*\n)(?!(?:.*/)?\.\.(?:/|$)).+$",
    "a relative path or glob inside the repository (no leading / or ~, no ..)",
)
# A path glob that may exclude (`!docs/**`): the same rule after the `!`.
PATH_GLOB = Str(
    r"^!?(?![/~])(?![\s\S]*\n)(?!(?:.*/)?\.\.(?:/|$)).+$",
    "a relative glob inside the repository, `!` first to exclude (no leading / or ~, no ..)",
)
PATHS = Either(PATH_GLOB, List(PATH_GLOB))
COMMANDS = Either(Str(quote_hint=True), List(Str(quote_hint=True)))
STEP = Obj(
    {
        "run": Nullable(Str(quote_hint=True)),
        "needs": List(Str(STEP_NAME), unique=True),
        "if": Str(),
        "when": Enum(("success", "failure", "always")),
        "timeout": TIMEOUT,
        "kill_grace": Duration(),
        "retry": RETRY,
        "env": ENV,
        "cwd": Str(),
        "junit": Either(Str(), List(Str())),
        "artifacts": Either(ARTIFACT, List(ARTIFACT)),
        "paths": PATHS,
        "inputs": Either(ARTIFACT, List(ARTIFACT)),
        "outputs": Either(ARTIFACT, List(ARTIFACT)),
        "cache": Enum(("local", "trust-history")),
        "description": Str(),
    },
    "a step mapping (run, needs, if, when, timeout, retry, env, cwd, junit, artifacts, paths,"
    " inputs, outputs, cache, description)",
    plural="step mappings",
    docs={
        "run": "The shell command (bash -o pipefail). null: not configured, the step is skipped.",
        "needs": "Steps that must finish first.",
        "if": "A shell condition: the step runs when it exits 0.",
        "when": "success (default): needs passed; failure: something upstream failed; always.",
        "timeout": "Stop the step after this long (90, 90s, 15m, 1h).",
        "kill_grace": "After a timeout, how long SIGTERM gets before SIGKILL (default 5s).",
        "retry": "Attempts and backoff; a number is the attempt count.",
        "env": "Environment variables for this step.",
        "cwd": "Working directory, relative to the pipeline file.",
        "junit": "JUnit XML file(s) the step writes (glob patterns allowed).",
        "artifacts": "Files the step makes for the steps after it (paths or globs). In an exported"
        " workflow its job uploads them and the jobs after it download them to the same paths;"
        " a local run shares one working tree and does nothing with them.",
        "paths": "Run the step only when a file under these globs changed in the range under"
        " test (the pushed range, the pull request, the push, or `run --changed-since REF`);"
        " `!` excludes. A plain local run applies no path filter.",
        "inputs": "Files whose content, with the step's command, env, cwd and needs, make its"
        " fingerprint: a step whose fingerprint matches a run where it passed is up to date and"
        " skipped (`run --force` runs it anyway).",
        "outputs": "Files the step makes, kept under .ci-orchestrator/cache/ when it passes and"
        " put back when it is skipped as up to date.",
        "cache": "local (default): up to date against this machine's journal, never in GitHub"
        " Actions; trust-history: also in GitHub Actions, against passing runs of the base"
        " branch or this pull request in the history the action restored.",
        "description": "What the step is for.",
    },
)
DEFAULTS = Obj(
    {"timeout": TIMEOUT, "kill_grace": Duration(), "retry": RETRY, "env": ENV, "paths": PATHS},
    "a defaults mapping (timeout, kill_grace, retry, env, paths)",
)
PIPELINE = Obj(
    {
        "version": Int(
            1, 1, f"1 (the only file format version ci-orchestrator {__version__} reads)"
        ),
        "name": Str(),
        "description": Str(),
        "extends": Str(),
        "defaults": DEFAULTS,
        "setup": COMMANDS,
        "steps": Map(STEP, STEP_NAME, "a step name without control characters"),
    },
    "a pipeline mapping (version, name, extends, defaults, setup, steps)",
    {
        "version": "The file format version: 1.",
        "name": "The pipeline's name in reports (default: the file name).",
        "extends": "A built-in template (ci_cd, code_review, data_pipeline) or a pipeline file.",
        "defaults": "Timeout, retry, env and paths for every step.",
        "setup": "Command(s) that prepare a fresh machine, such as `pip install -e .`: each job of"
        " an exported workflow runs them before its step; `run --setup` runs them first as a step"
        " `set-up`, and a plain `run` does not.",
        "steps": "The steps, by name.",
    },
)


def json_schema() -> JSONSchema:
    """The JSON Schema of a pipeline file, for editors and for `ci-orchestrator schema`."""
    schema = PIPELINE.schema()
    step_without_run = schema["properties"]["steps"]["additionalProperties"]
    # Without `extends` every step needs `run` (null marks a step as not configured on purpose).
    schema["if"] = {"not": {"required": ["extends"]}}
    schema["then"] = {
        "properties": {"steps": {"additionalProperties": {**step_without_run, "required": ["run"]}}}
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://ci-orchestrator.dev/schema/pipeline-v1.json",
        "title": "ci-orchestrator pipeline",
        **schema,
    }
