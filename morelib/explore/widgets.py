"""Widget layer of the explorer: sliders, presets and the live figures of `explore.figures`, updated in place.

`ExplorerUI` shows the panels as `go.FigureWidget`s whose traces are updated inside `batch_update` on every change
(never re-created): one slider per source (one description width, so every track starts at the same x; the readout
beside each is the normalised λ the refit uses, not the raw slider weight), presets (uniform, size-proportional, MORE,
and the study's tuned and FAMO λ when the run has them; a note says which are unavailable and when size-proportional
equals uniform), MORE's λ trajectory on a step slider whose readout names the step shown (or says λ is off the
trajectory, also after a load), the mix controls, save/reload (entries name the λ or the mix), and a status line:
mean accuracy and ECE with 95% CIs over test pairs, their change against uniform λ (λ view) or MORE − MultiTask (mix
view) with a paired CI, and the measured update time.
Slider drags are debounced (`ExploreConfig.debounce_ms`) on the kernel's asyncio loop; without a running loop (plain
Python, tests) an update runs at once. Checked in tests/test_explore.py (traces follow the fits, figure identity kept,
readouts) and tests/test_browser.py (headless chromium in JupyterLab).
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from morelib.core.errors import MoreError
from morelib.explore.engine import Explorer, Fit, change
from morelib.explore.figures import CI_NOTE, draw_lambda, draw_mix, ece_key, label_style, lambda_figure, mix_figure
from morelib.explore.reference import STUDY_PRESETS

SLIDER_STEP, SLIDER_DECIMALS = 0.01, 2  # λ slider resolution; sliders show λ rounded to it, refits use the exact λ
PRESET_LABELS = {
    "uniform": "uniform (MultiTask)",
    "size": "size-proportional (plain mixing)",
    "more": "MORE final λ",
    "tuned": "tuned λ (study)",
    "famo": "FAMO final λ (study)",
}


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


def _signed(value: float, digits: int = 4) -> str:
    """A signed number with a true minus sign (−0.0040, +0.0012)."""
    return f"{value:+.{digits}f}".replace("-", "−")


def _with_ci(value: float, ci: tuple[float, float]) -> str:
    """`0.5123 [0.5010, 0.5230]`."""
    return f"{value:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"


def change_text(ex: Explorer, fit: Fit, base: Fit, name: str) -> str:
    """`mean accuracy +0.0030 [−0.0040, +0.0100], mean ECE −0.0040 [−0.0100, +0.0020] vs <name>` (paired CIs)."""
    if fit is base:
        return f"this is {name}"
    parts = []
    for key, label in (("accuracy", "mean accuracy"), (ece_key(ex), "mean ECE")):
        d, lo, hi = change(fit, base, key)
        parts.append(f"{label} {_signed(d)} [{_signed(lo)}, {_signed(hi)}]")
    return ", ".join(parts) + f" vs {name}"


def status_html(ex: Explorer, fit: Fit, seconds: float, what: str, versus: str) -> str:
    """The status line: λ, mean accuracy and ECE with CIs, the change `versus`, update time and refit schedule."""
    ece = ece_key(ex)
    lam = ", ".join(f"{n} {v:.3f}" for n, v in zip(fit.pairs, fit.lam))
    text = (
        f"{what} · λ = [{lam}] · mean accuracy {_with_ci(fit.mean('accuracy'), fit.mean_ci('accuracy'))} · mean ECE "
        f"({ece}) {_with_ci(fit.mean(ece), fit.mean_ci(ece))} · {versus} · {CI_NOTE} · update {seconds:.2f} s "
        f"(refit {fit.seconds:.2f} s; {ex.settings})"
    )
    return f"<span class='explore-status'>{html.escape(text)}</span>"


def lambda_status(ex: Explorer, fit: Fit, seconds: float, what: str) -> str:
    """The λ view's status line: the fit against uniform λ."""
    return status_html(ex, fit, seconds, what, change_text(ex, fit, ex.uniform_fit(), "uniform λ"))


def mix_status(ex: Explorer, fits: dict[str, Fit], seconds: float, what: str) -> str:
    """The mix view's status line: MORE's fit, and MORE − MultiTask on the same test pairs."""
    return status_html(
        ex,
        fits["more"],
        seconds,
        what,
        "MORE − MultiTask: "
        + change_text(ex, fits["more"], fits["multitask"], "MultiTask").replace(" vs MultiTask", ""),
    )


