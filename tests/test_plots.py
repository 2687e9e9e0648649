"""Plots display exactly the numbers they are given: trace counts, names and values; human axis words; one colour per
scheme; forest points and CI ends equal the tables'; PNG and SVG beside the HTML where a renderer is present."""

import shutil

import numpy as np
import pandas as pd
import pytest

from morelib.core import runs
from morelib.core.config import load_config
from morelib.core.errors import MoreError
from morelib.data import paper
from morelib.study import forest, plots, tables
from morelib.train.reward_models import RMKey


@pytest.fixture
def matrix():
    return pd.DataFrame(
        [[0.7, 0.5, 0.6], [0.55, 0.65, 0.45], [0.5, 0.52, 0.49]],
        index=["helpful", "harmless", "raw"],
        columns=["helpful", "harmless", "oasst1"],
    )


def _titles(fig) -> list[str]:
    """Every axis title and panel (annotation) title of a figure."""
    layout = fig.to_plotly_json()["layout"]
    axes = [v.get("title", {}).get("text") or "" for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))]
    return axes + [a.get("text", "") for a in layout.get("annotations", [])]


def test_heatmap_rows_top_to_bottom_diverging_at_chance_with_cis(matrix):
    cis = pd.DataFrame(
        [
            {"rm": rm, "test_source": src, "lo": matrix.loc[rm, src] - 0.01 * (i + 1), "hi": matrix.loc[rm, src] + 0.02}
            for i, rm in enumerate(matrix.index)
            for src in matrix.columns
        ]
    ).sample(frac=1.0, random_state=0)  # any row order
    heat = plots.accuracy_heatmap(matrix, cis)
    trace = heat.data[0]
    assert np.allclose(trace.z, matrix.values) and list(trace.y) == ["helpful", "harmless", "raw"]
    assert heat.layout.yaxis.autorange == "reversed", "first row drawn at the top: the diagonal runs top-left down"
    assert trace.zmid == 0.5 and trace.colorscale[0][1] != trace.colorscale[-1][1]
    assert trace.text[1][2] == "0.450<br>[0.430, 0.470]", "harmless RM on oasst1: value, lo, hi of its own row"
    assert trace.text[0][0] == "0.700<br>[0.690, 0.720]"
    assert plots.accuracy_heatmap(matrix).data[0].text[2][1] == "0.520"
    with pytest.raises(MoreError):
        plots.accuracy_heatmap(pd.DataFrame())


def test_radar_from_zero_named_by_training_source(matrix):
    radar = plots.accuracy_radar(matrix)
    assert tuple(radar.layout.polar.radialaxis.range)[0] == 0, "areas not exaggerated"
    rms = [t for t in radar.data if t.name != "chance (0.5)"]
    assert [t.name for t in rms] == ["RM trained on helpful", "RM trained on harmless", "raw (untrained) RM"]
    assert list(rms[0].r) == [0.7, 0.5, 0.6, 0.7] and rms[0].theta[-1] == "helpful"
    assert rms[0].line.color == plots.source_color("helpful") != rms[1].line.color


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
    bars = plots.metric_bars(tidy, "accuracy", "t", errors="error bars: 95% CI (seeds + test pairs)")
    assert np.allclose(bars.data[0].error_y.array, [0.1, 0.1])
    assert np.allclose(bars.data[0].error_y.arrayminus, [0.1, 0.1])
    assert "95% CI (seeds + test pairs)" in bars.layout.title.text and bars.layout.xaxis.title.text == "test source"
    sd = plots.metric_bars(tidy.drop(columns=["accuracy_lo", "accuracy_hi"]).assign(accuracy_sd=0.1), "accuracy", "t")
    assert "sd over seeds" in sd.layout.title.text, "error bars always say what they are"
    lam = np.array([[0.5, 0.5], [0.2, 0.8]])
    curves = plots.training_curves({"lam": lam, "loss": lam * 2, "source_names": ["a", "b"]}, "t", smooth=2)
    assert len(curves.data) == 8 and list(curves.data[0].y) == [0.5, 0.2]
    assert np.allclose(list(curves.data[1].y), [0.5, 0.35]), "bold line = rolling mean"


