"""Training throughput (issue 3): full fine-tuning pairs/s, feature-cache features/s, one head-tier training.

1. Full fine-tuning of SmolLM2-135M through `morelib.train.finetune` exactly as shipped (scheme `single` on real
   Anthropic Harmless test pairs, `--pairs` pairs per step, length-grouped plan, fused AdamW), at each `--lengths` max
   length: fp32 for `--steps` steps (the first is warm-up and dropped when there are more), per-step wall and
   process-CPU seconds from `steptimer`. bf16 (Trainer bf16 autocast) runs `--bf16-steps` step(s) only: on a CPU without
   AMX/AVX512-BF16 bf16 matmuls are emulated (~100-200x slower than fp32, roofline.py), so there it runs at
   `--bf16-length` tokens with `--bf16-pairs` pairs, beside an fp32 step of the same shape for the ratio; the single
   step includes the warm-up.
2. Feature cache: `morelib.backbone.features.extract` of `--feature-pairs` fresh pairs (2 texts each) into a temporary
   cache (cold: every text embedded), then the same call again (warm: every text read from the cache); backbone loaded
   beforehand, so loading is not timed.
3. Head tier: one `train_head` MORE fit and one MultiTask fit on K x n synthetic feature pairs (h = 576).

    .venv/bin/python benchmarks/train_throughput.py [--lengths 256 512] [--steps 2] [--pairs 4] [--no-save]
Defaults run in about 10 minutes on the loaded 2-core CPU; smoke test: --steps 1 --pairs 1 --lengths 32
--bf16-length 8 --feature-pairs 2 --feature-length 32 --head-pairs 200 --threads 1 --no-save.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import steptimer
import torch
from common import hh_pairs, median, save, table, timed_cpu

from morelib.backbone.features import backbone, extract
from morelib.core.config import load_config
from morelib.core.hardware import bf16_instructions, set_threads
from morelib.synthetic.synthetic import make_drift_benchmark
from morelib.train import finetune as ft
from morelib.train.reward_head import train_head

MODEL = "smollm2-135m"


def finetune_row(pairs: list, timer: steptimer.StepTimer, length: int, B: int, steps: int, bf16: bool) -> dict:
    """Pairs/s (wall and per CPU-second) of `steps` fine-tuning steps of B pairs at max length `length`."""
    cfg = load_config(
        "default",
        {
            "model.name": MODEL,
            "model.max_length": length,
            "train.batch_per_source": B,
            "finetune.steps": steps,
            "finetune.save_steps": 10**6,
            "finetune.logging_steps": 10**6,
            "train.tier": "finetune",
        },
    )
    label = f"{'bf16' if bf16 else 'fp32'}@{length}x{B}"
    base_args = ft.training_args

    def args_with_precision(*a, **kw):
        args = base_args(*a, **kw)
        if bf16:  # Trainer autocast in bf16 (on CPU too); finetune enables it only on a bf16-capable GPU
            args.bf16, args.mixed_precision = True, "bf16"
        return args

    timer.label = label
    ft.training_args = args_with_precision
    try:
        with tempfile.TemporaryDirectory() as out:
            ft.finetune(cfg, {"harmless": pairs[: max(B * steps, B)]}, "single", Path(out), seed=0)
    finally:
        ft.training_args = base_args
    skip = 1 if steps > 1 else 0
    wall, cpu = timer.timed_steps(label, skip=skip)
    return {
        "task": f"finetune {label}",
        "max_length": length,
        "pairs_per_step": B,
        "timed_steps": len(wall),
        "warmup_included": skip == 0,
        "s_per_step": median(wall),
        "pairs/s": B / median(wall),
        "pairs/cpu_s": B / median(cpu),
        "step_wall": wall,
        "step_cpu": cpu,
    }


def feature_rows(pairs: list, length: int, batch: int) -> list[dict]:
    """Texts (features) per second of the feature cache, cold then warm, on `pairs` (2 texts per pair)."""
    mcfg = load_config("default", {"model.name": MODEL, "model.max_length": length, "model.batch_size": batch}).model
    backbone(mcfg.name, mcfg.dtype, mcfg.padding_side)  # load once, untimed
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for kind in ("cold", "warm"):
            wall, cpu = timed_cpu(lambda: extract(pairs, mcfg, Path(cache), progress=False))
            n = 2 * len(pairs)
            rows.append(
                {
                    "task": f"features {kind} cache",
                    "max_length": length,
                    "texts": n,
                    "seconds": wall,
                    "features/s": n / wall,
                    "features/cpu_s": n / cpu,
                }
            )
    return rows


def head_rows(K: int, n: int) -> list[dict]:
    """Seconds of one MORE and one MultiTask head fit on K × n synthetic pairs (h = 576, default schedule)."""
    bench = make_drift_benchmark(K, 576, n, drift=0.5, seed=0, n_calib=10, n_test=10)
    cfg = load_config("default")
    rows = []
    for scheme in ("more", "multitask"):
        train_head(bench.train, scheme, cfg.train, cfg.head, seed=1)  # warm-up (first-call allocations)
        wall, cpu = timed_cpu(lambda s=scheme: train_head(bench.train, s, cfg.train, cfg.head, seed=0))
        rows.append({"task": f"head {scheme} {K} x {n}", "seconds": wall, "cpu_s": cpu})
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run the three measurements, print one table, save benchmarks/results/train_throughput.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512], help="fine-tuning max lengths (tokens)")
    ap.add_argument("--steps", type=int, default=2, help="fp32 steps per length; the first is warm-up when > 1")
    ap.add_argument("--pairs", type=int, default=4, help="pairs per fine-tuning step")
    ap.add_argument("--bf16-steps", type=int, default=1, help="bf16 steps (0 = skip bf16)")
    ap.add_argument(
        "--bf16-length", type=int, help="bf16 max length (default: 32 where bf16 is emulated, else each of --lengths)"
    )
    ap.add_argument("--bf16-pairs", type=int, help="bf16 pairs per step (default: 1 where emulated, else --pairs)")
    ap.add_argument("--feature-pairs", type=int, default=16, help="fresh pairs for the feature cache (2 texts each)")
    ap.add_argument("--feature-length", type=int, default=256)
    ap.add_argument("--feature-batch", type=int, default=4)
    ap.add_argument("--head-K", type=int, default=5)
    ap.add_argument("--head-pairs", type=int, default=2000, help="synthetic pairs per source of the head fit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-save", action="store_true", help="print only (smoke runs)")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    emulated = not bf16_instructions() and not torch.cuda.is_available()
    pairs = hh_pairs(max(args.pairs * args.steps, 8) + args.feature_pairs, seed=0)
    ft_pairs, feat_pairs = pairs[args.feature_pairs :], pairs[: args.feature_pairs]
    timer = steptimer.install()
    rows = [finetune_row(ft_pairs, timer, L, args.pairs, args.steps, bf16=False) for L in args.lengths]
    if args.bf16_steps > 0:
        b16_pairs = args.bf16_pairs or (1 if emulated else args.pairs)
        b16_lengths = [args.bf16_length] if args.bf16_length else ([32] if emulated else args.lengths)
        for L in b16_lengths:
            if emulated:  # fp32 step of the same shape, for the bf16/fp32 ratio
                rows.append(finetune_row(ft_pairs, timer, L, b16_pairs, args.bf16_steps, bf16=False))
            rows.append(finetune_row(ft_pairs, timer, L, b16_pairs, args.bf16_steps, bf16=True))
    rows += feature_rows(feat_pairs, args.feature_length, args.feature_batch)
    rows += head_rows(args.head_K, args.head_pairs)
    keys = (
        "task",
        "max_length",
        "pairs_per_step",
        "timed_steps",
        "warmup_included",
        "s_per_step",
        "pairs/s",
        "pairs/cpu_s",
        "texts",
        "seconds",
        "features/s",
        "features/cpu_s",
        "cpu_s",
    )
    note = " (bf16 emulated: no AMX/AVX512-BF16; 1 step incl. warm-up)" if emulated and args.bf16_steps else ""
    print(
        table(
            [{k: r.get(k, "") for k in keys} for r in rows],
            f"training throughput, {args.threads} threads, load {os.getloadavg()[0]:.1f}{note}",
        )
    )
    total = time.perf_counter() - start
    print(f"total {total:.0f} s")
    result = {"args": vars(args), "rows": rows, "bf16_emulated": emulated, "total_s": total}
    if not args.no_save:
        save("train_throughput", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
