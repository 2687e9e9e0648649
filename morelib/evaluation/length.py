"""Length bias of a reward model: post-hoc length calibration and length-controlled accuracy.

Calibration follows Huang et al., "Post-hoc Reward Calibration: A Case Study on Length Bias" (ICLR 2025,
arXiv 2409.17407): model a reward as r(x) = r*(x) + b(len(x)), estimate the length term b̂ by regressing reward on
length over the calibration split's 2N responses, and serve r − b̂(len) (their RC-LWR). Two estimators:
- "lowess": local linear regression with tricube weights over the `frac` nearest lengths (Cleveland 1979, one pass,
  no robustness iterations), evaluated at up to `MAX_KNOTS` length quantiles and linearly interpolated between them,
  constant beyond the calibration range. NOTE(ref): Huang et al. use statsmodels' lowess (robust iterations);
  frac = 2/3 is statsmodels' default.
- "linear": b̂(l) = slope · l by ordinary least squares (the simpler documented estimator: one number per RM).
Either way the fit also reports the OLS slope (reward per token) with a percentile-bootstrap CI that resamples
calibration pairs (both responses of a pair together, as they share a prompt). b̂ is centred on the calibration
responses, so calibrated rewards keep their mean; reward differences only see b̂(l_c) − b̂(l_r).
The estimate absorbs any real quality–length relation of the calibration split too (Huang et al. §3 accept this).
Length-controlled accuracy splits pairs by whether the chosen response is the longer one and compares the RM with
the "prefer the longer response" rule on the same pairs (paired bootstrap; diagnostics.length_bias is the same rule).
Checked in tests/test_length.py: reward = quality + c·length recovers c inside its CI and the calibrated RM shows no
length preference; local linear regression reproduces a line exactly and matches a direct weighted fit at a point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from morelib.core.errors import DataError
from morelib.evaluation import metrics, stats
from morelib.evaluation.metrics import as_finite

METHODS = ("lowess", "linear")
MAX_KNOTS = 200  # lowess evaluation points: bounds the cost at MAX_KNOTS × 2N; b̂ is smooth between them
FRAC = 2 / 3  # lowess neighbourhood share (statsmodels' default)


@dataclass(frozen=True)
class LengthFit:
    """A fitted length term b̂: values `bias` [M] at lengths `knots` [M] (tokens), plus the OLS slope and its CI."""

    method: str
    knots: np.ndarray
    bias: np.ndarray
    slope: float
    slope_lo: float
    slope_hi: float
    n_pairs: int

    def predict(self, lengths: np.ndarray) -> np.ndarray:
        """b̂(lengths) [N]: interpolated between knots, constant beyond the calibration range."""
        return np.interp(np.asarray(lengths, dtype=np.float64), self.knots, self.bias)

    def apply_diff(self, reward_diff: np.ndarray, chosen_len: np.ndarray, rejected_len: np.ndarray) -> np.ndarray:
        """Calibrated reward differences Δ − (b̂(l_c) − b̂(l_r)) [N] (or [N, S]: one column per seed)."""
        d = np.asarray(reward_diff, dtype=np.float64)
        shift = self.predict(chosen_len) - self.predict(rejected_len)
        return d - (shift[:, None] if d.ndim == 2 else shift)


def _checked(r_chosen, r_rejected, chosen_len, rejected_len) -> tuple[np.ndarray, np.ndarray]:
    """(rewards [N, 2], lengths [N, 2]) of N pairs, validated to be finite and of one length N."""
    parts = [as_finite(v, n) for v, n in zip((r_chosen, r_rejected, chosen_len, rejected_len), _NAMES)]
    if len({p.size for p in parts}) != 1:
        raise ValueError(f"length calibration inputs must all have N entries, got {[p.size for p in parts]}")
    return np.stack(parts[:2], axis=1), np.stack(parts[2:], axis=1)


_NAMES = ("r_chosen", "r_rejected", "chosen_len", "rejected_len")


def ols_slopes(r: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """OLS slope of reward on length for each row of r, lengths [..., M]: cov(l, r) / var(l), shape [...]."""
    lc = lengths - lengths.mean(axis=-1, keepdims=True)
    return (lc * (r - r.mean(axis=-1, keepdims=True))).sum(axis=-1) / (lc * lc).sum(axis=-1)


def local_linear(x: np.ndarray, y: np.ndarray, at: np.ndarray, frac: float = FRAC) -> np.ndarray:
    """Local linear regression of y[M] on x[M] at points `at`[K]: tricube weights over the ceil(frac·M) nearest x."""
    k = min(x.size, max(2, int(np.ceil(frac * x.size))))
    out = np.empty(at.size)
    for i, x0 in enumerate(at):
        dist = np.abs(x - x0)
        h = np.partition(dist, k - 1)[k - 1]
        w = np.where(dist <= h, 1.0, 0.0) if h == 0 else np.clip(1 - (dist / (h * (1 + 1e-9))) ** 3, 0, None) ** 3
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        sxx = np.sum(w * (x - xm) ** 2)
        slope = np.sum(w * (x - xm) * (y - ym)) / sxx if sxx > 0 else 0.0
        out[i] = ym + slope * (x0 - xm)
    return out


def fit(
    r_chosen,
    r_rejected,
    chosen_len,
    rejected_len,
    method: str = "lowess",
    frac: float = FRAC,
    n_boot: int = 1000,
    seed: int = 0,
) -> LengthFit:
    """Fit b̂ on N calibration pairs: rewards r_chosen, r_rejected [N] and response lengths (tokens) [N]."""
    if method not in METHODS:
        raise ValueError(f"length calibration method must be one of {METHODS}, got {method!r}")
    if not 0 < frac <= 1:
        raise ValueError(f"lowess frac must be in (0, 1], got {frac!r}")
    r, lengths = _checked(r_chosen, r_rejected, chosen_len, rejected_len)
    x, y = lengths.ravel(), r.ravel()
    if np.ptp(x) == 0:
        raise DataError(f"all {x.size} calibration responses have length {x[0]:g}: no reward–length relation to fit")
    rng = np.random.default_rng(seed)
    boot = np.concatenate(
        [
            ols_slopes(r[idx].reshape(len(idx), -1), lengths[idx].reshape(len(idx), -1))
            for idx in np.array_split(rng.integers(0, r.shape[0], size=(n_boot, r.shape[0])), max(1, n_boot // 100))
        ]
    )
    boot = boot[np.isfinite(boot)]  # a resample of equal lengths only has no slope
    slope = float(ols_slopes(y, x))
    if method == "linear":
        knots = np.array([x.min(), x.max()])
        bias = slope * knots
    else:
        knots = np.unique(np.quantile(x, np.linspace(0, 1, MAX_KNOTS)))
        bias = local_linear(x, y, knots, frac)
    bias = bias - np.interp(x, knots, bias).mean()
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return LengthFit(method, knots, bias, slope, float(lo), float(hi), int(r.shape[0]))


Metric = Callable[[np.ndarray], float]


def _prefers_longer(x: np.ndarray) -> float:
    """diagnostics.length_bias's rm_prefers_longer, vectorised over seeds (seed mean); x = [Δ (S cols), l_c, l_r]."""
    d, lc, lr = x[:, :-2], x[:, -2], x[:, -1]
    unequal = lc != lr
    if not unequal.any():
        return float("nan")
    return float(np.mean(((d > 0) == (lc > lr)[:, None])[unequal] & (d[unequal] != 0)))


