"""Durations as people write them (`90`, `90s`, `15m`, `1h30m`, `250ms`) and as we print them."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
# One regex for the loader and the JSON Schema: digits with units, at least one non-zero digit.
DURATION_PATTERN = rf"^(?=.*[1-9])(?:\d+(?:\.\d+)?|(?:{_PART})+)$"
_DURATION = re.compile(DURATION_PATTERN)
_PARTS = re.compile(_PART)


def parse_duration(value: str | float) -> float | None:
    """Seconds, or None when `value` is not a positive duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    text = value.strip()
    if not _DURATION.match(text):
        return None
    if text[-1].isdigit():
        return float(text)
    return sum(float(num) * _UNITS[unit] for num, unit in _PARTS.findall(text))


def median(values: Iterable[float]) -> float:
    """The median (without `statistics`, which costs start-up to import)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def format_seconds(seconds: float) -> str:
    """Short human duration: 850ms, 4.2s, 3m05s, 1h02m."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
