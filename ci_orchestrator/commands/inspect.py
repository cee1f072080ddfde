"""The commands that read a pipeline without running it: validate, graph, schema, templates."""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

from ci_orchestrator.config import load_pipeline, load_template, typo_warnings
from ci_orchestrator.errors import ConfigError, ExitCode, JournalError, UsageError
from ci_orchestrator.model import Pipeline
from ci_orchestrator.render import graph as render_graph
from ci_orchestrator.render import plural
from ci_orchestrator.schema import json_schema
from ci_orchestrator.templates import template_names, template_text


def validate(target: str | None, out: TextIO, strict: bool = False) -> int:
    """Check a pipeline file; likely typos are warnings, or errors with `strict`."""
    from ci_orchestrator.skipping import unmatched_globs

    pipeline = load_pipeline(target, use_cache=False)
    warnings = typo_warnings(pipeline) + unmatched_globs(pipeline)
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


def graph(target: str | None, fmt: str, out: TextIO, changed_since: str | None = None) -> int:
    pipeline = load_pipeline(target)
    dag = pipeline.graph()
    skips = would_skip(pipeline, changed_since)
    if fmt == "mermaid":
        status = dict.fromkeys(skips, "unchanged")
        out.write(render_graph.to_mermaid(dag, status))
    elif fmt == "dot":
        out.write(render_graph.to_dot(pipeline.name, dag, set(skips)))
    elif fmt == "text":
        notes = {n: f"if {s.condition}" for n, s in pipeline.steps.items() if s.condition}
        for name, why in skips.items():
            notes[name] = f"{notes[name]}  " if name in notes else ""
            notes[name] += f"skip: {why}"
        out.write(render_graph.to_text(pipeline.name, dag, notes))
    else:
        raise UsageError(f"--format: expected text, mermaid or dot, got {fmt!r}")
    return ExitCode.OK


def would_skip(pipeline: Pipeline, changed_since: str | None) -> dict[str, str]:
    """The steps a run would leave out as unchanged or up to date, with why (read-only: the
    journal is read when there is one, nothing is written or restored)."""
    from ci_orchestrator import skipping

    if not skipping.uses_skipping(pipeline):
        return {}
    from ci_orchestrator.gitinfo import detect
    from ci_orchestrator.journal import JournalStore, journal_path

    env = dict(os.environ)
    path = journal_path(None, env)
    store = JournalStore(path, read_only=True) if path.is_file() else None
    try:
        plan = skipping.plan(
            pipeline, env=env, context=detect(env), changed_since=changed_since, store=store
        )
    except JournalError:  # a journal from an older version, read-only here: no input history
        plan = skipping.plan(pipeline, env=env, context=detect(env), changed_since=changed_since)
    return {name: d.why for name, d in plan.decisions.items() if not d.runs}


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
