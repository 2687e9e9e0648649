"""Tests of morelib.data.sampling: balanced plans cover every pair and keep sources independent, seeded subsamples,
length grouping keeps balance and each window's pairs while cutting padding. (Pooled plans: tests/test_pooled.py;
plan_for from a config: tests/test_finetune.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morelib.core.errors import ConfigError
from morelib.data import sampling


def test_batch_plan_is_balanced_covering_and_independent_of_other_sources():
    plan = sampling.batch_plan({"a": 10, "b": 37}, B=4, epochs=2, n_common=None, seed=3)
    assert plan.shape == (2 * (37 // 4), 2, 4)
    per_epoch = 37 // 4
    b_epoch = plan[:per_epoch, 1].flatten()
    assert len(set(b_epoch.tolist())) == per_epoch * 4  # no pair twice within an epoch of the largest source
    a_counts = torch.bincount(plan[:, 0].flatten(), minlength=10)
    assert a_counts.min() >= 1  # the small source is cycled, every pair used
    alone = sampling.batch_plan({"b": 37}, B=4, epochs=2, n_common=37, seed=3)
    assert torch.equal(alone[:, 0], plan[:, 1])


def test_resample_indices_lays_whole_copies_end_to_end():
    idx = sampling.resample_indices(7, 40, torch.Generator().manual_seed(0))
    counts = torch.bincount(idx, minlength=7)
    assert idx.numel() == 40 and set(counts.tolist()) <= {5, 6}  # ⌊40/7⌋ or ⌈40/7⌉, no pair left out
    assert sorted(idx[:7].tolist()) == list(range(7))


def test_plans_reject_a_batch_larger_than_the_resampled_source():
    for make in (sampling.batch_plan, sampling.pooled_plan):
        with pytest.raises(ConfigError, match="'train.batch_per_source' = 8 exceeds the 5 pairs"):
            make({"a": 5}, 8, 1, None, 0)


def test_seed_indices_subsample_by_seed_and_source():
    a = sampling.seed_indices(400, 0.8, 0, "helpful", "subsample")
    assert a.numel() == 320 and len(set(a.tolist())) == 320 and bool((a[1:] > a[:-1]).all())
    assert torch.equal(a, sampling.seed_indices(400, 0.8, 0, "helpful", "subsample"))  # same pairs for every scheme
    assert not torch.equal(a, sampling.seed_indices(400, 0.8, 1, "helpful", "subsample"))
    assert not torch.equal(a, sampling.seed_indices(400, 0.8, 0, "harmless", "subsample"))
    assert torch.equal(sampling.seed_indices(7, 1.0, 3, "x", "subsample"), torch.arange(7))


def test_seed_indices_bootstrap_draws_with_replacement_independently_per_seed():
    draws = [sampling.seed_indices(400, 1.0, s, "helpful") for s in range(20)]
    assert all(d.numel() == 400 and bool((d[1:] >= d[:-1]).all()) for d in draws)
    unique = np.mean([len(set(d.tolist())) / 400 for d in draws])
    assert unique == pytest.approx(1 - (1 - 1 / 400) ** 400, abs=0.02)  # ≈ 63% distinct pairs, as a bootstrap has
    # two seeds share a pair with probability ≈ 0.632² (independent draws), not most of them as at subsample 0.8
    shared = np.mean([len(set(draws[i].tolist()) & set(draws[i + 1].tolist())) / 400 for i in range(19)])
    assert shared == pytest.approx(0.632**2, abs=0.03)
    assert torch.equal(draws[3], sampling.seed_indices(400, 1.0, 3, "helpful"))


def test_seed_indices_halves_split_one_shuffle_per_pair_of_seeds():
    h0, h1, h2 = (sampling.seed_indices(11, 1.0, s, "x", "halves") for s in (0, 1, 2))
    assert (h0.numel(), h1.numel()) == (5, 6) and sorted(h0.tolist() + h1.tolist()) == list(range(11))
    assert not torch.equal(h0, h2)
    with pytest.raises(ConfigError, match="seed_resample"):
        sampling.seed_indices(11, 1.0, 0, "x", "jackknife")


def _padded(plan, lengths):
    """Padded tokens per step under dynamic padding: 2·K·B rows × the longest pair of the batch."""
    return sum(2 * b.numel() * max(int(lengths[k][b[k]].max()) for k in range(b.shape[0])) for b in plan)


def test_length_grouping_keeps_balance_and_pairs_and_cuts_padding():
    gen = torch.Generator().manual_seed(3)
    sizes, B, S = [300, 500], 4, 100  # 100 steps: one full 64-batch window and a partial one
    lengths = [(torch.rand(n, generator=gen) ** 4 * 500).long() + 5 for n in sizes]  # skewed: most short, few long
    plan = torch.stack([torch.randint(0, n, (S, B), generator=gen) for n in sizes], dim=1)
    grouped = sampling.length_grouped(plan, lengths, seed=0)
    assert grouped.shape == plan.shape and torch.equal(grouped, sampling.length_grouped(plan, lengths, seed=0))
    for start, stop in ((0, 64), (64, 100)):  # each window holds the same multiset of pairs per source
        for k in range(2):
            assert torch.equal(
                plan[start:stop, k].reshape(-1).sort().values, grouped[start:stop, k].reshape(-1).sort().values
            )
    assert _padded(grouped, lengths) < 0.7 * _padded(plan, lengths)
    assert not torch.equal(grouped[:, 0, 0].diff().sign(), -torch.ones(S - 1, dtype=torch.long))  # batches shuffled
