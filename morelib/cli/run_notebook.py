"""One notebook of a run through papermill, for run_all.sh: one short line for each way it can end badly.

`python -m morelib.cli.run_notebook NOTEBOOK OUT PROFILE RUN_DIR OVERRIDES` executes NOTEBOOK into OUT (cwd: the
notebook's folder) with the parameters profile, run_dir and overrides, as `papermill -r` would. Exit codes: 0 done;
1 a cell failed (the traceback is in OUT); 3 papermill could not write OUT (a full disk: the line says what it left);
130 interrupted (Ctrl-C), without papermill's and ZMQ's tracebacks. What went wrong is said in one line on stderr.
"""

from __future__ import annotations

import json
import logging
import shutil
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


def run(notebook: Path, out: Path, profile: str, run_dir: str, overrides: str) -> int:
    """Execute `notebook` into `out`; return an exit code of the module docstring and say what failed on stderr."""
    logging.getLogger("papermill").setLevel(logging.WARNING)
    params = {"profile": profile, "run_dir": run_dir, "overrides": overrides}
    try:
        pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(notebook.parent))
    except KeyboardInterrupt:
        return INTERRUPTED
    except pm.PapermillExecutionError as err:
        state = left_behind(out)
        where = f"the traceback is in {out}" if state == "a readable notebook" else f"papermill left {state} at {out}"
        print(f"[run_all] {out.stem}: {err.ename}: {err.evalue.strip()} ({where})", file=sys.stderr)
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
