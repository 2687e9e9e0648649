"""Plots display exactly the numbers they are given: trace counts, names and values."""

import numpy as np
import pandas as pd
import pytest

from morelib.core.errors import MoreError
from morelib.study import plots


@pytest.fixture
def matrix():
    return pd.DataFrame([[0.7, 0.5], [0.55, 0.65]], index=["helpful", "harmless"], columns=["helpful", "harmless"])


def test_heatmap_and_radar(matrix):
    heat = plots.accuracy_heatmap(matrix)
    assert np.allclose(heat.data[0].z, matrix.values) and list(heat.data[0].y) == ["helpful", "harmless"]
    radar = plots.accuracy_radar(matrix)
    assert len(radar.data) == 2
    assert list(radar.data[0].r) == [0.7, 0.5, 0.7] and radar.data[0].theta[-1] == "helpful"
    with pytest.raises(MoreError):
        plots.accuracy_heatmap(pd.DataFrame())


def test_boxes_bars_and_lines():
    tidy = pd.DataFrame(
        {
            "scheme": ["more", "more", "top"],
            "test_source": ["a", "b", "a"],
            "diff": [1.0, -1.0, 2.0],
            "accuracy": [0.6, 0.7, 0.5],
            "accuracy_lo": [0.5, 0.6, 0.4],
            "accuracy_hi": [0.7, 0.8, 0.6],
        }
    )
    box = plots.reward_box(tidy, "test_source", "diff", "scheme", "t")
    hist = plots.reward_diff_histograms(tidy, "t", value="diff")
    assert [t.name for t in hist.data] == ["more", "top"] and list(hist.data[1].x) == [2.0]
    assert [t.name for t in box.data] == ["more", "top"] and list(box.data[0].y) == [1.0, -1.0]
    bars = plots.metric_bars(tidy, "accuracy", "t")
    assert np.allclose(bars.data[0].error_y.array, [0.1, 0.1])
    lam = np.array([[0.5, 0.5], [0.2, 0.8]])
    curves = plots.training_curves({"lam": lam, "loss": lam * 2, "source_names": ["a", "b"]}, "t", smooth=2)
    assert len(curves.data) == 8 and list(curves.data[0].y) == [0.5, 0.2]
    assert np.allclose(list(curves.data[1].y), [0.5, 0.35]), "bold line = rolling mean"


def test_reliability_skips_empty_bins():
    curve = {
        "confidence": np.array([0.2, 0.5, 0.8]),
        "accuracy": np.array([0.1, 0.0, 0.9]),
        "count": np.array([3, 0, 5]),
    }
    fig = plots.reliability_diagrams({"more": curve}, "t")
    assert list(fig.data[1].x) == [0.2, 0.8] and fig.data[0].name == "perfect"


def test_ece_vs_k_has_reference_line():
    table = pd.DataFrame(
        {"scheme": ["more", "more"], "test_source": ["helpful", "helpful"], "K": [2, 3], "ece_10": [0.1, 0.05]}
    )
    fig = plots.ece_vs_k(table, pd.DataFrame({"test_source": ["helpful"], "ece_10": [0.07]}), "t")
    assert list(fig.data[0].y) == [0.1, 0.05] and len(fig.layout.shapes) == 1


def test_ece_figures_show_the_noise_floor():
    tidy = pd.DataFrame(
        {
            "scheme": ["more", "top", "more"],
            "test_source": ["a", "a", "b"],
            "ece_10": [0.05, 0.07, 0.04],
            "ece_10_floor": [0.03, 0.031, 0.02],
            "ece_10_floor_p95": [0.05, 0.052, 0.035],
        }
    )
    bars = plots.metric_bars(tidy, "ece_10", "t")
    rects = [s for s in bars.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.y1) for r in rects] == [(-0.45, 0.052), (0.55, 0.035)], "band up to the largest p95 per source"
    assert [s.y0 for s in bars.layout.shapes if s.type == "line"] == pytest.approx([0.0305, 0.02])
    assert bars.data[-1].name.startswith("noise floor")
    curve = {
        "confidence": np.array([0.2, 0.5, 0.8]),
        "accuracy": np.array([0.1, 0.0, 0.9]),
        "count": np.array([3, 0, 5]),
        "band_lo": np.array([0.1, np.nan, 0.7]),
        "band_hi": np.array([0.3, np.nan, 0.9]),
    }
    fig = plots.reliability_diagrams({"more": curve}, "t")
    assert list(fig.data[1].y) == [0.3, 0.9, 0.7, 0.1] and fig.data[1].fill == "toself"
    assert list(fig.data[2].x) == [0.2, 0.8]
    k = plots.ece_vs_k(tidy.assign(K=[2, 2, 3]), None, "t")
    assert len(k.layout.shapes) == 2
