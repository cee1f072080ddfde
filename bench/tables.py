"""Result tables, and their two renderings: Markdown (docs/benchmarks.md) and aligned text (stdout).

The renderers are pure functions: tables in, text out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum


class Verdict(str, Enum):
    MET = "met"
    MISSED = "MISSED"
    UNCHECKED = "not checked"  # --quick (tiny sizes), or a peer to compare with is missing


def verdict(ok: bool, checked: bool = True) -> Verdict:
    if not checked:
        return Verdict.UNCHECKED
    return Verdict.MET if ok else Verdict.MISSED


@dataclass(frozen=True)
class Row:
    cells: tuple[str, ...]
    target: str = ""
    verdict: Verdict | None = None


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    short: str = ""  # how a missed target names the table

    @property
    def has_targets(self) -> bool:
        return any(row.target for row in self.rows)

    def grid(self) -> list[tuple[str, ...]]:
        """Header and rows as cells, with the target and verdict columns when there are targets."""
        if not self.has_targets:
            return [self.headers, *(row.cells for row in self.rows)]
        head = (*self.headers, "target", "verdict")
        body = [
            (*row.cells, row.target, row.verdict.value if row.verdict else "") for row in self.rows
        ]
        return [head, *body]

    def missed(self) -> list[str]:
        name = self.short or self.title
        return [f"{name}: {row.cells[0]}" for row in self.rows if row.verdict is Verdict.MISSED]


def markdown(table: Table) -> str:
    head, *body = table.grid()
    lines = [f"## {table.title}", "", _md_row(head), _md_row(tuple("---" for _ in head))]
    lines += [_md_row(cells) for cells in body]
    if table.notes:
        lines += ["", *table.notes]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def text(table: Table) -> str:
    grid = table.grid()
    widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))]
    lines = [table.title, "=" * len(table.title)]
    for number, cells in enumerate(grid):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)))
        if number == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [f"  {note}" for note in table.notes]
    return "\n".join(line.rstrip() for line in lines) + "\n"


# --- cell formats ---


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.3f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"
