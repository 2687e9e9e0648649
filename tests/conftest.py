"""Shared test helpers: rerunning a notebook against a finished run (tests/test_notebooks.py, test_notebook05.py)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from morelib.core import runs

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under a run folder outside its interactive-* reruns, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).parts[0].startswith(runs.INTERACTIVE_PREFIX)
    }


@pytest.fixture
def rerun_untouched() -> Callable[..., Path]:
    """rerun(name, run, profile, overrides) runs notebook `name` under papermill against the finished run `run`,
    asserts that every file outside interactive-* is byte-identical afterwards, and returns the rerun's folder."""
    papermill = pytest.importorskip("papermill")

    def rerun(name: str, run: Path, profile: str, overrides: dict | None = None) -> Path:
        before = tree_hashes(run)
        papermill.execute_notebook(
            str(NB_DIR / f"{name}.ipynb"),
            str(run.parent / f"rerun-{name}.ipynb"),
            cwd=str(NB_DIR),
            progress_bar=False,
            kernel_name="python3",
            parameters={"profile": profile, "run_dir": str(run), "overrides": json.dumps(overrides or {})},
        )
        after = tree_hashes(run)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"a rerun of {name} wrote outside interactive-*: {changed[:10]}"
        folders = list(run.glob(f"{runs.INTERACTIVE_PREFIX}*/{name}"))
        assert len(folders) == 1, f"expected one interactive rerun of {name}, found {folders}"
        return folders[0]

    return rerun
