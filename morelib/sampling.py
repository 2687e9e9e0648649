"""Sampling of training pairs across sources (paper App. A: "sample & resample 40,000 train pairs per preference";
§4.3: a diverse batch B = {B_1..B_K}, |B_i| pairs from each source).

`resample` draws n pairs from one source; `balanced_batches` yields, for one epoch, per-source index lists of B each
(the MORE / MultiTask batch composition); `mixed_batches` is the pooled, shuffled alternative; `mix` pools resampled
sources. Everything is seeded with its own `random.Random`, so the same seed gives the same draw anywhere.
Checked by tests: sizes, every pair kept when oversampling, per-source coverage, determinism.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T")


def _check_positive(name: str, value: int) -> None:
    """ValueError unless `value` is a positive int."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def resample(pairs: Sequence[T], n: int, seed: int) -> list[T]:
    """n items of `pairs`: a seeded sample without replacement if n ≤ len(pairs), else cycled seeded permutations.

    NOTE(paper): when oversampling, each pair appears ⌊n/N⌋ or ⌈n/N⌉ times (permutations laid end to end) rather
    than i.i.d. draws with replacement, so no pair of a small source is left out.
    """
    _check_positive("n", n)
    if not pairs:
        raise ValueError("cannot resample from an empty source")
    rng = random.Random(seed)
    if n <= len(pairs):
        return rng.sample(list(pairs), n)
    out: list[T] = []
    while len(out) < n:
        out.extend(rng.sample(list(pairs), len(pairs)))
    return out[:n]


def _sizes(by_source: Mapping[str, Sequence | int]) -> dict[str, int]:
    """Source → number of items (a Sequence's length or an int), each checked positive."""
    if not by_source:
        raise ValueError("no sources given")
    sizes = {name: v if isinstance(v, int) else len(v) for name, v in by_source.items()}
    for name, size in sizes.items():
        _check_positive(f"size of source '{name}'", size)
    return sizes


def _index_stream(size: int, rng: random.Random) -> Iterator[int]:
    """Endless indices 0..size-1, a fresh permutation each pass."""
    while True:
        yield from rng.sample(range(size), size)


def balanced_batches(by_source: Mapping[str, Sequence | int], B: int, seed: int,
                     steps: int | None = None) -> Iterator[dict[str, list[int]]]:
    """Per-step {source: B indices} for one epoch = ⌈max_k N_k / B⌉ steps (or `steps`); smaller sources cycle.

    `by_source` maps each source to its pairs (or their count); B is the per-source batch size |B_i| of §4.3.
    """
    _check_positive("B", B)
    sizes = _sizes(by_source)
    n_steps = steps if steps is not None else math.ceil(max(sizes.values()) / B)
    _check_positive("steps", n_steps)
    streams = {name: _index_stream(size, random.Random(f"{seed}:{name}")) for name, size in sizes.items()}
    for _ in range(n_steps):
        yield {name: [next(stream) for _ in range(B)] for name, stream in streams.items()}


def mixed_batches(by_source: Mapping[str, Sequence | int], batch_size: int, seed: int) -> Iterator[list[tuple[str, int]]]:
    """One epoch over all sources pooled and shuffled: batches of (source, index), the last one possibly shorter."""
    _check_positive("batch_size", batch_size)
    pool = [(name, i) for name, size in _sizes(by_source).items() for i in range(size)]
    random.Random(seed).shuffle(pool)
    for start in range(0, len(pool), batch_size):
        yield pool[start:start + batch_size]


def mix(by_source: Mapping[str, Sequence[T]], pairs_per_source: int, seed: int) -> list[T]:
    """Every source resampled to `pairs_per_source`, pooled and shuffled (App. A's 40,000-per-source mixture)."""
    _sizes(by_source)
    pooled = [p for k, (name, pairs) in enumerate(sorted(by_source.items()))
              for p in resample(pairs, pairs_per_source, seed + k)]
    random.Random(seed).shuffle(pooled)
    return pooled
