"""The pipeline as a pure DAG: validation, Kahn ordering, ready sets and path lengths.

A graph is a mapping of step name to the names it needs. Nothing here does I/O, so the sync runner,
the async engine, the planner and the reports all share it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

from ci_orchestrator.errors import CycleError, WorkflowError

Graph = Mapping[str, Sequence[str]]


def closest(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    import difflib  # only a mistake needs it

    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise WorkflowError(f"duplicate step name {name!r}")
        seen.add(name)


def validate(graph: Graph) -> None:
    """Raise `WorkflowError` for a self- or unknown dependency, `CycleError` for a cycle."""
    for name, needs in graph.items():
        for need in needs:
            if need == name:
                raise WorkflowError(f"step {name!r} depends on itself")
            if need not in graph:
                hint = closest(need, graph)
                raise WorkflowError(f"step {name!r} needs {need!r}, which is not a step{hint}")
    cycle = find_cycle(graph)
    if cycle:
        raise CycleError(cycle)


def dependents(graph: Graph) -> dict[str, list[str]]:
    """Invert the graph: for each step, the steps that need it."""
    out: dict[str, list[str]] = {name: [] for name in graph}
    for name, needs in graph.items():
        for need in needs:
            out[need].append(name)
    return out


def find_cycle(graph: Graph) -> list[str] | None:
    """One cycle as a path in run order (`build -> test -> build`), or None. Iterative DFS."""
    after = dependents(graph)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    for root in graph:
        if root in state:
            continue
        path = [root]
        stack = [iter(after[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(after[nxt]))
    return None


def topological_order(graph: Graph) -> list[str]:
    """Kahn's algorithm, stable: among ready steps, the one declared first comes first."""
    ready = ReadySet(graph)
    order: list[str] = []
    while ready:
        name = ready.pop()
        order.append(name)
        ready.done(name)
    if len(order) != len(graph):
        raise CycleError(find_cycle(graph) or [])
    return order


def longest_remaining_path(
    graph: Graph, weights: Mapping[str, float] | None = None, default: float = 1.0
) -> dict[str, float]:
    """For each step, its weight plus the heaviest chain of steps that wait on it."""
    weights = weights or {}
    after = dependents(graph)
    remaining: dict[str, float] = {}
    for name in reversed(topological_order(graph)):
        tail = max((remaining[d] for d in after[name]), default=0.0)
        remaining[name] = weights.get(name, default) + tail
    return remaining


def critical_path(graph: Graph, durations: Mapping[str, float]) -> list[str]:
    """The chain of steps with the largest total duration, in run order."""
    if not graph:
        return []
    remaining = longest_remaining_path(graph, durations, default=0.0)
    after = dependents(graph)
    roots = [name for name, needs in graph.items() if not needs]
    node = max(roots, key=remaining.__getitem__)
    path = [node]
    while after[node]:
        node = max(after[node], key=remaining.__getitem__)
        path.append(node)
    return path


def ancestors(graph: Graph, names: Iterable[str]) -> set[str]:
    """Every step that the given steps need, directly or not (the given ones excluded)."""
    return _reachable(graph, names)


def descendants(graph: Graph, names: Iterable[str]) -> set[str]:
    """Every step that needs one of the given steps, directly or not (the given ones excluded)."""
    return _reachable(dependents(graph), names)


def _reachable(edges: Graph, names: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = [nxt for name in names for nxt in edges[name]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges[name])
    return seen


class ReadySet:
    """Kahn's ready set: steps whose needs are all done, highest priority first.

    `done(name)` costs O(dependents of name); ties keep declaration order.
    """

    def __init__(self, graph: Graph, priority: Mapping[str, float] | None = None) -> None:
        self._after = dependents(graph)
        self._waiting = {name: len(set(needs)) for name, needs in graph.items()}
        self._priority = priority or {}
        self._index = {name: i for i, name in enumerate(graph)}
        self._heap: list[tuple[float, int, str]] = []
        for name, count in self._waiting.items():
            if count == 0:
                self._push(name)

    def _push(self, name: str) -> None:
        heapq.heappush(self._heap, (-self._priority.get(name, 0.0), self._index[name], name))

    def __bool__(self) -> bool:
        return bool(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def pop(self) -> str:
        return heapq.heappop(self._heap)[2]

    def done(self, name: str) -> list[str]:
        """Mark a step finished; return the steps that became ready (already queued)."""
        ready = []
        for dependent in dict.fromkeys(self._after[name]):
            self._waiting[dependent] -= 1
            if self._waiting[dependent] == 0:
                self._push(dependent)
                ready.append(dependent)
        return ready
