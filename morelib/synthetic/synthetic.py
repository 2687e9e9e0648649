"""Synthetic drift benchmark at feature level: the paper's eq. 4 reward model r_k(z) = (r* + r̃_k)·z with known truth.

K sources share the reward direction r* and each adds its own drift r̃_k (‖r̃_k‖ = drift_k·‖r*‖; by default
orthogonal to r*, or with a share `drift_along_k` of its norm along r*, negative = the drift opposes r*). Source k
labels with the reward c_k·(r* + r̃_k), c_k = `source_scale_k` (c_k < 1: noisier labels).
A pair is two feature vectors z_a, z_b ~ N(0, I); source k labels it by Bradley–Terry, a ≻ b with probability
σ(r_k(z_a) − r_k(z_b)), and the preferred one becomes `chosen`. So the true preference probability of every pair is
known, and a head trained on the pooled sources can be compared with r* directly. ‖r*‖ = reward_scale/√2, which makes
the true reward difference r*·(z_a − z_b) ~ N(0, reward_scale²): larger scale, less label noise. The SHARED truth of a
pair is p* = σ(r*·(z_chosen − z_rejected)) (`shared_prob`), the same for every source.
`make_latent_benchmark` (issue 23, item 5) puts the drift where only a trainable representation reaches it: every
reward is a `QuadraticReward` r(z) = w·z + Σ_j a_j·((u_j·z)² − 1)/√2 of the shared latent z ~ N(0, I) (the features a
model sees). The shared r* puts a share `nonlinear` of its variance on quadratic features of its own directions, and
source k's drift lives ONLY in quadratic features of directions of its own (orthonormal to all others when dim allows),
with coefficient norm drift_k·‖r*‖. A linear head cannot represent any drift (a centred quadratic of a Gaussian has no
linear part); a shared MLP trunk can learn — or, weighted away, unlearn — each source's drift features.
Checked by tests: labels follow the stated probabilities, the true reward's ECE is ≈ 0, a logistic head on the
pooled sources recovers r* (cosine > 0.9) at low drift, and per-source sizes, scales, drift norms and directions are
as specified.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from morelib.backbone.features import PairFeatures
from morelib.evaluation.metrics import calibration_errors

SPLITS = ("train", "calib", "test")


@dataclass
class SyntheticBenchmark:
    """Per split ("train" | "calib" | "test") and source: PairFeatures, plus the true rewards behind them.

    `r_star` [dim] the shared reward; `drifts` [K, dim] the per-source drifts r̃_k; `true_diff[split][source]` [N]
    the true reward difference r_k(chosen) − r_k(rejected) under c_k·(r* + r̃_k), and `true_prob` = σ(true_diff), the
    probability that `chosen` ≻ `rejected`; `scales` [K] the c_k; `shared_diff` [N] r*·(chosen − rejected) and
    `shared_prob` = σ(shared_diff), the shared truth p*.
    """

    train: dict[str, Any]
    calib: dict[str, Any]
    test: dict[str, Any]
    r_star: torch.Tensor
    drifts: torch.Tensor
    true_diff: dict[str, dict[str, torch.Tensor]]
    true_prob: dict[str, dict[str, torch.Tensor]]
    source_names: tuple[str, ...]
    scales: torch.Tensor | None = None
    shared_diff: dict[str, dict[str, torch.Tensor]] | None = None
    shared_prob: dict[str, dict[str, torch.Tensor]] | None = None
    nonlinear: float = 0.0  # share of r*'s variance on quadratic features (`make_latent_benchmark`); 0: linear truth

    def split(self, name: str) -> dict[str, Any]:
        """The {source: PairFeatures} of one split."""
        if name not in SPLITS:
            raise ValueError(f"unknown split '{name}'; valid: {', '.join(SPLITS)}")
        return getattr(self, name)

    def true_reward_diff(self, split: str, source: str) -> torch.Tensor:
        """True r_k(chosen) − r_k(rejected) [N] of one split and source."""
        return self.true_diff[split][source]


def _unit(v: torch.Tensor) -> torch.Tensor:
    """v / ‖v‖ along the last axis."""
    return v / v.norm(dim=-1, keepdim=True)


def drift_rewards(
    K: int,
    dim: int,
    drift: float | Sequence[float],
    reward_scale: float,
    gen: torch.Generator,
    along: float | Sequence[float] = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r_star [dim], drifts [K, dim]): ‖r*‖ = reward_scale/√2; drift k has norm drift_k·‖r*‖ and a share along_k
    of that norm along r* (0: orthogonal, the rest in a random direction ⟂ r*)."""
    norms = torch.tensor(_per_source(drift, K, "drift"), dtype=torch.float32)
    shares = torch.tensor(_per_source(along, K, "drift_along"), dtype=torch.float32)
    r_star = _unit(torch.randn(dim, generator=gen)) * (reward_scale / math.sqrt(2))
    raw = torch.randn(K, dim, generator=gen)
    direction = r_star / r_star.norm()
    raw = raw - (raw @ direction)[:, None] * direction  # remove the r* component: drifts change only the rest
    unit = shares[:, None] * direction + (1 - shares**2).clamp_min(0).sqrt()[:, None] * _unit(raw)
    return r_star, unit * (norms * r_star.norm())[:, None]


