"""Tests of morelib.data.splits: grouped hash splits never straddle a group, are stable under added data, and count
right."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from morelib.core.config import DataConfig, SourceSpec, SplitSpec
from morelib.core.errors import DataError, MissingDataError
from morelib.data import sources
from morelib.data.groups import carve_groups, unit_hash
from morelib.data.sources import Pair
from morelib.data.splits import SIDES, SplitReport, load_source_splits, side_of, split_pairs

DATA = Path(os.environ.get("MORE_DATA_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
needs_data = pytest.mark.skipif(
    not (DATA / "hh-rlhf").is_dir(), reason=f"real data folder {DATA} absent (set MORE_DATA_DIR to run these)"
)
FR = (0.7, 0.1, 0.2)


def _pairs(n_groups: int, per_group: int = 3) -> list[Pair]:
    return [Pair(f"p{g}", f"c{g}.{i}", f"r{g}.{i}", "s", f"g{g}") for g in range(n_groups) for i in range(per_group)]


def _sides_of_groups(sides: dict[str, list[Pair]]) -> dict[str, set[str]]:
    return {s: {p.group for p in ps} for s, ps in sides.items()}


def _assert_disjoint(sides: dict[str, list[Pair]]) -> None:
    groups = _sides_of_groups(sides)
    for i, a in enumerate(SIDES):
        for b in SIDES[i + 1 :]:
            assert not groups[a] & groups[b], f"groups on both {a} and {b}"


def test_unit_hash_is_fixed_and_uniform():
    assert unit_hash("abc", 0) == unit_hash("abc", 0) != unit_hash("abc", 1)
    values = [unit_hash(str(i), 0) for i in range(20000)]
    assert 0 <= min(values) and max(values) < 1
    assert abs(sum(v < 0.3 for v in values) / len(values) - 0.3) < 0.015


def test_split_pairs_groups_fractions_and_seed():
    pairs = _pairs(3000)
    sides = split_pairs(pairs, FR, seed=0)
    _assert_disjoint(sides)
    assert sum(len(v) for v in sides.values()) == len(pairs)
    counts = {s: len(g) for s, g in _sides_of_groups(sides).items()}
    for side, frac in zip(SIDES, FR):
        assert abs(counts[side] / 3000 - frac) < 0.03
    assert split_pairs(pairs, SplitSpec(0.7, 0.1, 0.2), 0) == sides
    assert split_pairs(pairs, {"train": 0.7, "calib": 0.1, "test": 0.2}, 1) != sides
    assert all(side_of(p.group, FR, 0) == s for s, ps in sides.items() for p in ps)


def test_split_is_stable_when_data_is_added():
    small, big = _pairs(200), _pairs(500)[::-1]
    before = {p: s for s, ps in split_pairs(small, FR, 5).items() for p in ps}
    after = {p: s for s, ps in split_pairs(big, FR, 5).items() for p in ps}
    assert all(after[p] == side for p, side in before.items())


def test_bad_fractions():
    with pytest.raises(DataError, match="sum to 1"):
        split_pairs(_pairs(2), (0.5, 0.1, 0.1), 0)


def test_carve_groups_exact_size_whole_groups():
    pairs = _pairs(50, per_group=4)
    carved, rest, lost = carve_groups(pairs, 10, seed=0)
    assert len(carved) == 10 and len(carved) + len(rest) + lost == len(pairs)
    assert lost == 2  # 10 = 2 whole groups of 4 + half of a third
    assert not {p.group for p in carved} & {p.group for p in rest}
    assert carve_groups(pairs, 10, seed=0) == (carved, rest, lost)


@needs_data
def test_default_sources_on_local_data():
    specs = [
        SourceSpec("helpful", "Helpful", "hh-helpful", 10**6, 10**6, calib_pairs=10**6),
        SourceSpec("harmless", "Harmless", "hh-harmless", 100, 50, calib_pairs=50),
        SourceSpec("oasst1", "OASST", "oasst1", 10**6, 10**6, calib_pairs=10**6),
        SourceSpec("summarize", "Summ.", "summarize", 10**6, 10**6, calib_pairs=10**6),
    ]
    cfg = DataConfig(data_dir=str(DATA), split=SplitSpec(0.7, 0.1, 0.2), sources=tuple(specs))
    for spec in specs:
        report = SplitReport()
        out = load_source_splits(spec, cfg, seed=0, report=report)
        _assert_disjoint(out)
        assert report.mode == "local-hash" and report.used == {s: len(out[s]) for s in SIDES}
        assert all(p.source == spec.name for ps in out.values() for p in ps)
    helpful = load_source_splits(specs[0], cfg, 0, report=(rep := SplitReport()))
    base = sources.load_preferences("hh-helpful", "test", DATA)
    assert set(helpful["test"]) | set(helpful["calib"]) <= {
        Pair(p.prompt, p.chosen, p.rejected, "helpful", p.group) for p in base
    }
    assert set(rep.extra_train) == {"hh-helpful-online", "hh-helpful-rejection-sampled"}
    assert len(helpful["train"]) == rep.available["train"] > 2352 * 0.7
    assert rep.drops["hh-helpful"]["dropped"] == {"chosen == rejected": 2}
    harmless = load_source_splits(specs[1], cfg, 0, report=(rep := SplitReport()))
    assert rep.used == {"train": 100, "calib": 50, "test": 50} and sum(rep.available.values()) == 2312
    assert load_source_splits(specs[1], cfg, 0) == harmless


@needs_data
def test_webgpt_reported_missing_locally():
    cfg = DataConfig(data_dir=str(DATA))
    with pytest.raises(MissingDataError, match="no local data for webgpt"):
        load_source_splits(SourceSpec("webgpt", "WebGPT", "webgpt"), cfg, 0)


@needs_data
def test_ultrafeedback_real_splits_with_carved_calib():
    cfg = DataConfig(data_dir=str(DATA))
    out = load_source_splits(
        SourceSpec("uf", "UF", "ultrafeedback", 10**6, 10**6), cfg, 0, report=(rep := SplitReport())
    )
    assert rep.mode == "local-real" and len(out["test"]) == 175 and len(out["train"]) + len(out["calib"]) == 886
    assert 0.05 < len(out["calib"]) / 886 < 0.2


def _hh_file(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(
        json.dumps({"chosen": f"\n\nHuman: {p}\n\nAssistant: {c}", "rejected": f"\n\nHuman: {p}\n\nAssistant: {r}"})
        + "\n"
        for p, c, r in rows
    )
    path.write_bytes(gzip.compress(body.encode()))


def test_adding_an_extra_file_moves_no_pair_and_crosses_no_group(tmp_path):
    base = [(f"q{i % 80}", f"a{i}", f"b{i}") for i in range(240)]
    online = [(f"q{i % 120}", f"x{i}", f"y{i}") for i in range(200)]  # shares prompts q0..q79 with base
    _hh_file(tmp_path / "hh-rlhf" / "helpful-base" / "test.jsonl.gz", base)
    cfg = DataConfig(data_dir=str(tmp_path))
    spec = SourceSpec("helpful", "Helpful", "hh-helpful", 10**6, 10**6, calib_pairs=10**6)
    before = load_source_splits(spec, cfg, 3)
    _hh_file(tmp_path / "hh-rlhf" / "helpful-online" / "test.jsonl.gz", online)
    after = load_source_splits(spec, cfg, 3, report=(rep := SplitReport()))
    _assert_disjoint(after)
    assert after["test"] == before["test"] and after["calib"] == before["calib"]
    assert after["train"][: len(before["train"])] == before["train"]
    kept = rep.extra_train["hh-helpful-online"]
    assert len(after["train"]) == len(before["train"]) + kept
    assert kept + rep.drops["hh-helpful-online"]["dropped"]["group on a held-out side"] == 200


def test_null_caps_take_every_pair_and_large_caps_take_all(monkeypatch):
    rows = [
        {"chosen": f"\n\nHuman: q{i}\n\nAssistant: a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: b"}
        for i in range(300)
    ]
    monkeypatch.setattr(sources, "load_hub", lambda repo, split, **kw: rows[:200] if split == "train" else rows[200:])
    cfg = DataConfig(data_dir="hub", split=SplitSpec(0.6, 0.2, 0.2))
    out = load_source_splits(
        SourceSpec("harmless", "H", "hh-harmless", 30, None, calib_pairs=10**6), cfg, 0, report=(rep := SplitReport())
    )
    assert len(out["test"]) == 100 == rep.available["test"]  # null → every test pair
    assert len(out["calib"]) == rep.available["calib"] > 0  # a cap above what the side holds → all of it
    assert len(out["train"]) == 30 < rep.available["train"]
    assert rep.used == {s: len(out[s]) for s in SIDES}


def test_hub_mode_keeps_real_test_and_carves_calib(monkeypatch):
    rows = [
        {"chosen": f"\n\nHuman: q{i}\n\nAssistant: a", "rejected": f"\n\nHuman: q{i}\n\nAssistant: b"}
        for i in range(300)
    ]
    calls = []

    def fake(repo, split, **kwargs):
        calls.append(split)
        return rows[:200] if split == "train" else rows[200:]

    monkeypatch.setattr(sources, "load_hub", fake)
    spec = SourceSpec("harmless", "Harmless", "hh-harmless", 10**6, 10**6)
    out = load_source_splits(
        spec, DataConfig(data_dir="hub", split=SplitSpec(0.6, 0.2, 0.2)), 0, report=(rep := SplitReport())
    )
    assert rep.mode == "hub" and sorted(Counter(calls)) == ["test", "train"]
    assert len(out["test"]) == 100 and len(out["train"]) + len(out["calib"]) == 200
    assert 0.15 < len(out["calib"]) / 200 < 0.35  # calib share = 0.2 / (0.6 + 0.2) of train
    _assert_disjoint(out)


def test_a_broken_extra_file_stops_the_source_instead_of_vanishing(tmp_path):
    """An extra train file (helpful-online) that is there but cut short is an error naming it, not a silent skip."""
    _hh_file(tmp_path / "hh-rlhf" / "helpful-base" / "test.jsonl.gz", [(f"q{i}", f"a{i}", f"b{i}") for i in range(50)])
    online = tmp_path / "hh-rlhf" / "helpful-online" / "test.jsonl.gz"
    _hh_file(online, [(f"q{i}", f"x{i}", f"y{i}") for i in range(200)])
    online.write_bytes(online.read_bytes()[:-40])
    spec = SourceSpec("helpful", "Helpful", "hh-helpful", 10, 10)
    with pytest.raises(DataError, match=r"helpful-online/test\.jsonl\.gz: truncated or corrupt gzip") as info:
        load_source_splits(spec, DataConfig(data_dir=str(tmp_path)), 0)
    assert not isinstance(info.value, MissingDataError)
