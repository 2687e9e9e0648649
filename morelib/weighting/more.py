"""MORE source weighting: momentum → normalise → min-norm λ, and the re-weighted loss Σ λ_i L_i (paper §4, Eqs. 8–9).

Conventions fixed by shared/paper/README.md and the reference code (`trainer.py`, `utils.gradient_normalizer`):
- momentum  g_i ← (1 − α)·g_i_old + α·g_i_new with α = 0.99 (the NEW gradient gets weight α);
- normalisation of the momentum gradients before the solver: `l2` g_i/‖g_i‖ (zero norm counts as 1),
  `loss` g_i / ((L_i + 1)/Σ_j (L_j + 1)), `loss+` g_i / (‖g_i‖·L_i), `none` unchanged; L_i = current batch loss.
# NOTE(ref): the reference seeds the momentum buffer with the head's initial weights; ours starts at the first gradient.
# NOTE(ref): for `loss+` a zero divisor ‖g_i‖·L_i counts as 1 (the reference would divide by zero).
# NOTE(ref): the reference multiplies the weighted loss by K; `more_loss` is Σ λ_i L_i, so uniform λ gives the mean.
The momentum is kept in float64 numpy on the CPU and normalised in Gram space: the solver only needs the Gram matrix
of g_i / d_i, which is D⁻¹ (g gᵀ) D⁻¹, so no normalised vectors are formed (over/underflow falls back to vectors).
Checked in tests/test_more.py: K = 1 gives single-source training, uniform λ gives MultiTask, state round-trips, and
the Gram-space λ equal the solver's λ on explicitly normalised vectors for every normalisation.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from morelib.core.config import NORMALIZATIONS, MoreConfig
from morelib.core.errors import ConfigError, TrainingError
from morelib.weighting.solver import gram, min_norm_gram, scaled_gram

DEFAULT = MoreConfig()  # params/default.yaml's `more` section


def _check_normalization(normalization: str) -> None:
    """Raise ConfigError naming an unknown MORE normalisation and the valid ones."""
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"unknown MORE normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}")


def _check_finite(grads: np.ndarray, losses: np.ndarray) -> None:
    """Raise TrainingError naming every source index whose gradient grads[K, h] or loss losses[K] is NaN/inf."""
    if np.isfinite(grads.sum() + losses.sum()):  # one cheap test per step; a NaN/inf makes the sum non-finite
        return
    bad_g = ~np.isfinite(grads).all(axis=1)
    bad_l = ~np.isfinite(losses)
    if bad_g.any() or bad_l.any():
        parts = [f"gradient of source {int(i)}" for i in np.flatnonzero(bad_g)]
        parts += [f"loss of source {int(i)}" for i in np.flatnonzero(bad_l)]
        raise TrainingError(f"non-finite (NaN/inf) value in {', '.join(parts)}")


def _divisors(norms: np.ndarray, losses: np.ndarray, normalization: str) -> np.ndarray:
    """Per-source divisors [K] of the paper's normalisations from gradient norms[K] and batch losses[K] (zero → 1)."""
    if normalization == "l2":
        divisor = norms
    elif normalization == "loss":
        divisor = (losses + 1) / (losses + 1).sum()
    elif normalization == "loss+":
        divisor = np.where(norms == 0, 1.0, norms) * losses
    else:
        divisor = np.ones_like(norms)
    return np.where(divisor == 0, 1.0, divisor)


def normalized_gram(momentum: np.ndarray, losses: np.ndarray, normalization: str) -> np.ndarray:
    """Gram matrix [K, K] of the normalised gradients g_i / d_i, formed as D⁻¹ (g gᵀ) D⁻¹ and rescaled (see `gram`)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # out-of-range scales take the slow path
        G = momentum @ momentum.T
        d = _divisors(np.sqrt(np.maximum(G.diagonal(), 0.0)), losses, normalization)
        scaled = scaled_gram(G / np.outer(d, d))
    if scaled is not None:
        return scaled
    vectors = normalize(torch.from_numpy(momentum), torch.from_numpy(losses), normalization)  # over/underflow
    return gram(vectors)


def normalize(grads: torch.Tensor, losses: torch.Tensor, normalization: str) -> torch.Tensor:
    """Scale each source gradient grads[K, h] by the paper's normalisation using the batch losses[K]."""
    _check_normalization(normalization)
    if normalization == "none":
        return grads
    norms = torch.linalg.vector_norm(grads, dim=1).to("cpu", torch.float64).numpy()
    divisor = _divisors(norms, losses.to("cpu", torch.float64).numpy(), normalization)
    return grads / torch.from_numpy(divisor).to(grads)[:, None]


