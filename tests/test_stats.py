"""Bootstrap and seed-aggregation helpers: known answers, coverage sanity, pairing, reproducibility, bad inputs."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from morelib import metrics, stats


def test_constant_data_gives_zero_width_interval():
    assert stats.bootstrap_ci(np.full(30, 2.5), np.mean, n_boot=200) == (2.5, 2.5, 2.5)


def test_same_seed_same_interval_other_seed_differs():
    x = np.random.default_rng(0).normal(size=50)
    assert stats.bootstrap_ci(x, np.mean, seed=3) == stats.bootstrap_ci(x, np.mean, seed=3)
    assert stats.bootstrap_ci(x, np.mean, seed=3) != stats.bootstrap_ci(x, np.mean, seed=4)


def test_bootstrap_mean_interval_matches_normal_theory():
    x = np.random.default_rng(1).normal(0.0, 1.0, size=400)
    point, lo, hi = stats.bootstrap_ci(x, np.mean, n_boot=2000)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert point == pytest.approx(x.mean())
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert lo < point < hi


def test_bootstrap_coverage_sanity():
    """Over 100 normal samples (true mean 0), the 90% interval should cover 0 roughly 90 times."""
    rng = np.random.default_rng(2)
    covered = sum(lo <= 0 <= hi for lo, hi in
                  (stats.bootstrap_ci(rng.normal(size=60), np.mean, n_boot=300, seed=s, level=0.9)[1:] for s in range(100)))
    assert 78 <= covered <= 98


def test_bootstrap_resamples_rows_of_2d_values():
    pairs = np.column_stack([np.arange(10.0), np.arange(10.0)])
    point, lo, hi = stats.bootstrap_ci(pairs, lambda v: float(np.mean(v[:, 0] - v[:, 1])), n_boot=100)
    assert (point, lo, hi) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_uses_same_indices_for_both_models():
    b = np.random.default_rng(4).normal(size=80)
    out = stats.paired_bootstrap_diff(b + 1.0, b, np.mean, n_boot=300)
    assert out["diff"] == pytest.approx(1.0)
    assert out["lo"] == pytest.approx(1.0) and out["hi"] == pytest.approx(1.0)
    assert out["p_value"] == 0.0


def test_paired_bootstrap_identical_models():
    a = np.random.default_rng(5).normal(1, 1, size=50)
    out = stats.paired_bootstrap_diff(a, a.copy(), metrics.accuracy, n_boot=100)
    assert (out["diff"], out["lo"], out["hi"], out["p_value"]) == (0.0, 0.0, 0.0, 1.0)


def test_paired_bootstrap_detects_better_model_with_metric_fn():
    rng = np.random.default_rng(6)
    b = rng.normal(0.2, 1, size=300)
    a = b + rng.normal(0.8, 0.3, size=300)
    out = stats.paired_bootstrap_diff(a, b, metrics.accuracy, n_boot=500, seed=1)
    assert out["lo"] > 0 and out["p_value"] < 0.01
    assert out["a"] == metrics.accuracy(a) and out["b"] == metrics.accuracy(b)


def test_mean_and_ci_over_seeds_matches_scipy_t_interval():
    x = [0.61, 0.64, 0.59, 0.66, 0.62]
    mean, lo, hi = stats.mean_and_ci_over_seeds(x, level=0.9)
    ref = sps.t.interval(0.9, df=4, loc=np.mean(x), scale=sps.sem(x))
    assert mean == pytest.approx(np.mean(x))
    assert (lo, hi) == pytest.approx(ref)


def test_single_seed_gives_nan_bounds():
    mean, lo, hi = stats.mean_and_ci_over_seeds([0.7])
    assert mean == 0.7 and math.isnan(lo) and math.isnan(hi)


@pytest.mark.parametrize("call,msg", [
    (lambda: stats.bootstrap_ci([], np.mean), "empty"),
    (lambda: stats.bootstrap_ci([1.0, np.nan], np.mean), "non-finite"),
    (lambda: stats.bootstrap_ci([1.0], np.mean, n_boot=0), "n_boot"),
    (lambda: stats.bootstrap_ci([1.0], np.mean, level=1.0), "level"),
    (lambda: stats.paired_bootstrap_diff([1.0, 2.0], [1.0], np.mean), "same pairs"),
    (lambda: stats.mean_and_ci_over_seeds([]), "empty"),
])
def test_bad_inputs_raise(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()
