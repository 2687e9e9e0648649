"""Uncertainty of workbook numbers: percentile bootstrap over test pairs, paired RM comparison, t-interval over seeds.

Follows rliable/lm-eval-harness practice (an error bar next to every metric, an explicit random state):
resampling draws test-pair indices with an explicit `numpy.random.Generator(seed)`; `paired_bootstrap_diff`
draws the SAME indices for both reward models so pair difficulty cancels. Not in the paper (it reports point values).
Checked in tests/test_stats.py: constant data gives zero-width intervals, coverage on normal samples, scipy's t-interval.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import stats as sps

Stat = Callable[[np.ndarray], float]


def _as_samples(values: Any, name: str) -> np.ndarray:
    """Float64 array with N ≥ 1 rows along axis 0 and only finite entries, else ValueError naming `name`."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample along axis 0, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite (NaN/inf) values")
    return x


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


def bootstrap_ci(values: Any, stat: Stat = np.mean, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(point, lo, hi): stat(values) and its percentile-bootstrap interval, resampling rows (pairs) of values[N, ...]."""
    x = _as_samples(values, "values")
    _check_settings(n_boot, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    boot = np.array([stat(x[i]) for i in idx], dtype=np.float64)
    return (float(stat(x)), *_percentiles(boot, level))


def paired_bootstrap_diff(a_diff: Any, b_diff: Any, metric: Stat, n_boot: int = 1000, seed: int = 0,
                          level: float = 0.95) -> dict[str, float]:
    """metric(A) − metric(B) on the same test pairs with a paired bootstrap interval.

    a_diff, b_diff: reward differences [N] of two reward models on the same N pairs (row i = pair i in both).
    Returns diff, lo, hi, a, b, n_boot and p_value = share of resampled differences ≤ 0 (a one-sided bootstrap
    share, not an exact test: small when A is reliably larger; for lower-is-better metrics such as ECE, a share
    near 1 means A is reliably better).
    """
    a, b = _as_samples(a_diff, "a_diff"), _as_samples(b_diff, "b_diff")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a_diff and b_diff must score the same pairs, got N = {a.shape[0]} and {b.shape[0]}")
    _check_settings(n_boot, level)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    boot = np.array([metric(a[i]) - metric(b[i]) for i in idx], dtype=np.float64)
    lo, hi = _percentiles(boot, level)
    point_a, point_b = float(metric(a)), float(metric(b))
    return {"diff": point_a - point_b, "lo": lo, "hi": hi, "a": point_a, "b": point_b,
            "p_value": float(np.mean(boot <= 0)), "n_boot": int(n_boot)}


def mean_and_ci_over_seeds(values: Any, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of one number per seed with a Student-t interval; with a single seed lo = hi = NaN."""
    x = _as_samples(values, "values").ravel()
    _check_settings(1, level)
    mean = float(x.mean())
    if x.size == 1:
        return mean, float("nan"), float("nan")
    half = float(sps.t.ppf((1 + level) / 2, df=x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return mean, mean - half, mean + half
