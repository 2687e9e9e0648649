"""Hardware: which device and dtype a frozen backbone runs in, CPU threads, the tcmalloc allocator, and where morelib's
caches outside the repo live.

Not a paper concept; performance levers of project issues 8 and 29. `model.dtype: auto` means bf16 on CUDA; on a CPU,
bf16 only where a measured probe finds it fast: the backbone's own forward on PROBE_BATCH texts × PROBE_TOKENS tokens,
timed in bf16 and fp32 (one warm-up each, then PROBE_ROUNDS alternating rounds, best of each), cached per machine
(CPU model + flags + torch version + backbone) in `cache_root()/probes/`, recorded in the run manifest (`core.facts`).
A CPU without bf16 instructions (no avx512_bf16, amx_bf16 or arm bf16) is not probed: it stays fp32, as before.
Measured: 2 AMD EPYC cores with avx2 only — bf16 feature extraction ~5x slower than fp32 (benchmarks/README.md);
2 AMD EPYC cores with avx512_bf16, no AMX — the probe of SmolLM2-135M gave 2.58 texts/s in bf16 against 1.27 in fp32
(2.03x; one pinned thread under load, 2026-12-05). Checked in tests/test_hardware.py (probe stubbed both ways, its
cache and key, the warning, the manifest record, a real probe of the tiny model).
`model.dtype: fp32` skips the probe (bit-reproducible); a forced `bf16` on a CPU where the probe finds it slow runs,
with one warning naming the measured slowdown.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from morelib.core import facts
from morelib.core.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512 bf16, Intel AMX, ARMv8.6 bf16: native bf16 dot products
BF16_MIN_SPEEDUP = 1.2  # auto takes bf16 on a CPU only at >= 1.2x fp32 texts/s: bf16 rounds the features, which a
# smaller gain does not pay for, and back-to-back probes on a shared 2-core machine differ by up to ~10%
PROBE_BATCH = 4  # texts per probe forward: the default feature-extraction batch (model.batch_size)
PROBE_TOKENS = 128  # tokens per probe text: the default model.max_length
PROBE_ROUNDS = 2  # timed rounds per dtype after one warm-up each; ~3 s for SmolLM2-135M on 2 cores
PROBE_VERSION = 1  # bump when the probe's workload changes: old cached results no longer apply
_WARNED: set[str] = set()


def cache_root() -> Path:
    """Root of morelib's caches outside the repo: $MORE_CACHE_DIR, default ~/.cache/morelib."""
    return Path(os.environ.get("MORE_CACHE_DIR", "~/.cache/morelib")).expanduser()


def _cpuinfo_field(names: tuple[str, ...]) -> str:
    """The value of the first /proc/cpuinfo line starting with one of `names` ('' where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(names) and ":" in line:
            return line.split(":", 1)[1].strip()
    return ""


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where it cannot be read)."""
    return frozenset(_cpuinfo_field(("flags", "Features")).split())


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor() or 'unknown'."""
    return _cpuinfo_field(("model name", "Model name")) or platform.processor() or "unknown"


def has_amx_bf16() -> bool:
    """True when the CPU has Intel AMX bf16 tiles (fast bf16 matmuls on CPU)."""
    return "amx_bf16" in cpu_flags()


def bf16_instructions() -> list[str]:
    """The native bf16 instruction sets this CPU lists (BF16_FLAGS present in its flags); empty = bf16 is emulated."""
    return [flag for flag in BF16_FLAGS if flag in cpu_flags()]


def default_device() -> torch.device:
    """CUDA device 0 when available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class DtypeProbe:
    """One measured bf16-vs-fp32 forward of a backbone on this CPU: texts/s in each dtype and how it was measured."""

    key: str  # probe_key(backbone): CPU model + flags + torch version + backbone + PROBE_VERSION
    backbone: str
    bf16_texts_per_s: float
    fp32_texts_per_s: float
    texts: int  # per forward
    tokens: int  # per text
    rounds: int
    threads: int  # torch intra-op threads while measuring
    seconds: float  # wall time of the whole probe, warm-ups included
    measured: str  # ISO time of the measurement
    cpu: str
    torch: str
    cached: bool = False  # read from the probe cache rather than measured in this process

    @property
    def speedup(self) -> float:
        """bf16 texts/s over fp32 texts/s (> 1: bf16 is faster)."""
        return self.bf16_texts_per_s / self.fp32_texts_per_s

    @property
    def bf16_fast(self) -> bool:
        """Whether bf16 is fast enough here for `auto` to take it (speedup >= BF16_MIN_SPEEDUP)."""
        return self.speedup >= BF16_MIN_SPEEDUP

    def record(self) -> dict[str, Any]:
        """Plain dict for the manifest: every field plus the speedup."""
        return {**asdict(self), "speedup": round(self.speedup, 3)}


