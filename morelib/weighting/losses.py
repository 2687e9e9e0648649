"""Bradley–Terry ranking loss and its closed-form reward-head gradient (paper §4, Eqs. 2 and 9).

The reward of a response is r = w·z + b with z the pooled backbone feature (the reward head's input).
For a pair, Δ = r_w − r_l = w·(z_w − z_l) (the bias cancels), and L = mean softplus(−Δ) = mean −log σ(Δ).
Its gradient w.r.t. the head weight is ∂L/∂w = −mean σ(−Δ)·(z_w − z_l), which MORE uses per source
instead of back-propagating through the backbone (paper §4: "we only utilize gradients on the reward head").
`batch_grads` computes it for K sources' batches at once (the feature tier's MORE step); `head_grad` is one source's;
`source_head_grads` splits one mixed batch by source (the MORE step of fine-tuning and of the blocks tier).
Checked against torch autograd in tests/test_losses.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_diff_features(diff_features: torch.Tensor, w: torch.Tensor, name: str = "diff_features") -> None:
    """Raise ValueError unless `diff_features` is a non-empty [N, h] tensor matching w[h]."""
    if diff_features.ndim != 2:
        raise ValueError(f"{name} must have shape [N, h], got {tuple(diff_features.shape)}")
    if diff_features.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0 pairs): the loss of no pairs is undefined")
    if w.ndim != 1 or w.shape[0] != diff_features.shape[1]:
        raise ValueError(
            f"head weight w has shape {tuple(w.shape)} but {name} has h = {diff_features.shape[1]} features"
        )


def bt_loss(reward_diff: torch.Tensor) -> torch.Tensor:
    """Mean Bradley–Terry loss −log σ(Δ) = softplus(−Δ) of reward differences Δ[N]; returns a 0-d tensor."""
    if reward_diff.ndim != 1:
        raise ValueError(f"reward_diff must have shape [N], got {tuple(reward_diff.shape)}")
    if reward_diff.shape[0] == 0:
        raise ValueError("reward_diff is empty (N = 0 pairs): the loss of no pairs is undefined")
    return F.softplus(-reward_diff).mean()


def batch_grads(X: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward differences Δ [K, B] and closed-form per-source BT head gradients [K, h] of diff features X[K, B, h]."""
    delta = X @ w
    grads = (torch.sigmoid(-delta).unsqueeze(1) @ X).squeeze(1).div_(-X.shape[1])
    return delta, grads


def head_grad(diff_features: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Closed-form ∂bt_loss/∂w [h] for r = w·z + b, given z_w − z_l as diff_features[N, h]."""
    _check_diff_features(diff_features, w)
    with torch.no_grad():
        return batch_grads(diff_features.unsqueeze(0), w)[1][0]


def source_head_grads(diff_features: torch.Tensor, source_ids: torch.Tensor, w: torch.Tensor, K: int) -> torch.Tensor:
    """Per-source closed-form head gradients [K, h] of one mixed batch: diff_features[N, h] = z_w − z_l, source_ids[N]
    in 0..K−1 (MORE's step in the tiers that train the backbone: fine-tuning and the top blocks)."""
    return torch.stack([head_grad(diff_features[source_ids == k], w) for k in range(K)])


def source_losses_and_grads(diffs: Sequence[torch.Tensor], w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-source BT losses [K] and head gradients [K, h] from each source's diff features [N_i, h]."""
    if len(diffs) == 0:
        raise ValueError("diffs is empty: need the diff features of at least one source")
    losses, grads = [], []
    with torch.no_grad():
        for i, d in enumerate(diffs):
            _check_diff_features(d, w, name=f"diffs[{i}]")
            losses.append(bt_loss(d @ w))
            grads.append(head_grad(d, w))
    return torch.stack(losses), torch.stack(grads)
