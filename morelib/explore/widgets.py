"""Widget layer of the explorer: sliders and one plotly figure per view, updated in place.

`lambda_figure` / `mix_figure` draw the panels of an `engine.Explorer` as plain `go.Figure`s (papermill, static
viewers); `ExplorerUI` shows the same panels as `go.FigureWidget`s whose traces are updated inside `batch_update` on
every change (never re-created), with one slider per source, presets, MORE's λ trajectory on a step slider, the mix
controls, save/reload, and a status line with the metrics and the measured update time.
Slider drags are debounced (`ExploreConfig.debounce_ms`) on the kernel's asyncio loop; without a running loop (plain
Python, tests) an update runs at once. Checked in tests/test_explore.py (traces follow the fits, figure identity kept)
and tests/test_browser.py (headless chromium in JupyterLab).
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morelib.core.config import MIX_SCHEMES
from morelib.core.errors import MoreError
from morelib.explore.engine import Explorer, Fit
from morelib.study.plots import PALETTE, SCHEME_COLORS, TEMPLATE

PANELS = ("accuracy per test source", "ECE per test source", "reliability (σ(Δ), both orders)", "reward difference Δ")
SLIDER_STEP, SLIDER_DECIMALS = 0.01, 2  # λ slider resolution; sliders show λ rounded to it, refits use the exact λ
LABEL_STYLE = {"description_width": "initial"}  # full source names ("ultrafeedback"), never cut to "ultrafeed…"
ECE_AXIS_MIN = 0.2  # the ECE panel's fixed upper end is at least this, so bars compare across updates


def ece_axis_max(ex: Explorer, fits: list[Fit]) -> float:
    """A fixed upper end for the ECE panel: twice the largest ECE of the first fits, rounded up to 0.05, ≤ 1."""
    top = max(f.metrics[s][_ece_key(ex)] for f in fits for s in ex.test)
    return float(min(1.0, max(ECE_AXIS_MIN, np.ceil(2 * top / 0.05) * 0.05)))


def _panels(title: str, tests: list[str]) -> go.Figure:
    """An empty 2×2 figure with the explorer's four panel titles; bar panels have one slot per test source."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=PANELS, vertical_spacing=0.14)
    # bars sit at 0…K−1 with the source names as tick labels: the anywidget front-end of plotly 7 drops string x
    for col in (1, 2):
        fig.update_xaxes(tickmode="array", tickvals=list(range(len(tests))), ticktext=tests, row=1, col=col)
    fig.update_layout(
        title=title,
        template=TEMPLATE,
        height=640,
        barmode="group",
        bargap=0.25,
        margin={"t": 95, "b": 40, "l": 50, "r": 20},
        legend={"orientation": "h", "y": -0.08},
    )
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_xaxes(range=[0, 1], title_text="confidence", row=2, col=1)
    fig.update_yaxes(range=[0, 1], title_text="accuracy", row=2, col=1)
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"dash": "dot", "color": "#999"},
            name="perfect calibration",
            showlegend=False,
        ),
        row=2,
        col=1,
    )
    return fig


def _lambda_traces(fig: go.Figure, tests: list[str]) -> None:
    """Add the λ view's traces: 2 bar traces, then one reliability line and one histogram per test source."""
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(tests))]
    slots = list(range(len(tests)))
    fig.add_trace(
        go.Bar(x=slots, y=[0] * len(tests), name="accuracy", showlegend=False, marker_color=colors), row=1, col=1
    )
    fig.add_trace(go.Bar(x=slots, y=[0] * len(tests), name="ECE", showlegend=False, marker_color=colors), row=1, col=2)
    for s, c in zip(tests, colors):
        fig.add_trace(
            go.Scatter(x=[], y=[], mode="lines+markers", name=s, legendgroup=s, line={"color": c}), row=2, col=1
        )
    for s, c in zip(tests, colors):
        fig.add_trace(
            go.Histogram(x=[], name=s, legendgroup=s, showlegend=False, opacity=0.45, nbinsx=40, marker_color=c),
            row=2,
            col=2,
        )
    fig.update_layout(barmode="overlay")


