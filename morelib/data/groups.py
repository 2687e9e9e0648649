"""A pair's group (one HH prompt, Summarize post, OASST tree): a stable hash of it, and carving whole groups.

`unit_hash` maps (group key, seed) to [0, 1) with blake2b, the same on every process and machine; `splits` compares it
with the split fractions, and `carve_groups` takes whole groups in hash order (the hub test carve of `data` and
`splits`), so pairs that share a group never land on two sides. Checked in tests/test_splits.py.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from morelib.data.formats import Pair


def unit_hash(group: str, seed: int) -> float:
    """Deterministic uniform number in [0, 1) from (group key, seed); stable across processes and machines."""
    digest = hashlib.blake2b(f"{seed}\x1f{group}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def carve_groups(pairs: Sequence[Pair], n: int, seed: int) -> tuple[list[Pair], list[Pair], int]:
    """(exactly n carved pairs from whole groups in hash order, the rest, pairs lost cutting the last group)."""
    by_group: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_group[pair.group].append(pair)
    carved, rest, lost = [], [], 0
    for group in sorted(by_group, key=lambda g: unit_hash(g, seed)):
        members = by_group[group]
        if len(carved) >= n:
            rest.extend(members)
        else:
            take = min(len(members), n - len(carved))
            carved.extend(members[:take])
            lost += len(members) - take
    return carved, rest, lost
