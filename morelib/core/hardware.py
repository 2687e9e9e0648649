"""Hardware: which device and dtype a frozen backbone runs in, CPU threads, and the tcmalloc allocator.

Not a paper concept; performance levers of project issue 8. bf16 is chosen only where it is fast: on CUDA, or on a
CPU whose /proc/cpuinfo lists `amx_bf16` (Intel AMX; without it PyTorch emulates bf16 matmuls and they run slower
than fp32). Checked on this machine (x86-64, avx2 only, no AMX): `auto` gives fp32; measured bf16 feature extraction ran
~5x slower than fp32 there (benchmarks/README.md), and tcmalloc changed fp32 throughput by 0-10%.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

import torch

from morelib.core.errors import ConfigError

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TCMALLOC_NAMES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of the first processor in /proc/cpuinfo (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def has_amx_bf16() -> bool:
    """True when the CPU has Intel AMX bf16 tiles (fast bf16 matmuls on CPU)."""
    return "amx_bf16" in cpu_flags()


def default_device() -> torch.device:
    """CUDA device 0 when available, otherwise the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str, device: torch.device | None = None) -> torch.dtype:
    """Map "auto" | "bf16" | "fp32" to a torch dtype; "auto" = bf16 on CUDA or an AMX CPU, else fp32."""
    if dtype == "auto":
        device = device or default_device()
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and has_amx_bf16())
        return torch.bfloat16 if fast_bf16 else torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"model dtype must be one of 'auto', {', '.join(map(repr, DTYPES))}; got {dtype!r}")
    return DTYPES[dtype]


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
