"""Preference accuracy, calibration (ECE/ACE/MCE), reliability, Brier, log-loss and reward-difference outliers (paper
§5).

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
The ECE noise floor (`ece_floor`) is the ECE a perfectly calibrated model gets on the same pairs: labels drawn from
σ(Δ) itself (the chosen response wins with probability σ(Δ)), scored exactly as `calibration_errors` scores them.
The plug-in ECE is biased upward by about that much on finite N (Kumar, Liang & Ma 2019, "Verified uncertainty
calibration"; Roelofs et al. 2022, "Mitigating bias in calibration error estimation"); `debiased_ece` subtracts it.
Checked against a direct per-bin loop with hand values and against torchmetrics BinaryCalibrationError
in tests/test_metrics.py; the floor against a loop over `calibration_errors` and its 1/√N shrinkage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import expit

ArrayLike = Any  # numpy array, torch tensor or sequence of floats, shape [N]


def as_finite(values: ArrayLike, name: str, vector: bool = True) -> np.ndarray:
    """Validated float64 copy of `values` (numpy, torch or a sequence): [N] when `vector`, else N ≥ 1 rows along axis 0.

    The one input check of the math modules (metrics, stats, temperature): ValueError naming `name` when the shape is
    wrong, there is nothing along axis 0, or a value is NaN/inf.
    """
    if hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    x = np.asarray(values, dtype=np.float64)
    if vector and x.ndim != 1:
        raise ValueError(f"{name} must have shape [N], got {x.shape}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} is empty: metrics of zero pairs are undefined")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} non-finite (NaN/inf) value(s), first at index {bad[0]}")
    return x


def as_reward_diff(reward_diff: ArrayLike, name: str = "reward_diff") -> np.ndarray:
    """Validated float64 copy [N] of reward differences; raises ValueError when empty, not 1-D or non-finite."""
    return as_finite(reward_diff, name)


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
    return (
        np.bincount(ids, weights=p, minlength=n_bins),
        np.bincount(ids, weights=y, minlength=n_bins),
        np.bincount(ids, minlength=n_bins),
    )


def calibration_errors(reward_diff: ArrayLike, n_bins: int = 10) -> dict[str, float]:
    """ECE, ACE and MCE (keys "ece", "ace", "mce") of σ(Δ) over both ordered pairs with n_bins equal-width bins."""
    p, y = ordered_pair_probs(reward_diff)
    sum_p, sum_y, count = _bin_sums(p, y, n_bins)
    used = count > 0
    gap = np.abs(sum_p[used] - sum_y[used]) / count[used]
    return {"ece": float(np.abs(sum_p - sum_y).sum() / p.size), "ace": float(gap.mean()), "mce": float(gap.max())}


def reliability(reward_diff: ArrayLike, n_bins: int = 10, repeats: int = 1) -> dict[str, np.ndarray]:
    """Reliability-diagram data per bin: edges [n+1], centers, confidence (mean p), accuracy (share of label 1), count,
    and band_lo / band_hi: where 95% of a perfectly calibrated model's bin accuracies fall (normal approximation,
    the consistency bars of Bröcker & Smith 2007), widened by √repeats when the same pairs are pooled `repeats` times
    (e.g. one row per seed: their labels are not independent draws).

    Same ordered-pair probabilities and (a, b] bins as `calibration_errors`; empty bins have NaN
    confidence/accuracy/band.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    p, y = ordered_pair_probs(reward_diff)
    sum_p, sum_y, count = _bin_sums(p, y, n_bins)
    var = np.bincount(
        np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p), weights=p * (1 - p), minlength=n_bins
    )
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, acc = sum_p / count, sum_y / count
        half = 1.959964 * np.sqrt(var * repeats) / count
    return {
        "edges": edges,
        "centers": (edges[:-1] + edges[1:]) / 2,
        "confidence": confidence,
        "accuracy": acc,
        "count": count,
        "band_lo": np.clip(confidence - half, 0.0, 1.0),
        "band_hi": np.clip(confidence + half, 0.0, 1.0),
    }


