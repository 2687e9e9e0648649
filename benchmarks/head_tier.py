"""Feature-tier speed: reward-head training on 5 × 2,000 pairs and the two explorer refits (λ slider, dataset mix).

Synthetic feature-level data (morelib.synthetic.synthetic, eq. 4 drift model) at h = 576, SmolLM2-135M's width: the head
tier only ever sees pooled features, so real text adds nothing here. Training uses the default profile's schedule
(`head.epochs`, `train.batch_per_source`); the λ refit is `Explorer.set_lambda` (scheme "fixed" with the explorer's own
schedule, then metrics on every test source), as a slider move triggers it; the mix refit is `Explorer.set_mix` on every
pair (MultiTask and MORE refitted and evaluated), as a mix-widget change triggers it. Both include the uncertainty every
refit carries (bootstrap replicates over test pairs, `explore.n_boot`, and the ECE floor per source); "explorer
intervals" times that part alone. The λ refit uses a non-uniform λ (uniform λ is fitted once and cached). Calls are
alternated and repeated; medians of wall and process-CPU seconds are reported.

    .venv/bin/python benchmarks/head_tier.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
from common import interleave, median, save, table

from morelib.core.config import load_config
from morelib.core.hardware import set_threads
from morelib.explore import intervals
from morelib.explore.engine import Explorer
from morelib.synthetic.synthetic import make_drift_benchmark
from morelib.train.reward_head import train_head

GOALS = {
    "train more": 2.0,
    "train multitask": 2.0,
    "explorer refit": 1.0,
    "explorer mix refit": 1.0,
    "explorer intervals": 0.1,
}


def main(argv: list[str] | None = None) -> dict:
    """Time head training and an explorer refit; print the table, save benchmarks/results/head_tier.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--pairs", type=int, default=2000, help="training pairs per source")
    ap.add_argument("--test", type=int, default=500, help="test pairs per source")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    cfg = load_config("default")
    bench = make_drift_benchmark(args.K, 576, args.pairs, drift=0.5, seed=0, n_calib=10, n_test=args.test)
    explorer = Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore)
    lam = [(k + 1) / (args.K * (args.K + 1) / 2) for k in range(args.K)]  # 1…K over their sum: not uniform
    nb, fit = cfg.explore.reliability_bins, explorer.set_lambda(lam)
    calls = {
        "train more": lambda: train_head(bench.train, "more", cfg.train, cfg.head, seed=0),
        "train multitask": lambda: train_head(bench.train, "multitask", cfg.train, cfg.head, seed=0),
        "explorer refit": lambda: explorer.set_lambda(lam),
        "explorer mix refit": lambda: explorer.set_mix(explorer.available),
        "explorer intervals": lambda: (
            intervals.metric_replicates(fit.diffs, explorer._counts, nb),
            intervals.floor_band(fit.diffs, nb, cfg.explore.seed),
        ),
    }
    cpu: dict[str, list[float]] = {}
    times = interleave(calls, rounds=args.rounds, warmup=1, cpu=cpu)
    rows = [
        {
            "task": name,
            "K": args.K,
            "pairs_per_source": args.pairs,
            "test_per_source": args.test,
            "wall_s": median(times[name]),
            "cpu_s": median(cpu[name]),
            "goal_s": GOALS[name],
            "met": median(times[name]) < GOALS[name],
        }
        for name in calls
    ]
    print(
        table(
            rows,
            f"feature tier (h=576, {args.threads} threads, head_epochs={cfg.head.epochs}, "
            f"explorer head_epochs={cfg.explore.head_epochs}, n_boot={cfg.explore.n_boot})",
        )
    )
    result = {
        "args": vars(args),
        "rows": rows,
        "times": times,
        "cpu": cpu,
        "schedule": {
            "head_epochs": cfg.head.epochs,
            "batch_per_source": cfg.train.batch_per_source,
            "explore_head_epochs": cfg.explore.head_epochs,
            "explore_batch_per_source": cfg.explore.batch_per_source,
            "explore_n_boot": cfg.explore.n_boot,
        },
    }
    save("head_tier", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
