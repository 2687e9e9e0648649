"""Plotly figures of the workbook (paper Figs 1, 3, 4, 5, 6): they only display numbers computed elsewhere.

Inputs are tidy pandas tables or plain arrays produced by `morelib.study.pipeline`; nothing here computes a metric
(rliable's plot_utils is the model). The workbook's one palette (`SCHEME_COLORS`, `PALETTE`, `TEMPLATE`) lives here;
the explorer's widgets use it too. Checked in tests/test_plots.py: each figure has the traces and values it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors as px_colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morelib.core.errors import MoreError

SCHEME_COLORS = {
    "raw": "#9e9e9e",
    "top": "#1f77b4",
    "single": "#1f77b4",
    "multitask": "#ff7f0e",
    "more": "#2ca02c",
    "top+T": "#6baed6",
    "multitask+T": "#fdae6b",
    "more+T": "#74c476",
}
TEMPLATE = "plotly_white"
PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728")  # per test source


def _color(scheme: str) -> str | None:
    """The workbook's colour for a scheme (None lets plotly choose)."""
    return SCHEME_COLORS.get(scheme)


def _per_group(table: pd.DataFrame, color: str, trace: Callable[[str, pd.DataFrame], Any]) -> go.Figure:
    """A figure with one trace per value of column `color`, in table order: trace(value as str, its rows)."""
    fig = go.Figure()
    for name, part in table.groupby(color, sort=False):
        fig.add_trace(trace(str(name), part))
    return fig


def _error_y(part: pd.DataFrame, metric: str) -> dict[str, Any] | None:
    """Plotly error bars of `metric`: from columns `<metric>_lo`/`<metric>_hi` if present, else `<metric>_sd`."""
    if f"{metric}_lo" in part and f"{metric}_hi" in part:
        return {
            "type": "data",
            "symmetric": False,
            "array": part[f"{metric}_hi"] - part[metric],
            "arrayminus": part[metric] - part[f"{metric}_lo"],
        }
    if f"{metric}_sd" in part:
        return {"type": "data", "array": part[f"{metric}_sd"]}
    return None


def accuracy_heatmap(
    matrix: pd.DataFrame, title: str = "Accuracy of each RM (row) on each test source (column)"
) -> go.Figure:
    """Heatmap of a K×K accuracy matrix (rows = RM trained on, columns = test source), values annotated (Fig 1)."""
    if matrix.empty:
        raise MoreError("accuracy_heatmap needs a non-empty matrix")
    fig = go.Figure(
        go.Heatmap(
            z=matrix.values,
            x=list(matrix.columns),
            y=list(matrix.index),
            colorscale="Viridis",
            text=np.round(matrix.values, 3),
            texttemplate="%{text}",
            colorbar={"title": "accuracy"},
        )
    )
    fig.update_layout(title=title, xaxis_title="test source", yaxis_title="RM trained on", template=TEMPLATE)
    return fig


def accuracy_radar(matrix: pd.DataFrame, title: str = "Accuracy per test source (paper Fig 1 radar)") -> go.Figure:
    """Radar chart: one closed polygon per RM (row) over the test sources (columns)."""
    theta = list(matrix.columns) + [matrix.columns[0]]
    fig = go.Figure()
    for rm, row in matrix.iterrows():
        values = list(row.values) + [row.values[0]]
        fig.add_trace(go.Scatterpolar(r=values, theta=theta, name=str(rm), fill="none"))
    lo, hi = np.floor(np.nanmin(matrix.values) * 20) / 20, np.ceil(np.nanmax(matrix.values) * 20) / 20
    fig.update_layout(title=title, polar={"radialaxis": {"range": [lo, hi]}}, template=TEMPLATE)
    return fig


def reward_diff_histograms(
    table: pd.DataFrame, title: str, value: str = "reward_diff", color: str = "scheme"
) -> go.Figure:
    """Overlaid histograms of reward differences r(chosen) − r(rejected), one per RM (Fig 3a), from a tidy table."""
    fig = _per_group(table, color, lambda name, part: go.Histogram(x=part[value], name=name, opacity=0.55, nbinsx=40))
    fig.update_layout(
        barmode="overlay", title=title, xaxis_title="reward difference", yaxis_title="pairs", template=TEMPLATE
    )
    return fig


