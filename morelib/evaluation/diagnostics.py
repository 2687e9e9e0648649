"""Reward-model diagnostics: length bias and training guards (chance accuracy, reward collapse, pinned λ).

Length bias: a reward model can win preference accuracy by preferring longer responses (Singhal et al. 2023);
`length_bias` compares the RM with the trivial "prefer the longer response" rule and correlates reward with length.
Guards return a `GuardResult` and log a warning on logger "morelib" when tripped; they never raise.
Not in the paper; checked in tests/test_diagnostics.py (a length-only reward reproduces the "longer" baseline exactly).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from morelib.evaluation.metrics import as_reward_diff

logger = logging.getLogger("morelib")


@dataclass(frozen=True)
class GuardResult:
    """Outcome of one training guard: `ok` is False when the guard tripped; `message` says why."""

    name: str
    ok: bool
    message: str


def _report(name: str, ok: bool, message: str) -> GuardResult:
    """Build a GuardResult and log a warning when the guard tripped."""
    if not ok:
        logger.warning("%s: %s", name, message)
    return GuardResult(name, ok, message)


def _correlation(fn: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Correlation statistic of fn(x, y); NaN when either input is constant (undefined)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(x, y)[0])


def _share(mask: np.ndarray) -> float:
    """Mean of a boolean mask, NaN for an empty one."""
    return float(mask.mean()) if mask.size else float("nan")


def length_bias(r_chosen: Any, r_rejected: Any, chosen_len: Any, rejected_len: Any) -> dict[str, float]:
    """Length-bias report for N pairs from rewards r_chosen[N], r_rejected[N] and response lengths (tokens) [N].

    Keys: longer_baseline_accuracy (rule "prefer the longer", equal length = wrong), rm_accuracy,
    rm_accuracy_longer_won / n_longer_won (pairs whose chosen response is longer), rm_accuracy_shorter_won /
    n_shorter_won, n_equal_length, rm_prefers_longer (share of unequal-length pairs where the RM scores the longer
    response higher), pearson / spearman (correlation of reward with length over all 2N responses; NaN if constant).
    """
    rc, rr = as_reward_diff(r_chosen, "r_chosen"), as_reward_diff(r_rejected, "r_rejected")
    lc, lr = as_reward_diff(chosen_len, "chosen_len"), as_reward_diff(rejected_len, "rejected_len")
    if not rc.size == rr.size == lc.size == lr.size:
        raise ValueError(f"length_bias inputs must all have N entries, got {rc.size}, {rr.size}, {lc.size}, {lr.size}")
    correct = rc > rr
    longer_won, shorter_won = lc > lr, lc < lr
    unequal = longer_won | shorter_won
    rm_longer = np.where(longer_won, rc > rr, rr > rc)[unequal]
    rewards, lengths = np.concatenate([rc, rr]), np.concatenate([lc, lr])
    return {
        "longer_baseline_accuracy": _share(longer_won),
        "rm_accuracy": _share(correct),
        "rm_accuracy_longer_won": _share(correct[longer_won]),
        "n_longer_won": int(longer_won.sum()),
        "rm_accuracy_shorter_won": _share(correct[shorter_won]),
        "n_shorter_won": int(shorter_won.sum()),
        "n_equal_length": int((~unequal).sum()),
        "rm_prefers_longer": _share(rm_longer),
        "pearson": _correlation(sps.pearsonr, rewards, lengths),
        "spearman": _correlation(sps.spearmanr, rewards, lengths),
    }


def check_chance_accuracy(history_acc: Any, after_steps: int = 0, band: float = 0.02) -> GuardResult:
    """Trips when the mean accuracy over history_acc[after_steps:] (one value per step/eval) is within band of 0.5."""
    recent = np.asarray(history_acc, dtype=np.float64)[after_steps:]
    if recent.size == 0:
        return GuardResult("chance_accuracy", True, f"no accuracy recorded after step {after_steps} yet")
    acc = float(recent.mean())
    if abs(acc - 0.5) <= band:
        return _report(
            "chance_accuracy",
            False,
            f"accuracy {acc:.3f} after step {after_steps} is within {band} of chance (0.5): the RM is not learning",
        )
    return GuardResult("chance_accuracy", True, f"accuracy {acc:.3f} is away from chance")


def check_reward_collapse(rewards: Any, tol: float = 1e-6) -> GuardResult:
    """Trips when rewards[N] are (nearly) constant, std ≤ tol, or contain NaN/inf."""
    r = np.asarray(rewards.detach().cpu() if hasattr(rewards, "detach") else rewards, dtype=np.float64).ravel()
    if r.size == 0:
        return GuardResult("reward_collapse", True, "no rewards to check")
    if not np.isfinite(r).all():
        return _report("reward_collapse", False, f"{int((~np.isfinite(r)).sum())} of {r.size} rewards are NaN/inf")
    std = float(r.std())
    if std <= tol:
        return _report(
            "reward_collapse",
            False,
            f"rewards collapsed: std {std:.3g} ≤ {tol:g} over {r.size} responses (all ≈ {r.mean():.4g})",
        )
    return GuardResult("reward_collapse", True, f"reward std {std:.3g}")


def check_lambda_pinned(lam_history: Any, tol: float = 1e-3, min_share: float = 0.9) -> GuardResult:
    """Trips when in ≥ min_share of the steps of lam_history[steps, K] one source holds λ ≥ 1 − tol (a simplex
    vertex)."""
    lam = np.asarray(lam_history.detach().cpu() if hasattr(lam_history, "detach") else lam_history, dtype=np.float64)
    if lam.ndim != 2 or lam.shape[0] == 0:
        return GuardResult("lambda_pinned", True, f"no λ history to check (shape {lam.shape})")
    if lam.shape[1] == 1:
        return GuardResult("lambda_pinned", True, "K = 1: λ = [1] by construction")
    pinned = lam.max(axis=1) >= 1 - tol
    share = float(pinned.mean())
    if share >= min_share:
        source, count = Counter(lam.argmax(axis=1)[pinned].tolist()).most_common(1)[0]
        return _report(
            "lambda_pinned",
            False,
            f"λ sits on one source in {share:.0%} of {lam.shape[0]} steps (mostly source {source}, "
            f"{count} steps): MORE degenerates to single-source training",
        )
    return GuardResult("lambda_pinned", True, f"λ pinned in {share:.0%} of steps")
