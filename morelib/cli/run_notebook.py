"""One notebook of a run through papermill, for run_all.sh: one short line for each way it can end badly.

`python -m morelib.cli.run_notebook NOTEBOOK OUT PROFILE RUN_DIR OVERRIDES` executes NOTEBOOK into OUT (cwd: the
notebook's folder) with the parameters profile, run_dir and overrides, as `papermill -r` would. Exit codes: 0 done;
1 a cell failed (the traceback is in OUT); 3 papermill could not write OUT (a full disk: the line says what it left);
130 interrupted (Ctrl-C), without papermill's and ZMQ's tracebacks. What went wrong is said in one line on stderr.
The kernel runs in its own session (jupyter_client), out of the terminal's Ctrl-C: on SIGINT this process kills it
first, so it cannot log a ZMQ traceback while papermill closes its sockets, and then goes quiet (run_all.sh says it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import nbformat
import papermill as pm

INTERRUPTED = 130
CELL_FAILED = 1
NOT_WRITTEN = 3


def left_behind(out: Path) -> str:
    """What papermill left at `out`: 'no notebook', 'a readable notebook' or 'a cut-off file (N bytes, not a
    readable notebook)'."""
    if not out.exists():
        return "no notebook"
    try:
        nbformat.read(out, as_version=4)
    except (OSError, ValueError, json.JSONDecodeError, nbformat.reader.NotJSONError):
        return f"a cut-off file ({out.stat().st_size} bytes, not a readable notebook)"
    return "a readable notebook"


def _free_space(folder: Path) -> str:
    """'N MB free on <folder>'s disk', or '' when it cannot be measured."""
    try:
        return f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free on its disk"
    except OSError:
        return ""


def _children() -> list[int]:
    """Pids of this process's children (the kernel), read from /proc (none where /proc is absent)."""
    pids: list[int] = []
    for path in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        with contextlib.suppress(OSError, ValueError):
            pids += [int(pid) for pid in path.read_text().split()]
    return pids


def _on_interrupt(_signum: int, _frame: object) -> None:
    """SIGINT: kill the kernel's process group, silence this process's output, raise KeyboardInterrupt."""
    for pid in _children():
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)  # a kernel leads its own session, so its group id is its pid
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)
    os.dup2(quiet, 2)
    raise KeyboardInterrupt


def run(notebook: Path, out: Path, profile: str, run_dir: str, overrides: str) -> int:
    """Execute `notebook` into `out`; return an exit code of the module docstring and say what failed on stderr."""
    logging.getLogger("papermill").setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGINT, _on_interrupt)
    try:
        return _execute(notebook, out, profile, run_dir, overrides)
    finally:
        signal.signal(signal.SIGINT, previous)


def _execute(notebook: Path, out: Path, profile: str, run_dir: str, overrides: str) -> int:
    """`run` without the SIGINT handler."""
    params = {"profile": profile, "run_dir": run_dir, "overrides": overrides}
    try:
        pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(notebook.parent))
    except KeyboardInterrupt:
        return INTERRUPTED
    except pm.PapermillExecutionError as err:
        state = left_behind(out)
        where = f"the traceback is in {out}" if state == "a readable notebook" else f"papermill left {state} at {out}"
        what = err.evalue.strip() or f"no message: did the kernel die? its log is {out.parent / 'log.txt'}"
        print(f"[run_all] {out.stem}: {err.ename}: {what} ({where})", file=sys.stderr)
        return CELL_FAILED
    except OSError as err:  # writing OUT failed (ENOSPC, EROFS, ...)
        print(
            f"[run_all] {out.stem}: could not write {out}: {err}; papermill left {left_behind(out)} there "
            f"({_free_space(out.parent)}); the notebook's log is {out.parent / 'log.txt'}",
            file=sys.stderr,
        )
        return NOT_WRITTEN
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI entry (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 5:
        print("usage: python -m morelib.cli.run_notebook NOTEBOOK OUT PROFILE RUN_DIR OVERRIDES", file=sys.stderr)
        return 2
    try:
        return run(Path(args[0]).resolve(), Path(args[1]).resolve(), *args[2:])
    except KeyboardInterrupt:  # a second Ctrl-C while papermill shuts the kernel down
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