def reward_box(table: pd.DataFrame, x: str, y: str, color: str, title: str) -> go.Figure:
    """Grouped box plots of column `y` by `x`, one box colour per value of `color` (Fig 3b, Fig 5)."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Box(x=part[x], y=part[y], name=name, marker_color=_color(name), boxpoints="outliers"),
    )
    fig.update_layout(boxmode="group", title=title, xaxis_title=x, yaxis_title=y, template=TEMPLATE)
    return fig


def metric_bars(
    table: pd.DataFrame, metric: str, title: str, x: str = "test_source", color: str = "scheme"
) -> go.Figure:
    """Grouped bars of `metric` (mean over seeds) with error bars from columns `<metric>_lo`/`<metric>_hi` if present;
    with `<metric>_floor_p95` (and `<metric>_floor`) in `table`, the ECE noise floor as a grey band per category."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Bar(
            x=part[x], y=part[metric], name=name, marker_color=_color(name), error_y=_error_y(part, metric)
        ),
    )
    if f"{metric}_floor_p95" in table:
        _floor_bands(fig, table, metric, x)
    fig.update_layout(barmode="group", title=title, xaxis_title=x, yaxis_title=metric, template=TEMPLATE)
    return fig


FLOOR_NAME = "noise floor: ECE of a perfectly calibrated model (band up to its 95th percentile, line at its mean)"


def _floor_bands(fig: go.Figure, table: pd.DataFrame, metric: str, x: str) -> None:
    """Per x category, a grey band from 0 to the largest `<metric>_floor_p95` and a line at the mean
    `<metric>_floor`."""
    by_x = table.groupby(x, sort=False)
    top, floor = (
        by_x[f"{metric}_floor_p95"].max(),
        by_x[f"{metric}_floor"].mean() if f"{metric}_floor" in table else None,
    )
    for i, cat in enumerate(top.index):
        fig.add_shape(
            type="rect",
            x0=i - 0.45,
            x1=i + 0.45,
            y0=0,
            y1=top[cat],
            xref="x",
            yref="y",
            layer="below",
            fillcolor="grey",
            opacity=0.18,
            line_width=0,
        )
        if floor is not None:
            fig.add_shape(
                type="line",
                x0=i - 0.45,
                x1=i + 0.45,
                y0=floor[cat],
                y1=floor[cat],
                xref="x",
                yref="y",
                line={"color": "dimgrey", "dash": "dot", "width": 1.5},
            )
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=FLOOR_NAME,
            marker={"symbol": "square", "size": 12, "color": "lightgrey"},
        )
    )


def reliability_diagrams(curves: Mapping[str, Mapping[str, np.ndarray]], title: str) -> go.Figure:
    """Reliability diagrams: mean predicted P(chosen ≻ rejected) vs observed accuracy per bin, one line per RM (Fig 4);
    marker area grows with the bin's count, so sparse bins do not look as weighty as full ones. Curves carrying
    `band_lo`/`band_hi` (metrics.reliability) get a shaded band: where a perfectly calibrated model's points fall
    (95%)."""
    fig = go.Figure(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"})
    )
    for name, c in curves.items():
        conf, acc = np.asarray(c["confidence"]), np.asarray(c["accuracy"])
        keep = np.asarray(c["count"]) > 0
        count = np.asarray(c["count"])[keep]
        if "band_lo" in c and "band_hi" in c:
            xs = np.concatenate([conf[keep], conf[keep][::-1]])
            ys = np.concatenate([np.asarray(c["band_hi"])[keep], np.asarray(c["band_lo"])[keep][::-1]])
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    fill="toself",
                    mode="lines",
                    line={"width": 0},
                    opacity=0.15,
                    fillcolor=_color(name) or "grey",
                    legendgroup=name,
                    hoverinfo="skip",
                    name=f"{name}: 95% band of a perfectly calibrated model",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=conf[keep],
                y=acc[keep],
                mode="lines+markers",
                name=name,
                text=count,
                marker={"color": _color(name), "size": 4 + 16 * np.sqrt(count / count.max())},
                legendgroup=name,
                line={"color": _color(name)},
                hovertemplate="conf %{x:.3f}<br>acc %{y:.3f}<br>n %{text}",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="predicted probability",
        yaxis_title="observed frequency",
        xaxis_range=[0, 1],
        yaxis_range=[0, 1],
        template=TEMPLATE,
    )
    return fig


