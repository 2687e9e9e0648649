"""Min-norm element of the convex hull of K gradients (paper §4, Eq. 9; Sener & Koltun 2018).

Solves  λ* = argmin_{λ ∈ Δ_K} ‖Σ_i λ_i g_i‖²  exactly on the K×K Gram matrix G = g gᵀ:
- K = 2: the closed form γ = clip((G22 − G12)/‖g1 − g2‖², 0, 1) (exact minimiser on the segment).
- K ≥ 3: first the KKT point of the full support; when all its weights are ≥ 0 it satisfies the KKT conditions
  and is the optimum. Otherwise, K ≤ 8: every support S is tried; on S the KKT system [[G_SS, 1], [1ᵀ, 0]] [λ_S; −μ] =
  [0; 1] is solved (all supports in one batched solve), each candidate is clipped to the simplex and the best objective
  wins. The optimum's smallest support is among the candidates, so this is exact up to rounding.
- K > 8: a primal active-set method (Nocedal & Wright, Alg. 16.3), finite and exact.
G + ε·I with ε = 1e-12·max_i ‖g_i‖² keeps every KKT system regular (objective moves by at most ε).
Ties (zero or identical gradients, several optimal λ with the same Σ λ_i g_i) are broken deterministically
towards the smallest ‖λ‖ among the optima: uniform weights when all gradients are equal. The tie step (an eigh of
the tight set's projected Gram) runs only when a Cholesky test finds the optimum not unique.
Inputs that over- or underflow G are rescaled by their largest entry, so any finite scale (1e-150 … 1e150) works.

# NOTE(ref): the reference code runs a Frank–Wolfe solver (and a two-task closed form clipped to
# [0.001, 0.999]); ours is exact and may put weight exactly 0 or 1 on a source.
Checked against scipy SLSQP and a KKT certificate in tests/test_solver.py.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch

_ENUMERATE_MAX_K = 8
_RIDGE = 1e-12
_TINY = 1e-250
_TIE_TOL = 1e-9
_DUST = 1e-10


def gram(grads: torch.Tensor | np.ndarray) -> np.ndarray:
    """Gram matrix G[K, K] = g gᵀ in float64 of gradients g[K, h], rescaled so max_i G_ii = 1 (0 if all zero)."""
    if isinstance(grads, torch.Tensor):
        grads = grads.detach().cpu().numpy()
    g = np.asarray(grads, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] == 0:
        raise ValueError(f"grads must have shape [K, h] with K >= 1, got {tuple(g.shape)}")
    G = scaled_gram(g @ g.T)  # numpy on CPU: ~3x cheaper than a torch float64 matmul + conversion at K×576
    if G is None:  # over- or underflow (or all zero): the Gram matrix of g / max|g|
        G = _gram_rescaled(g)
        G = scaled_gram(G) if np.any(G) else G
    return G


def _gram_rescaled(g: np.ndarray) -> np.ndarray:
    """Gram matrix of g / max|g| (slow path for overflow, underflow and non-finite checks)."""
    if not np.isfinite(g).all():
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(g))[0]})
        raise ValueError(f"grads has non-finite entries in source(s) {bad}")
    top = np.abs(g).max()
    g = g / top if top > 0 else g
    return g @ g.T


@functools.lru_cache(maxsize=16)
def _support_system(K: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All 2^K − 1 supports: masks [M, K], KKT template and G-mask [M, K+1, K+1], right-hand side [M, K+1, 1]."""
    supports = [s for r in range(1, K + 1) for s in itertools.combinations(range(K), r)]
    mask = np.zeros((len(supports), K), dtype=bool)
    for m, s in enumerate(supports):
        mask[m, list(s)] = True
    base = np.zeros((len(supports), K + 1, K + 1))
    base[:, :K, :K] = (~mask)[:, :, None] * np.eye(K)
    base[:, :K, K] = mask
    base[:, K, :K] = mask
    gmask = np.zeros_like(base)
    gmask[:, :K, :K] = mask[:, :, None] & mask[:, None, :]
    rhs = np.zeros((len(supports), K + 1, 1))
    rhs[:, K, 0] = 1.0
    return mask, base, gmask, rhs


