"""Batch plans: which training pairs of which source every step sees, in both tiers (paper §4.3, App. A).

Paper App. A: "sample & resample 40,000 train pairs per preference"; §4.3: a diverse batch B = {B_1..B_K}, |B_i| pairs
from each source. `batch_plan` is that balanced plan [steps, K, B] (every source resampled to a common size, seeded
per source); `pooled_plan` the paper's / reference code's MultiTask, the same resampled sources pooled, shuffled and
cut into batches of K·B; `length_grouped` sorts a plan's picks by token length inside windows of batches (less padding
when fine-tuning); `plan_for` builds a fine-tuning run's plan from the config; `seed_indices` is a seed's training
resample of a source. Every draw uses its own torch.Generator, so one seed gives one plan anywhere.
NOTE(paper): oversampling lays whole shuffled copies end to end (each pair ⌊n/N⌋ or ⌈n/N⌉ times) rather than drawing
with replacement, so no pair of a small source is left out.
Checked in tests/test_reward_head.py (balance, coverage, per-source independence, seeds), tests/test_pooled.py (pooled
sizes) and tests/test_finetune.py (length grouping keeps B per source and the window's multiset; plan_for).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from morelib.core.config import Config
from morelib.core.errors import ConfigError

POOLED = "multitask-pooled"  # the paper's / reference code's MultiTask: random batches of the pooled resampled data
SUBSAMPLE_SEED_OFFSET = 7_919  # keeps a seed's training subsample independent of its batch order
LENGTH_WINDOW = 64  # batches whose pairs are sorted by length together (finetune.group_by_length)


def source_generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded by (seed, source name): a source's batches do not depend on which others train with it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))


def resample_indices(n_have: int, n_want: int, gen: torch.Generator) -> torch.Tensor:
    """Indices [n_want] into n_have pairs: whole shuffled copies, then a random remainder without replacement."""
    copies, rest = divmod(n_want, n_have)
    parts = [torch.randperm(n_have, generator=gen) for _ in range(copies)]
    parts.append(torch.randperm(n_have, generator=gen)[:rest])
    return torch.cat(parts)


def seed_indices(n: int, fraction: float, seed: int, name: str, method: str = "bootstrap") -> torch.Tensor:
    """Sorted indices into the n training pairs of source `name` that seed `seed` trains on, drawn by (seed, name), so
    every scheme of one seed sees the same pairs (`train.seed_resample`):
    bootstrap — round(fraction·n) with replacement, independently per seed (the spread over seeds then estimates the
    training-data variance: measured in benchmarks/seed_resampling.py);
    halves — seeds 2j and 2j + 1 take the two halves of one shuffle drawn by j (disjoint within a pair of seeds);
    subsample — round(fraction·n) without replacement (all n at fraction 1; at 0.8 two seeds share most pairs).
    """
    if method == "halves":
        perm = torch.randperm(n, generator=source_generator(seed // 2 + SUBSAMPLE_SEED_OFFSET, name))
        return (perm[: n // 2] if seed % 2 == 0 else perm[n // 2 :]).sort().values
    keep = max(1, round(fraction * n))
    gen = source_generator(seed + SUBSAMPLE_SEED_OFFSET, name)
    if method == "bootstrap":
        return torch.randint(0, n, (keep,), generator=gen).sort().values
    if method != "subsample":
        raise ConfigError(f"'train.seed_resample' must be bootstrap, halves or subsample, got {method!r}")
    if fraction >= 1.0:
        return torch.arange(n)
    return torch.randperm(n, generator=gen)[:keep].sort().values


def _common_size(sizes: dict[str, int], B: int, n_common: int | None) -> int:
    """Pairs per source after resampling (`n_common`, else the largest source); ConfigError when below B."""
    n = n_common or max(sizes.values())
    if n < B:
        raise ConfigError(f"'train.batch_per_source' = {B} exceeds the {n} pairs per source after resampling")
    return n


def batch_plan(sizes: dict[str, int], B: int, epochs: int, n_common: int | None, seed: int) -> torch.Tensor:
    """Balanced batch plan [steps, K, B] of indices into each source (sizes in `sizes` order), deterministic in seed."""
    n = _common_size(sizes, B, n_common)
    per_epoch = n // B
    plans = []
    for name, size in sizes.items():
        gen = source_generator(seed, name)
        pool = resample_indices(size, n, gen)
        perms = [pool[torch.randperm(n, generator=gen)[: per_epoch * B]] for _ in range(epochs)]
        plans.append(torch.cat(perms).view(epochs * per_epoch, B))
    return torch.stack(plans, dim=1)


def pooled_plan(sizes: dict[str, int], B: int, epochs: int, n_common: int | None, seed: int) -> torch.Tensor:
    """Pooled batch plan [steps, K·B] of (source, index) codes k·N_max + i: every source resampled to a common size,
    pooled and shuffled, then cut into batches of K·B (the paper's MultiTask; same steps per epoch as `batch_plan`)."""
    n = _common_size(sizes, B, n_common)
    K = len(sizes)
    stride = max(sizes.values())
    pool = torch.cat(
        [
            resample_indices(size, n, source_generator(seed, name)) + k * stride
            for k, (name, size) in enumerate(sizes.items())
        ]
    )
    gen = torch.Generator().manual_seed(seed)
    per_epoch = n // B
    perms = [pool[torch.randperm(K * n, generator=gen)[: per_epoch * K * B]] for _ in range(epochs)]
    return torch.cat(perms).view(epochs * per_epoch, K * B)


def length_grouped(
    plan: torch.Tensor, lengths: Sequence[torch.Tensor], seed: int, window: int = LENGTH_WINDOW
) -> torch.Tensor:
    """The picks of plan [S, K, B], per window of batches and source sorted by length and re-cut; batches shuffled.

    Every step keeps B pairs of every source and every window keeps its multiset of pairs, so balance, determinism
    (a pure function of plan, lengths and seed) and resume are unchanged; only the padding inside a batch shrinks.
    """
    S, K, B = plan.shape
    if len(lengths) != K:
        raise ConfigError(f"length_grouped got lengths of {len(lengths)} sources for a plan of {K}")
    out = torch.empty_like(plan)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, S, window):
        stop = min(start + window, S)
        block = torch.empty_like(plan[start:stop])
        for k in range(K):
            picks = plan[start:stop, k].reshape(-1)
            order = torch.argsort(lengths[k][picks], descending=True, stable=True)
            block[:, k] = picks[order].view(stop - start, B)
        out[start:stop] = block[torch.randperm(stop - start, generator=gen)]
    return out


