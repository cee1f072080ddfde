"""The package's layering, read from its imports with `ast`: no loops, and each layer below the
ones that use it (the GitHub adapter below no command, the model below the loader)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "ci_orchestrator"


def module_names(root: Path) -> dict[str, Path]:
    """`package.sub.module` -> its file, for every module under `root` (a package folder)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def is_type_checking(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements run on import: the module's, and those in its top-level `if`/`try` blocks
    (not `if TYPE_CHECKING:`, which only the type checker reads)."""
    for node in body:
        yield node
        if isinstance(node, ast.If) and not is_type_checking(node):
            yield from module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            handlers = [stmt for handler in node.handlers for stmt in handler.body]
            yield from module_level(node.body + handlers + node.orelse + node.finalbody)


def imported(name: str, path: Path, names: dict[str, Path], everywhere: bool) -> set[str]:
    """The package's modules that module `name` imports: at module level, or `everywhere`
    (function-level and `TYPE_CHECKING` imports too). `from pkg import mod` imports `pkg.mod`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = ast.walk(tree) if everywhere else module_level(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in names and module != name}


def import_graph(root: Path, everywhere: bool) -> dict[str, set[str]]:
    names = module_names(root)
    return {name: imported(name, path, names, everywhere) for name, path in names.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        return list(exc.args[1])
    return None


@pytest.fixture(scope="module")
def every_import() -> dict[str, set[str]]:
    return import_graph(PACKAGE, everywhere=True)


def test_no_import_cycle_at_module_level() -> None:
    assert cycle(import_graph(PACKAGE, everywhere=False)) is None


def test_the_github_adapter_imports_no_command(every_import: dict[str, set[str]]) -> None:
    found = {
        (module, target)
        for module, targets in every_import.items()
        if module.startswith("ci_orchestrator.github")
        for target in targets
        if target.startswith("ci_orchestrator.commands")
    }
    assert found == set()


def test_the_model_knows_nothing_of_loading(every_import: dict[str, set[str]]) -> None:
    loading = {
        "ci_orchestrator.config",
        "ci_orchestrator.templates",
        "ci_orchestrator.pipeline_cache",
    }
    assert every_import["ci_orchestrator.model"] & loading == set()
    assert "ci_orchestrator.config" not in every_import["ci_orchestrator.templates"]
    assert "ci_orchestrator.config" not in every_import["ci_orchestrator.pipeline_cache"]


def test_renderers_share_text_helpers_from_one_module(every_import: dict[str, set[str]]) -> None:
    for renderer in ("markdown", "junit", "report_text"):
        assert "ci_orchestrator.render.text" in every_import[f"ci_orchestrator.render.{renderer}"]
    assert "ci_orchestrator.render.markdown" not in every_import["ci_orchestrator.render.junit"]


def test_the_checks_see_cycles_and_imports_inside_functions(tmp_path: Path) -> None:
    """The checks above can fail: a loop through a lazy import is found, and not at module level
    when that import is inside a function."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def f() -> None:\n    from . import a\n")
    (package / "c.py").write_text(
        "import pkg.d\ntry:\n    from pkg.b import f\nexcept ImportError:\n    pass\n"
    )
    (package / "d.py").write_text("if True:\n    from .c import x\n")
    assert cycle(import_graph(package, everywhere=True)) in (
        ["pkg.a", "pkg.b", "pkg.a"],
        ["pkg.b", "pkg.a", "pkg.b"],
        ["pkg.c", "pkg.d", "pkg.c"],
        ["pkg.d", "pkg.c", "pkg.d"],
    )
    module_graph = import_graph(package, everywhere=False)
    assert module_graph["pkg.b"] == set()
    assert module_graph["pkg.c"] == {"pkg.d", "pkg.b"}
    assert cycle(module_graph) in (["pkg.c", "pkg.d", "pkg.c"], ["pkg.d", "pkg.c", "pkg.d"])
