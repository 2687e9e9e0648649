"""Source weights λ: the one simplex check, and the baselines beside MORE: size-proportional λ, a coarse simplex grid
for a tuned fixed λ, and FAMO.

- `simplex_weights`: a given λ [K] checked (finite, ≥ 0, not all zero, one per source) and normalised or required to
  sum to 1: the check behind the `fixed` scheme of both tiers (`fixed_weights`) and the explorer's λ sliders.
- `size_proportional`: λ_i = n_i / Σ_j n_j (n_i distinct training pairs of source i): plain mixing of the pooled data.
- `simplex_grid`: the candidate λ of the `tuned` scheme (a fixed λ chosen on the calibration split; "a tuned weighted
  sum is enough": Xin et al., NeurIPS 2022; Kurin et al., 2022): every λ on the simplex with coordinates in steps of
  `step`, with the uniform λ (MultiTask) put first when the grid lacks it (e.g. K = 5 at step 0.25), or, when that
  grid has more than `max_points` points, the uniform λ plus max_points − 1 seeded Dirichlet(1) draws (K = 8).
- `Famo`: FAMO (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization", Algorithm 1) on the reward
  head: z = softmax(ξ); the update direction is Σ_i λ_i ∇L_i with λ_i = (z_i / L_i) / Σ_j (z_j / L_j) (the gradient
  of Σ_i z_i log L_i rescaled by c = (Σ_j z_j / L_j)⁻¹, so λ is on the simplex); after the step,
  δ_i = log L_i(θ_t) − log L_i(θ_{t+1}) on the same batch and ξ ← ξ − β·(J_z(ξ)ᵀ δ + γ·ξ), J_z the softmax Jacobian.
# NOTE(paper): the FAMO reference code steps ξ with Adam(lr=β, weight_decay=γ); we follow the paper's plain update.
torchjd (PyPI, needs only torch ≥ 2.3) has no FAMO, and its Nash-MTL needs cvxpy + ecos, so FAMO is implemented here.
Checked in tests/test_baselines.py: λ = n_i/Σn, the grid's points and size, and FAMO against Algorithm 1 written out
independently (explicit Jacobian) and against autograd of Σ z_i log L_i / c.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch

from morelib.core.errors import ConfigError

FAMO_EPS = 1e-8  # added to each loss before dividing or taking its log, as in the reference code
SUM_TOL = 1e-5  # how far from 1 a λ given as already normalised may sum (float rounding of typed weights)


def simplex_weights(
    lam: Sequence[float] | torch.Tensor, names: Sequence[str], normalise: bool = False, what: str = "λ"
) -> np.ndarray:
    """λ [K] (float64) checked to lie on the simplex; with normalise=True raw ≥ 0 weights are divided by their sum.

    Wrong length, negative, non-finite or all-zero weights raise ConfigError whose message starts with `what`.
    """
    x = np.asarray(lam, dtype=np.float64).ravel()
    if x.size != len(names):
        raise ConfigError(f"{what} has {x.size} weights for {len(names)} sources {list(names)}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ConfigError(f"{what} must be finite and ≥ 0, got {dict(zip(names, x.tolist()))}")
    if x.sum() <= 0:
        raise ConfigError(f"{what} is all zero for sources {list(names)}: give at least one source a weight above 0")
    if normalise:
        return x / x.sum()
    if abs(x.sum() - 1.0) > SUM_TOL:
        raise ConfigError(
            f"{what} must sum to 1 (got {x.sum():.6g} for {list(names)}); pass normalise=True to rescale it"
        )
    return x


def fixed_weights(lam: Sequence[float] | torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Given source weights normalised to sum 1 [K] (float32): scheme `fixed` of both tiers; bad λ raise ConfigError."""
    return torch.from_numpy(simplex_weights(lam, names, normalise=True, what="fixed λ")).float()


