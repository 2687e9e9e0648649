"""Status lines of long runs: what a notebook is doing, on the terminal that started it, never in the notebook.

Under `run_all.sh` (and JupyterLab) the kernel's terminal is the stderr it started with. ipykernel pipes the kernel's
fd 2 into the notebook (a write to `sys.__stderr__` shows there as a pink stderr block) and keeps a copy of the
original as `sys.stderr.fileno()` (what a subprocess writes to), so inside a kernel status lines go to that copy
only; elsewhere to `sys.__stderr__`; and to `<run>/status.log` once a run has set it. `report` writes every line;
`progress` at most once per `every_s` seconds per task (feature extraction calls it per batch), so the terminal shows
progress at least once a minute without flooding. Inside `overall(task, total)` (a study's feature extraction over
all sources and splits, `total` = the texts not cached yet) each progress line adds the overall count, rate and ETA.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

EVERY_S = 30.0  # seconds between two progress lines of one task (the issue asks for at least one a minute)
_state: dict[str, object] = {"file": None, "who": ""}
_last: dict[str, float] = {}
_overall: dict[str, object] = {}  # task, total, done, start of the `overall` block in force


def set_target(log_file: Path | None, who: str) -> None:
    """Also append status lines to `log_file` (e.g. <run>/status.log) and prefix them with `who` (the notebook)."""
    _state["file"], _state["who"] = log_file, who


def _to_terminal(line: str) -> None:
    """Write `line` to the process's terminal: in a Jupyter kernel the stderr it started with, not the notebook."""
    stream = sys.stderr
    if stream is not sys.__stderr__ and type(stream).__module__.startswith("ipykernel"):
        with contextlib.suppress(OSError, ValueError):
            os.write(stream.fileno(), (line + "\n").encode())
            return
    if sys.__stderr__ is not None:
        print(line, file=sys.__stderr__, flush=True)


def report(message: str) -> None:
    """Write one status line `[HH:MM:SS who] message` to the terminal and the status file."""
    line = f"[{datetime.now():%H:%M:%S} {_state['who'] or 'morelib'}] {message}"
    _to_terminal(line)
    if _state["file"] is not None:
        with open(_state["file"], "a") as fh:
            fh.write(line + "\n")


def duration(seconds: float) -> str:
    """A rough duration for an ETA: '40 s', '12 min', '2.3 h'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def rate_text(done: int, total: int, elapsed: float, unit: str = "texts") -> str:
    """', 9.1 texts/s, ETA 12 min' for `done` of `total` after `elapsed` seconds ('' before any rate is known)."""
    if done <= 0 or elapsed <= 0:
        return ""
    rate = done / elapsed
    return f", {rate:.1f} {unit}/s, ETA {duration(max(total - done, 0) / rate)}"


def progress_line(task: str, done: int, total: int, unit: str, elapsed: float, overall: tuple | None = None) -> str:
    """'features m: 196/635 texts, 9.0 texts/s, ETA 49 s' or, with `overall` = (task, done, total, elapsed), 'features
    m: 196/635 texts; features 2,140/8,914 texts overall, 9.1 texts/s, ETA 12 min'."""
    head = f"{task}: {done:,}/{total:,} {unit}"
    if overall is None:
        return head + rate_text(done, total, elapsed, unit)
    name, all_done, all_total, all_elapsed = overall
    return (
        f"{head}; {name} {all_done:,}/{all_total:,} {unit} overall{rate_text(all_done, all_total, all_elapsed, unit)}"
    )


@contextlib.contextmanager
def overall(task: str, total: int) -> Iterator[None]:
    """Inside the block, progress lines also count `total` texts over every extraction (`progress(..., step=)`)."""
    _overall.update(task=task, total=total, done=0, start=time.monotonic())
    try:
        yield
    finally:
        _overall.clear()


def progress(task: str, done: int, total: int, unit: str = "texts", every_s: float = EVERY_S, step: int = 0) -> None:
    """Report `task: done/total unit` (with rate and ETA) at the task's first call, then at most once per `every_s`
    seconds; `step` = the units done since the last call, counted towards an `overall` block in force.

    The clock runs across calls of one task (a notebook extracts features split by split), so a string of short
    extractions still shows a line every `every_s` seconds, and never one per split.
    """
    now = time.monotonic()
    if _overall:
        _overall["done"] = int(_overall["done"]) + step
    if done < _last.get(f"{task}/done", 0) or f"{task}/start" not in _last:
        _last[f"{task}/start"] = now  # a new extraction of this task
    _last[f"{task}/done"] = done
    if task in _last and now - _last[task] < every_s:
        return
    _last[task] = now
    whole = None
    if _overall:
        whole = (_overall["task"], _overall["done"], _overall["total"], now - float(_overall["start"]))
    report(progress_line(task, done, total, unit, now - _last[f"{task}/start"], whole))