def plan_steps(sizes: dict[str, int], cfg: Config) -> tuple[int, int]:
    """(steps of the plan, steps of one epoch): `finetune.steps`, else `finetune.epochs` passes over the resampled
    sources."""
    t, f = cfg.train, cfg.finetune
    per_epoch = (t.resample_pairs or max(sizes.values())) // t.batch_per_source
    return f.steps or max(1, math.floor(f.epochs * per_epoch)), per_epoch


def plan_for(
    pairs: dict[str, Sequence[Any]],
    cfg: Config,
    seed: int,
    lengths: Sequence[torch.Tensor] | None = None,
    scheme: str = "more",
) -> torch.Tensor:
    """Fine-tuning batch plan: balanced [steps, K, B], or for `multitask-pooled` pooled codes [steps, K·B].

    With `lengths` (from `finetune.pair_lengths`) and `finetune.group_by_length`, the plan is `length_grouped` (a pooled
    plan as one group of K·B per step, its lengths concatenated with each source padded to the plan's stride).
    """
    t = cfg.train
    sizes = {name: len(p) for name, p in pairs.items()}
    steps, per_epoch = plan_steps(sizes, cfg)
    make = pooled_plan if scheme == POOLED else batch_plan
    plan = make(sizes, t.batch_per_source, max(1, math.ceil(steps / max(per_epoch, 1))), t.resample_pairs, seed)[:steps]
    if lengths is not None and cfg.finetune.group_by_length:
        if scheme == POOLED:
            stride = max(sizes.values())
            flat = torch.cat([F.pad(n, (0, stride - len(n))) for n in lengths])
            return length_grouped(plan.unsqueeze(1), [flat], seed).squeeze(1)
        plan = length_grouped(plan, lengths, seed)
    return plan
