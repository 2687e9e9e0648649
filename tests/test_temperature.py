"""Temperature scaling: the fitted T matches a brute-force grid, recovers a known temperature, and bad input fails."""

import numpy as np
import pytest
import torch

from morelib.evaluation.temperature import apply, fit_temperature, fit_temperature_report, nll


def _grid_nll(d: np.ndarray, Ts: np.ndarray) -> np.ndarray:
    """NLL of σ(Δ/T) for every T in a grid, computed directly with log1p/exp."""
    z = -d[None, :] / Ts[:, None]
    return np.mean(np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))), axis=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_grid(seed):
    rng = np.random.default_rng(seed)
    d = rng.normal(0.7, 2.5, size=500)
    T = fit_temperature(d)
    Ts = np.exp(np.linspace(np.log(0.01), np.log(100), 20_001))
    losses = _grid_nll(d, Ts)
    assert nll(d, T) <= losses.min() + 1e-9
    assert T == pytest.approx(Ts[losses.argmin()], rel=1e-3)


def test_recovers_known_temperature():
    rng = np.random.default_rng(0)
    true_diff = rng.normal(0, 2, size=40_000)
    chosen_first = rng.random(true_diff.size) < 1 / (1 + np.exp(-true_diff))
    ordered = np.where(chosen_first, true_diff, -true_diff)
    assert fit_temperature(torch.tensor(3.0 * ordered)) == pytest.approx(3.0, rel=0.05)


def test_apply_divides_and_keeps_type():
    d = torch.tensor([1.0, -2.0, 4.0])
    assert torch.equal(apply(d, 2.0), torch.tensor([0.5, -1.0, 2.0]))
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply(d, 0.0)


def test_separable_split_warns_at_lower_bound():
    with pytest.warns(UserWarning, match="lower bound.*separable"):
        fit = fit_temperature_report(np.array([1.0, 2.0, 3.0]))
    assert 0 < fit.T < 0.01 and fit.bound == "lower" and "separable" in fit.meaning


@pytest.mark.parametrize(
    "d",
    [
        np.array([1.0, -2.0, 0.5, -1.0]),  # mean Δ < 0: an anti-informative RM
        np.random.default_rng(0).normal(0, 1, 200) * np.array([1, -1] * 100) - 0.1,
    ],
)
def test_no_signal_split_warns_at_upper_bound(d):
    assert d.mean() < 0  # slope of the NLL at β = 1/T = 0 is −mean(Δ)/2 > 0: the optimum is β → 0
    with pytest.warns(UserWarning, match="upper bound.*no usable signal"):
        fit = fit_temperature_report(d)
    rms = np.sqrt(np.mean(d * d))
    assert fit.bound == "upper" and fit.T > 900 * rms and "no usable signal" in fit.meaning
    assert nll(d, fit.T) == pytest.approx(np.log(2), abs=1e-3)  # σ(Δ/T) ≈ ½ for every pair


def test_interior_optimum_reports_no_bound():
    d = np.random.default_rng(1).normal(0.7, 2.5, size=500)
    assert fit_temperature_report(d).bound is None


@pytest.mark.parametrize(
    "bad, msg", [(np.array([]), "empty"), (np.array([1.0, np.nan]), "non-finite"), (np.ones((2, 2)), "shape")]
)
def test_bad_input_names_problem(bad, msg):
    with pytest.raises(ValueError, match=msg):
        fit_temperature(bad)
