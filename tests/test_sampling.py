"""Tests of morelib.sampling: sizes, coverage, oversampling keeps every pair, determinism."""
from __future__ import annotations

from collections import Counter

import pytest

from morelib.sampling import balanced_batches, mix, mixed_batches, resample


def test_resample_subsample_without_replacement():
    items = list(range(100))
    out = resample(items, 30, seed=1)
    assert len(out) == 30 and len(set(out)) == 30 and set(out) <= set(items)
    assert out == resample(items, 30, seed=1) != resample(items, 30, seed=2)


def test_resample_oversample_keeps_every_pair():
    items = list(range(7))
    out = resample(items, 40, seed=0)
    counts = Counter(out)
    assert len(out) == 40 and set(counts) == set(items)
    assert set(counts.values()) <= {5, 6}  # ⌊40/7⌋ or ⌈40/7⌉
    assert sorted(resample(items, 7, seed=3)) == items


def test_resample_bad_input():
    with pytest.raises(ValueError, match="empty source"):
        resample([], 3, 0)
    with pytest.raises(ValueError, match="n must be a positive int"):
        resample([1], 0, 0)


def test_balanced_batches_epoch_and_coverage():
    sizes = {"a": 50, "b": 12, "c": list(range(30))}
    batches = list(balanced_batches(sizes, B=8, seed=0))
    assert len(batches) == 7  # ⌈50 / 8⌉
    assert all(set(b) == {"a", "b", "c"} and all(len(v) == 8 for v in b.values()) for b in batches)
    seen_a = [i for b in batches for i in b["a"]]
    assert set(seen_a) == set(range(50))  # the largest source is seen once (plus a wrap-around tail)
    first_pass_b = [i for b in batches for i in b["b"]][:12]
    assert sorted(first_pass_b) == list(range(12))  # a smaller source cycles through full permutations
    assert batches == list(balanced_batches(sizes, 8, 0))
    assert batches != list(balanced_batches(sizes, 8, 1))
    assert len(list(balanced_batches(sizes, 8, 0, steps=3))) == 3


def test_balanced_batches_bad_input():
    with pytest.raises(ValueError, match="no sources"):
        next(balanced_batches({}, 4, 0))
    with pytest.raises(ValueError, match="size of source 'x'"):
        next(balanced_batches({"x": []}, 4, 0))


def test_mixed_batches_one_epoch():
    batches = list(mixed_batches({"a": 5, "b": 3}, batch_size=3, seed=0))
    flat = [x for b in batches for x in b]
    assert [len(b) for b in batches] == [3, 3, 2]
    assert sorted(flat) == [("a", i) for i in range(5)] + [("b", i) for i in range(3)]


def test_mix_balances_sources():
    pooled = mix({"a": [("a", i) for i in range(3)], "b": [("b", i) for i in range(100)]}, 20, seed=0)
    assert Counter(src for src, _ in pooled) == {"a": 20, "b": 20}
    assert pooled == mix({"b": [("b", i) for i in range(100)], "a": [("a", i) for i in range(3)]}, 20, seed=0)
