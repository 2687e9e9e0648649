"""Plotly figures of the workbook (paper Figs 1, 3, 4, 5, 6 and a forest plot per headline comparison): they only
display numbers computed elsewhere.

Inputs are tidy pandas tables or plain arrays produced by `morelib.study.pipeline` and `tables`; nothing here computes
a metric (rliable's plot_utils is the model). The workbook's one palette (`SCHEME_COLORS` via `scheme_color`, source
colours via `source_color`, `PALETTE`, `TEMPLATE`) and its one mapping from column names to axis words (`LABELS` via
`label`) live here; the explorer's widgets use them too. Checked in tests/test_plots.py: each figure shows the values
it was given (forest points and CI ends equal the table's, heatmap rows top to bottom in the matrix's order, the radar
from 0), no axis or panel title holds an underscore, and a scheme has one colour in every figure.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morelib.core.errors import MoreError
from morelib.synthetic.scenarios import HIGHER_IS_BETTER

SCHEME_COLORS = {  # one colour per scheme in every figure; a post-hoc variant (+T, +L) is a shade of its scheme
    "raw": "#9e9e9e",
    "top": "#1f77b4",
    "single": "#1f77b4",
    "multitask": "#ff7f0e",
    "more": "#2ca02c",
    "more[loss+]": "#d62728",
    "sizeprop": "#8c564b",
    "tuned": "#9467bd",
    "famo": "#e377c2",
    "top+T": "#6baed6",
    "multitask+T": "#fdae6b",
    "more+T": "#74c476",
    "multitask+L": "#a63603",
    "more+L": "#006d2c",
    "correct": "#1b9e77",
    "wrong": "#d95f02",
}
TEMPLATE = "plotly_white"
PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#d62728")  # per test source
SOURCES = ("helpful", "harmless", "oasst1", "webgpt", "summarize", "ultrafeedback")  # fixed colours: PALETTE in order
OTHER_COLORS = ("#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")
LABELS = {  # column or metric name → the words on an axis, a panel title or a legend
    "accuracy": "accuracy",
    "ece_5": "ECE (5 bins)",
    "ece_10": "ECE (10 bins)",
    "ece_20": "ECE (20 bins)",
    "ace_10": "ACE (10 bins)",
    "mce_10": "MCE (10 bins)",
    "log_loss": "log-loss",
    "test_source": "test source",
    "train_source": "RM trained on",
    "scheme": "reward model",
    "K": "number of training sources K",
    "reward_diff": "reward difference r(chosen) − r(rejected)",
    "abs_reward_diff": "|r(chosen) − r(rejected)|",
    "mean_abs_diff": "mean |reward difference|",
    "outlier_count": "outliers (beyond 1.5·IQR)",
    "cosine_to_r_star": "cosine to the shared reward r*",
    "true_prob_gap": "gap to the true preference probability",
    "truth_ece": "ECE against the shared truth p*",
    "truth_gap": "gap to the shared truth p*",
    "own_ece": "ECE on each source's own labels",
    "own_accuracy": "accuracy on each source's own labels",
    "test_set": "test set",
    "ranked": "ranking",
    "share": "share of prompts",
}
HIGHER_BETTER = {"accuracy", *HIGHER_IS_BETTER}
LOWER_BETTER = {"ece_5", "ece_10", "ece_20", "ace_10", "mce_10", "log_loss", "truth_ece", "truth_gap", "own_ece"}
LOWER_BETTER |= {"true_prob_gap", "perplexity"}
FLOOR_NAME = "noise floor: ECE of a perfectly calibrated model (band up to its 95th percentile, line at its mean)"


def label(name: str) -> str:
    """Human words for a column, metric or scenario name: LABELS, else underscores as spaces ('k8_drift_norms' →
    'K = 8, drift norms', 'sizes_10to1' → 'sizes 10:1')."""
    if name in LABELS:
        return LABELS[name]
    text = re.sub(r"^k(\d+)_", r"K = \1, ", str(name))
    return re.sub(r"(\d+)to(\d+)", r"\1:\2", text).replace("_", " ")


def better(metric: str) -> str:
    """'↑ better' or '↓ better' for a metric whose good direction is known, else ''."""
    return "↑ better" if metric in HIGHER_BETTER else "↓ better" if metric in LOWER_BETTER else ""


def _stable(name: str, colors: Sequence[str]) -> str:
    """A colour of `colors` fixed by the name's CRC32 (the same in every process and figure)."""
    return colors[zlib.crc32(name.encode()) % len(colors)]


