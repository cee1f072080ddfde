"""Whole processes, timed: wall time with `time.perf_counter`, and peak memory when asked."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Variables that would change how a tool behaves (GitHub Actions mode, a parent make's flags), and
# PYTHONDONTWRITEBYTECODE: with it, a Python tool installed from source (ours, editable) would
# compile every module at every start, which no user's installation does.
_FOREIGN = (
    "GITHUB_", "RUNNER_", "CI_ORCHESTRATOR_", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
    "PYTHONDONTWRITEBYTECODE",
)  # fmt: skip


class ProcessFailed(RuntimeError):
    """A timed command did not exit 0: its numbers would mean nothing."""


def clean_env() -> dict[str, str]:
    """This environment without CI and make variables, and with bytecode caching on: where
    PYTHONDONTWRITEBYTECODE is set (this project's CI machines set it), every run would compile
    each module again, which a user's installed copy never does."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_FOREIGN) and k not in ("CI", "PYTHONDONTWRITEBYTECODE")
    }


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_kb: int  # see `memory_method`


GNU_TIME = shutil.which("time")  # /usr/bin/time: the shell's `time` keyword is not on PATH


def memory_method() -> str:
    """How peak memory is measured. `os.wait4` gives the process's own ru_maxrss, but Linux
    starts a child's high-water mark at its parent's size (the fork, before exec), so it is only
    an upper bound; GNU time, itself tiny, forks the command and reports its real peak."""
    if GNU_TIME:
        return "GNU time %M"
    return "ru_maxrss from os.wait4 (an upper bound: includes the harness's size at fork)"


def run_process(argv: Sequence[str], cwd: Path, memory: bool = False) -> Sample:
    """Run `argv` in `cwd` to the end, output discarded; its wall time and peak memory (under
    GNU time when `memory` and it is installed, which adds its own fork and exec to the time)."""
    with tempfile.TemporaryFile() as errors, tempfile.NamedTemporaryFile("r") as peak:
        wrapped = [GNU_TIME, "-f", "%M", "-o", peak.name] if memory and GNU_TIME else []
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*wrapped, *argv], cwd=cwd, env=clean_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        if proc.returncode != 0:
            errors.seek(0)
            tail = errors.read()[-2000:].decode(errors="replace").strip()
            raise ProcessFailed(f"{' '.join(argv)} exited {proc.returncode} in {cwd}: {tail}")
        rss = int(peak.read().split()[-1]) if wrapped else int(usage.ru_maxrss)
    return Sample(seconds, rss)  # kilobytes on Linux


@dataclass(frozen=True)
class Contender:
    """One command in a comparison."""

    label: str
    argv: tuple[str, ...]
    cwd: Path


@dataclass
class Timings:
    """Every sample of every contender, after the warm-up."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def peak_mb(self, label: str) -> float:
        return max(s.max_rss_kb for s in self.samples[label]) / 1024


def alternate(
    contenders: Sequence[Contender], rounds: int, warmup: int = 1, memory: bool = False
) -> Timings:
    """Run every contender once per round, in an order that rotates from round to round, so
    that drift on the machine (other load, caches, thermal) hits all of them alike."""
    timings = Timings({c.label: [] for c in contenders})
    for number in range(warmup + rounds):
        shift = number % max(1, len(contenders))
        for contender in [*contenders[shift:], *contenders[:shift]]:
            sample = run_process(contender.argv, contender.cwd, memory=memory)
            if number >= warmup:
                timings.samples[contender.label].append(sample)
    return timings
