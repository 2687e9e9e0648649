"""Closed-form BT loss and reward-head gradient vs torch autograd."""

import math

import pytest
import torch

from morelib.weighting import losses


def test_bt_loss_hand_values():
    delta = torch.tensor([0.0, 2.0, -1.0])
    expected = (math.log(2) + math.log1p(math.exp(-2.0)) + math.log1p(math.exp(1.0))) / 3
    assert losses.bt_loss(delta).item() == pytest.approx(expected, rel=1e-6)


def test_bt_loss_is_stable_for_large_margins():
    delta = torch.tensor([1e4, -1e4], dtype=torch.float64)
    assert losses.bt_loss(delta).item() == pytest.approx(1e4 / 2)


@pytest.mark.parametrize("seed", range(5))
def test_head_grad_matches_autograd_with_bias(seed):
    gen = torch.Generator().manual_seed(seed)
    N, h = 7, 6
    z_w = torch.randn(N, h, generator=gen, dtype=torch.float64)
    z_l = torch.randn(N, h, generator=gen, dtype=torch.float64)
    w = torch.randn(h, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn((), generator=gen, dtype=torch.float64, requires_grad=True)
    loss = losses.bt_loss((z_w @ w + b) - (z_l @ w + b))
    loss.backward()
    closed = losses.head_grad(z_w - z_l, w.detach())
    torch.testing.assert_close(closed, w.grad, rtol=1e-10, atol=1e-12)


def test_source_losses_and_grads_stacks_per_source():
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(4, generator=gen)
    diffs = [torch.randn(n, 4, generator=gen) for n in (3, 5, 1)]
    L, G = losses.source_losses_and_grads(diffs, w)
    assert L.shape == (3,) and G.shape == (3, 4)
    for i, d in enumerate(diffs):
        wi = w.clone().requires_grad_(True)
        li = losses.bt_loss(d @ wi)
        li.backward()
        torch.testing.assert_close(L[i], li.detach())
        torch.testing.assert_close(G[i], wi.grad)


def test_bad_shapes_and_empty_inputs_raise():
    w = torch.zeros(3)
    with pytest.raises(ValueError, match="empty"):
        losses.bt_loss(torch.zeros(0))
    with pytest.raises(ValueError, match="empty"):
        losses.head_grad(torch.zeros(0, 3), w)
    with pytest.raises(ValueError, match="h = 4"):
        losses.head_grad(torch.zeros(2, 4), w)
    with pytest.raises(ValueError, match=r"diffs\[1\]"):
        losses.source_losses_and_grads([torch.zeros(2, 3), torch.zeros(2, 2)], w)
    with pytest.raises(ValueError, match="at least one source"):
        losses.source_losses_and_grads([], w)
