"""Temperature scaling of reward differences (Guo et al. 2017), fitted on a calibration split.

The preference probability of an ordered pair (chosen, rejected) is σ(Δ/T) with Δ = r_chosen − r_rejected.
T > 0 minimises the negative log-likelihood mean −log σ(Δ/T) = mean softplus(−Δ/T) of the calibration pairs.
The NLL is convex in β = 1/T, hence unimodal in log β, so a bounded 1-D Brent search on log β finds the optimum.
A separable calibration split (every Δ > 0, or every Δ ≤ 0) has no finite optimum: the search then stops at its
bound (T within [1e-3, 1e3] × RMS(Δ)) and a warning says so. Checked against a brute-force grid in
tests/test_temperature.py. The paper reports ECE without temperature scaling; this is an extra diagnostic.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.optimize import minimize_scalar

_LOG_BETA_BOUND = float(np.log(1e3))


def _as_diffs(reward_diff: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """reward_diff as a finite, non-empty float64 vector [N], else ValueError naming `name`."""
    d = reward_diff.detach().cpu().double().numpy() if torch.is_tensor(reward_diff) else np.asarray(reward_diff, float)
    if d.ndim != 1:
        raise ValueError(f"{name} must have shape [N], got {d.shape}")
    if d.size == 0:
        raise ValueError(f"{name} is empty: a temperature needs at least one calibration pair")
    if not np.isfinite(d).all():
        raise ValueError(f"{name} has {int((~np.isfinite(d)).sum())} non-finite reward difference(s)")
    return d


def nll(reward_diff: torch.Tensor | np.ndarray, T: float) -> float:
    """Mean negative log-likelihood −log σ(Δ/T) of ordered pairs Δ[N] at temperature T > 0 (nats)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    d = _as_diffs(reward_diff, "reward_diff")
    return float(np.mean(np.logaddexp(0.0, -d / T)))


def fit_temperature(reward_diff_calib: torch.Tensor | np.ndarray) -> float:
    """Temperature T > 0 minimising the NLL of σ(Δ/T) over calibration reward differences Δ[N]."""
    d = _as_diffs(reward_diff_calib, "reward_diff_calib")
    rms = float(np.sqrt(np.mean(d * d)))
    if rms == 0:
        warnings.warn("every calibration reward difference is 0: any temperature fits; returning T = 1", stacklevel=2)
        return 1.0
    z = d / rms

    def objective(log_beta: float) -> float:
        return float(np.mean(np.logaddexp(0.0, -np.exp(log_beta) * z)))

    res = minimize_scalar(objective, bounds=(-_LOG_BETA_BOUND, _LOG_BETA_BOUND), method="bounded",
                          options={"xatol": 1e-10})
    if abs(res.x) > _LOG_BETA_BOUND - 1e-3:
        warnings.warn(f"temperature search hit its bound (T = {rms * np.exp(-res.x):.3g}): the calibration split "
                      f"is (nearly) separable, so the fitted T is a limit, not an optimum", stacklevel=2)
    return float(rms * np.exp(-res.x))


def apply(reward_diff: torch.Tensor | np.ndarray, T: float) -> torch.Tensor | np.ndarray:
    """Temperature-scaled reward differences Δ/T[N] (σ of them are the calibrated preference probabilities)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    return reward_diff / T
