"""Trend charts (pure: a `Trend` in, charts out): what each plots, and Mermaid `xychart-beta`.

`trend_charts` turns the analytics' buckets into `Chart`s (title, axis labels, a unit chosen by
range, values rounded for reading); Markdown draws them with `to_xychart`, HTML as SVG
(`render/svg.py`), so both show the same numbers. A series with fewer than `MIN_POINTS` buckets
is no chart: a one-line note says so.

Mermaid safety: the x labels are dates we format and the values numbers, but titles can name a
step or test. `chart_text` keeps only letters, digits, spaces and a few harmless marks, so no
name can close the quoted title, the fence (backticks), start a directive (`%%{`), a comment,
markup or an entity; the fence around the chart is longer than any backtick run anyway.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import NamedTuple

from ci_orchestrator.report_records import FlakeTrend, Trend, TrendBucket

MIN_POINTS = 3
_UNSAFE = re.compile(r"[^\w .,:/()+-]+")
_UNITS = (  # (largest value shown in it, in ms; name; ms per unit)
    (120_000.0, "seconds", 1000.0),
    (7_200_000.0, "minutes", 60_000.0),
    (math.inf, "hours", 3_600_000.0),
)


class Series(NamedTuple):
    name: str  # what the legend says: median, p95, pass rate, flake rate
    kind: str  # bar | line
    values: tuple[float, ...]


class Chart(NamedTuple):
    """One chart, ready to draw: labels and values are what a reader sees."""

    title: str  # plain text; `chart_text` before it goes into Mermaid
    labels: tuple[str, ...]  # x axis, one per bucket: MM-DD of its start
    x_axis: str  # what the labels are: "Day (UTC)", "Week from (UTC)"
    axis: str  # the y axis' name with its unit: "Minutes", "Pass rate (percent)"
    top: float  # the y axis' upper end
    series: tuple[Series, ...]

    @property
    def legend(self) -> str:
        """`Bars: median · line: p95` (xychart-beta draws no legend)."""
        parts = [f"{'Bars' if s.kind == 'bar' else 'Line'}: {s.name}" for s in self.series]
        return " · ".join(parts)


class Charts(NamedTuple):
    charts: tuple[Chart, ...]
    notes: tuple[str, ...]  # a line per series too short to draw


def trend_charts(trend: Trend | None) -> Charts:
    """The charts of a trend: run duration, pass rate, then each flaky entry's weekly rate."""
    if trend is None:
        return Charts((), ())
    period = "day" if trend.bucket_days == 1 else f"{trend.bucket_days} days"
    unit = "day" if trend.bucket_days == 1 else f"{trend.bucket_days}-day period"
    charts, notes = [], []
    for title, points, make in (
        (f"Run duration per {period}", trend.durations, duration_chart),
        (f"Pass rate per {period}", trend.pass_rate, pass_rate_chart),
    ):
        if len(points) >= MIN_POINTS:
            charts.append(make(title, points))
        else:
            notes.append(f"{title}: left out, {short(points, unit)}.")
    if len(notes) == 2 and len(trend.durations) == len(trend.pass_rate):  # one note says it
        notes = [f"Duration and pass rate charts: left out, {short(trend.pass_rate, unit)}."]
    for flake in trend.flake_rates:
        title = flake_title(flake)
        if len(flake.points) >= MIN_POINTS:
            charts.append(flake_chart(title, flake.points))
        else:
            notes.append(f"{title}: left out, {short(flake.points, 'week')}.")
    return Charts(tuple(charts), tuple(notes))


def short(points: Sequence[TrendBucket], unit: str) -> str:
    """`2 days with runs (3 needed)`"""
    plural = "" if len(points) == 1 else "s"
    return f"{len(points)} {unit}{plural} with runs ({MIN_POINTS} needed)"


def flake_title(flake: FlakeTrend) -> str:
    what = clip(flake.step, 40)
    if flake.test:
        what = f"test {clip(flake.test, 50)} in {what}"
    return f"Flake rate per week: {what}"


def duration_chart(title: str, points: Sequence[TrendBucket]) -> Chart:
    top_ms = max(p.p95 if p.p95 is not None else p.value for p in points)
    name, per = next((name, per) for limit, name, per in _UNITS if top_ms < limit)
    p50 = tuple(round(p.value / per, 1) for p in points)
    p95 = tuple(round((p.p95 if p.p95 is not None else p.value) / per, 1) for p in points)
    series = (Series("median", "bar", p50), Series("p95", "line", p95))
    return Chart(
        title, labels(points), x_axis(title), name.capitalize(), nice_top(max(p95)), series
    )


def pass_rate_chart(title: str, points: Sequence[TrendBucket]) -> Chart:
    values = tuple(round(p.value * 100, 1) for p in points)
    return Chart(
        title,
        labels(points),
        x_axis(title),
        "Pass rate (percent)",
        100.0,
        (Series("pass rate", "bar", values),),
    )


def flake_chart(title: str, points: Sequence[TrendBucket]) -> Chart:
    values = tuple(round(p.value * 100, 1) for p in points)
    top = min(100.0, nice_top(max(values)))
    return Chart(
        title,
        labels(points),
        x_axis(title),
        "Flake rate (percent)",
        top,
        (Series("flake rate", "line", values),),
    )


def x_axis(title: str) -> str:
    if title.endswith(" per day"):
        return "Day (UTC)"
    return "Week from (UTC)" if " per week" in title else "Period from (UTC)"


def labels(points: Sequence[TrendBucket]) -> tuple[str, ...]:
    return tuple(datetime.fromtimestamp(p.start, tz=timezone.utc).strftime("%m-%d") for p in points)


def nice_top(value: float) -> float:
    """The axis' upper end: 1, 2 or 5 times a power of ten, above `value` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= value))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chart_text(text: str) -> str:
    """Text safe inside a quoted Mermaid string: see the module docstring."""
    return " ".join(_UNSAFE.sub(" ", text).split())


def number(value: float) -> str:
    return f"{value:g}"


def to_xychart(chart: Chart) -> str:
    """The chart as Mermaid `xychart-beta` (without the fence)."""
    categories = ", ".join(f'"{chart_text(label)}"' for label in chart.labels)
    lines = [
        "xychart-beta",
        f'    title "{chart_text(chart.title)}"',
        f'    x-axis "{chart_text(chart.x_axis)}" [{categories}]',
        f'    y-axis "{chart_text(chart.axis)}" 0 --> {number(chart.top)}',
    ]
    lines += [f"    {s.kind} [{', '.join(map(number, s.values))}]" for s in chart.series]
    return "\n".join(lines)