def _seed_mean(fn: Callable[[np.ndarray], float]) -> Metric:
    """A per-pair metric of [Δ (S cols), l_c, l_r] rows: fn of each seed column, averaged over seeds."""
    return lambda x: float(np.mean([fn(x[:, j]) for j in range(x.shape[1] - 2)]))


def _ece10(d: np.ndarray) -> float:
    """ECE with 10 bins (the workbook's headline calibration number)."""
    return metrics.calibration_errors(d, 10)["ece"]


BEFORE_AFTER: dict[str, Metric] = {
    "accuracy": _seed_mean(metrics.accuracy),
    "ece_10": _seed_mean(_ece10),
    "rm_prefers_longer": _prefers_longer,
}


def _columns(d: np.ndarray) -> np.ndarray:
    """Reward differences as [N, S] (a single RM's [N] becomes one column)."""
    d = np.asarray(d, dtype=np.float64)
    return d[:, None] if d.ndim == 1 else d


def before_after(
    before: np.ndarray, after: np.ndarray, chosen_len, rejected_len, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, float]]:
    """Calibrated − uncalibrated accuracy, ECE (10 bins, with each side's floor) and rm_prefers_longer on the same
    pairs: reward differences [N] or [N, S seeds], lengths [N]; one row per metric with a paired bootstrap 95% CI."""
    b, a = _columns(before), _columns(after)
    lengths = np.stack([as_finite(chosen_len, "chosen_len"), as_finite(rejected_len, "rejected_len")], axis=1)
    xa, xb = np.concatenate([a, lengths], axis=1), np.concatenate([b, lengths], axis=1)
    rows = []
    for name, fn in BEFORE_AFTER.items():
        ci = stats.paired_bootstrap_diff(xa, xb, fn, n_boot=n_boot, seed=seed)
        row = {"metric": name, "before": ci["b"], "after": ci["a"], "diff": ci["diff"], "lo": ci["lo"], "hi": ci["hi"]}
        if name == "ece_10":
            row.update(
                before_floor=float(np.mean([metrics.ece_floor(b[:, j], 10) for j in range(b.shape[1])])),
                after_floor=float(np.mean([metrics.ece_floor(a[:, j], 10) for j in range(a.shape[1])])),
            )
        rows.append({**row, "p_value": ci["p_two_sided"]})
    return rows


