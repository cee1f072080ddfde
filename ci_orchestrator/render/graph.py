"""The pipeline's DAG as text, Mermaid or Graphviz DOT (pure: a graph in, text out)."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence

from ci_orchestrator import graph as dag

Graph = Mapping[str, Sequence[str]]
STATUS_CLASSES = {
    "completed": "fill:#dafbe1,stroke:#1a7f37,color:#1a7f37",
    "failed": "fill:#ffebe9,stroke:#cf222e,color:#cf222e",
    "flaky": "fill:#fff8c5,stroke:#9a6700,color:#9a6700",
    "skipped": "fill:#f6f8fa,stroke:#8c959f,color:#57606a",
    # skipped on purpose: nothing it depends on changed (`paths:`), or its inputs are up to date
    "unchanged": "fill:#f6f8fa,stroke:#1a7f37,stroke-dasharray:4 3,color:#57606a",
    "cancelled": "fill:#fbefff,stroke:#8250df,color:#8250df",
}


def to_text(name: str, graph: Graph, notes: Mapping[str, str] | None = None) -> str:
    """Steps in run order with what each needs; `notes` adds a column (conditions, commands)."""
    notes = notes or {}
    order = dag.topological_order(graph)
    width = max((len(n) for n in order), default=0)
    path = " -> ".join(dag.critical_path(graph, dict.fromkeys(graph, 1.0)))
    lines = [f"{name}: {len(order)} steps; longest chain: {path}"]
    for step in order:
        needs = f"needs {', '.join(graph[step])}" if graph[step] else ""
        note = f"  {notes[step]}" if notes.get(step) else ""
        lines.append(f"  {step:<{width}}  {needs}{note}".rstrip())
    return "\n".join(lines) + "\n"


_MERMAID_UNSAFE = re.compile(r'["<>#&`{}\[\]()|]')


def mermaid_label(text: str) -> str:
    """Step names may hold anything; Mermaid labels get HTML entity codes for its syntax."""
    return _MERMAID_UNSAFE.sub(lambda m: f"#{ord(m.group())};", text.replace("\n", " "))


def to_mermaid(graph: Graph, status: Mapping[str, str] | None = None) -> str:
    """A `flowchart LR`; with `status` (step -> completed/failed/flaky/...), coloured by it."""
    ids = {step: f"s{i}" for i, step in enumerate(graph)}
    lines = ["flowchart LR"]
    for step, node in ids.items():
        lines.append(f'  {node}["{mermaid_label(step)}"]')
    for step, needs in graph.items():
        for need in needs:
            lines.append(f"  {ids[need]} --> {ids[step]}")
    if status:
        used = [s for s in STATUS_CLASSES if s in status.values()]
        for state in used:
            members = ",".join(ids[step] for step in graph if status.get(step) == state)
            lines.append(f"  classDef {state} {STATUS_CLASSES[state]}")
            lines.append(f"  class {members} {state}")
    return "\n".join(lines) + "\n"


def to_dot(name: str, graph: Graph, unchanged: Collection[str] = ()) -> str:
    """Graphviz DOT; names are JSON-quoted, which DOT reads as quoted IDs. `unchanged` steps (a
    run would skip them) are dashed."""
    lines = [f"digraph {json.dumps(name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for step in graph:
        style = " [style=dashed]" if step in unchanged else ""
        lines.append(f"  {json.dumps(step)}{style};")
    for step, needs in graph.items():
        for need in needs:
            lines.append(f"  {json.dumps(need)} -> {json.dumps(step)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