def training_curves(history: Mapping[str, object], title: str, smooth: int | None = None) -> go.Figure:
    """Two panels over training steps from a head's history: λ per source (top) and each source's batch loss (bottom);
    per-step values faint, their rolling mean over `smooth` steps (default ≈ steps/50) bold, one colour per source."""
    lam, loss, source_names = np.asarray(history["lam"]), np.asarray(history["loss"]), list(history["source_names"])
    steps = max(lam.shape[0] if lam.size else 0, loss.shape[0] if loss.size else 0)
    window = smooth or max(1, steps // 50)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        subplot_titles=(f"λ per source (bold: rolling mean over {window} steps)", "batch loss per source"),
    )
    palette = px_colors.qualitative.Plotly
    for k, name in enumerate(source_names):
        color = palette[k % len(palette)]
        for row, values in ((1, lam), (2, loss)):
            if not values.size:
                continue
            series = pd.Series(values[:, k])
            fig.add_trace(
                go.Scatter(
                    y=series,
                    mode="lines",
                    line={"color": color, "width": 1},
                    opacity=0.25,
                    legendgroup=name,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                row=row,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    y=series.rolling(window, min_periods=1).mean(),
                    mode="lines",
                    name=name,
                    line={"color": color, "width": 2.5},
                    legendgroup=name,
                    showlegend=row == 1,
                ),
                row=row,
                col=1,
            )
    fig.update_layout(title=title, template=TEMPLATE, height=600)
    fig.update_xaxes(title_text="step", row=2, col=1)
    return fig


def ece_vs_k(table: pd.DataFrame, reference: pd.DataFrame | None, title: str, metric: str = "ece_10") -> go.Figure:
    """`metric` vs number of sources K, one line per (scheme, test source); `reference` rows (test_source, metric)
    drawn as dashed horizontal lines (Single-Top in Fig 6); with `<metric>_floor_p95` in `table`, a grey band per test
    source up to the noise floor's 95th percentile (where a perfectly calibrated model's ECE falls)."""
    fig = go.Figure()
    for (scheme, src), part in table.groupby(["scheme", "test_source"], sort=False):
        err = {"type": "data", "array": part[f"{metric}_sd"]} if f"{metric}_sd" in part else None
        fig.add_trace(
            go.Scatter(
                x=part["K"],
                y=part[metric],
                mode="lines+markers",
                name=f"{scheme} · {src}",
                marker_color=_color(str(scheme)),
                error_y=err,
                line={"dash": "solid" if src == table["test_source"].iloc[0] else "dashdot"},
            )
        )
    if f"{metric}_floor_p95" in table:
        for src, p95 in table.groupby("test_source", sort=False)[f"{metric}_floor_p95"].mean().items():
            fig.add_hrect(
                y0=0,
                y1=p95,
                fillcolor="grey",
                opacity=0.1,
                line_width=0,
                layer="below",
                annotation_text=f"noise floor p95 · {src}",
                annotation_position="bottom left",
            )
    if reference is not None:
        for _, row in reference.iterrows():
            fig.add_hline(
                y=row[metric], line_dash="dash", line_color=_color("top"), annotation_text=f"top · {row['test_source']}"
            )
    fig.update_layout(
        title=title,
        xaxis_title="number of training sources K",
        yaxis_title=metric,
        template=TEMPLATE,
        xaxis={"dtick": 1},
    )
    return fig


