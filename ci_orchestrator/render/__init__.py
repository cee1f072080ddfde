"""Renderers: records in, text out."""

from __future__ import annotations


def plural(count: int, noun: str, many: str = "") -> str:
    """`1 step`, `2 steps` (`many` when adding an s is wrong)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