def source_color(source: str) -> str:
    """The one colour of a preference source (a test set, or the data a single-source RM trained on)."""
    return PALETTE[SOURCES.index(source)] if source in SOURCES else _stable(source, PALETTE)


def scheme_color(scheme: str) -> str:
    """The one colour of a scheme in every figure: its SCHEME_COLORS entry, a single-source RM's source colour
    (`single:helpful`), its base scheme's (`more@K5` → more), else a colour fixed by its name."""
    if scheme in SCHEME_COLORS:
        return SCHEME_COLORS[scheme]
    if scheme.startswith("single:"):
        return source_color(scheme.split(":", 1)[1])
    base = re.split(r"[@\[+]", scheme)[0]
    return SCHEME_COLORS.get(base) or _stable(scheme, OTHER_COLORS)


def _subtitle(title: str, note: str) -> str:
    """A figure title with a smaller second line (what the error bars or bands are)."""
    return f"{title}<br><sup>{note}</sup>" if note else title


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


def _error_note(table: pd.DataFrame, metric: str, errors: str | None) -> str:
    """What the error bars of `metric` are: `errors` if given, else read from the columns present."""
    if errors is not None:
        return errors
    if f"{metric}_lo" in table and f"{metric}_hi" in table:
        return "error bars: 95% CI"
    return "error bars: ±1 sd over seeds (spread, not a CI)" if f"{metric}_sd" in table else ""


def accuracy_heatmap(
    matrix: pd.DataFrame,
    cis: pd.DataFrame | None = None,
    title: str = "Accuracy of each RM (row) on each test source (column)",
) -> go.Figure:
    """Heatmap of a K×K accuracy matrix (rows = RM trained on, top to bottom in the matrix's order; columns = test
    source), diverging at chance (0.5: red below, blue above); with `cis` (rows rm, test_source, lo, hi:
    `tables.accuracy_cis`) each cell also shows its 95% CI (Fig 1)."""
    if matrix.empty:
        raise MoreError("accuracy_heatmap needs a non-empty matrix")
    text = matrix.map(lambda v: f"{v:.3f}")
    if cis is not None:
        lo = cis.pivot(index="rm", columns="test_source", values="lo").reindex(matrix.index)[matrix.columns]
        hi = cis.pivot(index="rm", columns="test_source", values="hi").reindex(matrix.index)[matrix.columns]
        text = text + "<br>[" + lo.map(lambda v: f"{v:.3f}") + ", " + hi.map(lambda v: f"{v:.3f}") + "]"
    fig = go.Figure(
        go.Heatmap(
            z=matrix.values,
            x=list(matrix.columns),
            y=list(matrix.index),
            colorscale="RdBu",
            zmid=0.5,
            text=text.values,
            texttemplate="%{text}",
            hovertemplate="RM trained on %{y}<br>test source %{x}<br>accuracy %{text}<extra></extra>",
            colorbar={"title": "accuracy<br>(0.5 = chance)"},
        )
    )
    note = "cell: accuracy (seed mean) [95% bootstrap CI over test pairs]" if cis is not None else ""
    fig.update_layout(
        title=_subtitle(title, note), xaxis_title="test source", yaxis_title="RM trained on", template=TEMPLATE
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def _rm_name(rm: str) -> str:
    """Legend words for a row of Fig 1's matrix."""
    return "raw (untrained) RM" if rm == "raw" else f"RM trained on {rm}"


def accuracy_radar(matrix: pd.DataFrame, title: str = "Accuracy per test source (paper Fig 1 radar)") -> go.Figure:
    """Radar chart: one closed polygon per RM (row) over the test sources (columns), radial axis from 0 (areas honest),
    chance (0.5) dotted."""
    theta = list(matrix.columns) + [matrix.columns[0]]
    fig = go.Figure(
        go.Scatterpolar(
            r=[0.5] * len(theta), theta=theta, name="chance (0.5)", mode="lines", line={"dash": "dot", "color": "grey"}
        )
    )
    for rm, row in matrix.iterrows():
        values = list(row.values) + [row.values[0]]
        color = SCHEME_COLORS["raw"] if rm == "raw" else source_color(str(rm))
        fig.add_trace(go.Scatterpolar(r=values, theta=theta, name=_rm_name(str(rm)), line={"color": color}))
    fig.update_layout(title=title, polar={"radialaxis": {"range": [0, 1]}}, template=TEMPLATE)
    return fig


def reward_diff_histograms(
    table: pd.DataFrame, title: str, value: str = "reward_diff", color: str = "scheme"
) -> go.Figure:
    """Overlaid histograms of reward differences r(chosen) − r(rejected), one per RM (Fig 3a), from a tidy table."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Histogram(
            x=part[value], name=name, opacity=0.55, nbinsx=40, marker_color=scheme_color(name)
        ),
    )
    fig.update_layout(barmode="overlay", title=title, xaxis_title=label(value), yaxis_title="pairs", template=TEMPLATE)
    return fig


def reward_box(table: pd.DataFrame, x: str, y: str, color: str, title: str) -> go.Figure:
    """Grouped box plots of column `y` by `x`, one box colour per value of `color` (Fig 3b, Fig 5)."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Box(
            x=part[x], y=part[y], name=name, marker_color=scheme_color(name), boxpoints="outliers"
        ),
    )
    fig.update_layout(boxmode="group", title=title, xaxis_title=label(x), yaxis_title=label(y), template=TEMPLATE)
    return fig


