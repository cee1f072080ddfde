"""The DAGs every tool runs: their shapes, their step commands, and their critical paths.

Pure data, no I/O: `formats.py` writes a `Dag` in each tool's own format.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from bench.bench_async import critical_path_seconds
from ci_orchestrator import graph

Needs = Mapping[str, tuple[str, ...]]
SEED = 7  # the layered shape and the durations are random, but the same on every run


class Variant(str, Enum):
    """What each step runs."""

    TRUE = "true"  # go-task runs it as a shell builtin: no process at all
    BIN_TRUE = "/bin/true"  # a real process in every tool
    SLEEP = "sleep"  # `sleep S` with skewed durations


@dataclass(frozen=True)
class Dag:
    """A named DAG of shell steps, in a topological order, with what each step runs."""

    shape: str
    variant: Variant
    needs: Needs
    commands: Mapping[str, str]
    seconds: Mapping[str, float]  # how long each step sleeps (0 for no-op steps)

    @property
    def name(self) -> str:
        return f"{self.shape} ({self.variant.value})"

    @property
    def width(self) -> int:
        """The most steps on one level: the jobs it takes to never queue a ready step."""
        depth: dict[str, int] = {}
        for step in graph.topological_order(self.needs):
            depth[step] = 1 + max((depth[n] for n in self.needs[step]), default=-1)
        levels = list(depth.values())
        return max(levels.count(level) for level in set(levels))

    @property
    def critical_path(self) -> float:
        """Seconds of the slowest chain of steps: no scheduler can finish sooner."""
        return critical_path_seconds(
            {name: list(needs) for name, needs in self.needs.items()}, dict(self.seconds)
        )

    def sinks(self) -> list[str]:
        """The steps nothing needs (a make or go-task goal that runs everything)."""
        needed = {need for needs in self.needs.values() for need in needs}
        return [name for name in self.needs if name not in needed]


# --- shapes ---


def wide(count: int) -> Needs:
    """`count` independent steps and a final step that needs them all."""
    steps = [f"s{i:03d}" for i in range(count)]
    return {**dict.fromkeys(steps, ()), "final": tuple(steps)}


def chain(count: int) -> Needs:
    """`count` steps, each needing the one before."""
    return {f"s{i:03d}": (f"s{i - 1:03d}",) if i else () for i in range(count)}


def layered(layers: int, width: int, seed: int = SEED) -> Needs:
    """`layers` layers of `width` steps; each step needs two random steps of the layer before."""
    rng = random.Random(seed)
    needs: dict[str, tuple[str, ...]] = {}
    for layer in range(layers):
        before = [f"l{layer - 1:02d}_s{i:02d}" for i in range(width)] if layer else []
        for i in range(width):
            picked = sorted(rng.sample(before, min(2, len(before))))
            needs[f"l{layer:02d}_s{i:02d}"] = tuple(picked)
    return needs


@dataclass(frozen=True)
class Shapes:
    """How big each shape is."""

    wide: int
    chain: int
    layers: int
    layer_width: int

    def all(self) -> dict[str, Needs]:
        return {
            "wide": wide(self.wide),
            "chain": chain(self.chain),
            "layered": layered(self.layers, self.layer_width),
        }


# --- steps ---


def skewed_seconds(needs: Needs, critical_path: float, seed: int = SEED) -> dict[str, float]:
    """Lognormal durations (most steps short, a few long), scaled so that the critical path is
    about `critical_path` seconds; rounded to whole milliseconds, as `sleep` is given them."""
    rng = random.Random(seed)
    raw = {name: rng.lognormvariate(0.0, 1.0) for name in needs}
    graph_needs = {name: list(deps) for name, deps in needs.items()}
    scale = critical_path / critical_path_seconds(graph_needs, raw)
    return {name: max(0.001, round(value * scale, 3)) for name, value in raw.items()}


def build(shape: str, needs: Needs, variant: Variant, critical_path: float = 0.0) -> Dag:
    """The DAG with its step commands: no-op, or sleeps whose critical path is `critical_path`."""
    if variant is Variant.SLEEP:
        seconds = skewed_seconds(needs, critical_path)
        commands = {name: f"sleep {seconds[name]:.3f}" for name in needs}
    else:
        seconds = dict.fromkeys(needs, 0.0)
        commands = dict.fromkeys(needs, variant.value)
    return Dag(shape, variant, needs, commands, seconds)
