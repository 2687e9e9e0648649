"""Uncertainty of workbook numbers: percentile bootstrap over test pairs, paired RM comparison, t-interval over seeds,
one pooled paired comparison over all test sources and seeds, Holm's correction and the detectable effect (power).

Follows rliable/lm-eval-harness practice (an error bar next to every metric, an explicit random state):
resampling draws test-pair indices with an explicit `numpy.random.Generator(seed)`; `paired_bootstrap_diff`
draws the SAME indices for both reward models so pair difficulty cancels. `pooled_paired_bootstrap` also resamples
seeds (seed k of one scheme stays paired with seed k of the other), so its CI covers test-pair and seed variance.
Not in the paper (it reports point values).
Checked in tests/test_stats.py: constant data gives zero-width intervals, coverage on normal samples, scipy's
t-interval, the pooled CI's coverage of a known difference, Holm against hand values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from morelib.evaluation.metrics import as_finite

Stat = Callable[[np.ndarray], float]
BatchedStat = Callable[[np.ndarray], np.ndarray]  # reward differences [..., N] → one value per row [...]
CHUNK = 100  # bootstrap replicates per vectorised block: bounds memory at ~CHUNK·N·S floats per source


def _check_settings(n_boot: int, level: float) -> None:
    """Raise ValueError unless n_boot ≥ 1 and 0 < level < 1."""
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _percentiles(boot: np.ndarray, level: float) -> tuple[float, float]:
    """Lower and upper percentile-interval bounds of bootstrap replicates at confidence `level`."""
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    values: Any, stat: Stat = np.mean, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(point, lo, hi): stat(values) and its percentile-bootstrap interval, resampling rows (pairs) of values[N,
    ...]."""
    x = as_finite(values, "values", vector=False)
    _check_settings(n_boot, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    boot = np.array([stat(x[i]) for i in idx], dtype=np.float64)
    return (float(stat(x)), *_percentiles(boot, level))


def paired_bootstrap_diff(
    a_diff: Any, b_diff: Any, metric: Stat, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """metric(A) − metric(B) on the same test pairs with a paired bootstrap interval.

    a_diff, b_diff: reward differences [N] of two reward models on the same N pairs (row i = pair i in both).
    Returns diff, lo, hi, a, b, n_boot and p_value = share of resampled differences ≤ 0 (a one-sided bootstrap
    share, not an exact test: small when A is reliably larger; for lower-is-better metrics such as ECE, a share
    near 1 means A is reliably better); p_two_sided = `two_sided_share` of the resampled differences.
    """
    a, b = as_finite(a_diff, "a_diff", vector=False), as_finite(b_diff, "b_diff", vector=False)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a_diff and b_diff must score the same pairs, got N = {a.shape[0]} and {b.shape[0]}")
    _check_settings(n_boot, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    boot = np.array([metric(a[i]) - metric(b[i]) for i in idx], dtype=np.float64)
    lo, hi = _percentiles(boot, level)
    point_a, point_b = float(metric(a)), float(metric(b))
    return {
        "diff": point_a - point_b,
        "lo": lo,
        "hi": hi,
        "a": point_a,
        "b": point_b,
        "p_value": float(np.mean(boot <= 0)),
        "p_two_sided": two_sided_share(boot),
        "n_boot": int(n_boot),
    }


def two_sided_share(boot: np.ndarray) -> float:
    """min(1, 2·min(share ≤ 0, share ≥ 0)) of bootstrap differences: a two-sided bootstrap p-value (not an exact
    test)."""
    boot = np.asarray(boot)
    return float(min(1.0, 2 * min(np.mean(boot <= 0), np.mean(boot >= 0))))


def mean_and_ci_over_seeds(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of one number per seed with a Student-t interval; with a single seed lo = hi = NaN."""
    x = as_finite(values, "values", vector=False).ravel()
    _check_settings(1, level)
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = float(sps.t.ppf((1 + level) / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half


def _pooled_inputs(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Validated [N_s, S] arrays of both schemes per source (same N_s and S in both) and the common seed count S."""
    if not a or sorted(a) != sorted(b):
        raise ValueError(f"a and b must score the same, non-empty set of sources, got {sorted(a)} and {sorted(b)}")
    xa, xb = [], []
    for src in sorted(a):
        pa, pb = as_finite(a[src], f"a[{src!r}]", vector=False), as_finite(b[src], f"b[{src!r}]", vector=False)
        pa, pb = (p[:, None] if p.ndim == 1 else p for p in (pa, pb))
        if pa.ndim != 2 or pa.shape != pb.shape:
            raise ValueError(f"source {src!r}: a and b must both be [N pairs, S seeds], got {pa.shape} and {pb.shape}")
        xa.append(pa)
        xb.append(pb)
    seeds = {x.shape[1] for x in xa}
    if len(seeds) != 1:
        raise ValueError(f"every source must have the same seed count S, got {sorted(seeds)}")
    return xa, xb, seeds.pop()


def _source_mean_diff(xa: Sequence[np.ndarray], xb: Sequence[np.ndarray], metric: BatchedStat) -> float:
    """Mean over sources of (seed mean of metric(a) − seed mean of metric(b)) on the unresampled data."""
    return float(np.mean([metric(pa.T).mean() - metric(pb.T).mean() for pa, pb in zip(xa, xb)]))


def pooled_paired_bootstrap(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    metric: BatchedStat,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """One pooled, paired comparison of schemes A and B over all test sources: the stratified, seed-resampled bootstrap.

    a[source], b[source]: reward differences [N_s pairs, S seeds] (row i = the same pair, column k = seed k in both).
    metric: a batched metric [..., N] → [...] (e.g. `metrics.batched_ece`, `metrics.batched_accuracy`).
    Statistic: mean over sources of (metric of A − metric of B), each averaged over seeds — every source weighs the
    same, as Table 3's average does. Each replicate draws S seed columns with replacement (the same ones for A and B
    and for every source, since seed k's RM scores all sources) and, within each source, N_s pairs with replacement
    (the same pairs for A and B). Returns diff, lo, hi (percentile CI), se (bootstrap sd), p_value (two-sided share,
    `two_sided_share`), a, b (the pooled means), n_boot, n_sources, n_seeds, n_pairs (total).
    Pairs and seeds are crossed, so this is Owen's (2007) "pigeonhole" bootstrap: conservative when the pair × seed
    interaction is large, and (like any bootstrap over 5 clusters) somewhat narrow when seed-to-seed variation
    dominates; measured coverage of a 95% CI in tests/test_stats.py: 0.94.
    """
    xa, xb, n_seeds = _pooled_inputs(a, b)
    _check_settings(n_boot, level)
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for start in range(0, n_boot, CHUNK):
        reps = min(CHUNK, n_boot - start)
        cols = rng.integers(0, n_seeds, size=(reps, 1, n_seeds))
        for pa, pb in zip(xa, xb):
            rows = rng.integers(0, pa.shape[0], size=(reps, pa.shape[0], 1))
            # [reps, N, S] → [reps, S, N]: the metric runs over pairs, then the seed mean
            da, db = pa[rows, cols].transpose(0, 2, 1), pb[rows, cols].transpose(0, 2, 1)
            boot[start : start + reps] += (metric(da) - metric(db)).mean(axis=1) / len(xa)
    lo, hi = _percentiles(boot, level)
    point_a = float(np.mean([metric(pa.T).mean() for pa in xa]))
    point_b = float(np.mean([metric(pb.T).mean() for pb in xb]))
    return {
        "diff": _source_mean_diff(xa, xb, metric),
        "lo": lo,
        "hi": hi,
        "se": float(boot.std(ddof=1)),
        "p_value": two_sided_share(boot),
        "a": point_a,
        "b": point_b,
        "n_boot": int(n_boot),
        "n_sources": len(xa),
        "n_seeds": int(n_seeds),
        "n_pairs": int(sum(x.shape[0] for x in xa)),
    }


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values [m] (step-down, monotone, capped at 1), in the input order."""
    p = as_finite(p_values, "p_values", vector=False).ravel()
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(p[order] * (p.size - np.arange(p.size)))
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def minimum_detectable_effect(se: float, level: float = 0.95, power: float = 0.8) -> float:
    """Smallest true difference a two-sided test at 1 − level detects with probability `power`: (z_(1+level)/2 +
    z_power)·se."""
    _check_settings(1, level)
    if not 0.0 < power < 1.0 or not np.isfinite(se) or se < 0:
        raise ValueError(f"need 0 < power < 1 and a finite se ≥ 0, got power={power!r}, se={se!r}")
    return float((sps.norm.ppf((1 + level) / 2) + sps.norm.ppf(power)) * se)


def power_at(effect: float, se: float, level: float = 0.95) -> float:
    """Probability that a two-sided test at 1 − level detects a true difference `effect` when its estimate has sd
    `se`."""
    _check_settings(1, level)
    if not np.isfinite(se) or se <= 0:
        raise ValueError(f"se must be finite and > 0, got {se!r}")
    z = sps.norm.ppf((1 + level) / 2)
    return float(sps.norm.cdf(abs(effect) / se - z) + sps.norm.cdf(-abs(effect) / se - z))
