"""The explorer's figures: four panels per view (accuracy and ECE per test source, reliability, reward differences),
built once and then written in place (`draw_lambda`, `draw_mix`) so a FigureWidget keeps its identity.

Bar panels show each refit with its 95% bootstrap CI whiskers over test pairs (`Fit.ci`), the ECE panel the noise
floor of a perfectly calibrated model at each source's N (grey band to its 95th percentile, a dash at its mean) and,
for an ECE above the panel's fixed cap, a ▲ mark with the value instead of a silently clipped bar; the study's seed
means (MultiTask, MORE, tuned; `explore.reference`) are open ghost markers, drawn once. Every trace carries a `meta`
tag ("acc:more", "ece:fixed", "floor:…", "over:…", "ghost:<metric>:<scheme>", "rel:…", "hist:…") by which it is
found, here and in tests/test_browser.py. Colours come from the workbook's one palette (`study.plots`). The layout
has no fixed width (`autosize`): the figure fills its output area. Checked in tests/test_explore.py (traces equal the
fits' numbers) and tests/test_browser.py (whiskers, floor band and ▲ visible in chromium).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morelib.core.config import MIX_SCHEMES
from morelib.explore.engine import Explorer, Fit
from morelib.study.plots import PALETTE, SCHEME_COLORS, TEMPLATE, scheme_color

PANELS = ("accuracy per test source", "ECE per test source", "reliability (σ(Δ), both orders)", "reward difference Δ")
SLIDER_STEP, SLIDER_DECIMALS = 0.01, 2  # λ slider resolution; sliders show λ rounded to it, refits use the exact λ
ECE_AXIS_MIN = 0.2  # the ECE panel's fixed upper end is at least this, so bars compare across updates
BARS = {"lambda": {"fixed": (-0.3, 0.6)}, "mix": {"multitask": (-0.4, 0.38), "more": (0.02, 0.38)}}  # offset, width
GHOST_X = {"multitask": -0.2, "more": 0.2, "tuned": 0.0}  # ghost marker positions within a source's slot
GHOST_SYMBOL = {"multitask": "diamond-open", "more": "circle-open", "tuned": "square-open"}
FLOOR_COLOR, OVER_COLOR = PALETTE[6], PALETTE[7]  # the palette's grey and red
FLOOR_LEGEND = "ECE noise floor of a perfectly calibrated model at this N (band to its 95th percentile, ─ its mean)"
CI_NOTE = "95% CIs over test pairs (training seed fixed)"


def label_style(names: list[str]) -> dict[str, str]:
    """One description width for every slider of an explorer, so all tracks start at the same x."""
    return {"description_width": f"{max(len(n) for n in names) + 2}ch"}


def ece_axis_max(ex: Explorer, fits: list[Fit]) -> float:
    """A fixed upper end for the ECE panel: twice the largest ECE of the first fits, rounded up to 0.05, ≤ 1."""
    top = max(f.metrics[s][ece_key(ex)] for f in fits for s in ex.test)
    return float(min(1.0, max(ECE_AXIS_MIN, np.ceil(2 * top / 0.05) * 0.05)))


def trace(fig: go.Figure, meta: str) -> Any:
    """The trace tagged `meta` (every explorer trace carries a tag: "acc:more", "ece:fixed", "rel:helpful", …)."""
    return next(t for t in fig.data if t.meta == meta)


def _panels(title: str, tests: list[str]) -> go.Figure:
    """An empty 2×2 figure with the explorer's four panel titles; bar panels have one slot per test source."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=PANELS, vertical_spacing=0.14)
    # bars sit at 0…K−1 with the source names as tick labels: the anywidget front-end of plotly 7 drops string x
    for col in (1, 2):
        fig.update_xaxes(
            tickmode="array",
            tickvals=list(range(len(tests))),
            ticktext=tests,
            range=[-0.5, len(tests) - 0.5],
            row=1,
            col=col,
        )
    fig.update_layout(
        title=title,
        template=TEMPLATE,
        autosize=True,  # no fixed width: the figure takes its output area's width (ticks stay horizontal)
        height=660,
        barmode="overlay",
        margin={"t": 95, "b": 40, "l": 50, "r": 20},
        legend={"orientation": "h", "y": -0.08},
    )
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_xaxes(range=[0, 1], title_text="confidence", row=2, col=1)
    fig.update_yaxes(range=[0, 1], title_text="accuracy", row=2, col=1)
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#999"}, showlegend=False),
        row=2,
        col=1,
    )
    return fig


