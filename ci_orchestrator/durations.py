"""Durations as people write them (`90`, `90s`, `15m`, `1h30m`, `250ms`) and as we print them."""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d)"
# One regex for the loader and the JSON Schema: digits with units, at least one non-zero digit.
DURATION_PATTERN = rf"^(?=.*[1-9])(?:\d+(?:\.\d+)?|(?:{_PART})+)$"
_DURATION = re.compile(DURATION_PATTERN)
# A zero duration written any way (`0`, `0s`, `0.0`, `0m0s`): valid where waiting is optional.
ZERO_PATTERN = r"^(?:0+(?:\.0+)?|(?:0+(?:\.0+)?(?:ms|s|m|h|d))+)$"
_ZERO = re.compile(ZERO_PATTERN)
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


def is_zero_duration(value: str | float) -> bool:
    """Whether `value` is a duration of nothing: 0, 0.0, "0", "0s", "0m0s"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return value == 0
    return bool(_ZERO.match(value.strip()))


def median(values: Iterable[float]) -> float:
    """The median (without `statistics`, which costs start-up to import)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of no values")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def format_seconds(seconds: float) -> str:
    """Short human duration: 850ms, 4.2s, 3m05s, 1h02m (rounded first: 999.6ms is 1s)."""
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours}h{minutes:02d}m"
