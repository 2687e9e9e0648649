"""The import graph of morelib, read from every module's AST (top-level AND function-level imports): no cycle, no
morelib import inside a function, every import follows `morelib.STAGES`, every module sits in one small, documented
stage folder, and README.md's Layout names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import morelib

PACKAGE = Path(morelib.__file__).resolve().parent
ENTRY_POINTS = ("export", "evaluate", "finetune")  # top-level shims for `python -m morelib.<name>`
# Third-party packages a function may import late, and why (a morelib import never may).
LAZY_THIRD_PARTY = {
    "datasets": "a slow import that only the hub loader and RJS's SFT need",
    "pyarrow": "only parquet files need it",
    "vllm": "the optional GPU generation backend, absent on CPU machines",
    "ipywidgets": "the widget front-end only; the Explorer and static figures need none",
    "anywidget": "the widget front-end only",
    "torch": "`python -m morelib.core.runs` (run_all.sh) starts without torch",
    "plotly": "runs writes plotly.js only when a figure is saved",
    "kaleido": "the static (PNG/SVG) renderer, started only when a figure is saved",
}


def _modules() -> dict[str, ast.Module]:
    """Dotted module name (`stage.module`, or an entry point's name) → parsed AST of every morelib module."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        if rel.name != "__init__":
            found[".".join(rel.parts)] = ast.parse(path.read_text(), str(path))
    return found


def _stage(module: str) -> int:
    """Rank of a module's stage in `morelib.STAGES` (entry points come after every stage)."""
    head = module.split(".")[0]
    return morelib.STAGES.index(head) if head in morelib.STAGES else len(morelib.STAGES)


def _imported(node: ast.AST, modules: set[str]) -> list[str]:
    """morelib modules named by one import statement (`from morelib.data import splits`, `import morelib.x.y`, ...)."""
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("morelib"):
        inner = node.module.removeprefix("morelib").lstrip(".")
        named = [f"{inner}.{a.name}".lstrip(".") for a in node.names]
        return [m for m in named if m in modules] or ([inner] if inner in modules else [])
    if isinstance(node, ast.Import):
        return [a.name.removeprefix("morelib.") for a in node.names if a.name.removeprefix("morelib.") in modules]
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
    return {
        name: {m for n in ast.walk(tree) for m in _imported(n, set(trees))} - {name} for name, tree in trees.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_sits_in_a_stage_folder():
    outside = [m for m in _modules() if "." not in m and m not in ENTRY_POINTS]
    unknown = [m for m in _modules() if "." in m and m.split(".")[0] not in morelib.STAGES]
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert not outside and not unknown and folders == set(morelib.STAGES), (outside, unknown, folders)


def test_stage_folders_are_small_and_documented():
    for stage in morelib.STAGES:
        modules = [p for p in (PACKAGE / stage).glob("*.py") if p.stem != "__init__"]
        assert 1 <= len(modules) <= 8, f"{stage}/ holds {len(modules)} modules"
        assert ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text())), f"{stage}/__init__.py"


def test_no_import_cycle():
    assert _cycle(_graph()) is None, f"import cycle: {' → '.join(_cycle(_graph()))}"


def test_imports_follow_the_stage_order():
    upward = [
        f"{mod} imports {dep}" for mod, deps in _graph().items() for dep in sorted(deps) if _stage(dep) > _stage(mod)
    ]
    assert not upward, "imports against morelib.STAGES:\n" + "\n".join(upward)


def test_no_function_level_morelib_import_and_only_listed_lazy_packages():
    trees = _modules()
    bad = []
    for name, tree in trees.items():
        for node in _function_imports(tree):
            if _imported(node, set(trees)) or (isinstance(node, ast.ImportFrom) and node.level):
                bad.append(f"{name}.py:{node.lineno} imports morelib inside a function")
            bad += [
                f"{name}.py:{node.lineno} imports {pkg} inside a function (not in LAZY_THIRD_PARTY)"
                for pkg in _third_party(node)
                if pkg not in LAZY_THIRD_PARTY
            ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "graph, cycle",
    [({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]), ({"a": {"b"}, "b": set(), "c": {"a", "b"}}, None)],
)
def test_cycle_finder_on_hand_graphs(graph, cycle):
    assert _cycle(graph) == cycle


def test_walker_sees_function_level_and_package_imports():
    tree = ast.parse(
        "from morelib.data import sources, nothing\nimport morelib.train.reward_head as T\n"
        "def f():\n    from morelib.data.splits import x\n    import datasets\n"
    )
    mods = {"data.sources", "train.reward_head", "data.splits"}
    assert sorted(m for n in ast.walk(tree) for m in _imported(n, mods)) == [
        "data.sources",
        "data.splits",
        "train.reward_head",
    ]
    inner = _function_imports(tree)
    assert [_imported(n, mods) for n in inner] == [["data.splits"], []] and _third_party(inner[1]) == ["datasets"]


def test_readme_layout_maps_every_module():
    """README.md's Layout has one row per stage folder naming each of its modules, so any concept is one hop away."""
    readme = (PACKAGE.parent / "README.md").read_text()
    rows = {m[0]: m[1] for m in re.findall(r"^\| `morelib/(\w+)/` \| (.+) \|$", readme, flags=re.M)}
    unmapped = [
        f"{stage}/{p.stem}"
        for stage in morelib.STAGES
        for p in sorted((PACKAGE / stage).glob("*.py"))
        if p.stem != "__init__" and f"`{p.stem}`" not in rows.get(stage, "")
    ]
    assert set(rows) == set(morelib.STAGES) and not unmapped, (
        f"README Layout misses: {unmapped or set(morelib.STAGES) - set(rows)}"
    )
