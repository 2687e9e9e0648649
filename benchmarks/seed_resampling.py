"""Which per-seed resample makes the spread over seeds estimate the training-data variance? (issue 24, item 1)

Synthetic eq. 4 drift benchmark (morelib.synthetic.synthetic) with the truth known: one population (r*, drifts), R
independent training sets of `--pairs` pairs per source drawn from it, and one large fixed test set. The TRUE
training-data variance of a metric is its variance over heads fitted on the R independent sets. Each method of
`sampling.seed_indices` (bootstrap, halves, subsample at 0.8) is then applied to B of those sets with S seeds each; its
estimate is the mean over the B sets of the between-seed variance. Ratio estimate / truth near 1 is what the
two-component interval of `stats.pooled_paired_bootstrap` needs (below 1: too narrow). Metrics of each head: accuracy
and ECE-10 on the pooled test pairs, cos(w, r*), and MORE − MultiTask accuracy (the comparison the CIs are about).

    .venv/bin/python benchmarks/seed_resampling.py [--R 30] [--B 4] [--S 10]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import numpy as np
import torch
from common import save, table

from morelib.core.config import load_config
from morelib.core.hardware import set_threads
from morelib.data.sampling import seed_indices
from morelib.evaluation import metrics
from morelib.synthetic.synthetic import make_drift_benchmark
from morelib.train.reward_head import train_head

METHODS = {"bootstrap": 1.0, "halves": 1.0, "subsample": 0.8}


def head_metrics(train: dict, bench, cfg, seed: int) -> dict[str, float]:
    """Accuracy, ECE-10, cos(w, r*) of a MultiTask head and MORE − MultiTask accuracy, on the pooled test pairs."""
    out = {}
    for scheme in ("multitask", "more"):
        head = train_head(train, scheme, cfg.train, cfg.head, seed, more=cfg.more)
        d = np.concatenate([head.reward_diff(pf).double().numpy() for pf in bench.test.values()])
        out[scheme] = (metrics.accuracy(d), metrics.calibration_errors(d)["ece"], head)
    w = (out["multitask"][2].w / out["multitask"][2].scale).double()
    r = bench.r_star.double()
    return {
        "accuracy": out["multitask"][0],
        "ece_10": out["multitask"][1],
        "cos_r_star": float(w @ r / (w.norm() * r.norm())),
        "more_minus_multitask_acc": out["more"][0] - out["multitask"][0],
    }


def main(argv: list[str] | None = None) -> dict:
    """Measure truth and each method's estimate; print the table, save benchmarks/results/seed_resampling.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--R", type=int, default=30, help="independent training sets (the truth)")
    ap.add_argument("--B", type=int, default=4, help="training sets each method resamples")
    ap.add_argument("--S", type=int, default=10, help="seeds per training set")
    ap.add_argument("--K", type=int, default=5)
    ap.add_argument("--dim", type=int, default=576, help="feature width (SmolLM2-135M: 576)")
    ap.add_argument("--pairs", type=int, default=400, help="training pairs per source (default profile: 400)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    cfg = load_config("default")
    bench = make_drift_benchmark(args.K, args.dim, args.R * args.pairs, drift=0.5, seed=0, n_calib=10, n_test=2000)
    sets = [
        {s: pf.subset(torch.arange(r * args.pairs, (r + 1) * args.pairs)) for s, pf in bench.train.items()}
        for r in range(args.R)
    ]
    truth = [head_metrics(t, bench, cfg, seed=0) for t in sets]
    keys = list(truth[0])
    rows = [{"method": "truth (independent sets)", **{k: float(np.var([m[k] for m in truth], ddof=1)) for k in keys}}]
    for method, fraction in METHODS.items():
        per_set = []
        for t in sets[: args.B]:
            seeds = [
                head_metrics(
                    {s: pf.subset(seed_indices(args.pairs, fraction, j, s, method)) for s, pf in t.items()},
                    bench,
                    cfg,
                    seed=j,
                )
                for j in range(args.S)
            ]
            per_set.append({k: np.var([m[k] for m in seeds], ddof=1) for k in keys})
        est = {k: float(np.mean([v[k] for v in per_set])) for k in keys}
        rows.append({"method": f"{method} ({fraction:g})", **est})
    ratios = [{"method": r["method"], **{k: r[k] / rows[0][k] for k in keys}} for r in rows[1:]]
    print(table(rows, f"variance over heads (K={args.K}, dim={args.dim}, {args.pairs} pairs/source)"))
    print(
        table(ratios, f"estimate / truth (truth from R={args.R} sets: relative sd ≈ {np.sqrt(2 / (args.R - 1)):.2f})")
    )
    result = {"args": vars(args), "variances": rows, "ratio_to_truth": ratios}
    save("seed_resampling", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