def metric_bars(
    table: pd.DataFrame,
    metric: str,
    title: str,
    x: str = "test_source",
    color: str = "scheme",
    errors: str | None = None,
) -> go.Figure:
    """Grouped bars of `metric` (mean over seeds) with error bars from columns `<metric>_lo`/`<metric>_hi` if present
    (else `<metric>_sd`), said under the title (`errors` overrides the words); with `<metric>_floor_p95` (and
    `<metric>_floor`) in `table`, the ECE noise floor as a grey band per category."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Bar(
            x=part[x], y=part[metric], name=name, marker_color=scheme_color(name), error_y=_error_y(part, metric)
        ),
    )
    if f"{metric}_floor_p95" in table:
        _floor_bands(fig, table, metric, x)
    fig.update_layout(
        barmode="group",
        title=_subtitle(title, _error_note(table, metric, errors)),
        xaxis_title=label(x),
        yaxis_title=label(metric),
        template=TEMPLATE,
        legend={"orientation": "h", "yanchor": "top", "y": -0.22},
        height=520,
    )
    return fig


def _floor_bands(fig: go.Figure, table: pd.DataFrame, metric: str, x: str) -> None:
    """Per x category, a grey band from 0 to the largest `<metric>_floor_p95` and a line at the mean
    `<metric>_floor`."""
    by_x = table.groupby(x, sort=False)
    top = by_x[f"{metric}_floor_p95"].max()
    floor = by_x[f"{metric}_floor"].mean() if f"{metric}_floor" in table else None
    for i, cat in enumerate(top.index):
        band = {"x0": i - 0.45, "x1": i + 0.45, "xref": "x", "yref": "y"}
        fig.add_shape(
            type="rect", y0=0, y1=top[cat], layer="below", fillcolor="grey", opacity=0.18, line_width=0, **band
        )
        if floor is not None:
            line = {"color": "dimgrey", "dash": "dot", "width": 1.5}
            fig.add_shape(type="line", y0=floor[cat], y1=floor[cat], line=line, **band)
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="markers",
            name=FLOOR_NAME,
            marker={"symbol": "square", "size": 12, "color": "lightgrey"},
        )
    )


def _reliability_traces(name: str, c: Mapping[str, np.ndarray], first: bool) -> list[go.Scatter]:
    """The band (where a perfectly calibrated model's bin accuracies fall, 95%) and the curve of one RM, in its colour;
    marker area grows with the bin's count."""
    conf, acc, count = (np.asarray(c[k]) for k in ("confidence", "accuracy", "count"))
    keep = count > 0
    conf, acc, count = conf[keep], acc[keep], count[keep]
    color, traces = scheme_color(name), []
    if "band_lo" in c and "band_hi" in c:
        band_hi, band_lo = np.asarray(c["band_hi"])[keep], np.asarray(c["band_lo"])[keep]
        traces.append(
            go.Scatter(
                x=np.concatenate([conf, conf[::-1]]),
                y=np.concatenate([band_hi, band_lo[::-1]]),
                fill="toself",
                mode="lines",
                line={"width": 0},
                fillcolor=color,
                opacity=0.2,
                hoverinfo="skip",
                legendgroup="band",
                showlegend=first,
                name="95% band of a perfectly calibrated model",
            )
        )
    traces.append(
        go.Scatter(
            x=conf,
            y=acc,
            mode="lines+markers",
            name=name,
            text=count,
            marker={"color": color, "size": 4 + 12 * np.sqrt(count / count.max())},
            line={"color": color},
            showlegend=False,
            hovertemplate="conf %{x:.3f}<br>acc %{y:.3f}<br>n %{text}",
        )
    )
    return traces


def reliability_diagrams(curves: Mapping[str, Mapping[str, np.ndarray]], title: str, cols: int = 3) -> go.Figure:
    """Reliability diagrams, one panel per RM (so bands do not wash into one colour): mean predicted P(chosen ≻
    rejected) vs observed accuracy per bin (Fig 4), the diagonal, and for curves carrying `band_lo`/`band_hi`
    (metrics.reliability) a band in the RM's colour: where a perfectly calibrated model's points fall (95%)."""
    if not curves:
        raise MoreError("reliability_diagrams needs at least one curve")
    cols = min(cols, len(curves))
    rows = -(-len(curves) // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(curves), horizontal_spacing=0.06, vertical_spacing=0.12
    )
    for i, (name, c) in enumerate(curves.items()):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        diagonal = go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash", "color": "grey"}, showlegend=i == 0
        )
        for trace in [diagonal, *_reliability_traces(name, c, i == 0)]:
            fig.add_trace(trace, **at)
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1])
    fig.update_xaxes(title_text="predicted probability", row=rows)
    fig.update_yaxes(title_text="observed frequency", col=1)
    fig.update_layout(title=title, template=TEMPLATE, height=340 * rows + 120, width=330 * cols + 160)
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
    for k, name in enumerate(source_names):
        color = source_color(name)
        for row, values in ((1, lam), (2, loss)):
            if not values.size:
                continue
            series = pd.Series(values[:, k])
            faint = {"line": {"color": color, "width": 1}, "opacity": 0.25, "hoverinfo": "skip", "showlegend": False}
            fig.add_trace(go.Scatter(y=series, mode="lines", legendgroup=name, **faint), row=row, col=1)
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
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_yaxes(title_text="λ", row=1, col=1)
    fig.update_yaxes(title_text="loss", row=2, col=1)
    return fig


