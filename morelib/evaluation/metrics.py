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
The plug-in ECE is biased upward on finite N (Kumar, Liang & Ma 2019, "Verified uncertainty calibration"; Roelofs et
al. 2022, "Mitigating bias in calibration error estimation"), by the floor for a perfectly calibrated model and by
less for a miscalibrated one: `excess_over_floor` (ECE − floor) is therefore a lower bound on miscalibration, and
`debiased_ece` (Kumar et al.'s resampling correction) the estimate. `plugin_gap_attenuation` says how much of a true
ECE gap between two models survives in the plug-in ECE at a given N.
ECE with an odd bin count: the middle bin holds both σ(Δ) and σ(−Δ) of every pair with |Δ| < logit of its upper edge
(0.405 for 5 bins), with labels 1 and 0, so its gap is 0 whatever the model: such pairs never count
(# NOTE(ref): inherited from the reference code's binning).
Checked against a direct per-bin loop with hand values and against torchmetrics BinaryCalibrationError
in tests/test_metrics.py; the floor against a loop over `calibration_errors` and its 1/√N shrinkage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class PairAdditive:
    """A batched metric that is a function of per-pair sums: metric(x[..., N]) = combine(Σ_i terms(x)[..., i, :], N).

    terms: reward differences [..., N] → per-pair terms [..., N, F]; combine: sums [..., F] and N → values [...].
    Called like any batched metric; `stats.pooled_paired_bootstrap` uses the form to bootstrap by resample counts
    (one matrix product per block) instead of re-scoring every resample: same replicates, far less work.
    """

    terms: Callable[[np.ndarray], np.ndarray]
    combine: Callable[[np.ndarray, int], np.ndarray]

    def __call__(self, reward_diff: np.ndarray) -> np.ndarray:
        """The metric of every row of reward differences [..., N]: shape [...]."""
        x = np.asarray(reward_diff, dtype=np.float64)
        return self.combine(self.terms(x).sum(axis=-2), x.shape[-1])


def _ece_terms(x: np.ndarray, n_bins: int) -> np.ndarray:
    """Per pair [..., N, n_bins]: σ(Δ) − 1 in the bin of σ(Δ) plus σ(−Δ) in the bin of σ(−Δ) (both ordered pairs)."""
    inner, bins = np.linspace(0.0, 1.0, n_bins + 1)[1:-1], np.arange(n_bins)
    p, q = expit(x), expit(-x)
    hot = lambda v: np.searchsorted(inner, v)[..., None] == bins  # noqa: E731
    return (p - 1.0)[..., None] * hot(p) + q[..., None] * hot(q)


def additive_ece(n_bins: int = 10) -> PairAdditive:
    """`batched_ece` as a PairAdditive metric (same values): Σ_bins |Σ_i terms| / 2N."""
    _check_bins(n_bins)
    return PairAdditive(lambda x: _ece_terms(x, n_bins), lambda sums, n: np.abs(sums).sum(axis=-1) / (2 * n))


ADDITIVE_ACCURACY = PairAdditive(lambda x: (x > 0)[..., None].astype(np.float64), lambda sums, n: sums[..., 0] / n)
ADDITIVE_LOG_LOSS = PairAdditive(lambda x: np.logaddexp(0.0, -x)[..., None], lambda sums, n: sums[..., 0] / n)
ADDITIVE_MEAN_ABS = PairAdditive(lambda x: np.abs(x)[..., None], lambda sums, n: sums[..., 0] / n)


def _check_sims(n_sim: int) -> None:
    """Raise ValueError unless n_sim is an int ≥ 2."""
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or n_sim < 2:
        raise ValueError(f"n_sim must be an int >= 2, got {n_sim!r}")


def _resampled_eces(x: np.ndarray, win_prob: np.ndarray, n_bins: int, n_sim: int, seed: int) -> np.ndarray:
    """ECEs [n_sim] of the pairs x [N] with labels redrawn: pair i's chosen response wins with probability win_prob[i]
    (uniforms u = default_rng(seed).random((n_sim, N)); it wins where u < win_prob, else the pair is scored as −Δ_i)."""
    _check_sims(n_sim)
    _check_bins(n_bins)
    won = (np.random.default_rng(seed).random((n_sim, x.size)) < win_prob).astype(np.float64)
    # a pair scored as Δ or as −Δ adds its ECE terms of Δ or of −Δ: two matrix products instead of n_sim binnings
    sums = won @ _ece_terms(x, n_bins) + (1.0 - won) @ _ece_terms(-x, n_bins)
    return np.abs(sums).sum(axis=-1) / (2 * x.size)


def ece_null_samples(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> np.ndarray:
    """ECEs [n_sim] of a perfectly calibrated model with the same σ(Δ) and N: pair i's chosen response wins with
    probability σ(Δ_i) (`_resampled_eces`), each simulated set scored by `batched_ece`."""
    x = as_reward_diff(reward_diff)
    return _resampled_eces(x, expit(x), n_bins, n_sim, seed)


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


def excess_over_floor(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> float:
    """ECE − ece_floor: how far the plug-in ECE sits above a perfectly calibrated model's at the same σ(Δ) and N.

    A LOWER BOUND on miscalibration, not an estimate of it: the floor is the plug-in bias of a perfectly calibrated
    model, the largest bias there is (it shrinks as the true error grows; Roelofs et al. 2022), so a true ECE of 0.053
    shows as about 0.025 at N = 300. It depends on N: never compare it across models scored on different N.
    """
    return calibration_errors(reward_diff, n_bins)["ece"] - ece_floor(reward_diff, n_bins, n_sim, seed)


def bin_win_rates(reward_diff: ArrayLike, n_bins: int = 10) -> np.ndarray:
    """Per pair [N]: the observed share of label 1 in the bin of σ(Δ_i) (ordered-pair probabilities, as
    `calibration_errors` bins them)."""
    x = as_reward_diff(reward_diff)
    p, y = ordered_pair_probs(x)
    _, sum_y, count = _bin_sums(p, y, n_bins)
    ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], expit(x))
    return sum_y[ids] / count[ids]


def debiased_ece(reward_diff: ArrayLike, n_bins: int = 10, n_sim: int = 200, seed: int = 0) -> float:
    """Debiased ℓ1 ECE: 2·ECE − the mean ECE over labels redrawn around the observed bin frequencies.

    Kumar, Liang & Ma (2019, "Verified uncertainty calibration", §5) debias the plug-in calibration error by
    subtracting its bias estimated by resampling each bin's labels from the bin's observed frequency; for the ℓ1 ECE
    that is ECE − (mean resampled ECE − ECE). Pair i's chosen response wins with probability `bin_win_rates`[i] in
    each simulation. Not clipped at 0 (clipping would bias it again). Measured on overconfident synthetic models at
    N = 300 (tests/test_metrics.py): true ECE 0.050 → plug-in 0.065, debiased 0.052, excess over floor 0.022; true
    0.020 → 0.047, 0.030, 0.005; true 0 → 0.043, 0.026, 0.001. So it is an estimate well above the floor, still biased
    up near 0, where `excess_over_floor` (a lower bound) is the tighter side: the two bracket the true ECE.
    """
    x = as_reward_diff(reward_diff)
    ece = calibration_errors(x, n_bins)["ece"]
    return float(2 * ece - _resampled_eces(x, bin_win_rates(x, n_bins), n_bins, n_sim, seed).mean())


def _binned_gap_ece(x: np.ndarray, true_win: np.ndarray, n_bins: int) -> float:
    """Binned ECE of σ(x) when pair i's chosen response truly wins with probability true_win[i] (expected labels: the
    population ECE over the pairs x, no sampling noise)."""
    inner = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    w = expit(x) - true_win  # order 1; order 2 carries −w in the mirror bin
    ids = np.concatenate([np.searchsorted(inner, expit(x)), np.searchsorted(inner, expit(-x))])
    return float(np.abs(np.bincount(ids, weights=np.concatenate([w, -w]), minlength=n_bins)).sum() / (2 * x.size))


def miscalibrated_truth(reward_diff: ArrayLike, target_ece: float, n_bins: int = 10) -> float:
    """The t for which a model predicting σ(Δ) while the truth is σ(t·Δ) has binned ECE `target_ece` over these pairs:
    overconfident (t ∈ [0, 1]) when that reaches it, else underconfident (t > 1); bisection, ECE being monotone in t
    on each side. ValueError when no t ≤ 1000 reaches it."""
    x = as_reward_diff(reward_diff)
    ece = lambda t: _binned_gap_ece(x, expit(t * x), n_bins)  # noqa: E731
    lo, hi = (0.0, 1.0) if target_ece <= ece(0.0) else (1.0, 1000.0)
    if not 0.0 <= target_ece <= max(ece(lo), ece(hi)):
        raise ValueError(f"target_ece {target_ece!r} is out of reach for these reward differences")
    grows_up = ece(hi) > ece(lo)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if (ece(mid) < target_ece) == grows_up else (lo, mid)
    return (lo + hi) / 2


def plugin_gap_attenuation(
    reward_diff: ArrayLike, ece_high: float, ece_low: float, n: int, n_bins: int = 10, n_sim: int = 400, seed: int = 0
) -> float:
    """Share of a true ECE gap (ece_high − ece_low) that the plug-in ECE shows on n test pairs, in expectation.

    Two miscalibrated models (`miscalibrated_truth`) with those true binned ECEs over the reward differences given
    (e.g. a run's test Δ); each simulation draws n of them with replacement and labels from each model's truth (the
    same draws for both), and scores both plug-in ECEs. Returns mean(plug-in gap) / true gap: below 1 when the plug-in
    bias, largest for the better-calibrated model, eats part of the gap (Roelofs et al. 2022).
    """
    x = as_reward_diff(reward_diff)
    _check_sims(n_sim)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or not ece_high > ece_low:
        raise ValueError(f"need n ≥ 1 and ece_high > ece_low, got n={n!r}, {ece_high!r} ≤ {ece_low!r}")
    rng = np.random.default_rng(seed)
    draw = x[rng.integers(0, x.size, size=(n_sim, n))]
    u = rng.random((n_sim, n))
    plug = [
        batched_ece(np.where(u < expit(miscalibrated_truth(x, e, n_bins) * draw), draw, -draw), n_bins).mean()
        for e in (ece_high, ece_low)
    ]
    return float((plug[0] - plug[1]) / (ece_high - ece_low))


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
    with floor=True also ece_B_floor, ece_B_floor_p95 (`ece_floor_stats`), ece_B_excess (ECE − floor, a lower bound:
    `excess_over_floor`) and ece_B_debiased (`debiased_ece`, Kumar et al. 2019's estimate)."""
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
                    f"ece_{n_bins}_excess": out[f"ece_{n_bins}"] - null["floor"],
                    f"ece_{n_bins}_debiased": debiased_ece(x, n_bins),
                }
            )
    out.update(brier=brier(x), log_loss=log_loss(x), n=int(x.size))
    return out
