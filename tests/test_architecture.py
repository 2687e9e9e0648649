"""The import graph of morelib, read from every module's AST (top-level AND function-level imports): no cycle, no
morelib import inside a function, every import follows `morelib.LAYERS`, and every module sits in exactly one layer."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import morelib

PACKAGE = Path(morelib.__file__).resolve().parent
# Third-party packages a function may import late, and why (a morelib import never may).
LAZY_THIRD_PARTY = {
    "datasets": "a slow import that only the hub loader and RJS's SFT need",
    "pyarrow": "only parquet files need it",
    "vllm": "the optional GPU generation backend, absent on CPU machines",
    "ipywidgets": "the widget front-end only; the Explorer and static figures need none",
    "anywidget": "the widget front-end only",
    "torch": "`python -m morelib.runs` (run_all.sh) starts without torch",
    "plotly": "runs writes plotly.js only when a figure is saved",
}


def _modules() -> dict[str, ast.Module]:
    """Module name → parsed AST of every morelib/*.py except the package's __init__."""
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"}


def _imported(node: ast.AST, modules: set[str]) -> list[str]:
    """morelib modules named by one import statement (`from morelib import x`, `from morelib.x import y`, ...)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        if node.module == "morelib":
            return [a.name for a in node.names if a.name in modules]
        if node.module.startswith("morelib."):
            return [node.module.split(".")[1]]
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith("morelib.")]
    return []


def _third_party(node: ast.AST) -> list[str]:
    """Top-level package names of one non-morelib import statement."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [] if node.module.split(".")[0] == "morelib" else [node.module.split(".")[0]]
    if isinstance(node, ast.Import):
        return [a.name.split(".")[0] for a in node.names if not a.name.startswith("morelib")]
    return []


def _function_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements nested inside any function or method of a module."""
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))]
    return found


def _graph() -> dict[str, set[str]]:
    """Module → the morelib modules it imports anywhere in its file (itself excluded)."""
    trees = _modules()
    return {name: {m for n in ast.walk(tree) for m in _imported(n, set(trees))} - {name} for name, tree in trees.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_is_in_exactly_one_layer():
    placed = [m for _, mods in morelib.LAYERS for m in mods]
    assert len(placed) == len(set(placed)), f"modules listed twice in morelib.LAYERS: {placed}"
    assert set(placed) == set(_modules()), (f"not in morelib.LAYERS: {sorted(set(_modules()) - set(placed))}; "
                                            f"listed but absent: {sorted(set(placed) - set(_modules()))}")


def test_no_import_cycle():
    assert _cycle(_graph()) is None, f"import cycle: {' → '.join(_cycle(_graph()))}"


def test_imports_follow_the_layer_order():
    rank = {m: i for i, (_, mods) in enumerate(morelib.LAYERS) for m in mods}
    names = [name for name, _ in morelib.LAYERS]
    upward = [f"{mod} ({names[rank[mod]]}) imports {dep} ({names[rank[dep]]})"
              for mod, deps in _graph().items() for dep in sorted(deps) if rank[dep] > rank[mod]]
    assert not upward, "imports against morelib.LAYERS:\n" + "\n".join(upward)


def test_no_function_level_morelib_import_and_only_listed_lazy_packages():
    trees = _modules()
    bad = []
    for name, tree in trees.items():
        for node in _function_imports(tree):
            if _imported(node, set(trees)) or (isinstance(node, ast.ImportFrom) and node.level):
                bad.append(f"{name}.py:{node.lineno} imports morelib inside a function")
            bad += [f"{name}.py:{node.lineno} imports {pkg} inside a function (not in LAZY_THIRD_PARTY)"
                    for pkg in _third_party(node) if pkg not in LAZY_THIRD_PARTY]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("graph, cycle", [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
                                          ({"a": {"b"}, "b": set(), "c": {"a", "b"}}, None)])
def test_cycle_finder_on_hand_graphs(graph, cycle):
    assert _cycle(graph) == cycle


def test_walker_sees_function_level_and_package_imports():
    tree = ast.parse("from morelib import data, nothing\nimport morelib.train as T\n"
                     "def f():\n    from morelib.splits import x\n    import datasets\n")
    mods = {"data", "train", "splits"}
    assert sorted(m for n in ast.walk(tree) for m in _imported(n, mods)) == ["data", "splits", "train"]
    inner = _function_imports(tree)
    assert [_imported(n, mods) for n in inner] == [["splits"], []] and _third_party(inner[1]) == ["datasets"]
