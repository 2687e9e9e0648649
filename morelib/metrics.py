"""Preference accuracy, calibration (ECE/ACE/MCE), reliability, Brier, log-loss and reward-difference outliers (paper §5).

Every function takes reward differences Δ = r(x, y_w) − r(x, y_l) of shape [N] (numpy or torch); the predicted
probability that the chosen response wins is σ(Δ).
Calibration follows the paper's reference code (`utils.calibration_error` on `trainer_utils.compute_metrics`):
both ordered pairs are scored, σ(Δ) with label 1 and σ(−Δ) with label 0 (2N probabilities); bins are equal-width
over [0, 1] and closed on the right, (a, b], so a probability exactly on an inner edge goes to the LOWER bin
(σ(0) = 0.5 sits on an edge for every even bin count); ECE = Σ_bins |Σ p − Σ y| / 2N; ACE = mean over non-empty
bins of |mean p − mean y| (equal-width bins, not Nixon et al.'s equal-mass ACE); MCE = max of the same.
Because both orders are scored, the probabilities are mirror-symmetric (p, y) ↔ (1 − p, 1 − y), so ECE/ACE/MCE
do not depend on the edge convention; it does decide which bin `reliability` reports an edge probability in.
# NOTE(ref): the reference returns 0 on empty input; ours raises ValueError. It also counts a tie Δ = 0 as
# half right (one of the two ordered pairs); `accuracy` counts a tie as wrong.
Checked against a direct per-bin loop with hand values and against torchmetrics BinaryCalibrationError
in tests/test_metrics.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

ArrayLike = Any  # numpy array, torch tensor or sequence of floats, shape [N]


def as_reward_diff(reward_diff: ArrayLike, name: str = "reward_diff") -> np.ndarray:
    """Validated float64 copy [N] of reward differences; raises ValueError when empty, not 1-D or non-finite."""
    if hasattr(reward_diff, "detach"):
        reward_diff = reward_diff.detach().cpu().double().numpy()
    x = np.asarray(reward_diff, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must have shape [N], got {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty: metrics of zero pairs are undefined")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} non-finite (NaN/inf) value(s), first at index {bad[0]}")
    return x


def _check_bins(n_bins: int) -> None:
    """Raise ValueError unless n_bins is a positive int."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")


def accuracy(reward_diff: ArrayLike) -> float:
    """Share of pairs with Δ > 0 (the chosen response scores higher); a tie Δ = 0 counts as wrong."""
    return float(np.mean(as_reward_diff(reward_diff) > 0))


def ordered_pair_probs(reward_diff: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [2N] (σ(Δ) then σ(−Δ)) and labels [2N] (1 then 0) over both orders of each pair."""
    x = as_reward_diff(reward_diff)
    return np.concatenate([expit(x), expit(-x)]), np.concatenate([np.ones_like(x), np.zeros_like(x)])


def _bin_sums(p: np.ndarray, y: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bin Σp, Σy and counts [n_bins] for equal-width (a, b] bins over [0, 1]."""
    _check_bins(n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    return (np.bincount(ids, weights=p, minlength=n_bins), np.bincount(ids, weights=y, minlength=n_bins),
            np.bincount(ids, minlength=n_bins))


def calibration_errors(reward_diff: ArrayLike, n_bins: int = 10) -> dict[str, float]:
    """ECE, ACE and MCE (keys "ece", "ace", "mce") of σ(Δ) over both ordered pairs with n_bins equal-width bins."""
    p, y = ordered_pair_probs(reward_diff)
    sum_p, sum_y, count = _bin_sums(p, y, n_bins)
    used = count > 0
    gap = np.abs(sum_p[used] - sum_y[used]) / count[used]
    return {"ece": float(np.abs(sum_p - sum_y).sum() / p.size), "ace": float(gap.mean()), "mce": float(gap.max())}


def reliability(reward_diff: ArrayLike, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability-diagram data per bin: edges [n+1], centers, confidence (mean p), accuracy (share of label 1), count.

    Same ordered-pair probabilities and (a, b] bins as `calibration_errors`; empty bins have NaN confidence/accuracy.
    """
    p, y = ordered_pair_probs(reward_diff)
    sum_p, sum_y, count = _bin_sums(p, y, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, acc = sum_p / count, sum_y / count
    return {"edges": edges, "centers": (edges[:-1] + edges[1:]) / 2, "confidence": confidence,
            "accuracy": acc, "count": count}


def brier(reward_diff: ArrayLike) -> float:
    """Brier score mean (1 − σ(Δ))² of the chosen-wins probability (label 1)."""
    return float(np.mean(expit(-as_reward_diff(reward_diff)) ** 2))


def log_loss(reward_diff: ArrayLike) -> float:
    """Mean −log σ(Δ) (nats), computed as softplus(−Δ) so large |Δ| stays finite and exact."""
    return float(np.mean(np.logaddexp(0.0, -as_reward_diff(reward_diff))))


def outliers(reward_diff: ArrayLike) -> dict[str, float]:
    """Box-plot outliers of Δ: positive above Q3 + 1.5·IQR, negative below Q1 − 1.5·IQR (count, mean; mean NaN if none).

    Quartiles are numpy's default (linear) percentiles; the fences are returned too ("upper_fence", "lower_fence").
    """
    x = as_reward_diff(reward_diff)
    q1, q3 = np.percentile(x, [25, 75])
    upper, lower = q3 + 1.5 * (q3 - q1), q1 - 1.5 * (q3 - q1)
    pos, neg = x[x > upper], x[x < lower]
    return {"pos_count": int(pos.size), "pos_mean": float(pos.mean()) if pos.size else float("nan"),
            "neg_count": int(neg.size), "neg_mean": float(neg.mean()) if neg.size else float("nan"),
            "q1": float(q1), "q3": float(q3), "upper_fence": float(upper), "lower_fence": float(lower)}


def evaluate(reward_diff: ArrayLike, bins: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """Flat metric dict: accuracy, ece_B / ace_B / mce_B for each bin count B, brier, log_loss and n (pairs)."""
    x = as_reward_diff(reward_diff)
    out: dict[str, float] = {"accuracy": accuracy(x)}
    for n_bins in bins:
        for key, value in calibration_errors(x, n_bins).items():
            out[f"{key}_{n_bins}"] = value
    out.update(brier=brier(x), log_loss=log_loss(x), n=int(x.size))
    return out