def probe_key(backbone: str) -> str:
    """16 hex digits naming one probe: this CPU's model and flags, the torch version, the backbone, PROBE_VERSION."""
    parts = [cpu_model(), " ".join(sorted(cpu_flags())), torch.__version__, backbone, str(PROBE_VERSION)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def probe_path(backbone: str) -> Path:
    """Where this machine's probe of `backbone` is cached: cache_root()/probes/bf16-<probe_key>.json."""
    return cache_root() / "probes" / f"bf16-{probe_key(backbone)}.json"


def time_forwards(forward: Callable[[torch.dtype], None], rounds: int = PROBE_ROUNDS) -> dict[torch.dtype, float]:
    """Best wall seconds of one `forward(dtype)` for bf16 and fp32: one warm-up each, then `rounds` alternating rounds
    (alternating, so a load change on a shared machine hits both dtypes alike)."""
    order = (torch.bfloat16, torch.float32)
    for dtype in order:
        forward(dtype)
    best = dict.fromkeys(order, math.inf)
    for _ in range(rounds):
        for dtype in order:
            start = time.perf_counter()
            forward(dtype)
            best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best


def measure_probe(backbone: str, forward: Callable[[torch.dtype], None], texts: int, tokens: int) -> DtypeProbe:
    """Time `forward(dtype)` (one batch of `texts` texts × `tokens` tokens of `backbone`) in bf16 and fp32."""
    start = time.perf_counter()
    best = time_forwards(forward)
    return DtypeProbe(
        key=probe_key(backbone),
        backbone=backbone,
        bf16_texts_per_s=round(texts / best[torch.bfloat16], 3),
        fp32_texts_per_s=round(texts / best[torch.float32], 3),
        texts=texts,
        tokens=tokens,
        rounds=PROBE_ROUNDS,
        threads=torch.get_num_threads(),
        seconds=round(time.perf_counter() - start, 3),
        measured=datetime.now().isoformat(timespec="seconds"),
        cpu=cpu_model(),
        torch=torch.__version__,
    )


def _read_probe(path: Path, key: str) -> DtypeProbe | None:
    """The cached probe at `path` when it is readable and made for `key`; None (with a warning if broken) otherwise."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in fields(DtypeProbe)} - {"cached"}
        probe = DtypeProbe(**{name: data[name] for name in names}, cached=True)
        if probe.key == key and probe.bf16_texts_per_s > 0 and probe.fp32_texts_per_s > 0:
            return probe
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"dtype probe cache {path} is unreadable ({err}); measuring again", stacklevel=3)
        return None
    warnings.warn(f"dtype probe cache {path} does not hold a valid probe of key {key}; measuring again", stacklevel=3)
    return None


def _write_probe(path: Path, probe: DtypeProbe) -> None:
    """Write `probe` as JSON to `path` atomically (temporary file beside it, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(probe.record(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def dtype_forward(model: torch.nn.Module, run: Callable[[torch.nn.Module], None]) -> Callable[[torch.dtype], None]:
    """forward(dtype): `run(copy)` under inference mode on the model in `dtype` (itself, or a copy made once per
    dtype) — the workload a probe times in each dtype."""
    copies: dict[torch.dtype, torch.nn.Module] = {}

    def forward(dtype: torch.dtype) -> None:
        if dtype not in copies:
            current = next(model.parameters()).dtype
            copies[dtype] = model if current == dtype else copy.deepcopy(model).to(dtype=dtype)
        with torch.inference_mode():
            run(copies[dtype])

    return forward


def dtype_probe(
    backbone: str, forward: Callable[[torch.dtype], None], texts: int = PROBE_BATCH, tokens: int = PROBE_TOKENS
) -> DtypeProbe:
    """This machine's bf16-vs-fp32 probe of `backbone`: read from the probe cache, else measured and cached."""
    path = probe_path(backbone)
    probe = _read_probe(path, probe_key(backbone))
    if probe is None:
        probe = measure_probe(backbone, forward, texts, tokens)
        _write_probe(path, probe)
    return probe


def _choice(probe: DtypeProbe, requested: str, chosen: torch.dtype) -> None:
    """Note the probe and the dtype it led to in the process facts (the run manifest's `machine.dtype_probe`)."""
    facts.note("dtype_probe", probe.backbone, {"requested": requested, "chosen": dtype_name(chosen), **probe.record()})


def _warn_slow_bf16(probe: DtypeProbe) -> None:
    """Warn once per probe that forced bf16 measured slower than BF16_MIN_SPEEDUP × fp32 on this CPU."""
    if probe.key in _WARNED:
        return
    _WARNED.add(probe.key)
    warnings.warn(
        f"dtype bf16 (model.dtype or rjs.dtype) on a CPU where {probe.backbone}'s bf16 forward measured "
        f"{probe.bf16_texts_per_s:g} texts/s "
        f"against {probe.fp32_texts_per_s:g} in fp32 ({probe.speedup:.2f}x; {1 / probe.speedup:.1f}x slower): bf16 "
        f"is emulated or slow here (probe {probe.key}, {probe.measured}); `auto` or fp32 runs faster",
        stacklevel=3,
    )


def resolve_dtype(
    dtype: str, device: torch.device | None = None, probe: Callable[[], DtypeProbe] | None = None
) -> torch.dtype:
    """Map "auto" | "bf16" | "fp32" to a torch dtype for `device`.

    "auto": bf16 on CUDA; on a CPU with bf16 instructions, bf16 when `probe()` (the backbone's measured forward, see
    `dtype_probe`) finds it >= BF16_MIN_SPEEDUP x fp32 — without a probe, only on AMX; fp32 everywhere else.
    "bf16" forced on a CPU runs in bf16 and warns once when `probe()` finds it slow. "fp32" never probes.
    """
    if dtype != "auto" and dtype not in DTYPES:
        raise ConfigError(f"model dtype must be one of 'auto', {', '.join(map(repr, DTYPES))}; got {dtype!r}")
    device = device or default_device()
    if device.type != "cpu" or dtype == "fp32":
        return DTYPES.get(dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
    facts.note("cpu", "model", cpu_model())
    facts.note("cpu", "bf16_instructions", bf16_instructions())
    if dtype == "auto" and not bf16_instructions():
        return torch.float32
    if probe is None:
        return torch.bfloat16 if dtype == "bf16" or has_amx_bf16() else torch.float32
    measured = probe()
    chosen = torch.bfloat16 if dtype == "bf16" or measured.bf16_fast else torch.float32
    _choice(measured, dtype, chosen)
    if dtype == "bf16" and not measured.bf16_fast:
        _warn_slow_bf16(measured)
    return chosen


def dtype_name(dtype: torch.dtype) -> str:
    """The short name ("bf16" / "fp32") of a resolved torch dtype."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ConfigError(f"unsupported model dtype {dtype}; expected one of {', '.join(DTYPES)}")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to `n` (default: OMP_NUM_THREADS, else the usable cores); returns the value."""
    if n is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        n = int(env) if env.isdigit() and int(env) > 0 else usable_cores()
    torch.set_num_threads(n)
    return n


def tcmalloc_path() -> str | None:
    """Path of an installed tcmalloc shared library (for LD_PRELOAD), or None when none is installed."""
    for folder in LIB_DIRS:
        for name in TCMALLOC_NAMES:
            candidate = Path(folder) / name
            if candidate.exists():
                return str(candidate)
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return None
    for line in listing.splitlines():
        if any(name in line for name in TCMALLOC_NAMES) and "=>" in line:
            return line.split("=>", 1)[1].strip()
    return None


def tcmalloc_active() -> bool:
    """True when tcmalloc is mapped into this process (e.g. started with LD_PRELOAD=tcmalloc_path())."""
    try:
        return "tcmalloc" in Path("/proc/self/maps").read_text()
    except OSError:
        return False
