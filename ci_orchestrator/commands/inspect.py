"""The commands that read a pipeline without running it: validate, graph, schema, templates."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from ci_orchestrator.config import load_pipeline, load_template, typo_warnings
from ci_orchestrator.errors import ConfigError, ExitCode, UsageError
from ci_orchestrator.render import graph as render_graph
from ci_orchestrator.render import plural
from ci_orchestrator.schema import json_schema
from ci_orchestrator.templates import template_names, template_text


def validate(target: str | None, out: TextIO, strict: bool = False) -> int:
    """Check a pipeline file; likely typos are warnings, or errors with `strict`."""
    pipeline = load_pipeline(target, use_cache=False)
    warnings = typo_warnings(pipeline)
    if strict and warnings:
        if len(warnings) == 1:
            raise ConfigError(f"{warnings[0]} (an error with --strict)")
        raise ConfigError("\nerror: ".join([*warnings, f"{len(warnings)} errors with --strict"]))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    configured = sum(1 for s in pipeline.steps.values() if s.run is not None)
    steps = plural(len(pipeline.steps), "step")
    out.write(
        f"{pipeline.source}: valid; pipeline {pipeline.name!r}, {steps} ({configured} configured)\n"
    )
    return ExitCode.OK


def graph(target: str | None, fmt: str, out: TextIO) -> int:
    pipeline = load_pipeline(target)
    dag = pipeline.graph()
    if fmt == "mermaid":
        out.write(render_graph.to_mermaid(dag))
    elif fmt == "dot":
        out.write(render_graph.to_dot(pipeline.name, dag))
    elif fmt == "text":
        notes = {n: f"if {s.condition}" for n, s in pipeline.steps.items() if s.condition}
        out.write(render_graph.to_text(pipeline.name, dag, notes))
    else:
        raise UsageError(f"--format: expected text, mermaid or dot, got {fmt!r}")
    return ExitCode.OK


def schema(out: TextIO) -> int:
    out.write(json.dumps(json_schema(), indent=2) + "\n")
    return ExitCode.OK


def templates_list(out: TextIO) -> int:
    for name in template_names():
        template = load_template(name)
        chain = " -> ".join(step.name for step in template.steps)
        out.write(f"{name:<14} {chain}\n{'':<14} {template.description}\n")
    return ExitCode.OK


def templates_show(name: str, out: TextIO) -> int:
    out.write(template_text(name))
    return ExitCode.OK
