"""Tests of morelib.evaluation.length: the calibration recovers a planted length slope and removes the bias; local
linear regression against direct computations; length-controlled accuracy against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from morelib.core.errors import DataError
from morelib.evaluation import diagnostics, length, metrics


def planted(c: float, n: int = 1500, seed: int = 0) -> dict[str, np.ndarray]:
    """Calibration and test pairs whose reward = quality + c·length; quality sets the label; length is independent."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("calib", "test"):
        q = rng.normal(size=(n, 2))
        lengths = rng.integers(20, 400, size=(n, 2)).astype(float)
        order = np.argsort(-q, axis=1)  # chosen = the higher-quality response
        q, lengths = np.take_along_axis(q, order, 1), np.take_along_axis(lengths, order, 1)
        r = q + c * lengths
        out[split] = (r[:, 0], r[:, 1], lengths[:, 0], lengths[:, 1], q[:, 0] - q[:, 1])
    return out


@pytest.mark.parametrize("method", length.METHODS)
def test_planted_slope_recovered_and_bias_removed(method):
    c = 0.01
    data = planted(c)
    fit = length.fit(*data["calib"][:4], method=method, n_boot=300)
    assert fit.slope_lo < c < fit.slope_hi and fit.slope_hi - fit.slope_lo < c / 2
    rc, rr, lc, lr, dq = data["test"]
    before = diagnostics.length_bias(rc, rr, lc, lr)
    after_diff = fit.apply_diff(rc - rr, lc, lr)
    after = diagnostics.length_bias(after_diff, np.zeros_like(after_diff), lc, lr)
    assert before["rm_prefers_longer"] > 0.7 and abs(after["rm_prefers_longer"] - 0.5) < 0.05
    # what is left is the quality difference (up to b̂'s error): accuracy of quality alone
    assert metrics.accuracy(after_diff) > metrics.accuracy(rc - rr)
    assert np.corrcoef(after_diff, dq)[0, 1] > 0.98


def test_no_length_effect_gives_ci_around_zero():
    fit = length.fit(*planted(0.0)["calib"][:4], method="linear", n_boot=300)
    assert fit.slope_lo < 0 < fit.slope_hi


def test_local_linear_reproduces_a_line_and_a_direct_weighted_fit():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 100, 300)
    np.testing.assert_allclose(length.local_linear(x, 3 + 0.5 * x, np.array([5.0, 50.0, 99.0])), [5.5, 28, 52.5])
    y = np.sin(x / 10) + rng.normal(0, 0.1, x.size)
    x0, k = 40.0, int(np.ceil(0.3 * x.size))
    dist = np.abs(x - x0)
    h = np.sort(dist)[k - 1]
    w = np.clip(1 - (dist / h) ** 3, 0, None) ** 3
    coef = np.polyfit(x - x0, y, 1, w=np.sqrt(w))  # weighted LS: polyfit weights multiply residuals
    assert length.local_linear(x, y, np.array([x0]), 0.3)[0] == pytest.approx(coef[1], abs=1e-6)


def test_calibrated_rewards_keep_their_mean_and_extrapolate_flat():
    rc, rr, lc, lr, _ = planted(0.02, n=400)["calib"]
    fit = length.fit(rc, rr, lc, lr, n_boot=50)
    assert np.mean(fit.predict(np.concatenate([lc, lr]))) == pytest.approx(0, abs=1e-9)
    assert fit.predict(np.array([1e6]))[0] == fit.bias[-1] and fit.predict(np.array([0.0]))[0] == fit.bias[0]


def test_bad_inputs_fail_clearly():
    with pytest.raises(DataError, match="length 7"):
        length.fit([1, 2], [0, 1], [7, 7], [7, 7])
    with pytest.raises(ValueError, match="method"):
        length.fit([1, 2], [0, 1], [3, 7], [7, 3], method="spline")
    with pytest.raises(ValueError, match="N entries"):
        length.fit([1, 2, 3], [0, 1], [3, 7], [7, 3])


def test_before_after_rows_match_direct_metrics():
    rc, rr, lc, lr, _ = planted(0.01, n=300)["test"]
    before = rc - rr
    after = before - 0.01 * (lc - lr)
    rows = {r["metric"]: r for r in length.before_after(before, after, lc, lr, n_boot=200)}
    assert rows["accuracy"]["before"] == pytest.approx(metrics.accuracy(before))
    assert rows["accuracy"]["after"] == pytest.approx(metrics.accuracy(after))
    assert rows["ece_10"]["after"] == pytest.approx(metrics.calibration_errors(after, 10)["ece"])
    assert rows["ece_10"]["after_floor"] == pytest.approx(metrics.ece_floor(after, 10))
    direct = diagnostics.length_bias(after, np.zeros_like(after), lc, lr)["rm_prefers_longer"]
    assert rows["rm_prefers_longer"]["after"] == pytest.approx(direct)
    bias = rows["rm_prefers_longer"]
    assert bias["lo"] <= bias["diff"] <= bias["hi"] < 0  # the planted bias is removed, with a CI that says so


def test_length_split_by_hand():
    d = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 2.0])
    lc = np.array([10, 10, 5, 5, 5, 3])
    lr = np.array([5, 5, 10, 10, 10, 3])
    out = length.length_split(d, lc, lr, n_boot=200)
    assert (out["n_longer_won"], out["n_shorter_won"]) == (2, 3)
    assert out["accuracy_longer_won"] == pytest.approx(0.5) and out["accuracy_shorter_won"] == pytest.approx(2 / 3)
    assert out["longer_baseline_accuracy"] == pytest.approx(2 / 6)  # equal lengths count as wrong
    assert out["accuracy"] == pytest.approx(4 / 6) and out["vs_longer_diff"] == pytest.approx(2 / 6)
    assert out["vs_longer_lo"] <= out["vs_longer_diff"] <= out["vs_longer_hi"]
    seeds = length.length_split(np.stack([d, -d], axis=1), lc, lr, n_boot=50)
    assert seeds["accuracy"] == pytest.approx((4 / 6 + 2 / 6) / 2)