def preset_note(ex: Explorer) -> str:
    """What the preset row cannot show as asked: size-proportional equal to uniform, absent study presets/markers."""
    notes = []
    if ex.size_is_uniform():
        notes.append(
            f"size-proportional λ equals uniform here (every source has {next(iter(ex.sizes.values()))} pairs)"
        )
    absent = [n for n in STUDY_PRESETS if n not in ex.presets()]
    for name in absent:
        notes.append(f"preset {name}: not available ({ex.study.missing.get(name, 'not in the study results given')})")
    for name, why in ex.study.missing.items():
        if name not in STUDY_PRESETS:
            notes.append(f"study marker {name}: not available ({why})")
    return "<br>".join(html.escape(n) for n in notes)


def saved_label(rows: Any, ece: str) -> str:
    """A saved choice's dropdown entry: its id, the λ or the mix it holds, and its mean metrics per scheme."""
    first = rows.iloc[0]
    if first["kind"] == "lambda":
        chosen = "λ " + ", ".join(f"{n} {v:.2f}" for n, v in json.loads(first["lam"]).items())
    else:
        chosen = "mix " + ", ".join(f"{n} {k}" for n, k in json.loads(first["pairs"]).items())
    scores = [f"{r['scheme']} acc {r['accuracy_mean']:.3f} ECE {r[f'{ece}_mean']:.3f}" for _, r in rows.iterrows()]
    return f"#{first['save_id']} {chosen}: " + "; ".join(scores)


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
        self.style = label_style([*ex.names, "MORE step"])
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
        """Sliders with their λ readouts, presets, the MORE step slider, status and figure of the λ view."""
        W, ex = self.W, self.ex
        self.sliders = [
            W.FloatSlider(
                value=round(1 / len(ex.names), 2),
                min=0,
                max=1,
                step=SLIDER_STEP,
                description=n,
                readout=False,  # the raw weight; the readout beside it shows the normalised λ
                continuous_update=True,
                style=self.style,
            )
            for n in ex.names
        ]
        self.lam_readouts = [W.HTML() for _ in ex.names]
        for s in self.sliders:
            s.observe(lambda change: self._mute or self._moved(change) and debounce.trigger(), names="value")
        presets = ex.presets()
        self.preset_buttons = {
            key: W.Button(description=text, layout={"width": "auto"}) for key, text in PRESET_LABELS.items()
        }
        steps = len(ex.more_trajectory())
        for key, button in self.preset_buttons.items():
            if key in presets:
                button.on_click(lambda _, key=key: self.apply(ex.presets()[key], ex.more_step_of(ex.presets()[key])))
            else:
                button.disabled, button.tooltip = True, ex.study.missing.get(key, "not available")
        self.step = W.IntSlider(
            value=steps - 1, min=0, max=steps - 1, description="MORE step", continuous_update=True, style=self.style
        )
        self.step_note = W.HTML()
        step_debounce = Debouncer(
            lambda: self.apply(ex.more_lambda(self.step.value), self.step.value), debounce.delay_s
        )
        self.step.observe(lambda _: self._mute or step_debounce.trigger(), names="value")
        self.lambda_status = W.HTML()
        self.lambda_fig = lambda_figure(ex, widget=True)
        self._set_sliders(ex.current.lam)
        self._show_step(ex.more_step_of(ex.current.lam))
        self.lambda_status.value = lambda_status(ex, ex.current, ex.current.seconds, "fixed λ")
        rows = [W.HBox([s, r]) for s, r in zip(self.sliders, self.lam_readouts)]
        controls = W.VBox(
            [
                W.HTML(
                    "<b>λ explorer</b>: loss weight per source; the readout is λ (the weights divided by their sum)"
                ),
                *rows,
                W.HBox(list(self.preset_buttons.values()), layout={"flex_flow": "row wrap"}),
                W.HTML(f"<span class='explore-preset-note'>{preset_note(ex)}</span>"),
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
                style=self.style,
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
        self.mix_status.value = mix_status(ex, ex.mix, sum(f.seconds for f in ex.mix.values()), "mix, MORE")
        rows = [W.HBox([p, c]) for p, c in zip(self.pairs, self.include)]
        head = W.HTML("<b>mix explorer</b>: pairs per source and which sources train; MultiTask vs MORE")
        return W.VBox([head, *rows, self.mix_status, self.mix_fig])

    def _save_row(self, views: tuple[str, ...]) -> object:
        """Save buttons, the dropdown of saved rows and its load button."""
        W = self.W
        self.saved = W.Dropdown(options=[], description="saved", layout={"width": "auto", "flex": "1 1 auto"})
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
        self._show_lambda(np.asarray(lam, dtype=np.float64))

    def _show_lambda(self, lam: np.ndarray) -> None:
        """The readout beside each slider: the normalised λ (the weights divided by their sum)."""
        total = lam.sum()
        for readout, v in zip(self.lam_readouts, lam):
            readout.value = f"<span class='explore-lam'>λ = {v / total:.3f}</span>" if total > 0 else "λ = –"

    def _moved(self, change: dict) -> bool:
        """Whether a slider change is the user's: a browser echoing back the rounded λ it was sent is not."""
        i = self.sliders.index(change["owner"])
        if self._echo[i] is not None and abs(change["new"] - self._echo[i]) < SLIDER_STEP / 2:
            return False
        self._echo[i] = None
        self._show_lambda(np.array([s.value for s in self.sliders], dtype=np.float64))
        return True

    def _show_step(self, step: int | None) -> None:
        """Readout beside the MORE step slider: which step λ comes from, or that λ is not on MORE's trajectory."""
        n = len(self.ex.more_trajectory())
        if step is not None:
            self._mute = True
            self.step.value = step
            self._mute = False
        text = (
            f"showing MORE's λ at step {step} of {n - 1}"
            if step is not None
            else "λ shown is not a MORE step (drag to replay MORE's λ)"
        )
        self.step_note.value = f"<span class='explore-step'>{html.escape(text)}</span>"

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
            lambda fit, seconds: lambda_status(self.ex, fit, seconds, "fixed λ"),
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
            lambda fits, seconds: mix_status(self.ex, fits, seconds, "mix, MORE"),
        )

    def _refit(
        self,
        view: str,
        start: float,
        status: Any,
        refit: Callable[[], Any],
        draw: Callable[[Any], None],
        report: Callable[[Any, float], str],
    ) -> None:
        """Run `refit`: a MoreError goes to the view's status line; else draw, count the refit, time it from `start`
        and show `report(fits, seconds)`."""
        try:
            fits = refit()
        except MoreError as err:
            status.value = error_html(str(err))
            return
        draw(fits)
        self.last_update_s[view] = time.perf_counter() - start
        self.refits[view] += 1
        status.value = report(fits, self.last_update_s[view])

    def save(self, view: str) -> None:
        """Append the current choice of a view to the run's CSV and refresh the dropdown."""
        path = self.ex.save(view)
        self.save_status.value = html.escape(f"saved to {path}")
        self._refresh_saved()

    def _refresh_saved(self) -> None:
        """Dropdown options from the saved CSV: one entry per save."""
        table = self.ex.load_saved()
        ece = ece_key(self.ex)
        shown = table[table["kind"].isin(self.views)].groupby("save_id", sort=True) if len(table) else []
        self.saved.options = [(saved_label(rows, ece), int(save_id)) for save_id, rows in shown]

    def load(self, save_id: int) -> None:
        """Refit a saved row and show it in its view (sliders, λ readouts, MORE step readout, figure, status)."""
        start = time.perf_counter()
        result = self.ex.restore(save_id)
        if isinstance(result, Fit):
            self._set_sliders(result.lam)
            self._show_step(self.ex.more_step_of(result.lam))
            draw_lambda(self.lambda_fig, self.ex, result)
            seconds = time.perf_counter() - start
            self.lambda_status.value = lambda_status(self.ex, result, seconds, f"fixed λ (saved #{save_id})")
            return
        self._mute = True
        for i, (name, slider, box) in enumerate(zip(self.ex.names, self.pairs, self.include)):
            slider.value = result["more"].pairs.get(name, slider.value)
            box.value = name in result["more"].pairs
            self._show_included(i)
            self._mute = True
        self._mute = False
        draw_mix(self.mix_fig, self.ex, result)
        self.mix_status.value = mix_status(self.ex, result, time.perf_counter() - start, f"mix (saved #{save_id})")


def show(ex: Explorer, views: tuple[str, ...] = ("lambda", "mix")) -> object:
    """The interactive explorer when ipywidgets and anywidget are importable, else the static figures of `views`."""
    try:
        import anywidget  # noqa: F401  (plotly's FigureWidget needs it)
        import ipywidgets  # noqa: F401
    except ImportError:
        figs = [lambda_figure(ex) if v == "lambda" else mix_figure(ex) for v in views]
        return figs[0] if len(figs) == 1 else figs
    return ExplorerUI(ex, views).widget
