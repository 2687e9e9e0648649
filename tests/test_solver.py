"""Min-norm simplex solver vs an independent QP solve (scipy SLSQP), a KKT certificate, and edge cases."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from morelib.weighting import solver


def objective(lam, g):
    """‖Σ λ_i g_i‖² in float64, computed directly on the gradients (not on the Gram matrix)."""
    return float(np.sum((np.asarray(lam, dtype=np.float64) @ np.asarray(g, dtype=np.float64)) ** 2))


def slsqp_min(g):
    """Best objective of SLSQP (tight tolerance) from the uniform point and every vertex: an independent QP solve."""
    g = np.asarray(g, dtype=np.float64)
    g = g / max(np.abs(g).max(), 1e-300)
    G = g @ g.T
    K = len(G)
    cons = [{"type": "eq", "fun": lambda x: x.sum() - 1, "jac": lambda x: np.ones(K)}]
    best = np.inf
    for x0 in [np.full(K, 1 / K), *np.eye(K)]:
        res = minimize(
            lambda x: x @ G @ x,
            x0,
            jac=lambda x: 2 * G @ x,
            bounds=[(0, 1)] * K,
            constraints=cons,
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 1000},
        )
        x = np.clip(res.x, 0, None)
        best = min(best, objective(x / x.sum(), g))
    return best


def assert_optimal(g, lam=None):
    """λ is on the simplex and its objective is within 1e-4 relative (+1e-10·max‖g_i‖² absolute) of SLSQP's."""
    g = np.asarray(g, dtype=np.float64)
    lam = solver.min_norm(g).numpy() if lam is None else lam
    assert lam.shape == (len(g),)
    assert lam.min() >= 0 and lam.sum() == pytest.approx(1, abs=1e-12)
    top = np.abs(g).max()
    gs = g / top if top > 0 else g
    scale = float(np.max(np.sum(gs**2, axis=1)))
    assert objective(lam, gs) <= slsqp_min(gs) * (1 + 1e-4) + 1e-10 * scale
    return lam


def kkt_gap(lam, g):
    """Largest KKT violation: (Gλ)_j ≥ λᵀGλ for all j (equality on the support), relative to max G_ii."""
    g = np.asarray(g, dtype=np.float64)
    g = g / np.abs(g).max()
    G = g @ g.T
    Gl = G @ lam
    mu = lam @ Gl
    return max(float(np.max(mu - Gl)), float(np.max(np.abs(Gl - mu)[lam > 1e-9]))) / np.max(np.diag(G))


RNG_CASES = [
    (K, h, kind, seed)
    for seed in range(4)
    for K in (2, 3, 5, 8, 12)
    for h in (3, 64)
    for kind in ("gauss", "shared", "low_rank", "scaled")
]


@pytest.mark.parametrize("K,h,kind,seed", RNG_CASES)
def test_random_inputs_match_slsqp_and_satisfy_kkt(K, h, kind, seed):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(K, h))
    if kind == "shared":
        g += 3 * rng.normal(size=(1, h))
    elif kind == "low_rank":
        g = rng.normal(size=(K, 2)) @ rng.normal(size=(2, h))
    elif kind == "scaled":
        g *= 10.0 ** rng.uniform(-3, 3, size=(K, 1))
    lam = assert_optimal(g)
    if kind != "low_rank":
        assert kkt_gap(lam, g) < 1e-8


def test_k1_returns_one():
    lam = solver.min_norm(torch.randn(1, 10))
    assert lam.tolist() == [1.0]


@pytest.mark.parametrize("K", [2, 3, 5, 9])
def test_zero_gradients_give_uniform(K):
    np.testing.assert_allclose(solver.min_norm(np.zeros((K, 4))).numpy(), np.full(K, 1 / K))


@pytest.mark.parametrize("K", [2, 4, 10])
def test_identical_gradients_give_uniform(K):
    g = np.tile(np.random.default_rng(0).normal(size=7), (K, 1))
    np.testing.assert_allclose(solver.min_norm(g).numpy(), np.full(K, 1 / K), atol=1e-6)


