"""Shared benchmark plumbing: machine facts, interleaved timing, medians, tables, JSON results.

Every benchmark on this shared 2-core machine alternates the contenders round by round (A, B, A, B, ...) so that
background load hits both alike, repeats, and reports medians and ratios of medians — never one-off absolute times.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: spinning wastes a shared 2-core box

import torch  # noqa: E402  (after the OpenMP setting)

from morelib.core.hardware import cpu_flags, tcmalloc_active

RESULTS = Path(os.environ.get("MORE_BENCH_RESULTS", Path(__file__).resolve().parent / "results"))  # JSON folder
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "data")
HH = ("hh-harmless", "test")  # the real pairs every model benchmark uses (2,312 pairs, shared/data)


def cpu_model() -> str:
    """The `lscpu` model name of this machine's CPU (or platform.processor() without lscpu)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine() -> dict[str, Any]:
    """Facts that identify a measurement: date, CPU model, cores, threads, bf16 ISA, torch version, tcmalloc."""
    flags = cpu_flags()
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx2": "avx2" in flags,
        "tcmalloc": tcmalloc_active(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_1m": os.getloadavg()[0],
    }


def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call of `fn`."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call of `fn`."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def interleave(
    contenders: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1, cpu: dict[str, list[float]] | None = None
) -> dict[str, list[float]]:
    """Wall seconds per call of each contender, called alternately (order reversed every other round) for `rounds`
    rounds after `warmup` untimed rounds; process CPU seconds per call go into `cpu` when given."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(rounds):
        order = list(contenders.items())
        if r % 2:
            order.reverse()
        for name, fn in order:
            wall, used = timed_cpu(fn)
            times[name].append(wall)
            if cpu is not None:
                cpu.setdefault(name, []).append(used)
    return times


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence (ValueError naming the problem when empty)."""
    if not xs:
        raise ValueError("median of an empty list of timings")
    return float(statistics.median(xs))


def table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """A plain fixed-width text table of `rows` (columns = keys of the first row)."""
    if not rows:
        return f"{title}\n(no rows)"
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    width = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, width))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, width)) for row in cells]
    head = [title] if title else []
    return "\n".join(head + [line, "-" * len(line)] + body)


def _fmt(v: Any) -> str:
    """One table cell: floats to 3 significant digits, the rest as str."""
    if isinstance(v, bool) or not isinstance(v, float):
        return str(v)
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:,.0f}"


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write `payload` plus machine facts to benchmarks/results/<name>.json; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": machine(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
    return path


def load(name: str) -> dict[str, Any] | None:
    """The saved results of benchmark `name`, or None when it has not been run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def hh_pairs(n: int | None = None, seed: int = 0) -> list:
    """Up to `n` real Anthropic Harmless test pairs (drawn by `seed`, file order) from the shared data folder."""
    from morelib.data.sources import load_preferences

    return load_preferences(*HH, data_dir=os.environ.get("MORE_DATA_DIR", DATA_DIR), limit=n, seed=seed)


def token_pairs(tokenizer, pairs: Sequence, max_length: int) -> list[tuple[list[int], list[int]]]:
    """(chosen ids, rejected ids) of prompt + response per pair, left-truncated to `max_length` tokens."""
    from morelib.backbone.model import encode

    chosen = encode(tokenizer, [p.prompt + p.chosen for p in pairs], max_length, "left")
    rejected = encode(tokenizer, [p.prompt + p.rejected for p in pairs], max_length, "left")
    return list(zip(chosen, rejected))