def _mix_traces(fig: go.Figure, tests: list[str]) -> None:
    """Add the mix view's traces: per scheme a bar pair (accuracy, ECE), a pooled reliability line and a histogram."""
    slots = list(range(len(tests)))
    for scheme in MIX_SCHEMES:
        color = SCHEME_COLORS[scheme]
        fig.add_trace(
            go.Bar(x=slots, y=[0] * len(tests), name=scheme, legendgroup=scheme, marker_color=color), row=1, col=1
        )
        fig.add_trace(
            go.Bar(x=slots, y=[0] * len(tests), name=scheme, legendgroup=scheme, marker_color=color, showlegend=False),
            row=1,
            col=2,
        )
        fig.add_trace(
            go.Scatter(
                x=[],
                y=[],
                mode="lines+markers",
                name=scheme,
                legendgroup=scheme,
                line={"color": color},
                showlegend=False,
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Histogram(
                x=[], name=scheme, legendgroup=scheme, marker_color=color, opacity=0.5, nbinsx=40, showlegend=False
            ),
            row=2,
            col=2,
        )
    fig.update_layout(barmode="group")
    fig.update_traces(selector={"type": "histogram"}, bingroup=None)


def _ece_key(ex: Explorer) -> str:
    """The metric name of the explorer's ECE (its bin count)."""
    return f"ece_{ex.ecfg.reliability_bins}"


def _curve(rel: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """Confidence and accuracy of the non-empty bins of a reliability table."""
    keep = rel["count"] > 0
    return rel["confidence"][keep].tolist(), rel["accuracy"][keep].tolist()


def draw_lambda(fig: go.Figure, ex: Explorer, fit: Fit) -> None:
    """Write a λ fit into the λ view's traces, in place (one batched update)."""
    tests, ece = list(ex.test), _ece_key(ex)
    with fig.batch_update():
        fig.data[1].y = [fit.metrics[s]["accuracy"] for s in tests]
        fig.data[2].y = [fit.metrics[s][ece] for s in tests]
        for i, s in enumerate(tests):
            fig.data[3 + i].x, fig.data[3 + i].y = _curve(fit.reliability[s])
            fig.data[3 + len(tests) + i].x = fit.diffs[s]
        fig.layout.title.text = (
            "λ explorer<br><sup>λ = " + ", ".join(f"{n} {v:.3f}" for n, v in zip(ex.names, fit.lam)) + "</sup>"
        )


def draw_mix(fig: go.Figure, ex: Explorer, fits: dict[str, Fit]) -> None:
    """Write the MultiTask and MORE fits of a mix into the mix view's traces, in place (one batched update)."""
    tests, ece = list(ex.test), _ece_key(ex)
    with fig.batch_update():
        for j, scheme in enumerate(MIX_SCHEMES):
            fit, base = fits[scheme], 1 + 4 * j
            fig.data[base].y = [fit.metrics[s]["accuracy"] for s in tests]
            fig.data[base + 1].y = [fit.metrics[s][ece] for s in tests]
            fig.data[base + 2].x, fig.data[base + 2].y = _curve(fit.pooled_reliability)
            fig.data[base + 3].x = np.concatenate([fit.diffs[s] for s in tests])
        mix = fits[MIX_SCHEMES[0]].pairs
        fig.layout.title.text = (
            "MultiTask vs MORE on the mix<br><sup>pairs: " + ", ".join(f"{n} {k}" for n, k in mix.items()) + "</sup>"
        )


def _view_figure(
    ex: Explorer, title: str, add_traces: Callable[[go.Figure, list[str]], None], widget: bool
) -> go.Figure:
    """A view's two panels with its (empty) traces per test source, as a FigureWidget when `widget`."""
    fig = _panels(title, list(ex.test))
    add_traces(fig, list(ex.test))
    return go.FigureWidget(fig) if widget else fig


def lambda_figure(ex: Explorer, widget: bool = False) -> go.Figure:
    """The λ view of the current fit (uniform λ fitted first if none) as a go.Figure, or a FigureWidget."""
    fig = _view_figure(ex, "λ explorer", _lambda_traces, widget)
    fit = ex.current or ex.set_lambda(ex.presets()["uniform"])
    fig.update_yaxes(range=[0, ece_axis_max(ex, [fit])], autorange=False, row=1, col=2)
    draw_lambda(fig, ex, fit)
    return fig


def mix_figure(ex: Explorer, widget: bool = False) -> go.Figure:
    """The mix view (MultiTask vs MORE) of the current mix (all pairs of all sources if none) as a figure."""
    fig = _view_figure(ex, "mix explorer", _mix_traces, widget)
    fits = ex.mix or ex.set_mix(ex.available)
    fig.update_yaxes(range=[0, ece_axis_max(ex, list(fits.values()))], autorange=False, row=1, col=2)
    draw_mix(fig, ex, fits)
    return fig


class Debouncer:
    """Call `fn` once, `delay_s` after the last `trigger()`, on the running asyncio loop (at once without one)."""

    def __init__(self, fn: Callable[[], None], delay_s: float) -> None:
        self.fn, self.delay_s, self._handle = fn, delay_s, None

    def trigger(self) -> None:
        """(Re)start the wait; the previous pending call, if any, is dropped."""
        if self._handle is not None:
            self._handle.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.fn()
            return
        self._handle = loop.call_later(self.delay_s, self._fire)

    def _fire(self) -> None:
        """Run the pending call."""
        self._handle = None
        self.fn()


def status_html(ex: Explorer, fit: Fit, seconds: float, what: str) -> str:
    """The status line: λ or mix, mean accuracy and ECE, measured update time and the refit schedule."""
    ece = _ece_key(ex)
    lam = ", ".join(f"{n} {v:.3f}" for n, v in zip(fit.pairs, fit.lam))
    text = (
        f"{what} · λ = [{lam}] · mean accuracy {fit.mean('accuracy'):.4f} · mean ECE ({ece}) "
        f"{fit.mean(ece):.4f} · update {seconds:.2f} s (refit {fit.seconds:.2f} s; {ex.settings})"
    )
    return f"<span class='explore-status'>{html.escape(text)}</span>"


def error_html(message: str) -> str:
    """A status line that reports a problem instead of a result."""
    return f"<span class='explore-status' style='color:#b00'>{html.escape(message)}</span>"


class ExplorerUI:
    """ipywidgets front of an `Explorer`: the λ view and/or the mix view, save/reload, a status line per view.

    `ui.widget` is the box to display; `ui.lambda_fig` / `ui.mix_fig` are FigureWidgets updated in place;
    `ui.last_update_s` holds the measured time of the latest update per view, `ui.refits` how many refits each ran.
    """

    def __init__(
        self, ex: Explorer, views: tuple[str, ...] = ("lambda", "mix"), debounce_ms: int | None = None
    ) -> None:
        import ipywidgets as W  # the widget layer only; Explorer and the static figures need no front-end

        unknown = set(views) - {"lambda", "mix"}
        if unknown or not views:
            raise MoreError(f"unknown explorer view(s) {sorted(unknown)}; views are 'lambda' and 'mix'")
        self.ex, self.W, self.views, self._mute = ex, W, tuple(views), False
        self._echo: list[float | None] = []
        delay = (ex.ecfg.debounce_ms if debounce_ms is None else debounce_ms) / 1000
        self.last_update_s: dict[str, float] = {}
        self.refits = {"lambda": 0, "mix": 0}
        parts = []
        if "lambda" in views:
            parts.append(self._lambda_view(Debouncer(self.refresh_lambda, delay)))
        if "mix" in views:
            parts.append(self._mix_view(Debouncer(self.refresh_mix, delay)))
        parts.append(self._save_row(views))
        self.widget = W.VBox(parts)

    def _lambda_view(self, debounce: Debouncer) -> object:
        """Sliders, presets, the MORE step slider, status and figure of the λ view."""
        W, ex = self.W, self.ex
        self.sliders = [
            W.FloatSlider(
                value=round(1 / len(ex.names), 2),
                min=0,
                max=1,
                step=SLIDER_STEP,
                description=n,
                readout_format=".2f",
                continuous_update=True,
                style=LABEL_STYLE,
            )
            for n in ex.names
        ]
        for s in self.sliders:
            s.observe(lambda change: self._mute or self._moved(change) and debounce.trigger(), names="value")
        labels = {"uniform": "uniform (MultiTask)", "size": "size-proportional (plain mixing)", "more": "MORE final λ"}
        buttons = [W.Button(description=text, layout={"width": "auto"}) for text in labels.values()]
        self.preset_buttons = dict(zip(labels, buttons))
        for key, button in zip(labels, buttons):
            button.on_click(lambda _, key=key: self.apply(ex.presets()[key], steps - 1 if key == "more" else None))
        steps = len(ex.more_trajectory())
        self.step = W.IntSlider(
            value=steps - 1, min=0, max=steps - 1, description="MORE step", continuous_update=True, style=LABEL_STYLE
        )
        self.step_note = W.HTML()
        step_debounce = Debouncer(
            lambda: self.apply(ex.more_lambda(self.step.value), self.step.value), debounce.delay_s
        )
        self.step.observe(lambda _: self._mute or step_debounce.trigger(), names="value")
        self.lambda_status = W.HTML()
        self.lambda_fig = lambda_figure(ex, widget=True)
        self._set_sliders(ex.current.lam)
        self._show_step(None)
        self.lambda_status.value = status_html(ex, ex.current, ex.current.seconds, "fixed λ")
        controls = W.VBox(
            [
                W.HTML("<b>λ explorer</b>: fixed loss weight per source (normalised to sum 1)"),
                *self.sliders,
                W.HBox(buttons),
                W.HBox([self.step, self.step_note]),
            ]
        )
        return W.VBox([controls, self.lambda_status, self.lambda_fig])

    def _mix_view(self, debounce: Debouncer) -> object:
        """Pairs-per-source sliders, inclusion boxes, status and figure of the mix view."""
        W, ex = self.W, self.ex
        self.pairs = [
            W.IntSlider(
                value=ex.available[n],
                min=0,
                max=ex.available[n],
                description=n,
                step=max(1, ex.available[n] // 40),
                continuous_update=True,
                style=LABEL_STYLE,
            )
            for n in ex.names
        ]
        self.include = [W.Checkbox(value=True, description="in the mix", indent=False) for _ in ex.names]
        self._kept = {n: ex.available[n] for n in ex.names}
        for w in self.pairs:
            w.observe(lambda _: self._mute or debounce.trigger(), names="value")
        for i, box in enumerate(self.include):
            box.observe(lambda _, i=i: self._mute or (self._show_included(i), debounce.trigger()), names="value")
        self.mix_status = W.HTML()
        self.mix_fig = mix_figure(ex, widget=True)
        fit = ex.mix["more"]
        self.mix_status.value = status_html(ex, fit, sum(f.seconds for f in ex.mix.values()), "mix, MORE")
        rows = [W.HBox([p, c]) for p, c in zip(self.pairs, self.include)]
        head = W.HTML("<b>mix explorer</b>: pairs per source and which sources train; MultiTask vs MORE")
        return W.VBox([head, *rows, self.mix_status, self.mix_fig])

    def _save_row(self, views: tuple[str, ...]) -> object:
        """Save buttons, the dropdown of saved rows and its load button."""
        W = self.W
        self.saved = W.Dropdown(options=[], description="saved", layout={"width": "520px"})
        load = W.Button(description="load", layout={"width": "auto"})
        load.on_click(lambda _: self.saved.value is not None and self.load(self.saved.value))
        buttons = []
        for view in views:
            button = W.Button(description=f"save {'λ' if view == 'lambda' else 'mix'}", layout={"width": "auto"})
            button.on_click(lambda _, view=view: self.save(view))
            buttons.append(button)
        self.save_status = W.HTML()
        if self.ex.out_dir is None:
            for w in (*buttons, load, self.saved):
                w.disabled = True
            self.save_status.value = "saving needs a run folder (Explorer(out_dir=…) or from_study(run=…))"
        else:
            self._refresh_saved()
        return W.VBox([W.HBox([*buttons, self.saved, load]), self.save_status])

    def _set_sliders(self, lam: np.ndarray) -> None:
        """Show λ on the sliders, rounded to their step as a browser would, without triggering a refit."""
        self._mute = True
        self._echo = [round(float(v), SLIDER_DECIMALS) for v in lam]
        try:
            for s, v in zip(self.sliders, self._echo):
                s.value = v
        finally:
            self._mute = False

    def _moved(self, change: dict) -> bool:
        """Whether a slider change is the user's: a browser echoing back the rounded λ it was sent is not."""
        i = self.sliders.index(change["owner"])
        if self._echo[i] is not None and abs(change["new"] - self._echo[i]) < SLIDER_STEP / 2:
            return False
        self._echo[i] = None
        return True

    def _show_step(self, step: int | None) -> None:
        """Readout beside the MORE step slider: which step λ comes from, or that λ is not on MORE's trajectory."""
        n = len(self.ex.more_trajectory())
        if step is not None:
            self._mute = True
            self.step.value = step
            self._mute = False
        self.step_note.value = (
            f"showing MORE's λ at step {step} of {n - 1}"
            if step is not None
            else "λ shown is not a MORE step (drag to replay MORE's λ)"
        )

    def _show_included(self, i: int) -> None:
        """An unchecked source's slider reads 0 and is disabled; checking it again restores its count."""
        slider, name = self.pairs[i], self.ex.names[i]
        self._mute = True
        try:
            if self.include[i].value:
                slider.disabled, slider.value = False, self._kept[name]
            else:
                self._kept[name], slider.value, slider.disabled = slider.value, 0, True
        finally:
            self._mute = False

    def apply(self, lam: np.ndarray, step: int | None = None) -> None:
        """Refit with exactly this λ (a preset, or MORE's λ at `step`) and show it on the sliders and step readout."""
        self._set_sliders(lam)
        self._show_step(step)
        self.refresh_lambda(list(lam))

    def refresh_lambda(self, lam: list[float] | None = None) -> None:
        """Refit with λ (default: the slider values, normalised) and redraw the λ view in place."""
        start = time.perf_counter()
        if lam is None:
            self._show_step(None)
        raw = lam if lam is not None else [s.value for s in self.sliders]
        if sum(raw) <= 0:
            self.lambda_status.value = error_html("all weights are 0: move at least one slider above 0 to refit")
            return
        self._refit(
            "lambda",
            start,
            self.lambda_status,
            lambda: self.ex.set_lambda(raw, normalise=True),
            lambda fit: draw_lambda(self.lambda_fig, self.ex, fit),
            lambda fit: fit,
            "fixed λ",
        )

    def refresh_mix(self) -> None:
        """Refit MultiTask and MORE on the chosen mix and redraw the mix view in place."""
        start = time.perf_counter()
        included = [n for n, box in zip(self.ex.names, self.include) if box.value]
        counts = [p.value if box.value else self._kept[n] for n, p, box in zip(self.ex.names, self.pairs, self.include)]
        self._refit(
            "mix",
            start,
            self.mix_status,
            lambda: self.ex.set_mix(counts, include=included),
            lambda fits: draw_mix(self.mix_fig, self.ex, fits),
            lambda fits: fits["more"],
            "mix, MORE",
        )

    def _refit(
        self,
        view: str,
        start: float,
        status: Any,
        refit: Callable[[], Any],
        draw: Callable[[Any], None],
        shown: Callable[[Any], Any],
        label: str,
    ) -> None:
        """Run `refit`: a MoreError goes to the view's status line; else draw, count the refit, time it from `start`
        and report the fit `shown` picks."""
        try:
            fits = refit()
        except MoreError as err:
            status.value = error_html(str(err))
            return
        draw(fits)
        self.last_update_s[view] = time.perf_counter() - start
        self.refits[view] += 1
        status.value = status_html(self.ex, shown(fits), self.last_update_s[view], label)

    def save(self, view: str) -> None:
        """Append the current choice of a view to the run's CSV and refresh the dropdown."""
        path = self.ex.save(view)
        self.save_status.value = html.escape(f"saved to {path}")
        self._refresh_saved()

    def _refresh_saved(self) -> None:
        """Dropdown options from the saved CSV: one entry per save."""
        table = self.ex.load_saved()
        ece = f"{_ece_key(self.ex)}_mean"
        options = []
        if len(table):
            for save_id, rows in table[table["kind"].isin(self.views)].groupby("save_id", sort=True):
                parts = [f"{r.scheme} acc {r.accuracy_mean:.3f} ECE {getattr(r, ece):.3f}" for r in rows.itertuples()]
                options.append((f"#{save_id} {rows['kind'].iloc[0]}: " + "; ".join(parts), int(save_id)))
        self.saved.options = options

    def load(self, save_id: int) -> None:
        """Refit a saved row and show it in its view."""
        result = self.ex.restore(save_id)
        if isinstance(result, Fit):
            self._set_sliders(result.lam)
            draw_lambda(self.lambda_fig, self.ex, result)
            self.lambda_status.value = status_html(self.ex, result, result.seconds, f"fixed λ (saved #{save_id})")
            return
        self._mute = True
        for i, (name, slider, box) in enumerate(zip(self.ex.names, self.pairs, self.include)):
            slider.value = result["more"].pairs.get(name, slider.value)
            box.value = name in result["more"].pairs
            self._show_included(i)
            self._mute = True
        self._mute = False
        draw_mix(self.mix_fig, self.ex, result)
        self.mix_status.value = status_html(self.ex, result["more"], result["more"].seconds, f"mix (saved #{save_id})")


def show(ex: Explorer, views: tuple[str, ...] = ("lambda", "mix")) -> object:
    """The interactive explorer when ipywidgets and anywidget are importable, else the static figures of `views`."""
    try:
        import anywidget  # noqa: F401  (plotly's FigureWidget needs it)
        import ipywidgets  # noqa: F401
    except ImportError:
        figs = [lambda_figure(ex) if v == "lambda" else mix_figure(ex) for v in views]
        return figs[0] if len(figs) == 1 else figs
    return ExplorerUI(ex, views).widget
