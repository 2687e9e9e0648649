"""Forest plots of the headline comparisons (notebooks 02, 03, 04): each Δ with its 95% CI per test source and pooled,
a zero line, and the paper's Δ as the reference.

The rows come from the study's own intervals — `tables.compare` (per source) and `tables.pooled_compare` (pooled): the
two-component CI of `stats.pooled_paired_bootstrap` (between-seed variance / S + paired bootstrap over test pairs),
and `tables.k_trend` for the K-ablation — beside the paper's Δ from its CSVs (`paper.deltas`); nothing is recomputed
here except the K trend per source (the same `tables.k_trend`, one source at a time). Checked in tests/test_plots.py:
the points and CI ends drawn equal the tables'.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morelib.core.config import Config
from morelib.core.errors import MoreError
from morelib.study import tables
from morelib.study.plots import TEMPLATE, better, label, scheme_color

POOLED = "pooled"  # the forest row of a comparison pooled over test sources
NAMES = {"more": "MORE", "multitask": "MultiTask", "top": "Single-Top", "raw": "raw", "famo": "FAMO"}
COLUMNS = ["comparison", "color", "metric", "test_source", "diff", "lo", "hi", "paper"]
HOVER = "Δ %{x:.4f} [%{customdata[0]:.4f}, %{customdata[1]:.4f}]<extra>%{fullData.name}</extra>"


def _name(scheme: str) -> str:
    """A scheme's name in a legend (MORE, MultiTask, Single-Top)."""
    return NAMES.get(scheme, scheme)


def _with_paper(rows: pd.DataFrame, paper_deltas: pd.DataFrame | None) -> pd.DataFrame:
    """`rows` with column `paper`: the paper's Δ on the same metric and test source, NaN where it has none."""
    if paper_deltas is None:
        return rows.assign(paper=np.nan)[COLUMNS]
    return rows.merge(paper_deltas, on=["metric", "test_source"], how="left")[COLUMNS]