def _per_source(value: float | Sequence[float], K: int, what: str) -> list[float]:
    """Per-source floats from one number or a K-sequence (drift norms ≥ 0, drift shares in [−1, 1], scales > 0)."""
    values = [float(value)] * K if isinstance(value, (int, float)) else [float(v) for v in value]
    bounds = {"drift": (0.0, math.inf), "drift_along": (-1.0, 1.0), "source_scale": (1e-12, math.inf)}[what]
    if len(values) != K or any(not bounds[0] <= v <= bounds[1] for v in values):
        raise ValueError(f"{what} must be one number or {K} numbers in [{bounds[0]:g}, {bounds[1]:g}], got {value!r}")
    return values


def bt_pairs(w: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(chosen [n, dim], rejected [n, dim], true w·(chosen − rejected) [n]) with labels drawn by Bradley–Terry under
    w."""
    z_a, z_b = torch.randn(n, w.numel(), generator=gen), torch.randn(n, w.numel(), generator=gen)
    diff_a = (z_a - z_b) @ w
    a_wins = torch.rand(n, generator=gen) < torch.sigmoid(diff_a)
    chosen = torch.where(a_wins[:, None], z_a, z_b)
    rejected = torch.where(a_wins[:, None], z_b, z_a)
    return chosen, rejected, torch.where(a_wins, diff_a, -diff_a)


def _sizes(n: int | Sequence[int], K: int, what: str) -> list[int]:
    """Per-source sizes from one int or a K-sequence, each positive."""
    sizes = [n] * K if isinstance(n, int) else list(n)
    if len(sizes) != K or any(not isinstance(s, int) or s <= 0 for s in sizes):
        raise ValueError(f"{what} must be a positive int or {K} positive ints, got {n!r}")
    return sizes


def make_drift_benchmark(
    K: int,
    dim: int,
    n_per_source: int | Sequence[int],
    drift: float | Sequence[float],
    seed: int,
    n_calib: int | Sequence[int] = 500,
    n_test: int | Sequence[int] = 1000,
    reward_scale: float = 3.0,
    names: Sequence[str] | None = None,
    drift_along: float | Sequence[float] = 0.0,
    source_scale: float | Sequence[float] = 1.0,
) -> SyntheticBenchmark:
    """The eq. 4 drift benchmark: K sources × (train, calib, test) PairFeatures with known r*, drifts and
    probabilities."""
    if K <= 0 or dim <= 0 or reward_scale <= 0:
        raise ValueError(f"need K, dim, reward_scale > 0; got K={K}, dim={dim}, reward_scale={reward_scale}")
    names = tuple(names) if names is not None else tuple(f"source{k}" for k in range(K))
    if len(names) != K:
        raise ValueError(f"names must list K={K} source names, got {len(names)}")
    scales = torch.tensor(_per_source(source_scale, K, "source_scale"))
    gen = torch.Generator().manual_seed(seed)
    r_star, drifts = drift_rewards(K, dim, drift, reward_scale, gen, along=drift_along)
    sizes = {
        "train": _sizes(n_per_source, K, "n_per_source"),
        "calib": _sizes(n_calib, K, "n_calib"),
        "test": _sizes(n_test, K, "n_test"),
    }
    feats: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    diffs: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    shared: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    for split in SPLITS:
        for k, name in enumerate(names):
            chosen, rejected, diff = bt_pairs(scales[k] * (r_star + drifts[k]), sizes[split][k], gen)
            feats[split][name] = PairFeatures(chosen=chosen, rejected=rejected, source=name)
            diffs[split][name] = diff
            shared[split][name] = (chosen - rejected) @ r_star
    probs = {s: {name: torch.sigmoid(d) for name, d in by.items()} for s, by in diffs.items()}
    shared_probs = {s: {name: torch.sigmoid(d) for name, d in by.items()} for s, by in shared.items()}
    return SyntheticBenchmark(
        feats["train"], feats["calib"], feats["test"], r_star, drifts, diffs, probs, names, scales, shared, shared_probs
    )


@dataclass(frozen=True)
class QuadraticReward:
    """r(z) = w·z + Σ_j a_j·((u_j·z)² − 1)/√2 for z [n, dim]: w [dim], U [m, dim] unit directions, a [m]; with
    orthonormal directions and z ~ N(0, I), Var r = ‖w‖² + ‖a‖²."""

    w: torch.Tensor
    U: torch.Tensor
    a: torch.Tensor

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """Rewards [n] of latents z [n, dim]."""
        return z @ self.w + (((z @ self.U.T) ** 2 - 1) / math.sqrt(2)) @ self.a

    def __add__(self, other: QuadraticReward) -> QuadraticReward:
        """The sum of two rewards (directions stacked)."""
        return QuadraticReward(self.w + other.w, torch.cat([self.U, other.U]), torch.cat([self.a, other.a]))

    def scaled(self, c: float) -> QuadraticReward:
        """c · r."""
        return QuadraticReward(c * self.w, self.U, c * self.a)


def _directions(count: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    """`count` unit directions [count, dim]: orthonormal (QR of a Gaussian matrix) when count ≤ dim, else random."""
    raw = torch.randn(dim, count, generator=gen)
    if count <= dim:
        return torch.linalg.qr(raw).Q.T.contiguous()
    return _unit(raw.T)


def latent_rewards(
    K: int,
    dim: int,
    drift: float | Sequence[float],
    reward_scale: float,
    nonlinear: float,
    gen: torch.Generator,
    m: int = 2,
) -> tuple[QuadraticReward, list[QuadraticReward]]:
    """(shared r*, drifts r̃_k): r* has ‖w*‖² + ‖a*‖² = (reward_scale/√2)² with a share `nonlinear` on m quadratic
    features; drift k: m quadratic features of its own directions, ‖a_k‖ = drift_k·reward_scale/√2, no linear part."""
    if not 0.0 <= nonlinear <= 1.0:
        raise ValueError(f"nonlinear must be a share in [0, 1], got {nonlinear!r}")
    norms, R = _per_source(drift, K, "drift"), reward_scale / math.sqrt(2)
    dirs = _directions(1 + m * (K + 1), dim, gen)
    coef = lambda norm: _unit(torch.randn(m, generator=gen)) * norm  # noqa: E731
    shared = QuadraticReward(dirs[0] * math.sqrt(1 - nonlinear) * R, dirs[1 : 1 + m], coef(math.sqrt(nonlinear) * R))
    zero = torch.zeros(dim)
    drifts = [QuadraticReward(zero, dirs[1 + m * (k + 1) : 1 + m * (k + 2)], coef(norms[k] * R)) for k in range(K)]
    return shared, drifts


def reward_pairs(
    reward: QuadraticReward, dim: int, n: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """As `bt_pairs` for any reward function: (chosen, rejected [n, dim], true r(chosen) − r(rejected) [n])."""
    z_a, z_b = torch.randn(n, dim, generator=gen), torch.randn(n, dim, generator=gen)
    diff_a = reward(z_a) - reward(z_b)
    a_wins = torch.rand(n, generator=gen) < torch.sigmoid(diff_a)
    chosen = torch.where(a_wins[:, None], z_a, z_b)
    rejected = torch.where(a_wins[:, None], z_b, z_a)
    return chosen, rejected, torch.where(a_wins, diff_a, -diff_a)


def make_latent_benchmark(
    K: int,
    dim: int,
    n_per_source: int | Sequence[int],
    drift: float | Sequence[float],
    seed: int,
    nonlinear: float = 0.5,
    n_calib: int | Sequence[int] = 500,
    n_test: int | Sequence[int] = 1000,
    reward_scale: float = 3.0,
    source_scale: float | Sequence[float] = 1.0,
    names: Sequence[str] | None = None,
) -> SyntheticBenchmark:
    """The latent-drift benchmark (module docstring): source k labels with c_k·(r* + r̃_k), r̃_k quadratic features of
    its own directions. `r_star` is r*'s linear part; `drifts` are zero (no drift has a linear part)."""
    if K <= 0 or dim <= 0 or reward_scale <= 0:
        raise ValueError(f"need K, dim, reward_scale > 0; got K={K}, dim={dim}, reward_scale={reward_scale}")
    names = tuple(names) if names is not None else tuple(f"source{k}" for k in range(K))
    scales = torch.tensor(_per_source(source_scale, K, "source_scale"))
    gen = torch.Generator().manual_seed(seed)
    shared, drifts = latent_rewards(K, dim, drift, reward_scale, nonlinear, gen)
    sizes = {"train": _sizes(n_per_source, K, "n_per_source"), "calib": _sizes(n_calib, K, "n_calib")}
    sizes["test"] = _sizes(n_test, K, "n_test")
    feats: dict[str, dict[str, Any]] = {s: {} for s in SPLITS}
    diffs: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    truth: dict[str, dict[str, torch.Tensor]] = {s: {} for s in SPLITS}
    for split in SPLITS:
        for k, name in enumerate(names):
            reward = (shared + drifts[k]).scaled(float(scales[k]))
            chosen, rejected, diffs[split][name] = reward_pairs(reward, dim, sizes[split][k], gen)
            feats[split][name] = PairFeatures(chosen=chosen, rejected=rejected, source=name)
            truth[split][name] = shared(chosen) - shared(rejected)
    probs = {s: {n: torch.sigmoid(d) for n, d in by.items()} for s, by in diffs.items()}
    shared_probs = {s: {n: torch.sigmoid(d) for n, d in by.items()} for s, by in truth.items()}
    zeros = torch.zeros(K, dim)
    return SyntheticBenchmark(
        feats["train"],
        feats["calib"],
        feats["test"],
        shared.w,
        zeros,
        diffs,
        probs,
        names,
        scales,
        truth,
        shared_probs,
        nonlinear,
    )


def from_spec(spec: Any, seed: int) -> SyntheticBenchmark:
    """The benchmark of a config `SyntheticSpec` (K, dim, n_train, n_calib, n_test, drift, reward_scale)."""
    return make_drift_benchmark(
        spec.K,
        spec.dim,
        spec.n_train,
        spec.drift,
        seed,
        n_calib=spec.n_calib,
        n_test=spec.n_test,
        reward_scale=spec.reward_scale,
    )


def true_calibration_error(bench: SyntheticBenchmark, split: str = "test", n_bins: int = 10) -> dict[str, float]:
    """ECE of each source's TRUE reward on `split`: ≈ 0 up to sampling noise, the floor a trained RM can reach.

    Uses `metrics.calibration_errors` (the paper's convention: both ordered pairs, equal-width (a, b] bins).
    """
    return {name: calibration_errors(bench.true_reward_diff(split, name), n_bins)["ece"] for name in bench.source_names}