def batched_ece(reward_diff: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """ECE (as `calibration_errors`) of every row of reward differences [..., N] at once: shape [...]."""
    _check_bins(n_bins)
    x = np.asarray(reward_diff, dtype=np.float64)
    lead, n = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, n)
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    offset = (np.arange(flat.shape[0]) * n_bins)[:, None]
    p_pos, p_neg = expit(flat), expit(-flat)
    # Σ(p − y) per bin: order 1 is (σ(Δ), label 1), order 2 is (σ(−Δ), label 0).
    ids = np.concatenate([np.searchsorted(inner, p_pos) + offset, np.searchsorted(inner, p_neg) + offset], axis=1)
    gap = np.bincount(
        ids.ravel(), weights=np.concatenate([p_pos - 1.0, p_neg], axis=1).ravel(), minlength=flat.shape[0] * n_bins
    )
    return (np.abs(gap).reshape(flat.shape[0], n_bins).sum(axis=1) / (2 * n)).reshape(lead)


def batched_accuracy(reward_diff: np.ndarray) -> np.ndarray:
    """Accuracy (as `accuracy`) of every row of reward differences [..., N] at once: shape [...]."""
    return np.mean(np.asarray(reward_diff) > 0, axis=-1)


def _check_sims(n_sim: int) -> None:
    """Raise ValueError unless n_sim is an int ≥ 2."""
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 2:
        raise ValueError(f"n_sim must be an int >= 2, got {n_sim!r}")


def ece_null_samples(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> np.ndarray:
    """ECEs [n_sim] of a perfectly calibrated model with the same σ(Δ) and N: pair i's chosen response wins with
    probability σ(Δ_i) (uniforms u = default_rng(seed).random((n_sim, N)); it wins where u < σ(Δ), else the pair is
    scored as −Δ_i), each simulated set scored by `batched_ece`."""
    x = as_reward_diff(reward_diff)
    _check_sims(n_sim)
    u = np.random.default_rng(seed).random((n_sim, x.size))
    return batched_ece(np.where(u < expit(x), x, -x), n_bins)


def ece_floor_stats(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> dict[str, float]:
    """The ECE noise floor and its spread: "floor" (mean null ECE), "sd", "p95" (95th percentile) of `ece_null_samples`.

    An ECE at or below p95 is consistent with perfect calibration at this N (one-sided, 5%).
    """
    null = ece_null_samples(reward_diff, n_bins, n_sim, seed)
    return {"floor": float(null.mean()), "sd": float(null.std(ddof=1)), "p95": float(np.quantile(null, 0.95))}


def ece_floor(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated model with the same predicted probabilities σ(Δ) and N (see
    ece_null_samples)."""
    return float(ece_null_samples(reward_diff, n_bins, n_sim, seed).mean())


def debiased_ece(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> float:
    """ECE − ece_floor: the plug-in ECE minus its expected value under perfect calibration at the same σ(Δ) and N.

    The bias-subtraction idea of Kumar, Liang & Ma (2019, debiased ℓ2 estimator) applied to the ℓ1 ECE by simulation
    (Roelofs et al. 2022 show the plug-in bias is largest for well-calibrated models at small N). Mean 0 for a
    perfectly calibrated model; it can be negative (not clipped: clipping would bias it again), and for a clearly
    miscalibrated model it over-corrects by up to the floor, since the plug-in bias shrinks as the true error grows.
    """
    return calibration_errors(reward_diff, n_bins)["ece"] - ece_floor(reward_diff, n_bins, n_sim, seed)


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
    return {
        "pos_count": int(pos.size),
        "pos_mean": float(pos.mean()) if pos.size else float("nan"),
        "neg_count": int(neg.size),
        "neg_mean": float(neg.mean()) if neg.size else float("nan"),
        "q1": float(q1),
        "q3": float(q3),
        "upper_fence": float(upper),
        "lower_fence": float(lower),
    }


def all_metrics(reward_diff: ArrayLike, bins: Sequence[int] = (5, 10, 20), floor: bool = False) -> dict[str, float]:
    """Flat metric dict: accuracy, ece_B / ace_B / mce_B for each bin count B, brier, log_loss and n (pairs);
    with floor=True also ece_B_floor, ece_B_floor_p95 (`ece_floor_stats`) and ece_B_debiased (ECE − floor)."""
    x = as_reward_diff(reward_diff)
    out: dict[str, float] = {"accuracy": accuracy(x)}
    for n_bins in bins:
        for key, value in calibration_errors(x, n_bins).items():
            out[f"{key}_{n_bins}"] = value
        if floor:
            null = ece_floor_stats(x, n_bins)
            out.update(
                {
                    f"ece_{n_bins}_floor": null["floor"],
                    f"ece_{n_bins}_floor_p95": null["p95"],
                    f"ece_{n_bins}_debiased": out[f"ece_{n_bins}"] - null["floor"],
                }
            )
    out.update(brier=brier(x), log_loss=log_loss(x), n=int(x.size))
    return out