def _curve(band: bool = False) -> dict[str, np.ndarray]:
    curve = {
        "confidence": np.array([0.2, 0.5, 0.8]),
        "accuracy": np.array([0.1, 0.0, 0.9]),
        "count": np.array([3, 0, 5]),
    }
    if band:
        curve.update(band_lo=np.array([0.1, np.nan, 0.7]), band_hi=np.array([0.3, np.nan, 0.9]))
    return curve


def test_reliability_one_panel_per_scheme_skips_empty_bins():
    fig = plots.reliability_diagrams({"more": _curve()}, "t")
    assert list(fig.data[1].x) == [0.2, 0.8] and fig.data[0].name == "perfect"
    schemes = ["top", "multitask", "more", "multitask+T", "more+T"]
    fig = plots.reliability_diagrams({s: _curve(band=True) for s in schemes}, "t")
    curves = [t for t in fig.data if t.mode == "lines+markers"]
    assert [t.name for t in curves] == schemes
    assert len({(t.xaxis, t.yaxis) for t in curves}) == 5, "each scheme in its own panel"
    bands = [t for t in fig.data if t.fill == "toself"]
    assert [b.xaxis for b in bands] == [c.xaxis for c in curves], "each band sits with its own curve"
    assert [b.fillcolor for b in bands] == [plots.scheme_color(s) for s in schemes]
    assert list(bands[0].y) == [0.3, 0.9, 0.7, 0.1]
    assert [a.text for a in fig.layout.annotations] == schemes


def test_ece_vs_k_one_colour_per_scheme_names_added_sources_and_labels_apart():
    table = pd.DataFrame(
        {
            "scheme": ["more", "more", "more", "more", "more[loss+]", "more[loss+]", "more[loss+]", "more[loss+]"],
            "test_source": ["helpful", "helpful", "harmless", "harmless"] * 2,
            "K": [2, 3, 2, 3] * 2,
            "added": ["harmless", "oasst1"] * 4,
            "ece_10": [0.1, 0.05, 0.2, 0.1, 0.09, 0.06, 0.15, 0.12],
            "ece_10_sd": [0.01] * 8,
            "ece_10_floor_p95": [0.03, 0.03, 0.031, 0.031] * 2,
        }
    )
    fig = plots.ece_vs_k(table, pd.DataFrame({"test_source": ["helpful", "harmless"], "ece_10": [0.07, 0.08]}), "t")
    lines = {t.name: t for t in fig.data}
    assert list(lines["more · helpful"].y) == [0.1, 0.05]
    for scheme in ("more", "more[loss+]"):
        assert lines[f"{scheme} · helpful"].line.color == lines[f"{scheme} · harmless"].line.color
    assert lines["more · helpful"].line.color != lines["more[loss+] · helpful"].line.color
    assert {"noise floor (p95) · helpful", "noise floor (p95) · harmless", "Single-Top · helpful"} <= set(lines)
    assert not fig.layout.annotations and not fig.layout.shapes, "labels are legend entries: none can overlap"
    assert list(fig.layout.xaxis.ticktext) == ["K = 2<br>+ harmless", "K = 3<br>+ oasst1"]
    assert "sd over seeds" in fig.layout.title.text


def test_ece_bars_show_the_noise_floor():
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
    assert bars.data[-1].name.startswith("noise floor") and bars.layout.yaxis.title.text == "ECE (10 bins)"


def test_one_colour_per_scheme_across_figures():
    tidy = pd.DataFrame({"scheme": ["more", "multitask"], "test_source": ["a", "a"], "ece_10": [0.1, 0.2], "x": [1, 2]})
    bars = plots.metric_bars(tidy, "ece_10", "t")
    scatter = plots.scatter_xy(tidy, "x", "ece_10", "scheme", "t")
    rel = plots.reliability_diagrams({"more": _curve(), "multitask": _curve()}, "t")
    seen = {}
    for trace in [*bars.data, *scatter.data, *[t for t in rel.data if t.mode == "lines+markers"]]:
        seen.setdefault(trace.name, set()).add(trace.marker.color)
    assert seen == {"more": {plots.SCHEME_COLORS["more"]}, "multitask": {plots.SCHEME_COLORS["multitask"]}}
    assert plots.scheme_color("more@K5") == plots.scheme_color("more")
    assert plots.scheme_color("single:harmless") == plots.source_color("harmless")
    assert plots.scheme_color("someday") == plots.scheme_color("someday"), "an unlisted name keeps one colour"