def rows(
    per_source: pd.DataFrame,
    pooled: pd.DataFrame,
    a: str,
    b: str,
    paper_deltas: pd.DataFrame | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Forest rows of `a` − `b` (columns COLUMNS) from `tables.compare` (per source) and `tables.pooled_compare`
    (pooled) of the same two schemes, with the paper's Δ (`paper.deltas`) where given; `metrics` filters."""
    part = pd.concat(
        [per_source[["metric", "test_source", "diff", "lo", "hi"]], pooled[["metric", "diff", "lo", "hi"]]],
        ignore_index=True,
    ).fillna({"test_source": POOLED})
    if metrics is not None:
        part = part[part["metric"].isin(list(metrics))]
    return _with_paper(part.assign(comparison=f"{_name(a)} − {_name(b)}", color=b), paper_deltas)


def _trend_name(row: pd.Series) -> str:
    """Legend words of one `tables.k_trend` row."""
    if row["contrast"] == "K trend":
        return f"{_name(row['scheme'])}: K = {row['K']} − {row['reference'].replace('=', ' = ')}"
    return f"{_name(row['scheme'])} (K = {row['K']}) − {_name(row['reference'])}"


def k_rows(
    trend: pd.DataFrame,
    ends: dict[int, tables.Diffs],
    top: tables.Diffs | None,
    cfg: Config,
    sources: Sequence[str],
    paper_deltas: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Forest rows of the K-ablation contrasts: `trend` (`tables.k_trend` pooled over `sources`) and the same contrasts
    on each source alone; the paper's Δ (`paper_deltas`, e.g. MORE − Single-Top on H&H) on the vs-Single-Top rows."""
    per = [tables.k_trend(ends, top, cfg, [s]).assign(test_source=s) for s in sources]
    both = pd.concat([*per, trend.assign(test_source=POOLED)], ignore_index=True)
    both["comparison"] = both.apply(_trend_name, axis=1)
    both["color"] = np.where(both["contrast"] == "K trend", both["scheme"], both["reference"])
    vs_top = _with_paper(both[both["contrast"] != "K trend"], paper_deltas)
    return pd.concat([_with_paper(both[both["contrast"] == "K trend"], None), vs_top], ignore_index=True)


def _positions(table: pd.DataFrame) -> dict[str, int]:
    """y position of each test source: table order, the pooled row last (drawn at the bottom)."""
    sources = [s for s in dict.fromkeys(table["test_source"]) if s != POOLED]
    return {s: i for i, s in enumerate([*sources, POOLED])}


def _shown(fig: go.Figure, name: str) -> bool:
    """Whether a legend entry called `name` is already in the figure (the panels share one legend)."""
    return any(t.name == name and t.showlegend is not False for t in fig.data)


def _paper_marks(fig: go.Figure, part: pd.DataFrame, y: np.ndarray, span: list[float], at: dict[str, int]) -> None:
    """The paper's Δ of one comparison: a dotted vertical line at its pooled value, open crosses per source."""
    color, name = scheme_color(part["color"].iloc[0]), part["comparison"].iloc[0]
    has, pooled = part["paper"].notna().to_numpy(), (part["test_source"] == POOLED).to_numpy()
    for value in part["paper"][has & pooled]:
        entry = f"paper: {name} (pooled)"
        line = {"color": color, "dash": "dot", "width": 2}
        fig.add_trace(
            go.Scatter(
                x=[value, value], y=span, mode="lines", line=line, name=entry, showlegend=not _shown(fig, entry)
            ),
            **at,
        )
    if (has & ~pooled).any():
        entry = f"paper: {name} (per source)"
        marker = {"symbol": "x-thin-open", "size": 12, "color": color, "line": {"width": 2, "color": color}}
        trace = go.Scatter(
            x=part["paper"][has & ~pooled],
            y=y[has & ~pooled],
            mode="markers",
            marker=marker,
            name=entry,
            showlegend=not _shown(fig, entry),
        )
        fig.add_trace(trace, **at)


def _comparison_trace(part: pd.DataFrame, y: np.ndarray, first: bool) -> go.Scatter:
    """One comparison's Δ with 95% CI bars: dots per source, a large diamond for the pooled row."""
    pooled = (part["test_source"] == POOLED).to_numpy()
    color = scheme_color(part["color"].iloc[0])
    return go.Scatter(
        x=part["diff"],
        y=y,
        mode="markers",
        name=part["comparison"].iloc[0],
        legendgroup=part["comparison"].iloc[0],
        showlegend=first,
        error_x={
            "type": "data",
            "symmetric": False,
            "array": part["hi"] - part["diff"],
            "arrayminus": part["diff"] - part["lo"],
        },
        marker={"color": color, "size": np.where(pooled, 14, 9), "symbol": np.where(pooled, "diamond", "circle")},
        customdata=part[["lo", "hi"]].to_numpy(),
        hovertemplate=HOVER,
    )


def stack(parts: pd.DataFrame | Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Forest rows of several comparisons as one table (one table passes through)."""
    return parts if isinstance(parts, pd.DataFrame) else pd.concat(list(parts), ignore_index=True)


def figure(parts: pd.DataFrame | Sequence[pd.DataFrame], title: str) -> go.Figure:
    """Forest plot, one panel per metric: each comparison's Δ (point) with its 95% CI (bar) per test source and pooled
    (diamond, bottom row), a zero line, and the paper's Δ where it reports one (dotted line: pooled; open crosses: per
    source). parts: the rows of `rows` / `k_rows` (columns COLUMNS), one table or several."""
    table = stack(parts)
    if table.empty:
        raise MoreError("a forest plot needs at least one comparison row")
    metrics, comparisons = list(dict.fromkeys(table["metric"])), list(dict.fromkeys(table["comparison"]))
    pos = _positions(table)
    titles = [f"{label(m)}: Δ ({better(m)})" if better(m) else f"{label(m)}: Δ" for m in metrics]
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.05)
    span = [-0.5, len(pos) - 0.5]
    for col, metric in enumerate(metrics, start=1):
        at = {"row": 1, "col": col}
        for j, comparison in enumerate(comparisons):
            part = table[(table["metric"] == metric) & (table["comparison"] == comparison)]
            if part.empty:
                continue
            y = part["test_source"].map(pos).to_numpy() + (j - (len(comparisons) - 1) / 2) * 0.22
            fig.add_trace(_comparison_trace(part, y, not _shown(fig, comparison)), **at)
            _paper_marks(fig, part, y, span, at)
        fig.add_vline(x=0, line_color="black", line_width=1, **at)
    fig.update_yaxes(tickvals=list(pos.values()), ticktext=list(pos), range=span[::-1])
    fig.update_xaxes(title_text="Δ with 95% CI")
    note = "bars: 95% CI (seeds + test pairs); ◆ pooled over test sources; dotted line / open cross: the paper's Δ"
    fig.update_layout(
        title=f"{title}<br><sup>{note}</sup>",
        template=TEMPLATE,
        height=220 + 60 * len(pos),
        width=max(760, 360 * len(metrics) + 300),
        legend={"orientation": "h", "y": -0.25},
    )
    return fig
