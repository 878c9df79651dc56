"""The package's structure: module-level imports form no cycle, and the lower layers never reach
up into the reinforcement-learning wing (read from the source with ``ast``, nothing imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "metaloss"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level_imports(tree: ast.Module, module: str, modules: set[str]) -> set[str]:
    """Modules of the package imported when ``module`` is imported (imports inside functions and
    under ``if TYPE_CHECKING`` run later or never, so they cannot form an import cycle)."""
    found: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and not _is_type_checking(node):
            stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from metaloss.tasks import sine` imports the submodule metaloss.tasks.sine
            found |= {f"{node.module}.{a.name}" for a in node.names} & modules
    return {name for name in found if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports at import time."""
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {
        name: _top_level_imports(ast.parse(path.read_text()), name, modules)
        for name, path in paths.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path of names, or ``None``."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state and (cycle := visit(child)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_module_level_imports_form_no_cycle() -> None:
    # The package root imports everything to register it, and every module is imported after
    # it; edges *to* the root are not imports of its contents, so the root is left out.
    graph = {k: v - {"metaloss"} for k, v in import_graph().items() if k != "metaloss"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize(
    "layer",
    [
        "metaloss.tasks",
        "metaloss.plots",
        "metaloss.losses",
        "metaloss.evaluation",
        "metaloss.inner",
        "metaloss.export",
        "metaloss.zoo",
    ],
)
def test_lower_layers_never_import_the_rl_wing(layer: str) -> None:
    reaching = {
        module: sorted(i for i in imports if i == "metaloss.rl" or i.startswith("metaloss.rl."))
        for module, imports in import_graph().items()
        if module == layer or module.startswith(layer + ".")
    }
    assert not {m: r for m, r in reaching.items() if r}
