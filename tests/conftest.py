"""Shared test helpers: rerunning a notebook against a finished run (tests/test_notebooks.py, test_notebook05.py) and
a whole `./run_all.sh --profile NAME` into a temporary folder (test_notebooks_capacity.py, _finetune.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from morelib.core import runs

ROOT = Path(__file__).resolve().parents[1]
NB_DIR = ROOT / "notebooks"
RUN_ALL_ENV = {**os.environ, "MORE_NO_APT": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


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


@pytest.fixture(scope="session")
def script_env() -> dict[str, str]:
    """The environment the project's scripts run under in tests: no apt, one thread, quiet tokenizers."""
    return dict(RUN_ALL_ENV)


@pytest.fixture(scope="session")
def run_all_profile() -> Callable[[Path, str, int], Path]:
    """run(root, profile, timeout) runs `./run_all.sh --profile <profile>` with its output under `root`, asserts it
    exited 0 (its output's tail in the message) and returns the one run folder it made."""

    def run(root: Path, profile: str, timeout: int) -> Path:
        done = subprocess.run(
            [str(ROOT / "run_all.sh"), "--profile", profile, "-p", "output_root", str(root)],
            env=RUN_ALL_ENV,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        (folder,) = [p for p in root.iterdir() if p.name.startswith(f"{profile}-")]
        return folder

    return run
