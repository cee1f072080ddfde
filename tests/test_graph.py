from __future__ import annotations

import itertools

import pytest

from ci_orchestrator import graph
from ci_orchestrator.errors import CycleError, WorkflowError


def test_validate_accepts_a_dag() -> None:
    graph.validate({"a": [], "b": ["a"], "c": ["a", "b"]})


def test_cycle_message_shows_the_path_in_run_order() -> None:
    with pytest.raises(CycleError) as info:
        graph.validate({"lint": [], "build": ["test"], "test": ["build"]})
    assert info.value.cycle in (["build", "test", "build"], ["test", "build", "test"])
    assert "build -> test -> build" in str(info.value) or "test -> build -> test" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, WorkflowError)


def test_long_cycle_path() -> None:
    with pytest.raises(CycleError) as info:
        graph.validate({"a": ["d"], "b": ["a"], "c": ["b"], "d": ["c"], "e": []})
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1]
    assert sorted(cycle[:-1]) == ["a", "b", "c", "d"]
    for earlier, later in itertools.pairwise(cycle):
        assert earlier in {"a": ["d"], "b": ["a"], "c": ["b"], "d": ["c"]}[later]


def test_unknown_dependency_names_both_and_suggests() -> None:
    with pytest.raises(WorkflowError, match="'test' needs 'biuld', which is not a step") as info:
        graph.validate({"build": [], "test": ["biuld"]})
    assert "did you mean 'build'" in str(info.value)


def test_self_dependency() -> None:
    with pytest.raises(WorkflowError, match="'a' depends on itself"):
        graph.validate({"a": ["a"]})


def test_duplicate_names() -> None:
    with pytest.raises(WorkflowError, match="duplicate step name 'x'"):
        graph.check_unique(["x", "y", "x"])


def test_topological_order_is_stable() -> None:
    # Ties go to the step declared first.
    assert graph.topological_order({"c": [], "a": ["c"], "b": []}) == ["c", "a", "b"]


def test_longest_remaining_path_uses_weights() -> None:
    dag = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    remaining = graph.longest_remaining_path(dag, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert remaining == {"d": 1, "b": 6, "c": 3, "a": 7}


def test_ready_set_pops_longest_path_first_and_reports_new_ready() -> None:
    dag = {"short": [], "long": [], "after": ["long"], "end": ["after", "short"]}
    weights = {"short": 1, "long": 5, "after": 3, "end": 1}
    ready = graph.ReadySet(dag, graph.longest_remaining_path(dag, weights))
    assert ready.pop() == "long"
    assert ready.done("long") == ["after"]
    assert ready.pop() == "after"
    assert ready.pop() == "short"
    assert ready.done("short") == []
    assert ready.done("after") == ["end"]


def test_critical_path_and_relatives() -> None:
    dag = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert graph.critical_path(dag, {"a": 1, "b": 1, "c": 9, "d": 1}) == ["a", "c", "d"]
    assert graph.ancestors(dag, ["d"]) == {"a", "b", "c"}
    assert graph.descendants(dag, ["b"]) == {"d"}