def test_axis_words_not_column_names():
    assert plots.label("ece_10") == "ECE (10 bins)" and plots.label("test_source") == "test source"
    assert plots.label("k8_drift_norms") == "K = 8, drift norms" and plots.label("sizes_10to1") == "sizes 10:1"
    tidy = pd.DataFrame(
        {
            "scheme": ["more", "top"],
            "test_source": ["a", "a"],
            "ece_10": [0.1, 0.2],
            "cosine_to_r_star": [0.9, 0.8],
            "true_prob_gap": [0.1, 0.2],
            "reward_diff": [1.0, 2.0],
        }
    )
    figs = [
        plots.metric_bars(tidy, "ece_10", "t"),
        plots.reward_box(tidy, "test_source", "reward_diff", "scheme", "t"),
        plots.scatter_xy(tidy, "cosine_to_r_star", "true_prob_gap", "scheme", "t"),
        plots.reward_diff_histograms(tidy, "t"),
        plots.reliability_diagrams({"more": _curve()}, "t"),
        plots.when_more_helps(_scenario_diffs()),
    ]
    for fig in figs:
        assert not [t for t in _titles(fig) if "_" in t], _titles(fig)


def _scenario_diffs() -> pd.DataFrame:
    rows = [
        {"scheme": s, "scenario": sc, "metric": m, "diff": d, "lo": d - 0.01, "hi": d + 0.01}
        for s in ("more", "famo")
        for sc, d in (("k8_drift_norms", 0.02), ("sizes_10to1", -0.01))
        for m in ("cosine_to_r_star", "truth_ece")
    ]
    return pd.DataFrame(rows)


def test_when_more_helps_marks_which_way_is_better():
    fig = plots.when_more_helps(_scenario_diffs())
    titles = [a.text for a in fig.layout.annotations]
    assert "↑ better" in titles[0] and "cosine to the shared reward r*" in titles[0]
    assert "↓ better" in titles[1] and "ECE against the shared truth p*" in titles[1]
    assert list(fig.layout.xaxis.ticktext) == ["K = 8, drift norms", "sizes 10:1"]
    assert list(fig.data[0].x) == ["k8_drift_norms", "sizes_10to1"], "data keep the scenario keys"


def _compare_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    per_source = pd.DataFrame(
        {
            "metric": ["accuracy", "accuracy", "ece_10", "ece_10"],
            "test_source": ["helpful", "harmless"] * 2,
            "diff": [0.01, -0.02, -0.005, 0.003],
            "lo": [-0.01, -0.05, -0.01, -0.002],
            "hi": [0.03, 0.01, 0.0, 0.008],
        }
    )
    pooled = pd.DataFrame({"metric": ["accuracy", "ece_10"], "diff": [-0.005, -0.001], "lo": [-0.02, -0.004]})
    return per_source, pooled.assign(hi=[0.01, 0.002])


def test_forest_points_and_ci_ends_equal_the_tables():
    per_source, pooled = _compare_tables()
    deltas = paper.deltas("more", "multitask")
    rows = forest.rows(per_source, pooled, "more", "multitask", deltas)
    assert list(rows["test_source"]) == ["helpful", "harmless", "helpful", "harmless", "pooled", "pooled"]
    paper_ece = deltas.set_index(["metric", "test_source"]).loc[("ece_10", "pooled"), "paper"]
    assert rows.set_index(["metric", "test_source"]).loc[("ece_10", "pooled"), "paper"] == paper_ece
    assert np.isnan(rows.set_index(["metric", "test_source"]).loc[("ece_10", "helpful"), "paper"])
    fig = forest.figure(rows, "t")
    points = [t for t in fig.data if t.name == "MORE − MultiTask"]
    assert len(points) == 2, "one trace per metric panel"
    for trace, metric in zip(points, ["accuracy", "ece_10"]):
        want = rows[rows["metric"] == metric]
        assert np.allclose(trace.x, want["diff"])
        assert np.allclose(np.asarray(trace.x) + trace.error_x.array, want["hi"])
        assert np.allclose(np.asarray(trace.x) - trace.error_x.arrayminus, want["lo"])
        assert list(np.round(trace.y).astype(int)) == [0, 1, 2], "sources top to bottom, pooled last"
    lines = [t for t in fig.data if t.name == "MORE − MultiTask" or "paper" in (t.name or "")]
    pooled_ref = [t for t in lines if t.name == "paper: MORE − MultiTask (pooled)"]
    assert [list(t.x) for t in pooled_ref] == [[deltas["paper"].iloc[-2]] * 2, [paper_ece] * 2]
    assert [s.x0 for s in fig.layout.shapes] == [0, 0], "a zero line in each panel"
    assert tuple(fig.layout.yaxis.ticktext) == ("helpful", "harmless", "pooled")