DASHES = ("solid", "dashdot", "dot", "longdash")
SYMBOLS = ("circle", "square", "diamond", "triangle-up")


def _k_axis(table: pd.DataFrame) -> dict[str, Any]:
    """x-axis of a K plot: one tick per K, naming the source added at that K when the table has column `added`."""
    ks = sorted(table["K"].unique())
    if "added" not in table:
        return {"tickvals": ks, "title": label("K")}
    added = table.groupby("K")["added"].first()
    text = [f"K = {k}<br>+ {added[k]}" for k in ks]
    return {"tickvals": ks, "ticktext": text, "title": "number of training sources K (below it: the source added)"}


def ece_vs_k(table: pd.DataFrame, reference: pd.DataFrame | None, title: str, metric: str = "ece_10") -> go.Figure:
    """`metric` vs number of sources K: one colour per scheme, one line style per test source; `reference` rows
    (test_source, metric) as horizontal lines (Single-Top in Fig 6); with `<metric>_floor_p95` in `table`, a grey band
    per test source up to the noise floor's 95th percentile. Every label is a legend entry (none overlap)."""
    sources = list(dict.fromkeys(table["test_source"]))
    style = {s: (DASHES[i % len(DASHES)], SYMBOLS[i % len(SYMBOLS)]) for i, s in enumerate(sources)}
    x_span = [table["K"].min() - 0.3, table["K"].max() + 0.3]
    fig = go.Figure()
    if f"{metric}_floor_p95" in table:
        for src, p95 in table.groupby("test_source", sort=False)[f"{metric}_floor_p95"].mean().items():
            fig.add_trace(
                go.Scatter(
                    x=x_span,
                    y=[p95, p95],
                    mode="lines",
                    fill="tozeroy",
                    fillcolor="rgba(128,128,128,0.1)",
                    line={"color": "grey", "width": 1, "dash": style[src][0]},
                    name=f"noise floor (p95) · {src}",
                    hoverinfo="skip",
                )
            )
    for (scheme, src), part in table.groupby(["scheme", "test_source"], sort=False):
        color = scheme_color(str(scheme))
        fig.add_trace(
            go.Scatter(
                x=part["K"],
                y=part[metric],
                mode="lines+markers",
                name=f"{scheme} · {src}",
                error_y={"type": "data", "array": part[f"{metric}_sd"]} if f"{metric}_sd" in part else None,
                line={"color": color, "dash": style[src][0]},
                marker={"color": color, "symbol": style[src][1], "size": 8},
            )
        )
    for _, row in (reference if reference is not None else pd.DataFrame()).iterrows():
        fig.add_trace(
            go.Scatter(
                x=x_span,
                y=[row[metric]] * 2,
                mode="lines",
                name=f"Single-Top · {row['test_source']}",
                line={"color": scheme_color("top"), "dash": style.get(row["test_source"], ("dash",))[0], "width": 1},
            )
        )
    note = "error bars: ±1 sd over seeds (spread, not a CI)" if f"{metric}_sd" in table else ""
    fig.update_layout(title=_subtitle(title, note), yaxis_title=label(metric), template=TEMPLATE, xaxis=_k_axis(table))
    return fig