def _objective(lam: np.ndarray, H: np.ndarray) -> np.ndarray:
    """λᵀ H λ for one λ[K] or each row of λ[M, K]."""
    return ((lam @ H) * lam).sum(axis=-1)


def _to_simplex(lam: np.ndarray) -> np.ndarray:
    """Clip rounding negatives of λ[K] to 0 and renormalise to sum 1."""
    lam = np.maximum(lam, 0.0)
    return lam / lam.sum()


def _solve_interior(H: np.ndarray) -> np.ndarray | None:
    """The KKT point on the full support if all its weights are ≥ 0 (then it is the optimum), else None."""
    K = H.shape[0]
    kkt = np.ones((K + 1, K + 1))
    kkt[:K, :K] = H
    kkt[K, K] = 0.0
    rhs = np.zeros(K + 1)
    rhs[K] = 1.0
    lam = np.linalg.solve(kkt, rhs)[:K]
    return lam / lam.sum() if lam.min() >= 0 else None


def _solve_enumerate(H: np.ndarray) -> np.ndarray:
    """Exact simplex QP min λᵀHλ for small K by solving the KKT system of every support (H positive definite)."""
    K = H.shape[0]
    mask, base, gmask, rhs = _support_system(K)
    padded = np.zeros((K + 1, K + 1))
    padded[:K, :K] = H
    sol = np.linalg.solve(base + gmask * padded, rhs)
    # Each KKT solution sums to 1, so clipping its negatives leaves a positive sum.
    cand = np.maximum(sol[:, :K, 0], 0.0) * mask
    cand /= cand.sum(axis=1, keepdims=True)
    return cand[int(np.argmin(_objective(cand, H)))]


