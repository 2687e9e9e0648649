"""torch.profiler top operators of one SmolLM2-135M reward-model training step (and one scoring pass) on real pairs.

Same step as benchmarks/roofline.py (BT loss on [chosen; rejected] in one forward, backward, AdamW): one warm-up
step, then one profiled step; prints the operators with the most self CPU time, as evidence of what bounds it.

    .venv/bin/python benchmarks/profile_step.py [--pairs 4] [--max-length 256]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
from common import save, table
from roofline import length_grouped_batch, step_calls
from torch.profiler import ProfilerActivity, profile

from morelib.backbone.model import load_reward_model
from morelib.core.hardware import set_threads


def top_ops(fn, n: int) -> list[dict]:
    """The n operators with the most self CPU time in one call of `fn` (name, ms, share, calls)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {
            "op": e.key[:60],
            "self_ms": e.self_cpu_time_total / 1e3,
            "share": e.self_cpu_time_total / total,
            "calls": e.count,
        }
        for e in events[:n]
    ]


def main(argv: list[str] | None = None) -> dict:
    """Profile a training step and a scoring pass; print both tables, save results/profile_step.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    model, tok = load_reward_model("smollm2-135m", dtype="auto")
    model.train()
    input_ids, mask = length_grouped_batch(tok, args.max_length, args.pairs)
    train, score = step_calls(model, input_ids, mask)
    train()
    result = {
        "args": vars(args),
        "shape": list(input_ids.shape),
        "train": top_ops(train, args.top),
        "score": top_ops(score, args.top),
    }
    for kind in ("train", "score"):
        print(table(result[kind], f"{kind}: top ops by self CPU time, batch {list(input_ids.shape)}"))
        print()
    save("profile_step", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
