"""Grouped, seeded, stable train/calibration/test splits of preference pairs, and each source's split map.

A pair's side is a pure function of (its group key, seed) — `groups.unit_hash`, blake2b of the two mapped to [0, 1),
compared with the cumulative fractions — so pairs sharing a prompt (HH), post (Summarize) or tree (OASST) never straddle
two sides, and adding files later never moves a pair that was already placed. Local files here are all test/validation
data (see /work/shared/data/README.md), so they are split this way; with real train and test splits (the hub, or a local
copy that has both) the test split is kept and calibration pairs are carved from train by the same hash.
Checked by tests: no group on two sides, subset → superset stability, counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from morelib.core.config import data_root
from morelib.core.errors import DataError
from morelib.data import sources
from morelib.data.groups import unit_hash
from morelib.data.sources import DropLog, Pair

SIDES = ("train", "calib", "test")
# Extra local sources that add TRAIN pairs only (helpful-base alone is the paper's Helpful test distribution).
TRAIN_EXTRAS = {"hh-helpful": ("hh-helpful-online", "hh-helpful-rejection-sampled")}


@dataclass
class SplitReport:
    """What `load_source_splits` did, for the run manifest: mode, pair counts before/after caps, drops."""

    source: str = ""
    loader: str = ""
    mode: str = ""
    seed: int = 0
    available: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    extra_train: dict[str, int] = field(default_factory=dict)
    drops: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON manifests."""
        return asdict(self)


def _fractions(fractions: Any) -> tuple[float, float, float]:
    """(train, calib, test) from a SplitSpec, a mapping or a 3-sequence; DataError unless ≥ 0 and summing to 1."""
    if isinstance(fractions, Mapping):
        values = tuple(float(fractions[s]) for s in SIDES)
    elif isinstance(fractions, Sequence):
        values = tuple(float(f) for f in fractions)
    else:
        values = tuple(float(getattr(fractions, s)) for s in SIDES)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1) > 1e-6:
        raise DataError(f"split fractions (train, calib, test) must be ≥ 0 and sum to 1, got {values}")
    return values


def side_of(group: str, fractions: Any, seed: int) -> str:
    """The side ("train" | "calib" | "test") of a group key under `fractions` and `seed`."""
    train, calib, _ = _fractions(fractions)
    u = unit_hash(group, seed)
    return "train" if u < train else "calib" if u < train + calib else "test"


def split_pairs(pairs: Sequence[Pair], fractions: Any, seed: int) -> dict[str, list[Pair]]:
    """Grouped hash split into {"train", "calib", "test"}, input order kept within each side."""
    fr = _fractions(fractions)
    sides: dict[str, list[Pair]] = {s: [] for s in SIDES}
    memo: dict[str, str] = {}
    for pair in pairs:
        if pair.group not in memo:
            memo[pair.group] = side_of(pair.group, fr, seed)
        sides[memo[pair.group]].append(pair)
    return sides


def _splits_present(loader: str, root: Path | None) -> list[str]:
    """Splits `loader` has locally (both on the hub)."""
    return list(sources.SPLITS) if root is None else sources.local_splits(loader, root)


def _base_splits(spec: Any, fractions: tuple, root: Path | None, seed: int, log: DropLog) -> tuple[str, dict]:
    """(mode, sides) of the spec's own loader: real splits + carved calib, or a grouped hash split of all it has."""

    def load(split: str) -> list[Pair]:
        return sources.load_preferences(spec.loader, split, root if root else "hub", report=log)

    have = _splits_present(spec.loader, root)
    if not have:
        sources.local_files(spec.loader, "test", root)  # raises the 'no local data for <source>' DataError
    if "train" in have and "test" in have:
        train_share = fractions[0] / (fractions[0] + fractions[1])
        carved = split_pairs(load("train"), (train_share, 1 - train_share, 0.0), seed)
        return ("hub" if root is None else "local-real"), {**carved, "test": load("test")}
    pooled = [p for s in have for p in load(s)]
    return "local-hash", split_pairs(pooled, fractions, seed)


def _extra_pairs(spec: Any, root: Path, log: DropLog) -> dict[str, list[Pair]]:
    """Train-only extra pairs: spec.files (source names or paths under root), else TRAIN_EXTRAS of the loader."""
    names = spec.files or TRAIN_EXTRAS.get(spec.loader, ())
    out = {}
    for name in names:
        if name in sources.SOURCES:
            out[name] = [
                p for s in sources.local_splits(name, root) for p in sources.load_preferences(name, s, root, report=log)
            ]
        else:
            path = Path(name) if Path(name).is_absolute() else root / name
            out[name] = sources.load_preferences(str(path), "train", report=log)
    return out


def load_source_splits(spec: Any, data_cfg: Any, seed: int, report: SplitReport | None = None) -> dict[str, list[Pair]]:
    """{"train", "calib", "test"} pairs of one configured source, capped to spec.train_pairs / calib_pairs / test_pairs.

    A cap of None takes every pair of that side; a cap above what the side holds takes all of it (report.used says so).

    Local extras (e.g. helpful-online) join train only where their group hashes to train, so no group crosses sides.
    Caps sample with `seed`. Raises DataError for a source with no data.
    """
    fractions = _fractions(data_cfg.split)
    root = data_root(data_cfg.data_dir)
    if root is not None and not root.is_dir():
        raise DataError(f"data directory not found: {root}")
    log = DropLog()
    mode, sides = _base_splits(spec, fractions, root, seed, log)
    rep = report if report is not None else SplitReport()
    if mode == "local-hash":
        for name, extra in _extra_pairs(spec, root, log).items():
            kept = [p for p in extra if side_of(p.group, fractions, seed) == "train"]
            rep.extra_train[name] = len(kept)
            log.drop(name, "group on a held-out side", len(extra) - len(kept))
            sides["train"] = sides["train"] + kept
    caps = {"train": spec.train_pairs, "calib": spec.calib_pairs, "test": spec.test_pairs}
    caps = {s: len(sides[s]) if caps[s] is None else caps[s] for s in SIDES}  # None: the whole side
    out = {s: sources.sample(sides[s], caps[s], seed + i) for i, s in enumerate(SIDES)}
    out = {s: [Pair(p.prompt, p.chosen, p.rejected, spec.name, p.group) for p in ps] for s, ps in out.items()}
    rep.source, rep.loader, rep.mode, rep.seed = spec.name, spec.loader, mode, seed
    rep.available = {s: len(sides[s]) for s in SIDES}
    rep.used = {s: len(out[s]) for s in SIDES}
    rep.drops = log.to_dict()
    return out
