"""Reproducibility (project issue 9): the same profile and seeds on the same machine give identical results.

The tiny-profile study (`pipeline.prepare` → `fit` → `metric_table`, real local data, tiny random backbone) is run into
two fresh output roots — features extracted afresh each time, backbone reloaded — and the metric tables must be equal
bit for bit. A third run reuses the first run's feature cache after one shard was corrupted: the corruption is detected
(warning), the shard rebuilt, and the metric table is again identical. The cache mechanics themselves are tested in
tests/test_features.py (test_corrupted_shard_is_rebuilt, test_truncated_shard_is_rebuilt,
test_cache_hit_is_identical_and_runs_no_forward); here they are checked end to end.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import features  # noqa: E402
from morelib.core import config, runs
from morelib.study import pipeline

SCHEMES = ["raw", "single", "multitask", "more"]


def _study(output_root: Path) -> tuple[pipeline.StudyData, dict, pd.DataFrame]:
    """Run the tiny study into a new run folder under `output_root`: (data, heads, metric table)."""
    cfg = config.load_config("tiny", {"output_root": str(output_root)})
    run = runs.open_run(cfg, "", "repro")
    data = pipeline.prepare(cfg, run)
    heads = pipeline.fit(cfg, data, SCHEMES, run=run)
    return data, heads, pipeline.metric_table(heads, data, cfg, temperature_scaled=True)


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> tuple[Path, pipeline.StudyData, dict, pd.DataFrame]:
    """The reference run (its output root holds the feature cache the corruption test reuses)."""
    root = tmp_path_factory.mktemp("run_a")
    cfg = config.load_config("tiny")
    if config.data_root(cfg) is None or not config.data_root(cfg).is_dir():
        pytest.skip("no local data root for the tiny profile")
    return (root, *_study(root))


def _same_study(a: tuple, b: tuple) -> None:
    """Equal pairs, head weights, λ histories and metric tables (exact, no tolerance)."""
    data_a, heads_a, table_a = a
    data_b, heads_b, table_b = b
    assert data_a.sources == data_b.sources and data_a.pairs == data_b.pairs and data_a.counts == data_b.counts
    for s in data_a.sources:
        for side in pipeline.SIDES:
            fa, fb = data_a.features[s][side], data_b.features[s][side]
            assert torch.equal(fa.chosen, fb.chosen) and torch.equal(fa.rejected, fb.rejected), (s, side)
    assert sorted(heads_a) == sorted(heads_b)
    for key in heads_a:
        assert torch.equal(heads_a[key].head.w, heads_b[key].head.w), key
        assert torch.equal(heads_a[key].history["lam"], heads_b[key].history["lam"]), key
    pd.testing.assert_frame_equal(table_a, table_b, check_exact=True)


def test_same_profile_and_seed_give_identical_metrics(first, tmp_path):
    _, *a = first
    assert len(a[2]) > 0 and {"more", "multitask", "single", "raw"} <= set(a[2]["scheme"])
    features.backbone.cache_clear()  # reload the backbone too, not just re-use the process's copy
    _same_study(a, _study(tmp_path))


def test_corrupted_feature_cache_is_rebuilt_with_identical_results(first, tmp_path, caplog):
    root, *a = first
    shards = sorted((root / "cache").glob("*/shard-*.safetensors"))
    assert shards, "the first run should have written feature cache shards"
    raw = bytearray(shards[0].read_bytes())
    raw[-8:] = bytes(255 - x for x in raw[-8:])  # damage feature values; the header still parses
    shards[0].write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="morelib.backbone.features"):
        again = _study(root)
    assert "checksum mismatch" in caplog.text
    _same_study(a, again)
