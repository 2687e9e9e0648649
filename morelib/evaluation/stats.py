"""Uncertainty of workbook numbers: percentile bootstrap over test pairs, paired RM comparison, t-interval over seeds,
one pooled paired comparison over test sources and seeds with a two-component interval, Holm's correction, power.

Follows rliable/lm-eval-harness practice (an error bar next to every metric, an explicit random state):
resampling draws test-pair indices with an explicit `numpy.random.Generator(seed)`; `paired_bootstrap_diff`
draws the SAME indices for both reward models so pair difficulty cancels. `pooled_paired_bootstrap` adds the second
source of variance, the training run: se² = between-seed variance of the per-seed differences / S + the paired
pair-bootstrap variance of the seed-mean difference (less the pair × seed interaction both contain), with a t quantile
on Welch–Satterthwaite df (`two_component_se`).
Not in the paper (it reports point values).
Checked in tests/test_stats.py: constant data gives zero-width intervals, coverage on normal samples, scipy's
t-interval, the pooled CI's coverage of a known difference where test pairs dominate and where seeds dominate (5 and
20 seeds), the two components and df by hand, Holm against hand values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from morelib.evaluation.metrics import PairAdditive, as_finite

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


def _per_seed_diff(xa: Sequence[np.ndarray], xb: Sequence[np.ndarray], metric: BatchedStat) -> np.ndarray:
    """d_k [S]: mean over sources of metric(a) − metric(b) of seed k on the unresampled pairs."""
    return np.mean([metric(pa.T) - metric(pb.T) for pa, pb in zip(xa, xb)], axis=0)


def _pair_bootstrap(
    xa: Sequence[np.ndarray], xb: Sequence[np.ndarray], metric: BatchedStat, n_boot: int, seed: int
) -> np.ndarray:
    """Replicates [n_boot, S] of each seed's source-mean difference with test pairs resampled within each source (the
    same rows for A, B and every seed; seeds held fixed). A `metrics.PairAdditive` metric is bootstrapped by resample
    counts times its per-pair terms (same replicates as re-scoring each resample, one matrix product per block)."""
    rng = np.random.default_rng(seed)
    boot = np.zeros((n_boot, xa[0].shape[1]))
    # per-pair terms [N, S, F] of each source and scheme, computed once (PairAdditive metrics only)
    terms = (
        [[metric.terms(x.T).swapaxes(0, 1) for x in (pa, pb)] for pa, pb in zip(xa, xb)]
        if isinstance(metric, PairAdditive)
        else []
    )
    for start in range(0, n_boot, CHUNK):
        reps = min(CHUNK, n_boot - start)
        for k, (pa, pb) in enumerate(zip(xa, xb)):
            n = pa.shape[0]
            rows = rng.integers(0, n, size=(reps, n))
            if isinstance(metric, PairAdditive):  # resample counts [reps, N] @ per-pair terms [N, S·F]
                flat = (rows + n * np.arange(reps)[:, None]).ravel()
                counts = np.bincount(flat, minlength=reps * n).reshape(reps, n).astype(np.float64)
                part = [(counts @ t.reshape(n, -1)).reshape(reps, *t.shape[1:]) for t in terms[k]]
                boot[start : start + reps] += (metric.combine(part[0], n) - metric.combine(part[1], n)) / len(xa)
                continue
            # [reps, N, S] → [reps, S, N]: the metric runs over pairs, one value per seed
            da, db = pa[rows].transpose(0, 2, 1), pb[rows].transpose(0, 2, 1)
            boot[start : start + reps] += (metric(da) - metric(db)) / len(xa)
    return boot


def two_component_se(seed_diffs: np.ndarray, pair_var: float, within_var: float | None = None) -> tuple[float, float]:
    """(se, df) of a seed-mean difference from its seed and test-pair components, Welch–Satterthwaite df (the pair part
    counts as df = ∞); with one seed only the pair part (df = ∞).

    seed_diffs: the difference d_k [S] of each seed on the same test pairs; its variance / S holds the seed variance
    (training data, when every seed trains on an independent resample: `sampling.seed_indices`) AND the pair × seed
    interaction σ²_ps/(N·S). pair_var: the pair-bootstrap variance of the seed-mean difference (σ²_p + σ²_ps/S)/N, so
    the interaction is in both; within_var, the mean over seeds of each seed's own pair-bootstrap variance
    (σ²_p + σ²_ps)/N, removes it once: pair part = (S·pair_var − within_var)/(S − 1) (≥ 0), the two-way
    random-effects decomposition of a crossed pairs × seeds design. Without within_var the sum is conservative.
    """
    d = np.asarray(seed_diffs, dtype=np.float64).ravel()
    S = d.size
    seed_var = float(d.var(ddof=1)) / S if S > 1 else 0.0
    pair_part = pair_var if within_var is None or S < 2 else max((S * pair_var - within_var) / (S - 1), 0.0)
    se2 = seed_var + pair_part
    if seed_var == 0.0:
        return float(np.sqrt(se2)), float("inf")
    return float(np.sqrt(se2)), float(se2**2 * (S - 1) / seed_var**2)


def t_interval(diff: float, se: float, df: float, level: float = 0.95) -> tuple[float, float, float]:
    """(lo, hi, two-sided p) of `diff` with standard error `se` and a Student-t quantile on `df` degrees of freedom
    (normal when df = ∞); p = 1 and lo = hi = diff when se = 0 and diff = 0, p = 0 when se = 0 ≠ diff."""
    if se == 0.0:
        return diff, diff, 1.0 if diff == 0.0 else 0.0
    half = float(sps.t.ppf((1 + level) / 2, df)) * se
    return diff - half, diff + half, float(2 * sps.t.sf(abs(diff) / se, df))


def pooled_paired_bootstrap(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    metric: BatchedStat,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """One pooled, paired comparison of schemes A and B over all test sources, with a two-component interval.

    a[source], b[source]: reward differences [N_s pairs, S seeds] (row i = the same pair, column k = seed k in both).
    metric: a batched metric [..., N] → [...] (e.g. `metrics.batched_ece`, `metrics.batched_accuracy`).
    Statistic: mean over sources of (metric of A − metric of B), each averaged over seeds — every source weighs the
    same, as Table 3's average does. Its se has two components (`two_component_se`): the between-seed variance of the
    per-seed differences / S (training data and initialisation) plus the stratified paired bootstrap variance over test
    pairs (pairs resampled within each source, the same rows for A, B and every seed), the pair × seed interaction
    counted once; the CI is diff ± t·se with Welch–Satterthwaite df. Returns diff, lo, hi, se, df, se_seed (the seed
    part), se_pairs (the rest), p_value (two-sided, from t), a, b (pooled means), n_boot, n_sources, n_seeds, n_pairs
    (total). One source gives the per-source CI (`tables.compare`). Coverage of the 95% CI (tests/test_stats.py, 800
    simulated studies each) where test pairs / the pair × seed interaction / seeds (5) / seeds (20) dominate: 0.950,
    0.945, 0.954, 0.951; the seed-resampling percentile bootstrap it replaced: 0.946, 0.991, 0.844, 0.940. For ECE-10
    (600 studies, truth = the Monte Carlo mean of the statistic at the same N; a one-off check, not a test): 0.938
    where pairs and their interaction with seeds dominate, 0.957 and 0.948 where seeds dominate (5 and 20 seeds).
    """
    xa, xb, n_seeds = _pooled_inputs(a, b)
    _check_settings(n_boot, level)
    per_seed = _per_seed_diff(xa, xb, metric)
    boot = _pair_bootstrap(xa, xb, metric, n_boot, seed)
    pair_var = float(boot.mean(axis=1).var(ddof=1)) if n_boot > 1 else 0.0
    within = float(boot.var(axis=0, ddof=1).mean()) if n_boot > 1 else 0.0
    se, df = two_component_se(per_seed, pair_var, within)
    diff = float(per_seed.mean())
    lo, hi, p = t_interval(diff, se, df, level)
    return {
        "diff": diff,
        "lo": lo,
        "hi": hi,
        "se": se,
        "df": df,
        "se_seed": float(per_seed.std(ddof=1) / np.sqrt(n_seeds)) if n_seeds > 1 else 0.0,
        "se_pairs": float(np.sqrt(max(se**2 - (per_seed.var(ddof=1) / n_seeds if n_seeds > 1 else 0.0), 0.0))),
        "p_value": p,
        "a": float(np.mean([metric(pa.T).mean() for pa in xa])),
        "b": float(np.mean([metric(pb.T).mean() for pb in xb])),
        "n_boot": int(n_boot),
        "n_sources": len(xa),
        "n_seeds": int(n_seeds),
        "n_pairs": int(sum(x.shape[0] for x in xa)),
    }


def tost(diff: float, se: float, df: float, margin: float, alpha: float = 0.05) -> dict[str, float]:
    """Two one-sided tests of |true difference| < margin (Schuirmann 1987): equivalent when the (1 − 2α) t-interval
    lies inside (−margin, margin). Returns lo, hi (that interval), p (the larger one-sided p) and equivalent (0/1)."""
    if not margin > 0 or not 0 < alpha < 0.5 or not np.isfinite(se) or se < 0:
        raise ValueError(f"need margin > 0, 0 < alpha < 0.5 and a finite se ≥ 0, got {margin!r}, {alpha!r}, {se!r}")
    lo, hi, _ = t_interval(diff, se, df, 1 - 2 * alpha)
    if se == 0:
        p = 0.0 if abs(diff) < margin else 1.0
    else:
        p = float(max(sps.t.sf((diff + margin) / se, df), sps.t.cdf((diff - margin) / se, df)))
    return {"lo": lo, "hi": hi, "p": p, "equivalent": float(-margin < lo and hi < margin)}


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values [m] (step-down, monotone, capped at 1), in the input order."""
    p = as_finite(p_values, "p_values", vector=False).ravel()
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate(p[order] * (p.size - np.arange(p.size)))
    out = np.empty_like(p)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def minimum_detectable_effect(se: float, level: float = 0.95, power: float = 0.8, df: float = float("inf")) -> float:
    """Smallest true difference a two-sided test at 1 − level detects with probability `power`:
    (t_df((1+level)/2) + t_df(power))·se (normal quantiles when df = ∞)."""
    _check_settings(1, level)
    if not 0.0 < power < 1.0 or not np.isfinite(se) or se < 0 or not df > 0:
        raise ValueError(f"need 0 < power < 1, a finite se ≥ 0 and df > 0, got power={power!r}, se={se!r}, df={df!r}")
    return float((sps.t.ppf((1 + level) / 2, df) + sps.t.ppf(power, df)) * se)


def power_at(effect: float, se: float, level: float = 0.95, df: float = float("inf")) -> float:
    """Probability that a two-sided test at 1 − level detects a true difference `effect` when its estimate has sd
    `se` and the test uses a t quantile on `df` degrees of freedom (normal when df = ∞)."""
    _check_settings(1, level)
    if not np.isfinite(se) or se <= 0 or not df > 0:
        raise ValueError(f"se must be finite and > 0 and df > 0, got se={se!r}, df={df!r}")
    q = sps.t.ppf((1 + level) / 2, df)
    return float(sps.t.cdf(abs(effect) / se - q, df) + sps.t.cdf(-abs(effect) / se - q, df))