def _bar_traces(fig: go.Figure, tests: list[str], view: str) -> None:
    """Per fit of the view: accuracy bar, ECE floor band + its mean, ECE bar and the overflow marks (all empty)."""
    slots, zeros = list(range(len(tests))), [0.0] * len(tests)
    for j, (label, (offset, width)) in enumerate(BARS[view].items()):
        color = [PALETTE[i % len(PALETTE)] for i in slots] if view == "lambda" else SCHEME_COLORS[label]
        bar = {"x": slots, "y": zeros, "offset": offset, "width": width}
        named = {**bar, "name": "refit at λ" if view == "lambda" else label, "legendgroup": label}
        fig.add_trace(go.Bar(marker_color=color, meta=f"acc:{label}", showlegend=view == "mix", **named), 1, 1)
        band = {
            "marker_color": FLOOR_COLOR,
            "opacity": 0.3,
            "name": FLOOR_LEGEND,
            "legendgroup": "floor",
            "legendrank": 900,
        }
        fig.add_trace(go.Bar(meta=f"floor:{label}", showlegend=j == 0, hoverinfo="skip", **band, **bar), 1, 2)
        fig.add_trace(go.Bar(marker_color=color, opacity=0.85, meta=f"ece:{label}", showlegend=False, **named), 1, 2)
        line = {"symbol": "line-ew-open", "size": 24, "color": FLOOR_COLOR, "line": {"color": FLOOR_COLOR, "width": 2}}
        mean = {"mode": "markers", "marker": line, "showlegend": False, "hoverinfo": "skip"}
        fig.add_trace(go.Scatter(x=[], y=[], meta=f"floormean:{label}", **mean), 1, 2)
        text = {"textposition": "bottom center", "textfont": {"color": OVER_COLOR, "size": 12}}
        fig.add_trace(
            go.Scatter(x=[], y=[], mode="text", meta=f"over:{label}", cliponaxis=False, showlegend=False, **text),
            1,
            2,
        )


def _ghost_traces(fig: go.Figure, ex: Explorer) -> None:
    """The study's seed means (MultiTask, MORE, tuned) as open markers in both bar panels, drawn once."""
    tests, ece = list(ex.test), ece_key(ex)
    for scheme, by_source in ex.study.marks.items():
        color, shown = scheme_color(scheme), [s for s in tests if s in by_source]
        x = [tests.index(s) + GHOST_X[scheme] for s in shown]
        marker = {"symbol": GHOST_SYMBOL[scheme], "size": 12, "color": color, "line": {"width": 2, "color": color}}
        seeds = int(max(v["seeds"] for v in by_source.values()))
        for col, key in ((1, "accuracy"), (2, ece)):
            if not all(key in by_source[s] for s in shown):
                continue
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[by_source[s][key] for s in shown],
                    mode="markers",
                    marker=marker,
                    meta=f"ghost:{key}:{scheme}",
                    name=f"study {scheme} (mean of {seeds} seeds, study schedule)",
                    legendgroup=f"ghost:{scheme}",
                    showlegend=col == 1,
                    hovertemplate=f"study {scheme}: %{{y:.4f}}<extra></extra>",
                ),
                1,
                col,
            )


def _curve_traces(fig: go.Figure, tests: list[str], view: str) -> None:
    """Reliability lines and Δ histograms: one per test source (λ view) or one pooled per scheme (mix view)."""
    if view == "lambda":
        items = [(f"{s}", s, PALETTE[i % len(PALETTE)], True) for i, s in enumerate(tests)]
    else:
        items = [(scheme, scheme, SCHEME_COLORS[scheme], False) for scheme in MIX_SCHEMES]
    for tag, name, color, legend in items:
        fig.add_trace(
            go.Scatter(
                x=[],
                y=[],
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": color},
                meta=f"rel:{tag}",
                showlegend=legend,
            ),
            2,
            1,
        )
    for tag, name, color, _ in items:
        fig.add_trace(
            go.Histogram(
                x=[],
                name=name,
                legendgroup=name,
                showlegend=False,
                opacity=0.45,
                nbinsx=40,
                marker_color=color,
                meta=f"hist:{tag}",
                bingroup=None,
            ),
            2,
            2,
        )


def ece_key(ex: Explorer) -> str:
    """The metric name of the explorer's ECE (its bin count)."""
    return f"ece_{ex.ecfg.reliability_bins}"