def length_split(reward_diff: np.ndarray, chosen_len, rejected_len, n_boot: int = 1000, seed: int = 0) -> dict:
    """Length-controlled accuracy of reward differences [N] or [N, S seeds] with lengths [N] (seed means):
    accuracy where the chosen response is longer / shorter (each with a bootstrap 95% CI and its n; NaN when no such
    pair), the "longer wins" rule's accuracy, and RM − rule with a paired bootstrap 95% CI (equal lengths: rule wrong).
    """
    d = _columns(reward_diff)
    lc, lr = as_finite(chosen_len, "chosen_len"), as_finite(rejected_len, "rejected_len")
    acc = _seed_mean(metrics.accuracy)
    out: dict[str, float] = {"n": int(d.shape[0])}
    for name, mask in (("longer_won", lc > lr), ("shorter_won", lc < lr)):
        out[f"n_{name}"] = int(mask.sum())
        if mask.any():
            point, lo, hi = stats.bootstrap_ci(d[mask], lambda x: float(np.mean(x > 0)), n_boot=n_boot, seed=seed)
        else:
            point = lo = hi = float("nan")
        out.update({f"accuracy_{name}": point, f"accuracy_{name}_lo": lo, f"accuracy_{name}_hi": hi})
    rule = np.repeat(np.sign(lc - lr)[:, None], d.shape[1], axis=1)
    zeros = np.zeros((d.shape[0], 2))
    ci = stats.paired_bootstrap_diff(
        np.concatenate([d, zeros], axis=1), np.concatenate([rule, zeros], axis=1), acc, n_boot=n_boot, seed=seed
    )
    out.update(
        accuracy=ci["a"],
        longer_baseline_accuracy=ci["b"],
        vs_longer_diff=ci["diff"],
        vs_longer_lo=ci["lo"],
        vs_longer_hi=ci["hi"],
        vs_longer_p_value=ci["p_two_sided"],
    )
    return out
