"""One optimizer update of the fine-tuning tier: the paper's global batch split over processes, and checkpoints by
progress (project issue 31).

Paper App. A: one update holds B = 16 pairs from each of the K = 5 sources (80 pairs), whatever the hardware. The
profile states B per UPDATE (`train.batch_per_source`); with W processes (`accelerate launch --num_processes W`) each
process reads b pairs per source per micro-batch and accumulates a micro-batches per update, W·a·b = B (b = B/W, a = 1
when W divides B and the micro-batch fits `finetune.max_device_pairs`; otherwise the nearest split, with accumulation,
which `describe` says). One plan batch [K, B] is cut into W·a slices of b pairs per source: global micro-batch g of
the data loader is slice g mod (W·a) of plan batch ⌊g / (W·a)⌋ — accelerate deals batches round-robin (process r gets
g = r, r + W, …), so every update's W·a micro-batches are one plan batch, on every process, after a resume too.
Checkpoints come every `finetune.save_every` of the updates (0.2: five, the last at the end), whatever W, unless
`finetune.save_steps` fixes the interval.
Checked in tests/test_updates.py: W·a·b = 80 at W = 1, 2, 4, 8 on the paper profile, the nearest split at W = 3,
the memory cap, every slice of a plan batch used once per update, ≥ 4 checkpoints before the last update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from morelib.core.errors import ConfigError


@dataclass(frozen=True)
class BatchSplit:
    """How B pairs per source per update are read: W processes × a micro-batches × b pairs per source."""

    requested: int  # B: pairs per source per update the profile asks for
    world_size: int  # W: processes
    per_device: int  # b: pairs per source in one process's micro-batch
    grad_accum: int  # a: micro-batches per process per update

    @property
    def per_update(self) -> int:
        """Pairs per source in one update, W·a·b (= requested when the split is exact)."""
        return self.world_size * self.grad_accum * self.per_device

    @property
    def slices(self) -> int:
        """Micro-batches per update over all processes, W·a."""
        return self.world_size * self.grad_accum

    @property
    def exact(self) -> bool:
        """Whether the update holds exactly the requested pairs per source."""
        return self.per_update == self.requested

    def describe(self) -> str:
        """One line: the split, and when it is not exact, what was asked and why it differs."""
        line = (
            f"{self.per_update} pairs per source per update = {self.world_size} process(es) × {self.grad_accum} "
            f"micro-batch(es) × {self.per_device}"
        )
        if self.exact:
            return line
        return f"{line} (nearest split to the requested {self.requested}: {self.world_size} processes cannot share it)"


def split_batch(batch_per_source: int, world_size: int, max_per_device: int | None = None) -> BatchSplit:
    """The split W·a·b nearest `batch_per_source` with b ≤ `max_per_device` (None: no cap); ties go to fewer
    micro-batches (less time), then to the larger micro-batch."""
    if batch_per_source < 1 or world_size < 1:
        raise ConfigError(
            f"a batch split needs batch_per_source >= 1 and world_size >= 1; got {batch_per_source}, {world_size}"
        )
    if max_per_device is not None and max_per_device < 1:
        raise ConfigError(f"'finetune.max_device_pairs' leaves {max_per_device} pairs per source per micro-batch")
    cap = batch_per_source if max_per_device is None else min(max_per_device, batch_per_source)
    best = min(
        ((a, b) for a in range(1, batch_per_source + 1) for b in range(1, cap + 1)),
        key=lambda ab: (abs(world_size * ab[0] * ab[1] - batch_per_source), ab[0], -ab[1]),
    )
    return BatchSplit(batch_per_source, world_size, per_device=best[1], grad_accum=best[0])


def device_cap(max_device_pairs: int | None, n_sources: int) -> int | None:
    """Pairs per source one micro-batch may hold: `finetune.max_device_pairs` shared by the K sources (None: no cap)."""
    return None if max_device_pairs is None else max(1, max_device_pairs // n_sources)


def micro_slice(index: int, split: BatchSplit) -> tuple[int, int]:
    """(plan batch, slice) read by global micro-batch `index` of the data loader."""
    return divmod(index, split.slices)


def checkpoint_interval(updates: int, save_every: float, save_steps: int | None = None) -> int:
    """Updates between two checkpoints: `save_steps` when set, else ⌊save_every · updates⌋ (at least 1)."""
    if save_steps is not None:
        return save_steps
    return max(1, math.floor(save_every * updates))


def checkpoint_steps(updates: int, save_every: float, save_steps: int | None = None) -> list[int]:
    """The optimizer steps at which a run of `updates` updates writes a checkpoint."""
    interval = checkpoint_interval(updates, save_every, save_steps)
    return list(range(interval, updates + 1, interval))