def scatter_xy(table: pd.DataFrame, x: str, y: str, color: str, title: str) -> go.Figure:
    """Markers of `y` against `x`, one series per value of `color` (synthetic benchmark: ECE vs cosine to r*)."""
    fig = _per_group(
        table,
        color,
        lambda name, part: go.Scatter(
            x=part[x], y=part[y], mode="markers", name=name, marker_color=scheme_color(name), marker_size=10
        ),
    )
    fig.update_layout(title=title, xaxis_title=label(x), yaxis_title=label(y), template=TEMPLATE)
    return fig


def _ci_error(part: pd.DataFrame) -> dict[str, Any]:
    """Asymmetric error bars from columns diff, lo, hi."""
    return {
        "type": "data",
        "symmetric": False,
        "array": part["hi"] - part["diff"],
        "arrayminus": part["diff"] - part["lo"],
    }


def when_more_helps(
    diffs: pd.DataFrame,
    metrics: Sequence[str] = ("cosine_to_r_star", "truth_ece"),
    title: str = "When does MORE help? Scheme − MultiTask per synthetic scenario",
) -> go.Figure:
    """One panel per metric, titled with its good direction (↑/↓ better): each scheme's paired difference to MultiTask
    (rows of `scenarios.paired_differences`: scheme, scenario, metric, diff, lo, hi) per scenario with its CI; a dashed
    line at 0 (no difference); scenarios named in words."""
    if diffs.empty:
        raise MoreError("when_more_helps needs a non-empty table of paired differences")
    titles = [f"{label(m)}<br>({better(m) or 'no better direction'})" for m in metrics]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=titles, horizontal_spacing=0.07)
    schemes = list(dict.fromkeys(diffs["scheme"]))
    for col, metric in enumerate(metrics, start=1):
        for scheme in schemes:
            part = diffs[(diffs["metric"] == metric) & (diffs["scheme"] == scheme)]
            fig.add_trace(
                go.Scatter(
                    x=part["scenario"],
                    y=part["diff"],
                    mode="markers",
                    name=scheme,
                    error_y=_ci_error(part),
                    legendgroup=scheme,
                    showlegend=col == 1,
                    offsetgroup=scheme,
                    marker={
                        "color": scheme_color(scheme),
                        "size": 11 if scheme == "more" else 7,
                        "symbol": "diamond" if scheme == "more" else "circle",
                    },
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=0, line_dash="dash", line_color="grey", row=1, col=col)
    scenarios = list(dict.fromkeys(diffs["scenario"]))
    fig.update_xaxes(tickvals=scenarios, ticktext=[label(s) for s in scenarios], tickangle=-35)
    fig.update_yaxes(title_text="scheme − MultiTask", col=1)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        title=_subtitle(title, "mean over seeds, 95% t-CI; dashed: no difference"),
        template=TEMPLATE,
        scattermode="group",
        height=540,
        width=380 * len(metrics) + 180,
        margin={"t": 130},
    )
    return fig


