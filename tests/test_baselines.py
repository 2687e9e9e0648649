"""Tests of morelib.weighting.baselines and the head schemes built on it: size-proportional λ, the simplex grid, FAMO
against its paper's Algorithm 1 written out independently, and `tuned` picking the grid point with the best calibration
loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from morelib.backbone.features import PairFeatures
from morelib.core.config import load_config
from morelib.core.errors import ConfigError
from morelib.synthetic.synthetic import bt_pairs
from morelib.train import reward_head as T
from morelib.weighting import baselines


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", {"head.epochs": 2, "train.batch_per_source": 8})


def test_size_proportional_is_n_over_total():
    lam = baselines.size_proportional([50, 150, 300])
    assert torch.allclose(lam, torch.tensor([0.1, 0.3, 0.6]))
    with pytest.raises(ConfigError, match="positive pair count"):
        baselines.size_proportional([10, 0])


def test_simplex_grid_points_sizes_and_uniform():
    grid = baselines.simplex_grid(3, 0.5, max_points=10)
    expected = {(1, 0, 0), (0, 1, 0), (0, 0, 1), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)}
    # m = 2 is not a multiple of K = 3: the uniform λ is added in front
    assert torch.allclose(grid[0], torch.full((3,), 1 / 3))
    assert {tuple(round(v, 6) for v in row) for row in grid[1:].tolist()} == expected
    assert baselines.grid_size(3, 0.5) == len(grid) == 7
    full = baselines.simplex_grid(4, 0.25, max_points=35)
    assert len(full) == math.comb(7, 3) == baselines.grid_size(4, 0.25)  # uniform (¼, ¼, ¼, ¼) is on this grid
    assert torch.allclose(full.sum(1), torch.ones(len(full))) and (full >= 0).all()
    sampled = baselines.simplex_grid(8, 0.5, max_points=12, seed=3)
    assert sampled.shape == (12, 8) and torch.allclose(sampled[0], torch.full((8,), 1 / 8))
    assert torch.allclose(sampled.sum(1), torch.ones(12), atol=1e-6)
    assert torch.equal(sampled, baselines.simplex_grid(8, 0.5, max_points=12, seed=3))
    with pytest.raises(ConfigError, match="1/m"):
        baselines.simplex_grid(3, 0.3, 10)


def _paper_famo(losses_before, losses_after, beta, gamma):
    """FAMO, Algorithm 1 of Liu et al. 2023, written out: λ_t = c_t z_t/ℓ_t, then ξ ← ξ − β(J_zᵀ δ + γ ξ)."""
    xi = np.zeros(losses_before.shape[1])
    lams, xis = [], []
    for before, after in zip(losses_before, losses_after):
        z = np.exp(xi) / np.exp(xi).sum()
        c = 1.0 / np.sum(z / before)
        lams.append(c * z / before)
        delta = np.log(before) - np.log(after)
        jac = np.diag(z) - np.outer(z, z)  # ∂z/∂ξ of the softmax
        xi = xi - beta * (jac.T @ delta + gamma * xi)
        xis.append(xi.copy())
    return np.array(lams), np.array(xis)


def test_famo_matches_the_papers_update_rule():
    rng = np.random.default_rng(0)
    before = rng.uniform(0.2, 1.5, size=(40, 4))
    after = before * rng.uniform(0.6, 1.05, size=(40, 4))
    famo = baselines.Famo(4, lr=0.3, decay=0.05)
    lams, xis = [], []
    for b, a in zip(before, after):
        lams.append(famo.weights(torch.tensor(b)).double().numpy())
        famo.update(torch.tensor(b), torch.tensor(a))
        xis.append(famo.xi.numpy().copy())
    want_lam, want_xi = _paper_famo(before, after, 0.3, 0.05)
    np.testing.assert_allclose(np.array(lams), want_lam, rtol=1e-6)
    np.testing.assert_allclose(np.array(xis), want_xi, rtol=1e-5, atol=1e-7)  # ours adds ε = 1e-8 to each loss
    assert np.abs(want_xi[-1]).max() > 0.01  # the logits really moved


def test_famo_direction_is_the_gradient_of_the_weighted_log_losses():
    """Σ λ_i ∇ℓ_i = ∇_θ Σ_i z_i log ℓ_i / c (the reference code's get_weighted_loss), by autograd."""
    torch.manual_seed(0)
    a, theta = torch.randn(3, 5, dtype=torch.float64), torch.randn(5, dtype=torch.float64, requires_grad=True)
    famo = baselines.Famo(3)
    famo.xi = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    losses = F.softplus(a @ theta)
    grads = torch.stack([torch.autograd.grad(losses[i], theta, retain_graph=True)[0] for i in range(3)])
    z = torch.softmax(famo.xi, 0)
    c = 1 / (z / losses.detach()).sum()
    (want,) = torch.autograd.grad((z * losses.log()).sum() * c, theta)
    got = famo.weights(losses.detach()).double() @ grads
    assert torch.allclose(got, want, atol=1e-6)


def _source(w: torch.Tensor, n: int, seed: int, name: str) -> PairFeatures:
    chosen, rejected, _ = bt_pairs(w, n, torch.Generator().manual_seed(seed))
    return PairFeatures(chosen=chosen, rejected=rejected, source=name)


def test_famo_head_scheme_starts_at_inverse_loss_weights(cfg):
    w = torch.ones(6)
    train = {"a": _source(w, 80, 0, "a"), "b": _source(-0.2 * w, 80, 1, "b")}
    head = T.train_head(train, "famo", cfg.train, cfg.head, seed=0)
    lam, loss = head.history["lam"], head.history["loss"]
    first = (1 / loss[0]) / (1 / loss[0]).sum()  # ξ = 0: z uniform, so λ_0 ∝ 1/ℓ_i
    assert torch.allclose(lam[0], first, atol=1e-5) and torch.allclose(lam.sum(1), torch.ones(len(lam)), atol=1e-5)
    assert head.meta["scheme"] == "famo" and head.meta["famo_lr"] == cfg.train.famo_lr


def test_sizeprop_head_trains_with_n_over_total(cfg):
    w = torch.ones(6)
    train = {"a": _source(w, 50, 0, "a"), "b": _source(w, 150, 1, "b")}
    head = T.train_head(train, "sizeprop", cfg.train, cfg.head, seed=0)
    assert torch.allclose(head.history["lam"], torch.tensor([0.25, 0.75]).expand_as(head.history["lam"]))
    fixed = T.train_head(train, "fixed", cfg.train, cfg.head, seed=0, lam=[1, 3])
    assert torch.equal(head.w, fixed.w) and head.meta["scheme"] == "sizeprop" and head.meta["lam"] == [0.25, 0.75]
    # capped to equal training sizes, λ follows each source's AVAILABLE pairs (issue 24), not the capped counts
    capped = T.train_head(train, "sizeprop", cfg.train, cfg.head, seed=0, sizes={"a": 4355, "b": 1636})
    assert capped.meta["lam"] == pytest.approx([4355 / 5991, 1636 / 5991])
    with pytest.raises(ConfigError, match="sizeprop sizes must name the training sources"):
        T.train_head(train, "sizeprop", cfg.train, cfg.head, seed=0, sizes={"a": 1})


def test_tuned_picks_the_grid_point_with_the_best_calibration_loss():
    """Source b's training labels follow −r*; both calibration sets follow r*: λ = (1, 0) must win."""
    r_star = torch.linspace(-1, 1, 6) * 2
    train = {"a": _source(r_star, 200, 0, "a"), "b": _source(-r_star, 200, 1, "b")}
    calib = {"a": _source(r_star, 100, 2, "a"), "b": _source(r_star, 100, 3, "b")}
    cfg = load_config("tiny", {"head.epochs": 2, "train.batch_per_source": 8, "train.tuned_step": 0.5})
    head = T.train_head(train, "tuned", cfg.train, cfg.head, seed=0, calib=calib)
    direct = []
    for lam in head.meta["grid"]:
        fixed = T.train_head(train, "fixed", cfg.train, cfg.head, seed=0, lam=lam)
        direct.append(np.mean([F.softplus(-fixed.reward_diff(pf)).mean().item() for pf in calib.values()]))
    np.testing.assert_allclose(head.meta["calib_log_loss"], direct, rtol=1e-6)
    assert head.meta["lam"] == head.meta["grid"][int(np.argmin(direct))] == [1.0, 0.0]
    assert torch.equal(head.w, T.train_head(train, "fixed", cfg.train, cfg.head, seed=0, lam=[1.0, 0.0]).w)
    with pytest.raises(ConfigError, match="calibration features"):
        T.train_head(train, "tuned", cfg.train, cfg.head, seed=0)
