"""Metrics on reward differences: hand values, a direct per-bin loop, torchmetrics, bin-edge convention, bad inputs."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_calibration_error

from morelib.evaluation import metrics

LN3 = math.log(3)  # σ(ln 3) = 0.75 and σ(−ln 3) = 0.25 exactly in float64


def direct_calibration(delta, n_bins):
    """Independent ECE/ACE/MCE: an explicit loop over the 2N ordered-pair probabilities and (a, b] bins."""
    sum_p, sum_y, count = [0.0] * n_bins, [0.0] * n_bins, [0] * n_bins
    for d in delta:
        for p, y in ((1 / (1 + math.exp(-d)), 1.0), (1 / (1 + math.exp(d)), 0.0)):
            k = next(k for k in range(n_bins) if p <= (k + 1) / n_bins)
            sum_p[k] += p
            sum_y[k] += y
            count[k] += 1
    gaps = [abs(sum_p[k] - sum_y[k]) / count[k] for k in range(n_bins) if count[k]]
    ece = sum(abs(a - b) for a, b in zip(sum_p, sum_y)) / (2 * len(delta))
    return {"ece": ece, "ace": sum(gaps) / len(gaps), "mce": max(gaps)}


def test_calibration_hand_case_two_bins():
    # probabilities: 0.75, 0.75, 0.25, 0.5 (label 1) and 0.25, 0.25, 0.75, 0.5 (label 0)
    # bin (0, .5]: p = .25 .5 .25 .25 .5, Σp = 1.75, Σy = 2; bin (.5, 1]: p = .75 .75 .75, Σp = 2.25, Σy = 2
    out = metrics.calibration_errors([LN3, LN3, -LN3, 0.0], n_bins=2)
    assert out["ece"] == pytest.approx(0.5 / 8)
    assert out["ace"] == pytest.approx((0.25 / 5 + 0.25 / 3) / 2)
    assert out["mce"] == pytest.approx(0.25 / 3)


def test_calibration_hand_case_five_bins():
    # bins (.2,.4]: three 0.25s, Σy = 1; (.4,.6]: two 0.5s, Σy = 1; (.6,.8]: three 0.75s, Σy = 2
    out = metrics.calibration_errors(np.array([LN3, LN3, -LN3, 0.0]), n_bins=5)
    assert out == pytest.approx({"ece": 0.0625, "ace": (0.25 / 3 + 0 + 0.25 / 3) / 3, "mce": 0.25 / 3})


@pytest.mark.parametrize("n_bins", [1, 3, 5, 10, 20])
@pytest.mark.parametrize("seed", range(3))
def test_calibration_matches_direct_loop(n_bins, seed):
    delta = np.random.default_rng(seed).normal(0.5, 2.0, size=57)
    delta[:5] = 0.0  # ties: σ = 0.5, on an inner edge for even bin counts
    assert metrics.calibration_errors(delta, n_bins) == pytest.approx(direct_calibration(delta, n_bins), rel=1e-12)


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_calibration_matches_torchmetrics_off_edges(n_bins):
    delta = torch.randn(400, generator=torch.Generator().manual_seed(n_bins), dtype=torch.float64) * 2 + 0.3
    p, y = metrics.ordered_pair_probs(delta)
    edges = np.linspace(0, 1, n_bins + 1)
    assert np.min(np.abs(p[:, None] - edges[None, :])) > 1e-9  # no probability on a bin edge
    ours = metrics.calibration_errors(delta, n_bins)
    preds, target = torch.from_numpy(p), torch.from_numpy(y).long()
    assert ours["ece"] == pytest.approx(binary_calibration_error(preds, target, n_bins, norm="l1").item(), rel=1e-6)
    assert ours["mce"] == pytest.approx(binary_calibration_error(preds, target, n_bins, norm="max").item(), rel=1e-6)


def test_probability_on_inner_edge_goes_to_lower_bin():
    tie = metrics.reliability([0.0], n_bins=2)  # σ(0) = 0.5 twice
    np.testing.assert_array_equal(tie["count"], [2, 0])
    edge = metrics.reliability([LN3], n_bins=4)  # 0.75 (label 1) and 0.25 (label 0), both on edges
    np.testing.assert_array_equal(edge["count"], [1, 0, 1, 0])
    np.testing.assert_array_equal(edge["accuracy"][[0, 2]], [0.0, 1.0])
    assert np.isnan(edge["confidence"][1])


def test_reliability_fields():
    rel = metrics.reliability([LN3, LN3, -LN3, 0.0], n_bins=2)
    np.testing.assert_allclose(rel["edges"], [0, 0.5, 1])
    np.testing.assert_allclose(rel["centers"], [0.25, 0.75])
    np.testing.assert_array_equal(rel["count"], [5, 3])
    np.testing.assert_allclose(rel["confidence"], [1.75 / 5, 0.75])
    np.testing.assert_allclose(rel["accuracy"], [2 / 5, 2 / 3])


def test_accuracy_counts_ties_wrong():
    assert metrics.accuracy([1.0, -1.0, 0.0, 2.0]) == 0.5
    assert metrics.accuracy(torch.tensor([0.0, 0.0])) == 0.0


def test_brier_and_log_loss_hand_values_and_stability():
    assert metrics.brier([LN3, 0.0]) == pytest.approx((0.25**2 + 0.5**2) / 2)
    assert metrics.log_loss([LN3, 0.0]) == pytest.approx((math.log(4 / 3) + math.log(2)) / 2)
    assert metrics.log_loss([-1000.0, 1000.0]) == pytest.approx(500.0)


def test_outliers_box_plot_rule():
    x = np.array([-10.0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 30, 40])
    out = metrics.outliers(x)
    q1, q3 = np.percentile(x, [25, 75])
    assert out["upper_fence"] == pytest.approx(q3 + 1.5 * (q3 - q1))
    assert (out["pos_count"], out["pos_mean"]) == (2, 35.0)
    assert (out["neg_count"], out["neg_mean"]) == (1, -10.0)
    none = metrics.outliers([1.0, 2.0, 3.0])
    assert none["pos_count"] == 0 and math.isnan(none["pos_mean"])


def test_all_metrics_keys_and_consistency():
    delta = np.random.default_rng(0).normal(1, 1, size=50)
    out = metrics.all_metrics(delta)
    expected = {"accuracy", "brier", "log_loss", "n"} | {f"{m}_{b}" for m in ("ece", "ace", "mce") for b in (5, 10, 20)}
    assert set(out) == expected
    assert out["ece_10"] == metrics.calibration_errors(delta, 10)["ece"]
    assert out["n"] == 50 and 0 <= out["accuracy"] <= 1


@pytest.mark.parametrize(
    "bad,msg",
    [
        ([], "empty"),
        ([1.0, float("nan")], "non-finite.*index 1"),
        ([[1.0]], r"shape \[N\]"),
        (torch.tensor([float("inf")]), "non-finite"),
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        metrics.accuracy,
        metrics.calibration_errors,
        metrics.brier,
        metrics.log_loss,
        metrics.outliers,
        metrics.all_metrics,
        metrics.reliability,
    ],
)
def test_bad_inputs_raise_naming_the_problem(fn, bad, msg):
    with pytest.raises(ValueError, match=msg):
        fn(bad)


@pytest.mark.parametrize("n_bins", [0, -1, 2.5])
def test_bad_bin_count_raises(n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        metrics.calibration_errors([1.0], n_bins)


def brute_force_floor(delta, n_bins, n_sim, seed):
    """Null ECEs by a loop over simulations: the chosen response wins with probability σ(Δ), else the pair flips."""
    u = np.random.default_rng(seed).random((n_sim, len(delta)))
    out = []
    for k in range(n_sim):
        flipped = [d if u[k, i] < 1 / (1 + math.exp(-d)) else -d for i, d in enumerate(delta)]
        out.append(direct_calibration(flipped, n_bins)["ece"])
    return np.array(out)


@pytest.mark.parametrize("n_bins", [5, 10])
def test_floor_matches_a_loop_over_calibration_errors(n_bins):
    delta = np.random.default_rng(3).normal(0.2, 1.5, size=23)
    delta[:2] = 0.0
    loop = brute_force_floor(delta, n_bins, n_sim=40, seed=7)
    assert metrics.ece_null_samples(delta, n_bins, n_sim=40, seed=7) == pytest.approx(loop, rel=1e-12)
    assert metrics.ece_floor(delta, n_bins, n_sim=40, seed=7) == pytest.approx(loop.mean(), rel=1e-12)
    stats = metrics.ece_floor_stats(delta, n_bins, n_sim=40, seed=7)
    assert stats["p95"] == pytest.approx(np.quantile(loop, 0.95)) and stats["sd"] == pytest.approx(loop.std(ddof=1))


def test_batched_ece_and_accuracy_match_the_scalar_metrics():
    rng = np.random.default_rng(8)
    x = rng.normal(0.3, 1.2, size=(3, 4, 31))
    x[0, 0, :3] = 0.0
    ece = metrics.batched_ece(x, 10)
    assert ece.shape == (3, 4) and ece[1, 2] == pytest.approx(metrics.calibration_errors(x[1, 2], 10)["ece"], rel=1e-12)
    assert ece[0, 0] == pytest.approx(metrics.calibration_errors(x[0, 0], 10)["ece"], rel=1e-12)
    assert metrics.batched_accuracy(x)[2, 1] == metrics.accuracy(x[2, 1])


def test_floor_shrinks_as_one_over_root_n():
    """Same |Δ| distribution, 16× the pairs: the floor of a calibrated model shrinks about 4× (1/√N)."""
    rng = np.random.default_rng(0)
    small, large = rng.normal(0, 0.7, size=100), rng.normal(0, 0.7, size=1600)
    ratio = metrics.ece_floor(small, n_sim=400) / metrics.ece_floor(large, n_sim=400)
    assert 3.4 < ratio < 4.6, ratio
    assert metrics.ece_floor(small) > 0.04, "100 pairs of a calibrated model: ECE-10 near 0.07, as issue 15 measured"


def test_calibrated_sample_has_excess_over_floor_near_zero_and_miscalibrated_does_not():
    rng = np.random.default_rng(1)
    magnitude = rng.normal(0, 0.8, size=200)
    calibrated = [np.where(rng.random(200) < 1 / (1 + np.exp(-magnitude)), magnitude, -magnitude) for _ in range(60)]
    excess = np.array([metrics.excess_over_floor(d, seed=k) for k, d in enumerate(calibrated)])
    raw = np.array([metrics.calibration_errors(d)["ece"] for d in calibrated])
    se = excess.std(ddof=1) / np.sqrt(excess.size)
    assert raw.mean() > 0.04 and abs(excess.mean()) < 3 * se + 0.002, (raw.mean(), excess.mean(), se)
    overconfident = [3 * d for d in calibrated[:10]]  # σ(3Δ) is far too sure of labels drawn from σ(Δ)
    assert min(metrics.excess_over_floor(d) for d in overconfident) > 0.05


def population_ece(delta, true_win, n_bins=10):
    """Binned ECE of σ(Δ) with expected labels (no sampling noise), by an explicit loop over the ordered pairs."""
    gap = [0.0] * n_bins
    for d, q in zip(delta, true_win):
        for p, y in ((1 / (1 + math.exp(-d)), q), (1 / (1 + math.exp(d)), 1 - q)):
            gap[next(k for k in range(n_bins) if p <= (k + 1) / n_bins)] += p - y
    return sum(abs(g) for g in gap) / (2 * len(delta))


@pytest.mark.parametrize("target", [0.05, 0.02])
def test_debiased_ece_recovers_a_known_ece_where_plug_in_and_excess_miss_it(target):
    """Overconfident model (predicts σ(Δ), truth σ(tΔ)) of known binned ECE; 150 test sets of N = 300: the plug-in sits
    above the truth and the excess over the floor below it (a lower bound); the debiased estimator is unbiased at 0.05
    and removes over 40% of the plug-in bias at 0.02."""
    rng = np.random.default_rng(4)
    population = rng.normal(0.3, 1.0, size=3000)
    t = metrics.miscalibrated_truth(population, target)
    assert population_ece(population, 1 / (1 + np.exp(-t * population))) == pytest.approx(target, abs=1e-9)
    plug, debiased, excess = [], [], []
    for rep in range(150):
        d = population[rng.integers(0, population.size, 300)]
        obs = np.where(rng.random(300) < 1 / (1 + np.exp(-t * d)), d, -d)
        plug.append(metrics.calibration_errors(obs)["ece"])
        debiased.append(metrics.debiased_ece(obs, n_sim=100, seed=rep))
        excess.append(metrics.excess_over_floor(obs, n_sim=100, seed=rep))
    se = np.std(debiased, ddof=1) / np.sqrt(len(debiased))
    plug_bias, debiased_bias = np.mean(plug) - target, np.mean(debiased) - target
    assert plug_bias > 0.01 and np.mean(excess) < target - 0.01, (np.mean(plug), np.mean(excess))  # bracket the truth
    if target >= 0.05:  # well above the floor: unbiased within simulation error (measured 0.052 for 0.050)
        assert abs(debiased_bias) < 3 * se + 0.004, (np.mean(debiased), target, se)
    else:  # near the floor it keeps part of the plug-in bias (measured 0.030 for 0.020; plug-in 0.047)
        assert abs(debiased_bias) < 0.6 * plug_bias, (np.mean(debiased), np.mean(plug), target)


def test_plug_in_attenuates_a_true_gap_less_as_n_grows():
    population = np.random.default_rng(5).normal(0.3, 1.0, size=3000)
    shares = [metrics.plugin_gap_attenuation(population, 0.054, 0.036, n, n_sim=300) for n in (125, 470, 20000)]
    assert 0.3 < shares[0] < shares[1] < shares[2] and shares[2] == pytest.approx(1.0, abs=0.05), shares
    with pytest.raises(ValueError, match="ece_high > ece_low"):
        metrics.plugin_gap_attenuation(population, 0.03, 0.04, 100)
    t = metrics.miscalibrated_truth(population, 0.3)  # beyond any overconfident model here: underconfident
    assert t > 1 and population_ece(population, 1 / (1 + np.exp(-t * population))) == pytest.approx(0.3, abs=1e-9)
    with pytest.raises(ValueError, match="target_ece"):
        metrics.miscalibrated_truth(population, 0.9)


def test_all_metrics_with_floor_and_reliability_band():
    delta = np.random.default_rng(2).normal(0.5, 1, size=80)
    out = metrics.all_metrics(delta, bins=(10,), floor=True)
    assert out["ece_10_floor"] == metrics.ece_floor(delta) and out["ece_10_floor_p95"] > out["ece_10_floor"]
    assert out["ece_10_excess"] == pytest.approx(out["ece_10"] - out["ece_10_floor"])
    assert out["ece_10_debiased"] == metrics.debiased_ece(delta)
    rel, wide = metrics.reliability(delta, 10), metrics.reliability(delta, 10, repeats=4)
    used = rel["count"] > 0
    assert np.all(rel["band_lo"][used] <= rel["confidence"][used]) and np.all(
        rel["confidence"][used] <= rel["band_hi"][used]
    )
    k = int(np.argmax(rel["count"]))
    assert (wide["band_hi"] - wide["band_lo"])[k] == pytest.approx(2 * (rel["band_hi"] - rel["band_lo"])[k])
    with pytest.raises(ValueError, match="n_sim"):
        metrics.ece_floor(delta, n_sim=1)
