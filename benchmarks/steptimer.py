"""Per-step wall and CPU time of every transformers Trainer in this process (ours and TRL's alike).

A TrainerCallback appended to transformers' DEFAULT_CALLBACKS records, at each optimizer step's end, the wall and
process-CPU seconds since the previous step's end (the first step of a run is timed from train begin). Dataloading,
collation, forward, backward and the optimizer step are all inside a step; model loading, dataset preparation and
saving are not.
"""

from __future__ import annotations

import os
import time

import transformers.trainer as hf_trainer
from transformers import TrainerCallback


def _cpu() -> float:
    """User + system CPU seconds of this process (all threads)."""
    t = os.times()
    return t.user + t.system


class StepTimer(TrainerCallback):
    """Collects (wall_s, cpu_s) per optimizer step, one list per `label` set before each run."""

    def __init__(self) -> None:
        self.label = "unlabelled"
        self.steps: dict[str, list[list[tuple[float, float]]]] = {}
        self._last: tuple[float, float] | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        """Start a new run's list of step times under the current label."""
        self.steps.setdefault(self.label, []).append([])
        self._last = (time.perf_counter(), _cpu())

    def on_step_end(self, args, state, control, **kwargs):
        """Record the time since the previous step's end."""
        now = (time.perf_counter(), _cpu())
        if self._last is not None:
            self.steps[self.label][-1].append((now[0] - self._last[0], now[1] - self._last[1]))
        self._last = now

    def timed_steps(self, label: str, skip: int) -> tuple[list[float], list[float]]:
        """(wall, cpu) seconds of every step of every run under `label`, after dropping each run's first `skip`."""
        runs = self.steps.get(label, [])
        kept = [step for run in runs for step in run[skip:]]
        return [w for w, _ in kept], [c for _, c in kept]


def install() -> StepTimer:
    """Add one StepTimer to every Trainer created from now on in this process; returns it."""
    timer = StepTimer()
    hf_trainer.DEFAULT_CALLBACKS.append(timer)
    return timer
