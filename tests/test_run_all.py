"""run_all.sh end to end on the tiny profile (notebook 01 only): relative paths mean what the caller typed, Ctrl-C
stops the run with a short line and marks nothing done, and a resume by relative path finishes it on the run's saved
config. The quick shell-level cases (dry run, missing data folder, unknown run, lock) are rows of
tests/test_bad_inputs.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from morelib.cli import run_notebook

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MORE_DATA_DIR") or ROOT.parent / "shared" / "data")


def _env() -> dict[str, str]:
    """The test environment without MORE_DATA_DIR / hub settings, apt off."""
    drop = ("MORE_DATA_DIR", "HF_HUB_OFFLINE", "MORE_OFFLINE")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "MORE_NO_APT": "1"}


def _wait_for_step(out: Path, timeout_s: float = 180) -> None:
    """Wait until a notebook of the (only) run under `out` has reported its first step."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = list(out.glob("*/status.log"))
        if logs and "step:" in logs[0].read_text():
            return
        time.sleep(0.5)
    raise AssertionError(f"no notebook step reported under {out} within {timeout_s} s")


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "hh-rlhf").is_dir(), reason=f"real data folder {DATA} absent")
def test_interrupt_then_resume_from_another_folder(tmp_path):
    tmp_path = tmp_path.resolve()
    tiny = (ROOT / "params" / "tiny.yaml").read_text().replace("profile: tiny", "profile: mytiny")
    (tmp_path / "mytiny.yaml").write_text(tiny)
    env = {**_env(), "MORE_DATA_DIR": os.path.relpath(DATA, tmp_path)}
    args = [str(ROOT / "run_all.sh"), "--profile", "mytiny.yaml", "--only", "01", "-p", "output_root", "out"]
    proc = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        _wait_for_step(tmp_path / "out")
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: SIGINT to the terminal's foreground process group
        text, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    (run,) = (tmp_path / "out").iterdir()
    assert proc.returncode == 130, text
    assert "[run_all] interrupted during 01_diversity" in text and f"--resume {run}" in text, text
    assert "Traceback" not in text and "FAILED" not in text, text
    assert not (run / "01_diversity" / ".done").exists()

    done = subprocess.run(
        [str(ROOT / "run_all.sh"), "--resume", f"out/{run.name}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "01_diversity" / ".done").exists() and "[run_all] done" in done.stdout
    manifest = json.loads((run / "01_diversity" / "manifest.json").read_text())
    assert manifest["profile"] == "mytiny" and sorted(manifest["data"]["counts"]) == sorted(
        ["helpful", "harmless", "oasst1", "summarize"]
    )
    assert json.loads((run / "run_all.json").read_text())["data_root"] == str(DATA.resolve())


def test_run_notebook_exit_codes_and_lines(tmp_path, monkeypatch, capsys):
    """Ctrl-C → 130 and no output (run_all.sh says it); a failed cell → 1 naming the error and where the traceback
    is; papermill's own failure to write → 3 saying what it left."""
    out = tmp_path / "01_x" / "01_x.ipynb"
    out.parent.mkdir()
    nb = ROOT / "notebooks" / "01_diversity.ipynb"

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_notebook.pm, "execute_notebook", interrupted)
    assert run_notebook.run(nb, out, "tiny", str(tmp_path), "{}") == 130 and capsys.readouterr().err == ""

    def cell_failed(_nb, path, **_k):
        nbformat.write(nbformat.v4.new_notebook(), path)
        raise pm.PapermillExecutionError(3, 1, "runs.start(...)", "ConfigError", "'seeds' repeats [0]\n", [])

    monkeypatch.setattr(run_notebook.pm, "execute_notebook", cell_failed)
    assert run_notebook.run(nb, out, "tiny", str(tmp_path), "{}") == 1
    assert capsys.readouterr().err.strip() == (
        f"[run_all] 01_x: ConfigError: 'seeds' repeats [0] (the traceback is in {out})"
    )
    out.write_text('{"cells": [')
    assert run_notebook.left_behind(out) == "a cut-off file (11 bytes, not a readable notebook)"
    assert run_notebook.left_behind(tmp_path / "none.ipynb") == "no notebook"