def capacity_curve(
    pooled: pd.DataFrame,
    metric: str = "ece_10",
    title: str = "MORE − MultiTask against trainable capacity (pooled over test sources, 95% CI)",
) -> go.Figure:
    """Trainable parameters (log x) against scheme − MultiTask `metric` with CI bars, one colour per scheme and one
    line style per batch per source (rows of `capacity.pooled_table`: tier, B, params, scheme, metric, diff, lo, hi);
    a dashed zero line."""
    part = pooled[pooled["metric"] == metric]
    if part.empty:
        raise MoreError(f"capacity_curve needs rows of metric '{metric}', got {sorted(set(pooled['metric']))}")
    batches = list(dict.fromkeys(part["B"]))
    fig = go.Figure()
    for (scheme, B), g in part.groupby(["scheme", "B"], sort=False):
        i = batches.index(B)
        fig.add_trace(
            go.Scatter(
                x=g["params"],
                y=g["diff"],
                text=g["tier"],
                mode="markers+lines+text",
                textposition="top center",
                name=f"{scheme}, B = {B}",
                error_y=_ci_error(g),
                line={"color": scheme_color(str(scheme)), "dash": DASHES[i % len(DASHES)]},
                marker={"color": scheme_color(str(scheme)), "size": 11 if scheme == "more" else 7},
            )
        )
    fig.add_hline(y=0, line_dash="dash", line_color="grey")
    fig.update_layout(
        title=title,
        xaxis={"type": "log", "title": "trainable parameters"},
        yaxis_title=f"{label(metric)}: scheme − MultiTask ({better(metric)})",
        template=TEMPLATE,
    )
    return fig


def best_of_n(table: pd.DataFrame, title: str) -> go.Figure:
    """Best-of-n curves (issue 26): the judge's mean reward gain over the first sample (left, paired per prompt) and
    the win rate against n = 1 (right) of each selector's pick vs n, with CI bars; `table` is one judge's
    `best_of_n.curve` rows (selector, n, gain[_lo/_hi], win[_lo/_hi])."""
    if table.empty:
        raise MoreError("best_of_n needs a non-empty table")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("judge's reward gain over n = 1", "win rate against n = 1"))
    groups = list(table.groupby("selector", sort=False))
    for k, (name, part) in enumerate(groups):
        color = scheme_color("raw") if name == "random" else scheme_color(str(name))
        dodge = 1 + 0.035 * (k - (len(groups) - 1) / 2)  # side by side around each n (log axis), CI bars apart
        for col, metric in ((1, "gain"), (2, "win")):
            fig.add_trace(
                go.Scatter(
                    x=part["n"] * dodge,
                    customdata=part["n"],
                    hovertemplate=f"{name}<br>n = %{{customdata}}<br>{metric} %{{y:.3f}}<extra></extra>",
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
    fig.add_hline(y=0.0, line_dash="dash", line_color="#7f7f7f", row=1, col=1)
    fig.add_hline(y=0.5, line_dash="dash", line_color="#7f7f7f", row=1, col=2)
    fig.update_xaxes(type="log", tickvals=sorted(table["n"].unique()), title_text="n (samples the selector sees)")
    fig.update_layout(title=title, template=TEMPLATE)
    return fig