def _curve(rel: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Confidence and accuracy of the non-empty bins of a reliability table."""
    keep = rel["count"] > 0
    return rel["confidence"][keep].tolist(), rel["accuracy"][keep].tolist()


def _whiskers(values: list[float], ci: dict[str, tuple[float, float]], tests: list[str]) -> dict[str, Any]:
    """Asymmetric error bars (plotly `error_y`) from per-source CIs around `values`."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [max(0.0, ci[s][1] - v) for s, v in zip(tests, values)],
        "arrayminus": [max(0.0, v - ci[s][0]) for s, v in zip(tests, values)],
        "color": "#333",
        "thickness": 1.5,
        "width": 4,
    }


def _draw_bars(fig: go.Figure, ex: Explorer, label: str, fit: Fit) -> None:
    """Write one fit's bars, CI whiskers, floor band and overflow marks (ECE above the panel's cap) into `fig`."""
    tests, ece = list(ex.test), ece_key(ex)
    offset, width = BARS["lambda" if label == "fixed" else "mix"][label]
    centre = [i + offset + width / 2 for i in range(len(tests))]
    acc, err = [fit.metrics[s]["accuracy"] for s in tests], [fit.metrics[s][ece] for s in tests]
    trace(fig, f"acc:{label}").update(y=acc, error_y=_whiskers(acc, fit.ci("accuracy"), tests))
    trace(fig, f"ece:{label}").update(y=err, error_y=_whiskers(err, fit.ci(ece), tests))
    trace(fig, f"floor:{label}").y = [fit.floor[s]["p95"] for s in tests]
    trace(fig, f"floormean:{label}").update(x=centre, y=[fit.floor[s]["floor"] for s in tests])
    cap = fig.layout.yaxis2.range[1]
    over = [i for i, v in enumerate(err) if v > cap]
    trace(fig, f"over:{label}").update(
        x=[centre[i] for i in over], y=[cap] * len(over), text=[f"▲ {err[i]:.3f}" for i in over]
    )


def draw_lambda(fig: go.Figure, ex: Explorer, fit: Fit) -> None:
    """Write a λ fit into the λ view's traces, in place (one batched update)."""
    with fig.batch_update():
        _draw_bars(fig, ex, "fixed", fit)
        for s in ex.test:
            trace(fig, f"rel:{s}").update(dict(zip(("x", "y"), _curve(fit.reliability[s]))))
            trace(fig, f"hist:{s}").x = fit.diffs[s]
        fig.layout.title.text = (
            "λ explorer<br><sup>λ = " + ", ".join(f"{n} {v:.3f}" for n, v in zip(ex.names, fit.lam)) + "</sup>"
        )


def draw_mix(fig: go.Figure, ex: Explorer, fits: dict[str, Fit]) -> None:
    """Write the MultiTask and MORE fits of a mix into the mix view's traces, in place (one batched update)."""
    with fig.batch_update():
        for scheme in MIX_SCHEMES:
            fit = fits[scheme]
            _draw_bars(fig, ex, scheme, fit)
            trace(fig, f"rel:{scheme}").update(dict(zip(("x", "y"), _curve(fit.pooled_reliability))))
            trace(fig, f"hist:{scheme}").x = np.concatenate([fit.diffs[s] for s in ex.test])
        mix = fits[MIX_SCHEMES[0]].pairs
        fig.layout.title.text = (
            "MultiTask vs MORE on the mix<br><sup>pairs: " + ", ".join(f"{n} {k}" for n, k in mix.items()) + "</sup>"
        )


def _view_figure(ex: Explorer, title: str, view: str, fits: list[Fit], widget: bool) -> go.Figure:
    """A view's panels with its (empty) traces, ghost markers and a fixed ECE axis; a FigureWidget when `widget`."""
    tests = list(ex.test)
    fig = _panels(title, tests)
    _bar_traces(fig, tests, view)
    _ghost_traces(fig, ex)
    _curve_traces(fig, tests, view)
    fig.update_yaxes(range=[0, ece_axis_max(ex, fits)], autorange=False, row=1, col=2)
    return go.FigureWidget(fig) if widget else fig


def lambda_figure(ex: Explorer, widget: bool = False) -> go.Figure:
    """The λ view of the current fit (uniform λ fitted first if none) as a go.Figure, or a FigureWidget."""
    fit = ex.current or ex.set_lambda(ex.presets()["uniform"])
    fig = _view_figure(ex, "λ explorer", "lambda", [fit], widget)
    draw_lambda(fig, ex, fit)
    return fig


def mix_figure(ex: Explorer, widget: bool = False) -> go.Figure:
    """The mix view (MultiTask vs MORE) of the current mix (all pairs of all sources if none) as a figure."""
    fits = ex.mix or ex.set_mix(ex.available)
    fig = _view_figure(ex, "mix explorer", "mix", list(fits.values()), widget)
    draw_mix(fig, ex, fits)
    return fig
