"""Status lines of long runs: what a notebook is doing, on the terminal that started it (as plain stdout lines).

Under `run_all.sh` the kernel's own process stdout (`sys.__stdout__`) is the terminal (papermill's kernel inherits
it), while `sys.stdout` is captured into the executed notebook; so status lines go to the former, and to
`<run>/status.log` once a run has set it. Not stderr: ipykernel also forwards the process's file descriptors to the
notebook, where stderr renders as pink error blocks in every timed cell (issue 27); stdout renders as plain text.
`report` writes every line; `progress` at most once per `every_s` seconds per task (feature extraction calls it per
batch), so the terminal shows progress at least once a minute without flooding.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

EVERY_S = 30.0  # seconds between two progress lines of one task (the issue asks for at least one a minute)
_state: dict[str, object] = {"file": None, "who": ""}
_last: dict[str, float] = {}


def set_target(log_file: Path | None, who: str) -> None:
    """Also append status lines to `log_file` (e.g. <run>/status.log) and prefix them with `who` (the notebook)."""
    _state["file"], _state["who"] = log_file, who


def report(message: str) -> None:
    """Write one status line `[HH:MM:SS who] message` to the process stdout and the status file."""
    line = f"[{datetime.now():%H:%M:%S} {_state['who'] or 'morelib'}] {message}"
    stream = sys.__stdout__
    if stream is not None:
        print(line, file=stream, flush=True)
    if _state["file"] is not None:
        with open(_state["file"], "a") as fh:
            fh.write(line + "\n")


def progress(task: str, done: int, total: int, unit: str = "texts", every_s: float = EVERY_S) -> None:
    """Report `task: done/total unit` at the task's first call, then at most once per `every_s` seconds.

    The clock runs across calls of one task (a notebook extracts features split by split), so a string of short
    extractions still shows a line every `every_s` seconds, and never one per split.
    """
    now = time.monotonic()
    if done < _last.get(f"{task}/done", 0) or f"{task}/start" not in _last:
        _last[f"{task}/start"] = now  # a new extraction of this task
    _last[f"{task}/done"] = done
    if task in _last and now - _last[task] < every_s:
        return
    _last[task] = now
    elapsed = now - _last[f"{task}/start"]
    rate = f" ({done / elapsed:.1f} {unit}/s)" if elapsed > 0 else ""
    report(f"{task}: {done}/{total} {unit}{rate}")
