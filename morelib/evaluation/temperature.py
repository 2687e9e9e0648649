"""Temperature scaling of reward differences (Guo et al. 2017), fitted on a calibration split.

The preference probability of an ordered pair (chosen, rejected) is σ(Δ/T) with Δ = r_chosen − r_rejected.
T > 0 minimises the negative log-likelihood mean −log σ(Δ/T) = mean softplus(−Δ/T) of the calibration pairs.
The NLL is convex in β = 1/T, hence unimodal in log β, so a bounded 1-D Brent search on log β finds the optimum
(T within [1e-3, 1e3] × RMS(Δ)). Two ways to have no interior optimum, each named in `TemperatureFit.bound` and in a
warning:
- "upper" (T huge, β → 0): the NLL's slope at β = 0 is −mean(Δ)/2, so with mean(Δ) ≤ 0 (or nearly) the best fit
  is σ(Δ/T) → ½ for every pair — the RM carries no usable signal on the calibration split.
- "lower" (T tiny, β → ∞): every calibration pair is ordered right (Δ > 0), i.e. the split is (nearly) separable,
  and the NLL keeps falling as T shrinks.
Checked against a brute-force grid and constructed cases of both bounds in tests/test_temperature.py. The paper
reports ECE without temperature scaling; this is an extra diagnostic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from morelib.evaluation.metrics import as_reward_diff

_LOG_BETA_BOUND = float(np.log(1e3))
BOUND_MEANING = {
    "upper": "no usable signal on the calibration split (σ(Δ/T) → ½)",
    "lower": "(nearly) separable calibration split (σ(Δ/T) → 0 or 1)",
}


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature T and the search bound it stopped at: None (interior optimum), "upper" or "lower"."""

    T: float
    bound: str | None = None

    @property
    def meaning(self) -> str:
        """What the bound says about the calibration split ('' for an interior optimum)."""
        return BOUND_MEANING.get(self.bound or "", "")


def nll(reward_diff: torch.Tensor | np.ndarray, T: float) -> float:
    """Mean negative log-likelihood −log σ(Δ/T) of ordered pairs Δ[N] at temperature T > 0 (nats)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    d = as_reward_diff(reward_diff, "reward_diff")
    return float(np.mean(np.logaddexp(0.0, -d / T)))


def fit_temperature_report(reward_diff_calib: torch.Tensor | np.ndarray) -> TemperatureFit:
    """The NLL-minimising temperature of calibration reward differences Δ[N] and the bound it hit (warned), if any."""
    d = as_reward_diff(reward_diff_calib, "reward_diff_calib")
    rms = float(np.sqrt(np.mean(d * d)))
    if rms == 0:
        warnings.warn("every calibration reward difference is 0: any temperature fits; returning T = 1", stacklevel=2)
        return TemperatureFit(1.0, "upper")
    z = d / rms

    def objective(log_beta: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -np.exp(log_beta) * z)))

    res = minimize_scalar(
        objective, bounds=(-_LOG_BETA_BOUND, _LOG_BETA_BOUND), method="bounded", options={"xatol": 1e-10}
    )
    T = float(rms * np.exp(-res.x))
    bound = None if abs(res.x) <= _LOG_BETA_BOUND - 1e-3 else "upper" if res.x < 0 else "lower"
    if bound is not None:
        warnings.warn(
            f"temperature search hit its {bound} bound (T = {T:.3g}, mean Δ = {d.mean():.3g}, "
            f"{(d > 0).mean():.0%} of {d.size} pairs ordered right): {BOUND_MEANING[bound]}; "
            "the fitted T is a limit, not an optimum",
            stacklevel=2,
        )
    return TemperatureFit(T, bound)


def fit_temperature(reward_diff_calib: torch.Tensor | np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of σ(Δ/T) over calibration reward differences Δ[N]."""
    return fit_temperature_report(reward_diff_calib).T


def apply(reward_diff: torch.Tensor | np.ndarray, T: float) -> torch.Tensor | np.ndarray:
    """Temperature-scaled reward differences Δ/T[N] (σ of them are the calibrated preference probabilities)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    return reward_diff / T
