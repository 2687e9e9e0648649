"""Uncertainty beside one explorer refit: percentile-bootstrap CIs over test pairs, the ECE noise floor band, and the
paired change of one fit against another (e.g. against uniform λ, or MORE against MultiTask on a mix).

One seeded set of resample counts per test source is drawn once per explorer and reused by every refit, so the
intervals of two fits and their difference are paired (pair difficulty cancels, as in `stats.paired_bootstrap_diff`).
Accuracy and ECE are pair-additive (`metrics.PairAdditive`): a replicate is counts [n_boot, N] @ per-pair terms
[N, F], the same numbers as re-scoring every resample (the counts form of `stats._pair_bootstrap`), a few ms per
source. The intervals cover test-pair sampling only: the explorer's training seed is fixed (the study's seed spread
is in notebook 02's tables; the explorer shows the study's seed means as ghost markers, `explore.reference`).
Checked in tests/test_explore.py against a direct numpy loop over the same resampled indices (`metrics.accuracy`,
`metrics.calibration_errors`) and against `metrics.ece_floor_stats`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from morelib.evaluation import metrics

LEVEL = 0.95  # two-sided level of every explorer interval
FLOOR_SIMS = 200  # simulated perfectly calibrated label draws per floor (as metrics.ece_floor_stats' default)


def resample_counts(sizes: Sequence[int], n_boot: int, seed: int) -> list[np.ndarray]:
    """Per test source, how often each pair is drawn in each replicate: float64 [n_boot, N_s].

    The rows come from one `numpy.random.default_rng(seed)`, source after source, as
    `rng.integers(0, N_s, size=(n_boot, N_s))` (replicate r draws pairs rows[r]).
    """
    rng, out = np.random.default_rng(seed), []
    for n in sizes:
        rows = rng.integers(0, n, size=(n_boot, n))
        flat = (rows + n * np.arange(n_boot)[:, None]).ravel()
        out.append(np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64))
    return out


def replicates(counts: np.ndarray, reward_diff: np.ndarray, metric: metrics.PairAdditive) -> np.ndarray:
    """`metric` of every resample [n_boot] of the pairs reward_diff [N], pair i drawn counts[r, i] times."""
    x = np.asarray(reward_diff, dtype=np.float64)
    return metric.combine(counts @ metric.terms(x), x.size)


def metric_replicates(
    diffs: Mapping[str, np.ndarray], counts: Sequence[np.ndarray], n_bins: int
) -> dict[str, np.ndarray]:
    """Replicates [n_boot, S] of accuracy and ECE (key `ece_<n_bins>`) over the S test sources of `diffs`, in order."""
    additive = {"accuracy": metrics.ADDITIVE_ACCURACY, f"ece_{n_bins}": metrics.additive_ece(n_bins)}
    return {
        key: np.stack([replicates(c, d, metric) for c, d in zip(counts, diffs.values(), strict=True)], axis=1)
        for key, metric in additive.items()
    }


def percentile_ci(boot: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds over replicates (axis 0) at confidence `level`, each boot.shape[1:]."""
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return lo, hi


def mean_change(boot_a: np.ndarray, boot_b: np.ndarray, point_a: float, point_b: float) -> tuple[float, float, float]:
    """(diff, lo, hi): point_a − point_b (means over sources) and the percentile CI of the paired replicates' difference
    of their source means (boot_a, boot_b [n_boot, S], drawn with the same counts)."""
    lo, hi = percentile_ci(boot_a.mean(axis=1) - boot_b.mean(axis=1))
    return point_a - point_b, float(lo), float(hi)


def floor_band(diffs: Mapping[str, np.ndarray], n_bins: int, seed: int) -> dict[str, dict[str, float]]:
    """Per test source, the ECE noise floor at its N and σ(Δ): {"floor": mean, "p95": 95th percentile}
    (`metrics.ece_floor_stats`; an ECE at or below p95 is consistent with perfect calibration)."""
    out = {}
    for s, d in diffs.items():
        null = metrics.ece_floor_stats(d, n_bins, FLOOR_SIMS, seed)
        out[s] = {"floor": null["floor"], "p95": null["p95"]}
    return out
