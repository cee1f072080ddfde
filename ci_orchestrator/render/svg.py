"""Inline SVG for the HTML report (pure: data in, markup out): trend charts and the run's DAG.

Every text and attribute value from data goes through `esc` (html.escape, quotes included), and
no element refers to anything outside the document. Colours are CSS classes, so the page's
light and dark schemes apply to the pictures too.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping, Sequence

from ci_orchestrator import graph as dag
from ci_orchestrator.errors import CycleError
from ci_orchestrator.render.charts import Chart, number

CHART_W, CHART_H = 512, 250  # two side by side in the page's width
PLOT = (56, 44, 16, 48)  # left, top, right, bottom margins: title and legend above the plot
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 34, 56, 14, 12
TITLE_CHARS = 54  # of a chart's title (the whole title is its accessible name)
NAME_CHARS = 20  # of a step's name inside its box; the whole name is its tooltip
_UNENCODABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


def esc(text: str) -> str:
    """Text as inert HTML (element content or a quoted attribute value)."""
    return html.escape(_UNENCODABLE.sub("\ufffd", text), quote=True)


def short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- trend charts ---


def chart_svg(chart: Chart) -> str:
    """A bar and/or line chart with its axes, ticks, labels, a legend and a tooltip per point."""
    left, top, right, bottom = PLOT
    width, height = CHART_W - left - right, CHART_H - top - bottom
    count = len(chart.labels)
    step = width / count

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    def y(value: float) -> float:
        return top + height - min(value, chart.top) / chart.top * height

    parts = [
        f'<svg class="chart" viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}"'
        f' height="{CHART_H}" role="img" aria-label="{esc(chart.title)}">',
        f'<text class="title" x="{left}" y="18">{esc(short(chart.title, TITLE_CHARS))}</text>',
        *y_ticks(chart, left, width, y),
        *x_labels(chart, x, top + height),
        f'<text class="axis" x="12" y="{top + height / 2:.1f}" transform="rotate(-90 12'
        f' {top + height / 2:.1f})" text-anchor="middle">{esc(chart.axis)}</text>',
    ]
    for index, series in enumerate(chart.series):
        values = list(enumerate(series.values))
        tips = [f"{chart.labels[i]}: {number(v)} ({series.name})" for i, v in values]
        if series.kind == "bar":
            parts += [
                f'<rect class="bar" x="{x(i) - step * 0.3:.1f}" y="{y(v):.1f}"'
                f' width="{step * 0.6:.1f}" height="{top + height - y(v):.1f}">'
                f"<title>{esc(tips[i])}</title></rect>"
                for i, v in values
            ]
        else:
            points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series.values))
            parts.append(f'<polyline class="line" points="{points}"/>')
            parts += [
                f'<circle class="dot" cx="{x(i):.1f}" cy="{y(v):.1f}" r="3">'
                f"<title>{esc(tips[i])}</title></circle>"
                for i, v in values
            ]
        parts.append(legend_item(series.kind, series.name, left + 90 * index, 36))
    parts.append("</svg>")
    return "\n".join(parts)


def y_ticks(chart: Chart, left: int, width: float, y: Callable[[float], float]) -> list[str]:
    out = []
    lead = chart.top / 10 ** math.floor(math.log10(chart.top))
    parts = 4 if round(lead) == 2 else 5  # steps of 0.5, 1 or 2 times a power of ten
    for i in range(parts + 1):
        value = chart.top * i / parts
        at = y(value)
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + width:.1f}" y1="{at:.1f}" y2="{at:.1f}"/>'
        )
        out.append(
            f'<text class="tick" x="{left - 6}" y="{at + 4:.1f}" text-anchor="end">'
            f"{number(round(value, 2))}</text>"
        )
    return out


def x_labels(chart: Chart, x: Callable[[int], float], baseline: float) -> list[str]:
    """Every label when they fit, else every k-th (the last always), and the axis' name."""
    count = len(chart.labels)
    every = max(1, math.ceil(count / 10))
    shown = [i for i in range(count) if i % every == 0 or i == count - 1]
    if len(shown) > 1 and shown[-1] - shown[-2] < every:
        shown.pop(-2)
    out = [
        f'<text class="tick" x="{x(i):.1f}" y="{baseline + 16:.1f}" text-anchor="middle">'
        f"{esc(chart.labels[i])}</text>"
        for i in shown
    ]
    out.append(
        f'<text class="axis" x="{CHART_W / 2:.0f}" y="{CHART_H - 8}" text-anchor="middle">'
        f"{esc(chart.x_axis)}</text>"
    )
    return out


def legend_item(kind: str, name: str, x: float, y: float) -> str:
    mark = (
        f'<rect class="bar" x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10"/>'
        if kind == "bar"
        else f'<line class="line" x1="{x:.0f}" x2="{x + 12:.0f}" y1="{y - 4:.0f}" y2="{y - 4:.0f}"'
        "/>"
    )
    return f'{mark}<text class="legend" x="{x + 16:.0f}" y="{y:.0f}">{esc(name)}</text>'


# --- the DAG ---


def layers(graph: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's layer: 0 for no needs, else one more than the deepest of its needs (a graph
    with a cycle, which a run never has, is drawn in one layer)."""
    try:
        order = dag.topological_order(graph)
    except CycleError:
        return dict.fromkeys(graph, 0)
    layer: dict[str, int] = {}
    for name in order:
        layer[name] = 1 + max((layer[n] for n in graph[name] if n in layer), default=-1)
    return layer


def dag_svg(graph: Mapping[str, Sequence[str]], status: Mapping[str, str]) -> str:
    """Steps as boxes in columns by layer (left to right), needs as arrows, coloured by status."""
    layer = layers(graph)
    columns: dict[int, list[str]] = {}
    for name in graph:  # the run's order within a layer
        columns.setdefault(layer[name], []).append(name)
    where = {
        name: (PAD + col * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y))
        for col, names in columns.items()
        for row, name in enumerate(names)
    }
    width = PAD * 2 + len(columns) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(c) for c in columns.values()) * (NODE_H + GAP_Y) - GAP_Y
    parts = [
        f'<svg class="dag" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        ' role="img" aria-label="Pipeline graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path class="arrow" d="M0,0 L10,5 L0,10 z"/>'
        "</marker></defs>",
    ]
    for name, needs in graph.items():
        x2, y2 = where[name]
        for need in needs:
            x1, y1 = where[need]
            parts.append(edge(x1 + NODE_W, y1 + NODE_H / 2, x2, y2 + NODE_H / 2))
    for name, (x, y) in where.items():
        state = status.get(name, "pending")
        parts.append(
            f'<g class="node s-{esc(css_word(state))}"><title>{esc(name)}: {esc(state)}</title>'
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + NODE_W / 2:.0f}" y="{y + NODE_H / 2 + 5:.0f}" text-anchor="middle">'
            f"{esc(short(name, NAME_CHARS))}</text></g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def edge(x1: float, y1: float, x2: float, y2: float) -> str:
    mid = (x1 + x2) / 2
    return (
        f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f}'
        f' {x2:.0f},{y2:.0f}" marker-end="url(#arrow)"/>'
    )


def css_word(status: str) -> str:
    """A status as a class name (statuses are ours; anything else is `other`)."""
    return status if re.fullmatch(r"[a-z]+", status) else "other"