class MoreWeighter:
    """Stateful MORE weighting for K sources: `.step(grads[K, h], losses[K]) -> λ[K]` on the simplex.

    K: number of preference sources; alpha: momentum weight α of the NEW gradient (paper: 0.99);
    normalization: one of "l2" (paper default), "loss", "loss+", "none".
    """

    def __init__(self, K: int, alpha: float = DEFAULT.alpha, normalization: str = DEFAULT.normalization) -> None:
        if isinstance(K, bool) or not isinstance(K, numbers.Integral) or K < 1:
            raise ConfigError(f"MoreWeighter K must be a positive int (number of sources), got {K!r}")
        if not 0.0 < alpha <= 1.0:
            raise ConfigError(f"MoreWeighter alpha must be in (0, 1] (weight of the new gradient), got {alpha!r}")
        _check_normalization(normalization)
        self.K, self.alpha, self.normalization = int(K), float(alpha), normalization
        self.momentum: np.ndarray | None = None  # float64 [K, h] on the CPU, where the solver runs
        self.steps = 0

    def step(self, grads: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Update momentum with this batch's head gradients grads[K, h] and losses[K]; return λ[K] (float32,
        detached)."""
        grads, losses = grads.detach(), losses.detach()
        if grads.ndim != 2 or grads.shape[0] != self.K or losses.shape != (self.K,):
            raise ValueError(
                f"expected grads [K={self.K}, h] and losses [{self.K}], "
                f"got {tuple(grads.shape)} and {tuple(losses.shape)}"
            )
        g = grads.to("cpu", torch.float64).numpy()  # K×h: the solver's float64 numpy is cheaper than torch ops
        L = losses.to("cpu", torch.float64).numpy()
        _check_finite(g, L)
        if self.momentum is None:
            self.momentum = g.copy()
        else:
            self.momentum = self.momentum + self.alpha * (g - self.momentum)  # (1 − α)·g_old + α·g_new
        self.steps += 1
        if self.K == 1:
            return torch.ones(1, dtype=torch.float32, device=grads.device)
        lam = min_norm_gram(normalized_gram(self.momentum, L, self.normalization))
        return torch.from_numpy(lam).to(device=grads.device, dtype=torch.float32)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: settings, momentum buffer [K, h] (or None) and step count."""
        momentum = None if self.momentum is None else torch.from_numpy(self.momentum.copy())
        return {
            "K": self.K,
            "alpha": self.alpha,
            "normalization": self.normalization,
            "momentum": momentum,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict()`; settings must match this weighter's."""
        for key in ("K", "alpha", "normalization"):
            if state.get(key) != getattr(self, key):
                raise ConfigError(
                    f"MoreWeighter state has {key}={state.get(key)!r}, this weighter has {getattr(self, key)!r}"
                )
        momentum = state.get("momentum")
        if momentum is not None and (momentum.ndim != 2 or momentum.shape[0] != self.K):
            raise ConfigError(f"MoreWeighter state momentum must have shape [{self.K}, h], got {tuple(momentum.shape)}")
        self.momentum = None if momentum is None else momentum.detach().to("cpu", torch.float64).numpy().copy()
        self.steps = int(state.get("steps", 0))


def more_loss(losses: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """MORE objective Σ_i λ_i L_i of per-source losses[K] with weights λ[K] (λ is detached: no gradient flows to it)."""
    if losses.shape != lam.shape or losses.ndim != 1:
        raise ValueError(f"losses and lam must both have shape [K], got {tuple(losses.shape)} and {tuple(lam.shape)}")
    return (lam.detach().to(losses) * losses).sum()
