"""MORE weighting: momentum convention, normalisations, K = 1 / uniform-λ invariants, state round-trip, errors."""

import numpy as np
import pytest
import torch

from morelib.core.errors import ConfigError, TrainingError
from morelib.weighting import losses, more, solver


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_first_step_uses_new_gradient_then_paper_momentum():
    w = more.MoreWeighter(2, alpha=0.9, normalization="none")
    g1, g2 = rand(2, 3, seed=1), rand(2, 3, seed=2)
    L = torch.ones(2, dtype=torch.float64)
    w.step(g1, L)
    np.testing.assert_allclose(w.momentum, g1.numpy())
    w.step(g2, L)
    np.testing.assert_allclose(w.momentum, (0.1 * g1 + 0.9 * g2).numpy())


@pytest.mark.parametrize("normalization", more.NORMALIZATIONS)
@pytest.mark.parametrize("seed", range(4))
def test_gram_space_step_equals_normalise_then_solve(normalization, seed):
    """λ from the weighter (normalised in Gram space) = the solver on explicitly normalised momentum vectors."""
    K, h = 5, 40
    gen = torch.Generator().manual_seed(seed)
    w = more.MoreWeighter(K, alpha=0.7, normalization=normalization)
    momentum = None
    for step in range(3):
        g = torch.randn(K, h, generator=gen, dtype=torch.float64) * torch.rand(K, 1, generator=gen, dtype=torch.float64)
        if seed == 3:
            g[1] = 0.0  # a zero gradient exercises the zero-divisor rules
        L = torch.rand(K, generator=gen, dtype=torch.float64) * (step > 0 or seed != 2)  # seed 2 starts with L = 0
        lam = w.step(g.float(), L.float())
        g32, L32 = g.float().double(), L.float().double()
        momentum = g32.clone() if momentum is None else momentum + 0.7 * (g32 - momentum)
        expected = solver.min_norm(more.normalize(momentum, L32, normalization))
        torch.testing.assert_close(lam, expected.float(), atol=2e-6, rtol=0)


def test_huge_and_tiny_gradients_fall_back_to_the_rescaled_path():
    """Gradients whose Gram matrix over- or underflows float64 still get the exact min-norm weights."""
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    for scale in (1e170, 1e-170):
        lam = more.MoreWeighter(3, normalization="none").step(g * scale, torch.ones(3, dtype=torch.float64))
        torch.testing.assert_close(lam, solver.min_norm(g).float(), atol=1e-6, rtol=0)


def test_normalizations_match_paper_definitions():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    L = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(
        more.normalize(g, L, "l2"), torch.tensor([[0.6, 0.8], [0, 0], [1, 0]], dtype=torch.float64)
    )
    share = (L + 1) / (L + 1).sum()
    torch.testing.assert_close(more.normalize(g, L, "loss"), g / share[:, None])
    torch.testing.assert_close(
        more.normalize(g, L, "loss+"), torch.tensor([[0.6 / 0.5, 0.8 / 0.5], [0, 0], [0.5, 0]], dtype=torch.float64)
    )
    assert more.normalize(g, L, "none") is g


def test_l2_weights_are_min_norm_of_unit_gradients():
    g, L = rand(3, 5), torch.ones(3, dtype=torch.float64)
    lam = more.MoreWeighter(3, normalization="l2").step(g, L)
    expected = solver.min_norm(g / g.norm(dim=1, keepdim=True)).float()
    torch.testing.assert_close(lam, expected)
    assert lam.dtype == torch.float32 and float(lam.sum()) == pytest.approx(1, abs=1e-6)


def test_k1_returns_one_without_solver(monkeypatch):
    monkeypatch.setattr(more, "min_norm_gram", lambda g: pytest.fail("solver called for K = 1"))
    lam = more.MoreWeighter(1).step(rand(1, 4), torch.ones(1, dtype=torch.float64))
    assert lam.tolist() == [1.0]


def test_k1_more_loss_equals_single_source_loss():
    d, w = rand(6, 4, seed=3), rand(4, seed=4)
    L, G = losses.source_losses_and_grads([d], w)
    lam = more.MoreWeighter(1).step(G, L)
    torch.testing.assert_close(more.more_loss(L, lam.double()), losses.bt_loss(d @ w))


def test_uniform_lambda_is_multitask_mean_on_balanced_batch():
    w = rand(4, seed=5)
    diffs = [rand(8, 4, seed=10 + i) for i in range(3)]
    L, _ = losses.source_losses_and_grads(diffs, w)
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    torch.testing.assert_close(more.more_loss(L, uniform), losses.bt_loss(torch.cat(diffs) @ w))


def test_more_loss_detaches_lambda_and_backpropagates_to_losses():
    L = torch.tensor([1.0, 2.0], requires_grad=True)
    lam = torch.tensor([0.25, 0.75], requires_grad=True)
    out = more.more_loss(L, lam)
    out.backward()
    assert out.item() == pytest.approx(1.75)
    torch.testing.assert_close(L.grad, torch.tensor([0.25, 0.75]))
    assert lam.grad is None


def test_state_dict_resume_equals_uninterrupted():
    grads = [rand(3, 6, seed=s) for s in range(6)]
    L = torch.tensor([0.7, 0.5, 0.9], dtype=torch.float64)
    full = more.MoreWeighter(3, alpha=0.6)
    lams_full = [full.step(g, L) for g in grads]
    first = more.MoreWeighter(3, alpha=0.6)
    for g in grads[:3]:
        first.step(g, L)
    resumed = more.MoreWeighter(3, alpha=0.6)
    resumed.load_state_dict(first.state_dict())
    lams_resumed = [resumed.step(g, L) for g in grads[3:]]
    for a, b in zip(lams_full[3:], lams_resumed):
        torch.testing.assert_close(a, b)
    assert resumed.steps == 6


def test_load_state_dict_rejects_mismatched_settings():
    state = more.MoreWeighter(3, normalization="loss").state_dict()
    with pytest.raises(ConfigError, match="normalization"):
        more.MoreWeighter(3).load_state_dict(state)


def test_unknown_normalization_names_it_and_options():
    with pytest.raises(ConfigError, match=r"'l1'.*l2, loss, loss\+, none"):
        more.MoreWeighter(2, normalization="l1")


@pytest.mark.parametrize("alpha", [0.0, 1.5])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ConfigError, match="alpha"):
        more.MoreWeighter(2, alpha=alpha)


def test_non_finite_inputs_name_the_source():
    w = more.MoreWeighter(3)
    g = rand(3, 4)
    g[2, 1] = float("nan")
    with pytest.raises(TrainingError, match="gradient of source 2"):
        w.step(g, torch.ones(3, dtype=torch.float64))
    with pytest.raises(TrainingError, match="loss of source 0"):
        w.step(rand(3, 4), torch.tensor([float("inf"), 1.0, 1.0], dtype=torch.float64))
    assert w.momentum is None


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="K=3"):
        more.MoreWeighter(3).step(rand(2, 4), torch.ones(2))


def test_conflicting_sources_get_balanced_weights():
    """Two opposite unit gradients: the min-norm combination cancels them with equal weight."""
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    lam = more.MoreWeighter(2).step(g, torch.ones(2, dtype=torch.float64))
    np.testing.assert_allclose(lam.numpy(), [0.5, 0.5], atol=1e-6)
