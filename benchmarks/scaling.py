"""Scaling of the feature tier (time, peak memory vs pairs per source and K) and the `paper` profile's projected cost.

Each configuration runs in a fresh subprocess (`--child N K`): synthetic h = 576 features for K sources × N pairs,
then one `train_head(scheme="more")` with the default schedule; the child reports fit wall/CPU seconds, peak RSS
(resource.getrusage ru_maxrss: the process high-water mark, torch itself included) and the peak RSS growth during
the fit. The `paper` profile (Pythia-1.4B, 5 × 40k pairs, 512 tokens, one epoch) is projected from FLOPs: 6·N·tokens
per training token, N = non-embedding parameters, at an assumed 40% MFU of one H100 SXM's 989 TFLOP/s dense bf16
(no GPU is lent to this task, so this is a projection, not a measurement); tokens = 2 texts per pair × (a) 512 each
(padded, upper bound) or (b) the mean real length of the local sources truncated at 512 (SmolLM2's tokenizer as a
stand-in for Pythia's; both are ~50k-entry BPE vocabularies).

    .venv/bin/python benchmarks/scaling.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
from common import DATA_DIR, save, table

H100_BF16_TFLOPS = 989.0  # NVIDIA H100 SXM dense bf16 peak (datasheet; 1979 is with 2:4 sparsity)
ASSUMED_MFU = 0.40  # typical of well-tuned HF Trainer fine-tuning of 1B-class decoders at 512 tokens
PYTHIA_1_4B = {"d_model": 2048, "n_layers": 24, "vocab": 50304, "total": 1_414_647_808}
LOCAL_SOURCES = ("hh-helpful", "hh-harmless", "oasst1", "summarize", "ultrafeedback")


def child(n: int, K: int) -> dict:
    """Build K × n synthetic pairs, fit one MORE head; seconds and memory of this process."""
    import torch

    from morelib.core.config import load_config
    from morelib.synthetic.synthetic import make_drift_benchmark
    from morelib.train.reward_head import train_head

    bench = make_drift_benchmark(K, 576, n, drift=0.5, seed=0, n_calib=10, n_test=10)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = load_config("default")
    train_head(bench.train, "more", cfg.train, cfg.head, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    feats = sum(pf.chosen.numel() + pf.rejected.numel() for pf in bench.train.values()) * 4
    return {
        "pairs_per_source": n,
        "K": K,
        "fit_wall_s": wall,
        "fit_cpu_s": cpu,
        "peak_rss_mb": peak / 1024,
        "fit_rss_growth_mb": (peak - before) / 1024,
        "features_mb": feats / 2**20,
        "threads": torch.get_num_threads(),
    }


def run_child(n: int, K: int) -> dict:
    """One configuration in a fresh interpreter (so ru_maxrss is its own)."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(n), str(K)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def mean_tokens(max_length: int) -> dict[str, float]:
    """Mean tokens per text (prompt + response, truncated at max_length) of each local source's test pairs."""
    from morelib.backbone.model import encode, load_reward_model
    from morelib.data.sources import load_preferences

    _, tok = load_reward_model("smollm2-135m", dtype="fp32")
    out = {}
    for source in LOCAL_SOURCES:
        pairs = load_preferences(source, "test", data_dir=DATA_DIR, limit=500, seed=0)
        ids = encode(
            tok, [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs], max_length, "left"
        )
        out[source] = sum(map(len, ids)) / len(ids)
    return out


def paper_projection(lengths: dict[str, float]) -> list[dict]:
    """Projected H100 wall time of the paper profile's one-epoch fine-tuning (padded and real lengths)."""
    p = PYTHIA_1_4B
    n_params = p["total"] - 2 * p["vocab"] * p["d_model"]  # untied embed_in and embed_out
    pairs, L = 5 * 40_000, 512
    rows = []
    for _label, per_text in (("padded to 512", float(L)), ("mean real length", sum(lengths.values()) / len(lengths))):
        tokens = pairs * 2 * per_text
        flops = 6 * n_params * tokens
        hours = flops / (ASSUMED_MFU * H100_BF16_TFLOPS * 1e12) / 3600
        rows.append(
            {
                "tokens_per_text": per_text,
                "train_tokens": tokens,
                "PFLOP": flops / 1e15,
                "h100_hours_at_40%MFU": hours,
                "non_embedding_params": n_params,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Sweep pairs per source and K, project the paper profile; print tables, save results/scaling.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, type=int, metavar=("N", "K"), help=argparse.SUPPRESS)
    ap.add_argument("--pairs", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    ap.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4, 5])
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return {"child": True}
    by_n = [run_child(n, 5) for n in args.pairs]
    by_k = [run_child(2000, k) for k in args.ks]
    lengths = mean_tokens(512)
    paper = paper_projection(lengths)
    print(table(by_n, "feature tier, MORE head, K = 5, h = 576: vs pairs per source"))
    print()
    print(table(by_k, "feature tier, MORE head, 2,000 pairs per source, h = 576: vs K"))
    print()
    print(table([{"source": k, "mean_tokens@512": v} for k, v in lengths.items()], "local sources' text lengths"))
    print()
    print(
        table(
            paper,
            f"paper profile (Pythia-1.4B, 5 x 40k pairs, 512 tokens, 1 epoch) on one H100: 6·N·tokens at "
            f"{ASSUMED_MFU:.0%} of {H100_BF16_TFLOPS:.0f} TFLOP/s (projection)",
        )
    )
    result = {
        "args": vars(args),
        "by_pairs": by_n,
        "by_K": by_k,
        "mean_tokens_512": lengths,
        "paper": paper,
        "assumptions": {"h100_bf16_tflops": H100_BF16_TFLOPS, "mfu": ASSUMED_MFU},
    }
    save("scaling", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
