"""The global batch of one update split over processes and micro-batches, and checkpoints by progress
(morelib.train.updates), checked with expected values written out and against a brute-force enumeration; on the tiny
model, accumulated micro-batches train as one batch (λ once per update over all of them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from morelib.core.config import load_config
from morelib.core.errors import ConfigError
from morelib.data.sources import Pair
from morelib.train import finetune as ft
from morelib.train import updates as U


@pytest.mark.parametrize(("world", "per_device"), [(1, 16), (2, 8), (4, 4), (8, 2), (16, 1)])
def test_paper_batch_divides_exactly_without_accumulation(world, per_device):
    split = U.split_batch(16, world)
    assert (split.per_device, split.grad_accum, split.per_update, split.exact) == (per_device, 1, 16, True)


def test_memory_cap_turns_into_accumulation():
    split = U.split_batch(16, 1, max_per_device=4)
    assert (split.per_device, split.grad_accum, split.per_update) == (4, 4, 16)
    split = U.split_batch(16, 2, max_per_device=3)  # 2·a·b = 16 with b <= 3: b = 2, a = 4
    assert (split.per_device, split.grad_accum, split.per_update) == (2, 4, 16)
    assert U.device_cap(10, 5) == 2 and U.device_cap(3, 5) == 1 and U.device_cap(None, 5) is None


@pytest.mark.parametrize(("world", "per_update", "per_device", "accum"), [(3, 15, 5, 1), (6, 18, 3, 1), (32, 32, 1, 1)])
def test_nearest_split_when_the_world_does_not_divide(world, per_update, per_device, accum):
    split = U.split_batch(16, world)
    assert (split.per_update, split.per_device, split.grad_accum) == (per_update, per_device, accum)
    assert not split.exact and "nearest split to the requested 16" in split.describe()


def test_split_is_the_nearest_of_all_splits():
    for B in (5, 16, 80):
        for world in range(1, 11):
            for cap in (None, 1, 3):
                split = U.split_batch(B, world, cap)
                limit = cap or B
                gaps = [abs(world * a * b - B) for a in range(1, B + 1) for b in range(1, min(limit, B) + 1)]
                assert abs(split.per_update - B) == min(gaps) and split.per_device <= limit


def test_every_slice_of_a_plan_batch_is_read_once_per_update():
    split = U.split_batch(16, 4, max_per_device=2)  # 4 processes × 2 micro-batches × 2 pairs
    seen = [U.micro_slice(g, split) for g in range(3 * split.slices)]
    for update in range(3):
        assert sorted(s for u, s in seen if u == update) == list(range(split.slices))
    # accelerate deals global batches round-robin: process r reads g = r, r + W, ...; its a micro-batches of update u
    for rank in range(4):
        mine = [U.micro_slice(g, split)[0] for g in range(rank, 3 * split.slices, 4)]
        assert mine == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("updates", [2500, 1250, 625, 313, 7])
def test_checkpoints_by_progress(updates):
    steps = U.checkpoint_steps(updates, 0.2)
    assert len([s for s in steps if s < updates]) >= 4 and steps[-1] <= updates
    assert U.checkpoint_steps(2500, 0.2) == [500, 1000, 1500, 2000, 2500]
    assert U.checkpoint_steps(updates, 0.2, save_steps=1000) == list(range(1000, updates + 1, 1000))


def test_bad_splits_named():
    with pytest.raises(ConfigError, match="world_size >= 1"):
        U.split_batch(16, 0)
    with pytest.raises(ConfigError, match="max_device_pairs"):
        U.split_batch(16, 2, max_per_device=0)


def _pairs(n: int = 6) -> dict[str, list[Pair]]:
    words = ["kind", "rude", "safe", "risky", "short", "long", "clear", "vague"]
    return {
        src: [
            Pair(f"Q{k}.{i}: say? ", f"A {words[i % 4]} answer {i}.", f"meh {words[4 + i % 4]}", src, f"g{k}{i}")
            for i in range(n)
        ]
        for k, src in enumerate(["helpful", "harmless", "oasst1"])
    }


def _lams(out: Path) -> torch.Tensor:
    rows = [json.loads(x) for x in (out / ft.LOG_FILE).read_text().splitlines()]
    return torch.tensor([[r[f"lam/{s}"] for s in ("helpful", "harmless", "oasst1")] for r in rows])


def test_accumulated_micro_batches_train_as_one_batch(tmp_path):
    """MORE on 2 micro-batches of 1 pair per source (λ solved once over both) = MORE on one batch of 2 per source."""
    base = {
        "train.batch_per_source": 2,
        "finetune.steps": 3,
        "finetune.logging_steps": 1,
        "finetune.save_steps": 100,
        "finetune.lr": 1e-3,
        "model.max_length": 48,
    }
    whole_cfg = load_config("tiny", base)
    accum_cfg = load_config("tiny", {**base, "finetune.max_device_pairs": 3})  # 3 sources: 1 pair each per forward
    assert (ft.batch_split(accum_cfg, 3, 1).per_device, ft.batch_split(accum_cfg, 3, 1).grad_accum) == (1, 2)
    whole = ft.finetune(whole_cfg, _pairs(), "more", tmp_path / "whole", seed=0)
    accum = ft.finetune(accum_cfg, _pairs(), "more", tmp_path / "accum", seed=0)
    assert _lams(tmp_path / "whole").shape == (3, 3)
    assert torch.allclose(_lams(tmp_path / "whole"), _lams(tmp_path / "accum"), atol=1e-5)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(accum / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
