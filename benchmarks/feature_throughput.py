"""Feature-extraction throughput (pairs/s) of a frozen backbone on real HH pairs, per dtype and batch size.

Usage: python benchmarks/feature_throughput.py [--model smollm2-135m] [--pairs 48] [--max-length 256]
       [--dtypes bf16 fp32] [--batch-sizes 8 16 32] [--threads 2]
Run it again under LD_PRELOAD=$(python -c "from morelib.hardware import tcmalloc_path; print(tcmalloc_path())")
to measure tcmalloc. Prints one markdown table row per setting (no cache is used: every text is computed). "pairs per CPU-s" divides
by this process's CPU time, which estimates the uncontended rate when other jobs share the cores (with 1 thread).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from morelib.data import load_preferences
from morelib.features import embed_texts
from morelib.hardware import set_threads, tcmalloc_active
from morelib.model import load_reward_model


def main() -> None:
    """Measure and print pairs/s for every (dtype, batch size)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--dtypes", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data-dir", default=os.environ.get("MORE_DATA_DIR", "/work/shared/data"))
    args = parser.parse_args()
    threads = set_threads(args.threads)
    pairs = load_preferences("hh-helpful", "test", data_dir=args.data_dir, limit=args.pairs, seed=0)
    texts = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    print(f"| model | dtype | batch | threads | tcmalloc | pairs/s (wall) | pairs per CPU-s | load avg | "
          f"{platform.machine()} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        model, tok = load_reward_model(args.model, dtype=dtype, device="cpu")
        embed_texts(model, tok, texts[:4], args.max_length, batch_size=4)  # warm-up
        for batch in args.batch_sizes:
            wall, cpu = time.perf_counter(), time.process_time()
            embed_texts(model, tok, texts, args.max_length, batch_size=batch)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"| {args.model} | {dtype} | {batch} | {threads} | {tcmalloc_active()} | {len(pairs) / wall:.2f} | "
                  f"{len(pairs) / cpu:.2f} | {os.getloadavg()[0]:.1f} | torch {torch.__version__} |", flush=True)


if __name__ == "__main__":
    main()