def test_forest_of_two_comparisons_keeps_each_colour():
    per_source, pooled = _compare_tables()
    both = [forest.rows(per_source, pooled, "more", "multitask"), forest.rows(per_source, pooled, "more", "top")]
    fig = forest.figure(both, "t")
    colors = {t.name: t.marker.color for t in fig.data if t.showlegend is not False and t.mode == "markers"}
    assert colors == {
        "MORE − MultiTask": plots.SCHEME_COLORS["multitask"],
        "MORE − Single-Top": plots.SCHEME_COLORS["top"],
    }
    with pytest.raises(MoreError):
        forest.figure(forest.rows(per_source, pooled, "more", "top", metrics=["log_loss"]), "t")


def test_paper_deltas_read_the_csvs():
    t3 = paper.table3("Pythia-1.4B")
    deltas = paper.deltas("more", "multitask").set_index(["metric", "test_source"])["paper"]
    assert deltas[("ece_10", "pooled")] == pytest.approx(t3.loc["more", "ece"] - t3.loc["multitask", "ece"])
    assert deltas[("accuracy", "oasst1")] == pytest.approx(t3.loc["more", "oasst1"] - t3.loc["multitask", "oasst1"])
    hh = paper.deltas("more", "top", table="outliers").set_index("test_source")["paper"]
    ece = paper.outliers("Pythia-1.4B")["ece"]
    assert hh["helpful"] == pytest.approx(ece[("helpful", "more")] - ece[("helpful", "top")])
    assert hh["pooled"] == pytest.approx((hh["helpful"] + hh["harmless"]) / 2)


RENDERER = shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chrome")


def test_save_figure_writes_png_and_svg_beside_the_html(tmp_path, matrix):
    pytest.importorskip("kaleido", reason="kaleido (the static renderer) is not installed: pip install kaleido")
    if RENDERER is None:
        pytest.skip("no Chrome/Chromium on PATH for kaleido (Debian: apt-get install chromium)")
    run = runs.open_run(load_config("tiny", {"output_root": str(tmp_path)}), "", "nb")
    run.save_figure("heat", plots.accuracy_heatmap(matrix))
    figdir = run.dir / "figures"
    assert (figdir / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (figdir / "heat.svg").read_bytes()[:400]


def test_scheme_and_cell_cis_match_the_binomial_interval():
    cfg = load_config("tiny", {"n_boot": 2000})
    rng = np.random.default_rng(1)
    n = 4000
    d = rng.normal(0.3, 1.0, n)  # P(Δ > 0) ≈ 0.62
    diffs = {RMKey("more", seed=0): {"a": d}, RMKey("single", source="a", seed=0): {"a": d}}
    p = float((d > 0).mean())
    half = 1.96 * np.sqrt(p * (1 - p) / n)  # one seed: only the test pairs vary
    summary = pd.DataFrame({"scheme": ["more"], "test_source": ["a"], "accuracy": [p]})
    row = tables.with_cis(summary, diffs, cfg, ["accuracy", "ece_10"]).iloc[0]
    assert (row["accuracy_lo"] + row["accuracy_hi"]) / 2 == pytest.approx(p, abs=1e-9)
    assert (row["accuracy_hi"] - row["accuracy_lo"]) / 2 == pytest.approx(half, rel=0.1)
    assert row["ece_10_lo"] < row["ece_10_hi"]
    cell = tables.accuracy_cis(diffs, pd.DataFrame({"a": [p]}, index=["a"]), cfg).iloc[0]
    assert cell["lo"] == pytest.approx(p - half, abs=0.004) and cell["hi"] == pytest.approx(p + half, abs=0.004)