def scatter_xy(table: pd.DataFrame, x: str, y: str, color: str, title: str) -> go.Figure:
    """Markers of `y` against `x`, one series per value of `color` (synthetic benchmark: ECE vs cosine to r*)."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Scatter(
            x=part[x], y=part[y], mode="markers", name=name, marker_color=_color(name), marker_size=10
        ),
    )
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template=TEMPLATE)
    return fig


def when_more_helps(
    diffs: pd.DataFrame,
    metrics: Sequence[str] = ("cosine_to_r_star", "truth_ece"),
    title: str = "When does MORE help? Scheme − MultiTask per synthetic scenario (mean, 95% t-CI over seeds)",
) -> go.Figure:
    """One panel per metric: each scheme's paired difference to MultiTask (rows of `scenarios.paired_differences`:
    scheme, scenario, metric, diff, lo, hi) per scenario with its CI; a dashed line at 0 (no difference)."""
    if diffs.empty:
        raise MoreError("when_more_helps needs a non-empty table of paired differences")
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[f"{m} (scheme − MultiTask)" for m in metrics])
    schemes = list(dict.fromkeys(diffs["scheme"]))
    for col, metric in enumerate(metrics, start=1):
        for k, scheme in enumerate(schemes):
            part = diffs[(diffs["metric"] == metric) & (diffs["scheme"] == scheme)]
            err = {
                "type": "data",
                "symmetric": False,
                "array": part["hi"] - part["diff"],
                "arrayminus": part["diff"] - part["lo"],
            }
            fig.add_trace(
                go.Scatter(
                    x=part["scenario"],
                    y=part["diff"],
                    mode="markers",
                    name=scheme,
                    error_y=err,
                    legendgroup=scheme,
                    showlegend=col == 1,
                    offsetgroup=scheme,
                    marker={
                        "color": _color(scheme) or px_colors.qualitative.Plotly[k % 10],
                        "size": 11 if scheme == "more" else 7,
                        "symbol": "diamond" if scheme == "more" else "circle",
                    },
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=0, line_dash="dash", line_color="grey", row=1, col=col)
    fig.update_layout(title=title, template=TEMPLATE, scattermode="group", height=480)
    return fig


def capacity_curve(
    pooled: pd.DataFrame,
    metric: str = "ece_10",
    title: str = "MORE − MultiTask against trainable capacity (pooled over test sources, 95% CI)",
) -> go.Figure:
    """Trainable parameters (log x) against scheme − MultiTask `metric` with CI bars, one trace per scheme and batch
    per source (rows of `capacity.pooled_table`: tier, B, params, scheme, metric, diff, lo, hi); a dashed zero line."""
    part = pooled[pooled["metric"] == metric]
    if part.empty:
        raise MoreError(f"capacity_curve needs rows of metric '{metric}', got {sorted(set(pooled['metric']))}")
    fig = go.Figure()
    for k, ((scheme, B), g) in enumerate(part.groupby(["scheme", "B"], sort=False)):
        err = {"type": "data", "symmetric": False, "array": g["hi"] - g["diff"], "arrayminus": g["diff"] - g["lo"]}
        fig.add_trace(
            go.Scatter(
                x=g["params"],
                y=g["diff"],
                text=g["tier"],
                mode="markers+lines+text",
                textposition="top center",
                name=f"{scheme}, B = {B}",
                error_y=err,
                marker={"color": px_colors.qualitative.Plotly[k % 10], "size": 11 if scheme == "more" else 7},
            )
        )
    fig.add_hline(y=0, line_dash="dash", line_color="grey")
    fig.update_layout(
        title=title,
        xaxis={"type": "log", "title": "trainable parameters"},
        yaxis_title=f"{metric}: scheme − MultiTask",
        template=TEMPLATE,
    )
    return fig


def best_of_n(table: pd.DataFrame, title: str) -> go.Figure:
    """Best-of-n curves (issue 26): the judge's mean reward (left) and win rate against n = 1 (right) of each
    selector's pick vs n, with CI bars; `table` is one judge's `best_of_n.curve` rows (selector, n, reward[_lo/_hi],
    win[_lo/_hi])."""
    if table.empty:
        raise MoreError("best_of_n needs a non-empty table")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("judge's mean reward of the pick", "win rate against n = 1"))
    others = iter(PALETTE)
    for name, part in table.groupby("selector", sort=False):
        color = _color(str(name)) or ("#9e9e9e" if name == "random" else next(others, None))
        for col, metric in ((1, "reward"), (2, "win")):
            fig.add_trace(
                go.Scatter(
                    x=part["n"],
                    y=part[metric],
                    error_y=_error_y(part, metric),
                    mode="lines+markers",
                    name=str(name),
                    legendgroup=str(name),
                    showlegend=col == 1,
                    line={"color": color, "dash": "dot" if name == "random" else "solid"},
                ),
                row=1,
                col=col,
            )
    fig.add_hline(y=0.5, line_dash="dash", line_color="#7f7f7f", row=1, col=2)
    fig.update_xaxes(type="log", tickvals=sorted(table["n"].unique()), title_text="n (samples the selector sees)")
    fig.update_layout(title=title, template=TEMPLATE)
    return fig