def size_proportional(sizes: Sequence[int]) -> torch.Tensor:
    """λ [K] = n_i / Σ n_j of per-source pair counts `sizes` (each ≥ 1)."""
    n = torch.as_tensor(list(sizes), dtype=torch.float64)
    if n.numel() == 0 or (n <= 0).any():
        raise ConfigError(f"size-proportional λ needs a positive pair count per source, got {list(sizes)}")
    return (n / n.sum()).float()


def grid_size(K: int, step: float) -> int:
    """Points of the full simplex grid of `step` (coordinates in multiples of step = 1/m), plus 1 when it lacks the
    uniform λ (m not a multiple of K)."""
    m = _divisions(step)
    return math.comb(m + K - 1, K - 1) + (m % K != 0)


def _divisions(step: float) -> int:
    """m = 1/step as an int, or ConfigError."""
    m = round(1.0 / step) if step > 0 else 0
    if m < 1 or abs(m * step - 1.0) > 1e-9:
        raise ConfigError(f"simplex grid step must be 1/m for a positive integer m (e.g. 0.25), got {step!r}")
    return m


def simplex_grid(K: int, step: float, max_points: int, seed: int = 0) -> torch.Tensor:
    """Candidate λ [P, K] on the simplex: the full grid of `step` (uniform λ first if the grid lacks it) if the grid
    has ≤ max_points points, else the uniform λ plus max_points − 1 seeded Dirichlet(1) draws."""
    if K < 1 or max_points < 1:
        raise ConfigError(f"simplex_grid needs K ≥ 1 and max_points ≥ 1, got K={K}, max_points={max_points}")
    m = _divisions(step)
    if grid_size(K, step) <= max_points:
        # stars and bars: K − 1 bar positions among m + K − 1 slots give the K counts summing to m
        points = []
        for bars in itertools.combinations(range(m + K - 1), K - 1):
            edges = (-1, *bars, m + K - 1)
            points.append([edges[i + 1] - edges[i] - 1 for i in range(K)])
        grid = torch.tensor(points, dtype=torch.float64).div(m)
        uniform = torch.full((1, K), 1.0 / K, dtype=torch.float64)
        has_uniform = bool(torch.isclose(grid, uniform).all(1).any())
        return (grid if has_uniform else torch.cat([uniform, grid])).float()
    rng = np.random.default_rng(seed)
    draws = rng.dirichlet(np.ones(K), size=max_points - 1)
    return torch.from_numpy(np.vstack([np.full((1, K), 1.0 / K), draws])).float()


class Famo:
    """FAMO weighting of K per-source losses (module docstring): `.weights(losses[K]) -> λ[K]`, then
    `.update(losses_before[K], losses_after[K])` after the parameter step. lr = β, decay = γ (paper: 0.025, 0.01)."""

    def __init__(self, K: int, lr: float = 0.025, decay: float = 0.01) -> None:
        if K < 1 or lr <= 0 or decay < 0:
            raise ConfigError(f"FAMO needs K ≥ 1, lr > 0 and decay ≥ 0, got K={K}, lr={lr}, decay={decay}")
        self.K, self.lr, self.decay = K, float(lr), float(decay)
        self.xi = torch.zeros(K, dtype=torch.float64)

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """λ [K] (float32, on the simplex) = (z_i / L_i) / Σ_j (z_j / L_j) with z = softmax(ξ)."""
        ratio = torch.softmax(self.xi, 0) / (losses.detach().double().cpu() + FAMO_EPS)
        return (ratio / ratio.sum()).float()

    def update(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """ξ ← ξ − β·(J_zᵀ δ + γ·ξ) with δ = log L(θ_t) − log L(θ_{t+1}) [K] measured on the same batch."""
        delta = torch.log(before.detach().double().cpu() + FAMO_EPS) - torch.log(
            after.detach().double().cpu() + FAMO_EPS
        )
        z = torch.softmax(self.xi, 0)
        grad = z * (delta - (z * delta).sum())  # J_zᵀ δ with J_z = diag(z) − z zᵀ (symmetric)
        self.xi = self.xi - self.lr * (grad + self.decay * self.xi)