def _solve_active_set(H: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Exact simplex QP min λᵀHλ by a primal active-set method (Nocedal & Wright Alg. 16.3; H positive definite)."""
    K = H.shape[0]
    start = int(np.argmin(np.diag(H)))
    lam = np.zeros(K)
    lam[start] = 1.0
    free = np.zeros(K, dtype=bool)
    free[start] = True
    tol = 1e-11
    for _ in range(max_iter or 50 * K):
        F = np.flatnonzero(free)
        n = len(F)
        kkt = np.zeros((n + 1, n + 1))
        kkt[:n, :n] = H[np.ix_(F, F)]
        kkt[:n, n] = kkt[n, :n] = 1.0
        p = np.linalg.solve(kkt, np.append(-(H @ lam)[F], 0.0))[:n]
        shrinking = p < 0
        ratios = np.where(shrinking, lam[F] / np.where(shrinking, -p, 1.0), np.inf)
        if ratios.min() < 1.0:
            block = F[int(np.argmin(ratios))]
            lam[F] += ratios.min() * p
            lam[block] = 0.0
            free[block] = False
            continue
        lam[F] += p
        grad = H @ lam
        bound = np.flatnonzero(~free)
        slack = grad[bound] - grad[F].mean()
        if len(bound) == 0 or slack.min() >= -tol:
            return _to_simplex(lam)
        free[bound[int(np.argmin(slack))]] = True
    raise RuntimeError(f"min-norm active-set solver did not converge in {max_iter or 50 * K} iterations (K={K})")


def _solve_two(G: np.ndarray) -> np.ndarray:
    """Exact K = 2 minimiser [γ, 1 − γ], γ = clip((G22 − G12) / (G11 − 2 G12 + G22), 0, 1); ties → [½, ½]."""
    curv = G[0, 0] - 2 * G[0, 1] + G[1, 1]  # ‖g1 − g2‖²
    if curv <= 0:
        return np.array([0.5, 0.5])
    gamma = min(1.0, max(0.0, (G[1, 1] - G[0, 1]) / curv))
    lam = np.array([gamma, 1.0 - gamma])
    if curv > 2 * _TIE_TOL:  # the segment's curvature separates the optimum from the midpoint: unique
        return lam
    mid = np.array([0.5, 0.5])
    best = _objective(lam, G)
    return mid if _objective(mid, G) <= best * (1 + _TIE_TOL) + _TIE_TOL**2 else lam


def _prefer_smallest_norm(G: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Among simplex points with the same objective as λ (ties), move towards the one with smallest ‖λ‖."""
    Gl = G @ lam
    mu = float(lam @ Gl)
    tight = np.flatnonzero(Gl <= mu + _TIE_TOL)
    n = len(tight)
    if n < 2:
        return lam
    # Optima differ by d with 1ᵀd = 0 and Σ d_i g_i = 0: the null space of M = Q G_TT Q + 11ᵀ/n, Q = I − 11ᵀ/n.
    Gt = G[np.ix_(tight, tight)] if n < len(lam) else G
    row = Gt.sum(axis=0) / n
    M = Gt - row[:, None] - row[None, :] + (row.sum() / n + 1.0 / n)
    try:  # M − tol·I positive definite ⇔ no eigenvalue ≤ tol ⇔ the optimum is unique: skip the eigh
        np.linalg.cholesky(M - _TIE_TOL * np.eye(n))
        return lam
    except np.linalg.LinAlgError:
        pass
    vals, vecs = np.linalg.eigh(M)
    flat = vecs[:, vals <= _TIE_TOL]
    if flat.shape[1] == 0:
        return lam
    step = np.zeros_like(lam)
    step[tight] = -flat @ (flat.T @ lam[tight])
    shrinking = step < 0
    t = min(1.0, float(np.min(lam[shrinking] / -step[shrinking], initial=np.inf)))
    moved = _to_simplex(lam + t * step)
    return moved if _objective(moved, G) <= mu * (1 + _TIE_TOL) + _TIE_TOL**2 else lam


def _snap_ridge_dust(G: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Zero the ~ε weights that the ridge leaves on sources outside the optimum's support, if the objective allows."""
    snapped = _to_simplex(np.where(lam < _DUST, 0.0, lam))
    keep = _objective(snapped, G) <= _objective(lam, G) * (1 + _TIE_TOL) + _TIE_TOL**2
    return snapped if keep else lam


def min_norm(grads: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Simplex weights λ[K] minimising ‖Σ_i λ_i g_i‖² for gradients g[K, h] (tensor input's dtype/device, else
    float64)."""
    out = torch.from_numpy(min_norm_gram(gram(grads)))
    if isinstance(grads, torch.Tensor) and grads.is_floating_point():
        return out.to(dtype=grads.dtype, device=grads.device)
    return out


def scaled_gram(G: np.ndarray) -> np.ndarray | None:
    """A float64 Gram matrix G[K, K] symmetrised and rescaled so max_i G_ii = 1; None if it is non-finite or out of
    range."""
    diag_max = float(G.diagonal().max())
    if not (_TINY < diag_max < np.inf) or not np.isfinite(G).all():
        return None
    return (G + G.T) / (2 * diag_max)


def min_norm_gram(G: np.ndarray) -> np.ndarray:
    """Simplex weights λ[K] (float64) minimising λᵀGλ for a Gram matrix G[K, K] = g gᵀ as returned by `gram`."""
    K = G.shape[0]
    if K == 1:
        lam = np.ones(1)
    elif not np.any(G):
        lam = np.full(K, 1.0 / K)
    elif K == 2:
        lam = _solve_two(G)
    else:
        H = G + np.diag(np.full(K, _RIDGE))
        lam = _solve_interior(H)
        if lam is None:
            lam = _solve_enumerate(H) if K <= _ENUMERATE_MAX_K else _solve_active_set(H)
        lam = _prefer_smallest_norm(G, lam)
        lam = _snap_ridge_dust(G, lam) if lam.min() < _DUST else lam
    return lam
