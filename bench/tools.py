"""The tools compared: where their executables are, how each runs a DAG, and their versions.

A tool that is not installed has no executable; the sections report it as skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.formats import DODO, GOAL, MAKEFILE, PIPELINE, TASKFILE

OURS = "ci-orchestrator"
Argv = Callable[[str, str], list[str]]  # (executable, jobs) -> argv


def find(program: str) -> str | None:
    """The program next to this Python (the venv, where pip put the peers), else on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which(program, path=os.pathsep.join([here, os.environ.get("PATH", "")]))


@dataclass(frozen=True)
class Tool:
    """A DAG runner: its name, its executable (None when not installed) and its command line."""

    name: str
    program: str
    argv_for: Argv  # run in the folder of the generated files

    @property
    def executable(self) -> str | None:
        return find(self.program)

    def argv(self, jobs: int) -> list[str]:
        executable = self.executable
        if executable is None:
            raise RuntimeError(f"{self.name} is not installed")
        return self.argv_for(executable, str(jobs))

    def usage(self) -> str:
        """The command line, as the docs show it."""
        return " ".join(self.argv_for(self.program, "N"))


def _ours(exe: str, jobs: str) -> list[str]:
    return [exe, "run", PIPELINE, "--jobs", jobs, "-q", "--no-journal"]


def _make(exe: str, jobs: str) -> list[str]:
    return [exe, "-s", "-f", MAKEFILE, "-j", jobs, GOAL]


def _task(exe: str, jobs: str) -> list[str]:
    return [exe, "--silent", "--taskfile", TASKFILE, "--concurrency", jobs, GOAL]


def _doit(exe: str, jobs: str) -> list[str]:
    return [exe, "run", "-f", DODO, "-n", jobs, "-P", "thread"]


def dag_runners() -> list[Tool]:
    """Ours first, then the peers, in the order the tables show them."""
    return [
        Tool(OURS, "ci-orchestrator", _ours),
        Tool("make", "make", _make),
        Tool("go-task", "task", _task),
        Tool("doit", "doit", _doit),
    ]


VERSION_ARGS: Mapping[str, tuple[str, list[str]]] = {
    OURS: ("ci-orchestrator", ["--version"]),
    "make": ("make", ["--version"]),
    "go-task": ("task", ["--version"]),
    "doit": ("doit", ["--version"]),
    "pre-commit": ("pre-commit", ["--version"]),
}


def version(name: str) -> str:
    """The first line the tool prints for `--version`, or 'not installed'."""
    program, args = VERSION_ARGS[name]
    exe = find(program)
    if exe is None:
        return "not installed"
    done = subprocess.run([exe, *args], capture_output=True, text=True, check=False)
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"
