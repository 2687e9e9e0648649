"""Feature-extraction throughput (pairs/s) of a frozen backbone on real HH pairs, per dtype and batch size.

Usage: python benchmarks/feature_throughput.py [--model smollm2-135m] [--pairs 48] [--max-length 256]
       [--dtypes fp32 bf16] [--batch-sizes 4 8 16] [--slow-pairs 8] [--threads 2]
Run it again under LD_PRELOAD=$(python -c "from morelib.core.hardware import tcmalloc_path; print(tcmalloc_path())")
to measure tcmalloc. Prints one markdown table row per setting (no cache is used: every text is computed) and writes
benchmarks/results/feature_throughput.json. bf16 where it is emulated (no AMX) runs on --slow-pairs pairs at one batch.
"pairs per CPU-s" divides by this process's CPU time, which estimates the uncontended rate when other jobs share the
cores (with 1 thread).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from common import DATA_DIR, save

from morelib.backbone.features import embed_texts
from morelib.backbone.model import load_reward_model
from morelib.core.hardware import bf16_instructions, set_threads, tcmalloc_active
from morelib.data.sources import load_preferences


def measure(model, tok, texts: list[str], max_length: int, batch: int) -> tuple[float, float]:
    """Wall and CPU seconds of embedding `texts` (no cache) in length-sorted batches of `batch`."""
    wall, cpu = time.perf_counter(), time.process_time()
    embed_texts(model, tok, texts, max_length, batch_size=batch)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    """Measure and print pairs/s for every (dtype, batch size); save benchmarks/results/feature_throughput.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument(
        "--slow-pairs",
        type=int,
        default=8,
        help="pairs for a dtype without fast units here (bf16 without AMX), at the middle batch size",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("MORE_DATA_DIR", DATA_DIR))
    args = parser.parse_args()
    threads = set_threads(args.threads)
    pairs = load_preferences("hh-helpful", "test", data_dir=args.data_dir, limit=args.pairs, seed=0)
    print(
        f"| model | dtype | batch | threads | tcmalloc | pairs/s (wall) | pairs per CPU-s | load avg | "
        f"{platform.machine()} |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for dtype in args.dtypes:
        slow = dtype == "bf16" and not bf16_instructions()  # emulated bf16: keep the run short
        use = pairs[: args.slow_pairs] if slow else pairs
        texts = [p.prompt + p.chosen for p in use] + [p.prompt + p.rejected for p in use]
        model, tok = load_reward_model(args.model, dtype=dtype, device="cpu")
        embed_texts(model, tok, texts[:4], args.max_length, batch_size=4)  # warm-up
        for batch in [args.batch_sizes[len(args.batch_sizes) // 2]] if slow else args.batch_sizes:
            wall, cpu = measure(model, tok, texts, args.max_length, batch)
            rows.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "pairs": len(use),
                    "pairs/s": len(use) / wall,
                    "pairs/cpu_s": len(use) / cpu,
                    "load_avg_1m": os.getloadavg()[0],
                }
            )
            print(
                f"| {args.model} | {dtype} | {batch} | {threads} | {tcmalloc_active()} | {len(use) / wall:.2f} | "
                f"{len(use) / cpu:.2f} | {os.getloadavg()[0]:.1f} | torch {torch.__version__} |",
                flush=True,
            )
    save("feature_throughput", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