def test_opposite_gradients_cancel():
    g = np.array([[1.0, 2.0, -1.0], [-2.0, -4.0, 2.0]])
    lam = solver.min_norm(g).numpy()
    np.testing.assert_allclose(lam, [2 / 3, 1 / 3], atol=1e-9)
    assert objective(lam, g) < 1e-18


def test_collinear_same_direction_picks_shortest():
    g = np.array([[2.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(solver.min_norm(g).numpy(), [0, 1, 0], atol=1e-9)


def test_zero_row_among_nonzero_takes_all_weight():
    g = np.array([[1.0, 1.0], [0.0, 0.0], [-1.0, 3.0]])
    lam = assert_optimal(g)
    assert lam[1] == pytest.approx(1.0, abs=1e-9)


def test_two_task_closed_form():
    """Sener & Koltun's two-task solution γ = clip((g2−g1)·g2 / ‖g1−g2‖², 0, 1) (unclipped to [0.001, 0.999])."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        g1, g2 = rng.normal(size=(2, 5)) * rng.uniform(0.1, 3, size=(2, 1))
        gamma = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0, 1)
        np.testing.assert_allclose(solver.min_norm(np.stack([g1, g2])).numpy(), [gamma, 1 - gamma], atol=1e-8)


@pytest.mark.parametrize("scale", [1e-150, 1e-30, 1e-8, 1e8, 1e30, 1e150])
def test_scale_invariance_at_extreme_scales(scale):
    g = np.random.default_rng(3).normal(size=(4, 6))
    base = solver.min_norm(g).numpy()
    np.testing.assert_allclose(solver.min_norm(g * scale).numpy(), base, atol=1e-9)


def test_float32_tensor_in_same_dtype_out():
    g = torch.randn(3, 16, dtype=torch.float32)
    lam = solver.min_norm(g)
    assert lam.dtype == torch.float32 and lam.shape == (3,)
    lam64 = lam.double().numpy()
    assert lam64.sum() == pytest.approx(1, abs=1e-6)
    assert_optimal(g.double().numpy(), lam64 / lam64.sum())


def test_active_set_and_enumeration_agree():
    rng = np.random.default_rng(7)
    for K in range(2, 9):
        for _ in range(10):
            g = rng.normal(size=(K, 4)) + rng.normal(size=(1, 4))
            H = solver.gram(g) + 1e-12 * np.eye(K)
            a, e = solver._solve_active_set(H), solver._solve_enumerate(H)
            assert abs(a @ H @ a - e @ H @ e) <= 1e-12 + 1e-9 * (e @ H @ e)


def test_large_k_uses_active_set_and_is_optimal():
    g = np.random.default_rng(11).normal(size=(30, 10))
    assert_optimal(g)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[K, h\]"):
        solver.min_norm(np.zeros(3))
    with pytest.raises(ValueError, match=r"source\(s\) \[1\]"):
        solver.min_norm(np.array([[1.0, 2.0], [np.nan, 0.0]]))


def test_fast_paths_agree_with_enumeration():
    """K = 2 closed form and the full-support (interior) shortcut give the enumeration's optimum."""
    rng = np.random.default_rng(5)
    for K in (2, 3, 5, 8):
        for _ in range(20):
            g = rng.normal(size=(K, 6)) + rng.normal(size=(1, 6)) * rng.uniform(0, 3)
            G = solver.gram(g)
            H = G + 1e-12 * np.eye(K)
            lam, ref = solver.min_norm(g).numpy(), solver._solve_enumerate(H)
            assert lam @ G @ lam <= ref @ G @ ref * (1 + 1e-9) + 1e-15


def test_duplicated_source_splits_weight_evenly():
    """A non-unique optimum (two identical gradients) still takes the tie-break: equal weight on the duplicates."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 5))
    lam = solver.min_norm(np.stack([a, a, b])).numpy()
    assert lam[0] == pytest.approx(lam[1], abs=1e-9)
    assert_optimal(np.stack([a, a, b]), lam)
