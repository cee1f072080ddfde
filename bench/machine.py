"""What the numbers were measured on: CPU, Python, the tools' versions, the load, the date."""

from __future__ import annotations

import os
import platform
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from bench.tables import Row, Table
from bench.tools import VERSION_ARGS, version


@dataclass(frozen=True)
class Machine:
    cpu: str
    cpus: int
    system: str
    python: str
    sqlite: str
    tools: dict[str, str]  # tool -> its --version line
    load: tuple[float, float, float]  # 1, 5 and 15 minute load averages at the start
    date: str  # UTC


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> Machine:
    return Machine(
        cpu=cpu_model(),
        cpus=os.cpu_count() or 1,
        system=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        tools={name: version(name) for name in VERSION_ARGS},
        load=os.getloadavg(),
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def table(machine: Machine) -> Table:
    rows = [
        Row(("CPU", f"{machine.cpu} ({machine.cpus} CPUs)")),
        Row(("system", machine.system)),
        Row(("Python", machine.python)),
        Row(("SQLite (Python's)", machine.sqlite)),
        *(Row((name, text)) for name, text in machine.tools.items()),
        Row(("load average at start", " / ".join(f"{x:.2f}" for x in machine.load))),
        Row(("date", machine.date)),
    ]
    return Table("Machine", ("item", "value"), tuple(rows))
