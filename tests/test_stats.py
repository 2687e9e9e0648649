"""Bootstrap and seed-aggregation helpers: known answers, coverage sanity, pairing, reproducibility, bad inputs."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from morelib.evaluation import metrics, stats


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
    covered = sum(
        lo <= 0 <= hi
        for lo, hi in (
            stats.bootstrap_ci(rng.normal(size=60), np.mean, n_boot=300, seed=s, level=0.9)[1:] for s in range(100)
        )
    )
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


@pytest.mark.parametrize(
    "call,msg",
    [
        (lambda: stats.bootstrap_ci([], np.mean), "empty"),
        (lambda: stats.bootstrap_ci([1.0, np.nan], np.mean), "non-finite"),
        (lambda: stats.bootstrap_ci([1.0], np.mean, n_boot=0), "n_boot"),
        (lambda: stats.bootstrap_ci([1.0], np.mean, level=1.0), "level"),
        (lambda: stats.paired_bootstrap_diff([1.0, 2.0], [1.0], np.mean), "same pairs"),
        (lambda: stats.mean_and_ci_over_seeds([]), "empty"),
    ],
)
def test_bad_inputs_raise(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def _two_schemes(
    rng, shift, sizes=(150, 200, 120), seeds=5, means=(0.3, 0.6, 0.1), seed_sd=0.1, noise_sd=0.3, pair_sd=0.0
):
    """Reward differences [N_s, S] of two RMs on shared pairs: pair effect g ~ N(m_s, 1) (+ a pair effect of A alone,
    sd pair_sd), per-seed offsets shared by the sources, pair × seed noise; truth = the population accuracy gap."""
    a, b = {}, {}
    u_a, u_b = rng.normal(0, seed_sd, size=(2, 1, seeds))  # seed k's RM scores every source: one offset per seed
    for k, (n, m) in enumerate(zip(sizes, means)):
        g = rng.normal(m, 1.0, size=(n, 1))
        h = rng.normal(0, pair_sd, size=(n, 1))
        a[f"s{k}"] = g + h + shift + u_a + rng.normal(0, noise_sd, size=(n, seeds))
        b[f"s{k}"] = g + u_b + rng.normal(0, noise_sd, size=(n, seeds))
    scale_a = np.sqrt(1 + pair_sd**2 + seed_sd**2 + noise_sd**2)
    scale_b = np.sqrt(1 + seed_sd**2 + noise_sd**2)
    truth = np.mean([sps.norm.cdf((m + shift) / scale_a) - sps.norm.cdf(m / scale_b) for m in means])
    return a, b, truth


@pytest.mark.parametrize(
    "regime,kw",
    [
        ("test pairs dominate", {"sizes": (60, 80, 50), "pair_sd": 1.0, "seed_sd": 0.02, "noise_sd": 0.1}),
        ("pair x seed interaction dominates", {"sizes": (60, 80, 50), "seed_sd": 0.02, "noise_sd": 0.3}),
        ("seeds dominate", {"sizes": (200, 200, 200), "seed_sd": 0.4, "noise_sd": 0.1}),
        ("seeds dominate, 20 seeds", {"sizes": (150, 150), "means": (0.3, 0.6), "seed_sd": 0.3, "seeds": 20}),
    ],
)
def test_pooled_interval_covers_the_true_gap_where_each_variance_dominates(regime, kw):
    """800 simulated studies: the pooled 95% CI covers the population accuracy gap (new pairs AND new seeds) 95% ± 2
    simulation sds of the time, whichever variance dominates (measured 0.950, 0.945, 0.954, 0.951; the seed-resampling
    percentile bootstrap it replaced: 0.946, 0.991, 0.844, 0.940; the plain sum of the two components, interaction
    counted twice: 0.99 where the interaction dominates)."""
    rng = np.random.default_rng(11)
    covered = []
    for rep in range(800):
        a, b, truth = _two_schemes(rng, shift=0.15, **kw)
        out = stats.pooled_paired_bootstrap(a, b, metrics.batched_accuracy, n_boot=60, seed=rep)
        covered.append(out["lo"] <= truth <= out["hi"])
    assert 0.9346 <= np.mean(covered) <= 0.9654, (regime, np.mean(covered))  # 0.95 ± 2·√(0.95·0.05/800)


def test_two_component_se_adds_seed_and_pair_variance_with_welch_df():
    d = np.array([0.01, 0.03, -0.02, 0.02])
    seed_var = d.var(ddof=1) / 4
    se, df = stats.two_component_se(d, 0.0001)
    assert se == pytest.approx(np.sqrt(seed_var + 0.0001))
    assert df == pytest.approx((seed_var + 0.0001) ** 2 * 3 / seed_var**2)
    assert stats.two_component_se(d, 0.0) == pytest.approx((np.sqrt(seed_var), 3.0))  # seeds only: df = S − 1
    assert stats.two_component_se([0.02], 0.0004) == (0.02, float("inf"))  # one seed: pairs only
    # the interaction counted once: pair part (S·B − W)/(S − 1) with W the mean within-seed pair variance
    se_i, _ = stats.two_component_se(d, 0.0001, 0.00025)
    assert se_i == pytest.approx(np.sqrt(seed_var + (4 * 0.0001 - 0.00025) / 3))
    lo, hi, p = stats.t_interval(0.1, 0.02, 3.0)
    assert (lo, hi) == pytest.approx(sps.t.interval(0.95, 3.0, loc=0.1, scale=0.02))
    assert p == pytest.approx(2 * sps.t.sf(5.0, 3.0))


def test_pooled_bootstrap_point_and_pairing():
    rng = np.random.default_rng(12)
    a, b, _ = _two_schemes(rng, shift=0.3, sizes=(60, 40), means=(0.2, 0.5), seeds=3)
    ece = lambda d: metrics.batched_ece(d, 10)  # noqa: E731
    out = stats.pooled_paired_bootstrap(a, b, ece, n_boot=100)
    direct = np.mean(
        [
            np.mean([metrics.calibration_errors(x[src][:, k])["ece"] for k in range(3)])
            for x in (a, b)
            for src in ("s0", "s1")
        ][:2]
    ) - np.mean([np.mean([metrics.calibration_errors(b[src][:, k])["ece"] for k in range(3)]) for src in ("s0", "s1")])
    assert out["diff"] == pytest.approx(direct) and out["diff"] == pytest.approx(out["a"] - out["b"])
    assert (out["n_sources"], out["n_seeds"], out["n_pairs"], out["n_boot"]) == (2, 3, 100, 100)
    same = stats.pooled_paired_bootstrap(a, {k: v.copy() for k, v in a.items()}, ece, n_boot=50)
    assert (same["diff"], same["lo"], same["hi"], same["se"], same["p_value"]) == (0.0, 0.0, 0.0, 0.0, 1.0)
    shifted = stats.pooled_paired_bootstrap({k: v + 5.0 for k, v in b.items()}, b, metrics.batched_accuracy, n_boot=100)
    assert shifted["lo"] > 0 and shifted["p_value"] < 1e-4


def test_holm_matches_hand_values():
    # sorted p: .01 (×3 = .03), .02 (×2 = .04), .04 (×1 = .04); monotone, back in input order
    assert stats.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_minimum_detectable_effect_and_power():
    assert stats.minimum_detectable_effect(0.01) == pytest.approx((1.959964 + 0.841621) * 0.01, rel=1e-5)
    assert stats.power_at(stats.minimum_detectable_effect(0.004), 0.004) == pytest.approx(0.8, abs=1e-3)
    assert stats.power_at(0.0, 0.01) == pytest.approx(0.05)
    assert stats.minimum_detectable_effect(0.01, df=4) == pytest.approx((2.776445 + 0.940965) * 0.01, rel=1e-5)
    assert stats.power_at(stats.minimum_detectable_effect(0.004, df=6), 0.004, df=6) == pytest.approx(0.8, abs=2e-3)


@pytest.mark.parametrize(
    "a,b,msg",
    [
        ({"x": np.zeros((3, 2))}, {"y": np.zeros((3, 2))}, "same, non-empty set of sources"),
        ({"x": np.zeros((3, 2))}, {"x": np.zeros((4, 2))}, r"\[N pairs, S seeds\]"),
        (
            {"x": np.zeros((3, 2)), "y": np.zeros((3, 3))},
            {"x": np.zeros((3, 2)), "y": np.zeros((3, 3))},
            "same seed count",
        ),
    ],
)
def test_pooled_bootstrap_bad_inputs(a, b, msg):
    with pytest.raises(ValueError, match=msg):
        stats.pooled_paired_bootstrap(a, b, metrics.batched_accuracy, n_boot=10)


def test_tost_needs_the_90_percent_interval_inside_the_margin():
    inside = stats.tost(0.001, 0.002, 30.0, margin=0.005)
    assert (inside["lo"], inside["hi"]) == pytest.approx(sps.t.interval(0.9, 30.0, loc=0.001, scale=0.002))
    assert inside["equivalent"] == 1.0 and inside["p"] < 0.05
    wide = stats.tost(0.001, 0.004, 30.0, margin=0.005)  # 95% CI includes 0, yet equivalence is not shown
    assert wide["equivalent"] == 0.0 and wide["p"] > 0.05
    assert wide["p"] == pytest.approx(sps.t.cdf((0.001 - 0.005) / 0.004, 30.0))


@pytest.mark.parametrize("n_bins", [5, 10])
def test_pair_additive_metrics_equal_the_batched_ones_and_bootstrap_identically(n_bins):
    """The count-matrix bootstrap of a PairAdditive metric gives the same replicates as re-scoring every resample."""
    rng = np.random.default_rng(3)
    x = rng.normal(0.2, 1.3, size=(4, 57))
    x[0, :3] = 0.0
    ece = metrics.additive_ece(n_bins)
    np.testing.assert_allclose(ece(x), metrics.batched_ece(x, n_bins), rtol=1e-12)
    np.testing.assert_allclose(metrics.ADDITIVE_ACCURACY(x), metrics.batched_accuracy(x), rtol=1e-12)
    a, b = {"s": x.T, "t": x.T[:40] * 1.5}, {"s": x.T * 0.7, "t": x.T[:40]}
    for fast, slow in (
        (ece, lambda d: metrics.batched_ece(d, n_bins)),
        (metrics.ADDITIVE_ACCURACY, metrics.batched_accuracy),
    ):
        out_fast = stats.pooled_paired_bootstrap(a, b, fast, n_boot=150, seed=2)
        out_slow = stats.pooled_paired_bootstrap(a, b, slow, n_boot=150, seed=2)
        assert out_fast == pytest.approx(out_slow, rel=1e-9, abs=1e-12)
