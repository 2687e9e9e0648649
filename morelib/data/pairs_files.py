"""Preference files a user brings: JSON / JSONL / parquet in the common layouts, each read into `Pair` rows.

Layouts, recognised from the first row's fields (every later row must have the same ones):
- `{prompt, chosen, rejected}`: TRL / RewardBench rows, strings or TRL conversational message lists
  (`formats.instruction_pair`);
- `{input, output_1, output_2, label}`: pairwise-judge sets such as LLMBar, label 1 or 2 = the better output
  (`formats.judge_pair`);
- `{chosen, rejected}` only: Anthropic HH-RLHF transcripts, split at the last shared Assistant turn (`formats.hh_pair`).
A `.json` file may hold one array of row objects or JSON lines; `.jsonl(.gz)` and `.parquet` are read by
`formats.read_records`. A row that misses a field of its file's layout is one DataError naming file, row and field.
Rows whose two responses are equal are dropped and counted (logged). Each file is one source, named by its stem.
Checked in tests/test_pairs_files.py on small files of every layout, written by the test.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from morelib.core.errors import DataError
from morelib.data import formats
from morelib.data.formats import Pair

log = logging.getLogger(__name__)
Converter = Callable[[dict[str, Any], str, str], "Pair | str"]
LAYOUTS: dict[str, tuple[tuple[str, ...], Converter]] = {
    "prompt/chosen/rejected": (("prompt", "chosen", "rejected"), formats.instruction_pair),
    "input/output_1/output_2/label": (("input", "output_1", "output_2", "label"), formats.judge_pair),
    "HH transcripts (chosen/rejected)": (("chosen", "rejected"), formats.hh_pair),
}  # checked in this order: the first layout whose fields the first row has wins


def _json_array(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) of a .json file holding one array of objects."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a JSON array of rows ({err})") from err
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {number}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: row {number}", row


def rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, row) of every row of a pairs file; DataError for a missing file or an unknown suffix."""
    if not path.is_file():
        raise DataError(f"{path}: pairs file not found")
    name = path.name.lower()
    if name.endswith(".json"):
        with path.open("rb") as handle:
            first = handle.read(64).lstrip()[:1]
        if first == b"[":
            yield from _json_array(path)
            return
    elif not name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".parquet")):
        raise DataError(f"{path}: unknown pairs-file type (expected .json, .jsonl, .jsonl.gz or .parquet)")
    for number, (where, row) in enumerate(formats.read_records(path), start=1):
        line = where[len(str(path)) + 1 :]
        yield f"{path}: row {number}" + (f" (line {line})" if line.isdigit() and int(line) != number else ""), row


def layout_of(row: dict[str, Any], where: str) -> str:
    """Name of the first layout whose fields `row` has; DataError listing the layouts otherwise."""
    for name, (fields, _) in LAYOUTS.items():
        if all(f in row for f in fields):
            return name
    expected = " | ".join("{" + ", ".join(f) + "}" for f, _ in LAYOUTS.values())
    raise DataError(f"{where}: fields {sorted(row)} match no pairs layout (expected {expected})")


def read_pairs(path: str | Path, source: str | None = None) -> list[Pair]:
    """The pairs of one file, as source `source` (default: the file's stem)."""
    path = Path(path)
    source = source or source_name(path)
    convert, fields, pairs, dropped = None, (), [], Counter()
    for where, row in rows(path):
        if convert is None:
            fields, convert = LAYOUTS[layout_of(row, where)]
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise DataError(f"{where}: missing field '{missing[0]}' (this file's layout: {', '.join(fields)})")
        item = convert(row, where, source)
        if isinstance(item, str):
            dropped[item] += 1
        else:
            pairs.append(item)
    if dropped:
        log.warning("%s: dropped %s", path, dict(dropped))
    if not pairs:
        raise DataError(f"{path}: no usable pairs" + (f" (dropped: {dict(dropped)})" if dropped else " (empty file)"))
    return pairs


def source_name(path: Path) -> str:
    """A file's stem without any of its suffixes (`llmbar.jsonl.gz` → `llmbar`)."""
    return path.name.split(".")[0] or path.name


def read_all(paths: Sequence[str | Path]) -> dict[str, list[Pair]]:
    """{source: pairs} of several files, one source per file; a repeated stem gets `_2`, `_3`, … in order."""
    out: dict[str, list[Pair]] = {}
    for path in map(Path, paths):
        name, k = source_name(path), 2
        while name in out:
            name, k = f"{source_name(path)}_{k}", k + 1
        out[name] = read_pairs(path, name)
    return out
