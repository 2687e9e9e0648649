"""Explorer state (morelib.explore.engine) and widget layer (morelib.explore.widgets) without a browser.

Every fit is compared with a direct `train.train_head` + `metrics.all_metrics` on the same features and settings.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch

from morelib.core.config import load_config
from morelib.core.errors import ConfigError, RunError
from morelib.evaluation import metrics
from morelib.explore import engine, figures, intervals, reference, widgets
from morelib.synthetic.synthetic import make_drift_benchmark
from morelib.train import reward_head, reward_models
from morelib.train.reward_models import RMKey

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def cfg():
    """Tiny profile with a short explorer schedule that keeps every training pair."""
    return load_config(
        "tiny",
        {
            "explore.train_pairs_per_source": 400,
            "explore.head_epochs": 3,
            "explore.batch_per_source": 40,
            "explore.debounce_ms": 20,
        },
    )


@pytest.fixture(scope="module")
def bench():
    """Three drifting sources of unequal size (for the size preset), 16-d features."""
    return make_drift_benchmark(3, 16, [120, 240, 360], 1.0, seed=3, n_calib=10, n_test=150, names=NAMES)


@pytest.fixture
def ex(cfg, bench, tmp_path):
    """A fresh explorer saving into a temporary run folder."""
    return engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore, out_dir=tmp_path)


def direct(bench, cfg, scheme, lam=None, train_by_source=None):
    """Metrics per test source of a head trained directly by train_head with the explorer's settings."""
    tcfg, hcfg = engine.explore_configs(cfg.train, cfg.head, cfg.explore)
    head = reward_head.train_head(train_by_source or bench.train, scheme, tcfg, hcfg, cfg.explore.seed, lam=lam)
    return {s: metrics.all_metrics(head.reward_diff(pf), bins=(10,)) for s, pf in bench.test.items()}


def test_set_lambda_changes_metrics_and_equals_direct_refit(ex, bench, cfg):
    before = ex.set_lambda([1 / 3, 1 / 3, 1 / 3]).metrics
    lam = [0.7, 0.2, 0.1]
    fit = ex.set_lambda(lam)
    assert fit.metrics != before
    assert fit.metrics == direct(bench, cfg, "fixed", lam)
    np.testing.assert_allclose(fit.lam, lam)
    table = ex.metrics()
    assert list(table["test_source"]) == list(NAMES)
    assert table["accuracy"].tolist() == [fit.metrics[s]["accuracy"] for s in NAMES]


def test_uniform_lambda_equals_multitask(ex, bench, cfg):
    assert ex.set_lambda(ex.presets()["uniform"]).metrics == direct(bench, cfg, "multitask")


def test_lambda_must_sum_to_one_unless_normalised(ex):
    with pytest.raises(ConfigError, match="sum to 1.*normalise=True"):
        ex.set_lambda([2.0, 1.0, 1.0])
    raw = ex.set_lambda([2.0, 1.0, 1.0], normalise=True)
    np.testing.assert_allclose(raw.lam, [0.5, 0.25, 0.25])
    assert raw.metrics == ex.set_lambda([0.5, 0.25, 0.25]).metrics


@pytest.mark.parametrize(
    "lam, message",
    [
        ([0, 0, 0], "all zero"),
        ([0.5, 0.5], "2 weights for 3 sources"),
        ([1.5, -0.5, 0], "≥ 0"),
        ([np.nan, 0.5, 0.5], "finite"),
    ],
)
def test_bad_lambda_is_named(ex, lam, message):
    with pytest.raises(ConfigError, match=message):
        ex.set_lambda(lam, normalise=True)


def test_presets(ex):
    presets = ex.presets()
    np.testing.assert_allclose(presets["uniform"], [1 / 3] * 3)
    np.testing.assert_allclose(presets["size"], np.array([120, 240, 360]) / 720)
    traj = ex.more_trajectory()
    steps = 3 * (360 // 40)  # epochs × per-epoch steps of the largest source
    assert traj.shape == (steps, 3)
    np.testing.assert_allclose(traj.sum(1), 1, atol=1e-5)
    np.testing.assert_allclose(presets["more"], traj[-1] / traj[-1].sum())
    np.testing.assert_allclose(ex.more_lambda(0), traj[0] / traj[0].sum())
    with pytest.raises(ConfigError, match="outside its"):
        ex.more_lambda(steps)


def test_more_history_given_is_used_and_checked(cfg, bench):
    history = torch.tensor([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore, more_history=history)
    np.testing.assert_allclose(ex.presets()["more"], [0.1, 0.1, 0.8], rtol=1e-6)
    with pytest.raises(ConfigError, match="shape"):
        engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore, more_history=torch.ones(4, 2))


def test_cap_takes_a_seeded_subset(bench, cfg):
    small = load_config("tiny", {"explore.train_pairs_per_source": 100})
    ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, small.explore)
    assert ex.available == {"a": 100, "b": 100, "c": 100}
    again = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, small.explore)
    assert torch.equal(ex.train["c"].chosen, again.train["c"].chosen)


def test_full_mix_equals_direct_multitask_and_more(ex, bench, cfg):
    fits = ex.set_mix(ex.available)
    for scheme in ("multitask", "more"):
        assert fits[scheme].metrics == direct(bench, cfg, scheme)


def test_partial_mix_drops_sources_and_subsamples(ex, bench, cfg):
    fits = ex.set_mix({"a": 120, "b": 0, "c": 60})
    assert fits["more"].pairs == {"a": 120, "c": 60}
    picked = {"a": bench.train["a"], "c": bench.train["c"].subset(ex._order["c"][:60])}
    assert fits["multitask"].metrics == direct(bench, cfg, "multitask", train_by_source=picked)
    assert set(fits["more"].metrics) == set(NAMES)  # every test source is evaluated, trained on or not
    assert ex.set_mix([120, 240, 360], include=["b"])["more"].pairs == {"b": 240}
    assert ex.metrics("mix")["scheme"].tolist() == ["multitask"] * 3 + ["more"] * 3


@pytest.mark.parametrize(
    "pairs, include, message",
    [
        ([0, 0, 0], None, "mix is empty"),
        ([10, 10, 10], [], "mix is empty"),
        ({"a": 121}, None, "0…120"),
        ({"z": 5}, None, "unknown source"),
    ],
)
def test_bad_mix_is_named(ex, pairs, include, message):
    with pytest.raises(ConfigError, match=message):
        ex.set_mix(pairs, include)


def test_save_appends_and_restores(ex):
    lam_fit = ex.set_lambda([0.1, 0.1, 0.8])
    ex.save("lambda", note="harmless-heavy")
    ex.set_mix({"a": 60, "b": 240, "c": 0})
    path = ex.save("mix")
    table = ex.load_saved()
    assert path == ex.saved_path() and path.parent.name == "tables"
    assert table["save_id"].tolist() == [0, 1, 1] and table["kind"].tolist() == ["lambda", "mix", "mix"]
    assert table["accuracy_mean"].iloc[0] == pytest.approx(lam_fit.mean("accuracy"))
    assert table["accuracy:c"].iloc[0] == pytest.approx(lam_fit.metrics["c"]["accuracy"])
    ex.set_lambda([1 / 3] * 3)
    assert ex.restore(0).metrics == lam_fit.metrics
    assert ex.restore(1)["more"].pairs == {"a": 60, "b": 240}
    with pytest.raises(ConfigError, match="no saved row"):
        ex.restore(7)


def test_save_without_run_folder_is_named(cfg, bench):
    ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore)
    ex.set_lambda([1 / 3] * 3)
    with pytest.raises(RunError, match="out_dir"):
        ex.save()
    with pytest.raises(ConfigError, match="no mix fit"):
        ex.metrics("mix")


def test_static_figures_show_the_fits(ex):
    fig = widgets.lambda_figure(ex)
    fit = ex.current
    assert type(fig) is go.Figure and fig.layout.autosize and fig.layout.width is None  # sized by its output area
    acc, ece = figures.trace(fig, "acc:fixed"), figures.trace(fig, "ece:fixed")
    assert list(acc.y) == [fit.metrics[s]["accuracy"] for s in NAMES]
    assert list(ece.y) == [fit.metrics[s]["ece_10"] for s in NAMES]
    ci = fit.ci("ece_10")
    np.testing.assert_allclose(np.array(ece.y) + np.array(ece.error_y.array), [ci[s][1] for s in NAMES])
    np.testing.assert_allclose(np.array(ece.y) - np.array(ece.error_y.arrayminus), [ci[s][0] for s in NAMES])
    assert list(figures.trace(fig, "floor:fixed").y) == [fit.floor[s]["p95"] for s in NAMES]
    assert list(figures.trace(fig, "floormean:fixed").y) == [fit.floor[s]["floor"] for s in NAMES]
    assert not [t for t in fig.data if str(t.meta).startswith("ghost:")]  # no study results given: no ghosts
    mix = widgets.mix_figure(ex)
    assert list(figures.trace(mix, "acc:more").y) == [ex.mix["more"].metrics[s]["accuracy"] for s in NAMES]
    assert figures.trace(mix, "ece:multitask").error_y.array is not None


def test_bootstrap_replicates_equal_a_direct_numpy_bootstrap(ex, cfg):
    fit = ex.set_lambda([0.5, 0.3, 0.2])
    rng = np.random.default_rng(cfg.explore.seed)  # the same draws, source after source, as intervals.resample_counts
    acc, ece = [], []
    for s in NAMES:
        d = fit.diffs[s]
        rows = rng.integers(0, d.size, size=(cfg.explore.n_boot, d.size))
        acc.append([metrics.accuracy(d[r]) for r in rows])
        ece.append([metrics.calibration_errors(d[r], 10)["ece"] for r in rows])
    acc, ece = np.array(acc).T, np.array(ece).T
    np.testing.assert_allclose(fit.boot["accuracy"], acc, atol=1e-12)
    np.testing.assert_allclose(fit.boot["ece_10"], ece, atol=1e-12)
    lo, hi = np.quantile(ece, [0.025, 0.975], axis=0)
    np.testing.assert_allclose([fit.ci("ece_10")[s] for s in NAMES], np.stack([lo, hi], axis=1), atol=1e-12)
    np.testing.assert_allclose(fit.mean_ci("accuracy"), np.quantile(acc.mean(axis=1), [0.025, 0.975]), atol=1e-12)
    for s in NAMES:  # the floor band is metrics.ece_floor_stats at the source's N and σ(Δ)
        null = metrics.ece_floor_stats(fit.diffs[s], 10, intervals.FLOOR_SIMS, cfg.explore.seed)
        assert fit.floor[s] == {"floor": null["floor"], "p95": null["p95"]}
    base = ex.uniform_fit()
    d, lo, hi = engine.change(fit, base, "ece_10")
    paired = ece.mean(axis=1) - base.boot["ece_10"].mean(axis=1)  # both fits resample the same pairs
    assert d == pytest.approx(fit.mean("ece_10") - base.mean("ece_10"))
    np.testing.assert_allclose([lo, hi], np.quantile(paired, [0.025, 0.975]))


def test_ece_above_the_axis_cap_gets_an_overflow_mark(ex):
    fig = widgets.lambda_figure(ex)
    over = figures.trace(fig, "over:fixed")
    assert list(over.text or []) == []  # the cap is twice the start's largest ECE: nothing above it
    fig.update_yaxes(range=[0, 0.001], row=1, col=2)
    figures.draw_lambda(fig, ex, ex.current)
    values = [ex.current.metrics[s]["ece_10"] for s in NAMES]
    assert list(over.text) == [f"▲ {v:.3f}" for v in values] and list(over.y) == [0.001] * 3


def test_size_preset_uses_full_sizes_and_says_when_it_equals_uniform(bench, cfg):
    capped = load_config("tiny", {"explore.train_pairs_per_source": 100})
    ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, capped.explore)
    np.testing.assert_allclose(ex.presets()["size"], np.array([120, 240, 360]) / 720)  # the study's sizeprop λ
    assert not ex.size_is_uniform() and "equals uniform" not in widgets.preset_note(ex)
    equal = {n: pf.subset(torch.arange(100)) for n, pf in bench.train.items()}
    ex = engine.Explorer(equal, bench.test, cfg.train, cfg.head, capped.explore)
    assert ex.size_is_uniform()
    assert "size-proportional λ equals uniform here (every source has 100 pairs)" in widgets.preset_note(ex)
    assert "preset tuned: not available" in widgets.preset_note(ex)


def test_study_refs_from_summary_heads_and_run_folder(cfg, bench, tmp_path):
    tcfg, hcfg = engine.explore_configs(cfg.train, cfg.head, cfg.explore)
    heads = {
        RMKey(scheme, seed=0): reward_models.HeadRM(
            reward_head.train_head(bench.train, scheme, tcfg, hcfg, 0, calib=bench.calib)
        )
        for scheme in ("tuned", "famo")
    }
    summary = pd.DataFrame(
        [
            {"scheme": sch, "test_source": s, "accuracy": 0.5 + i / 10, "ece_10": 0.01 * (i + 1), "seeds": 4}
            for sch in ("multitask", "more", "raw")
            for i, s in enumerate(NAMES)
        ]
    )
    refs = reference.study_refs(list(NAMES), "ece_10", 0, summary=summary, heads=heads)
    assert refs.marks["more"]["b"] == {"accuracy": 0.6, "ece_10": 0.02, "seeds": 4.0}
    assert set(refs.marks) == {"multitask", "more"} and "tuned" in refs.missing
    tuned = np.asarray(heads[RMKey("tuned", seed=0)].meta["lam"])
    famo = heads[RMKey("famo", seed=0)].history["lam_final"].double().numpy()
    np.testing.assert_allclose(refs.presets["tuned"], tuned / tuned.sum())
    np.testing.assert_allclose(refs.presets["famo"], famo / famo.sum())
    ex = engine.Explorer(bench.train, bench.test, cfg.train, cfg.head, cfg.explore, study=refs)
    assert set(ex.presets()) == {"uniform", "size", "more", "tuned", "famo"}
    fig = widgets.lambda_figure(ex)
    ghost = figures.trace(fig, "ghost:ece_10:multitask")
    assert list(ghost.y) == [0.01, 0.02, 0.03] and list(ghost.x) == [i + figures.GHOST_X["multitask"] for i in range(3)]
    lambdas = pd.DataFrame(  # notebook 02's metrics.json as run.save_metrics writes it (records)
        [{"rm": "tuned/seed0", "scheme": "tuned", "seed": 0, "source": n, "lambda": v} for n, v in zip(NAMES, tuned)]
    )
    folder = tmp_path / reference.STUDY_NOTEBOOK
    folder.mkdir()
    parts = {"summary": summary.to_dict("records"), "baseline_lambdas": lambdas.to_dict("records")}
    (folder / "metrics.json").write_text(json.dumps(parts))
    from_run = reference.study_refs(list(NAMES), "ece_10", 0, root=tmp_path)
    assert from_run.marks == refs.marks and "famo" in from_run.missing
    np.testing.assert_allclose(from_run.presets["tuned"], refs.presets["tuned"])
    empty = reference.study_refs(list(NAMES), "ece_10", 0, root=tmp_path / "nowhere")
    assert not empty.marks and "notebook 02 has not run" in empty.missing["more"]


def test_widget_updates_the_same_figure_in_place(ex):
    ui = widgets.ExplorerUI(ex)
    fig, before = ui.lambda_fig, ui.lambda_status.value
    assert isinstance(fig, go.FigureWidget)
    ui.sliders[2].value = 0.9  # no running event loop here: the update runs at once
    assert ui.lambda_fig is fig and ui.lambda_status.value != before
    np.testing.assert_allclose(ex.current.lam, np.array([0.33, 0.33, 0.9]) / 1.56, atol=1e-9)  # sliders show 0.01 steps
    assert list(fig.data[1].y) == [ex.current.metrics[s]["accuracy"] for s in NAMES]
    assert "update" in ui.lambda_status.value and "head_epochs=3" in ui.lambda_status.value
    for s in ui.sliders:
        s.value = 0.0
    assert "all weights are 0" in ui.lambda_status.value
    mix_fig = ui.mix_fig
    ui.include[0].value = False
    assert ui.mix_fig is mix_fig and ex.mix["more"].pairs == {"b": 240, "c": 360}
    assert (ui.pairs[0].value, ui.pairs[0].disabled) == (0, True)  # an unchecked source reads 0
    ui.include[0].value = True
    assert (ui.pairs[0].value, ui.pairs[0].disabled) == (120, False) and ex.mix["more"].pairs["a"] == 120
    ui.save("mix")
    assert ui.saved.options[-1][1] == 0


def test_more_preset_stays_exactly_mores_lambda(ex):
    ui = widgets.ExplorerUI(ex, views=("lambda",))
    ece_range = ui.lambda_fig.layout.yaxis2.range
    preset = ex.presets()["more"]
    assert not np.allclose(preset, np.round(preset, 2))  # the preset is not on the sliders' 0.01 grid
    before = ui.refits["lambda"]
    ui.preset_buttons["more"].click()
    assert ui.refits["lambda"] == before + 1
    for s in ui.sliders:  # a browser echoes the rounded value it shows (float noise included)
        s.value = float(f"{s.value:.2f}") + 1e-12
    assert ui.refits["lambda"] == before + 1 and np.array_equal(ex.current.lam, preset / preset.sum())
    steps = len(ex.more_trajectory())
    assert f"step {steps - 1} of {steps - 1}" in ui.step_note.value
    ui.step.value = 0
    assert "step 0 of" in ui.step_note.value and np.array_equal(
        ex.current.lam, ex.more_lambda(0) / ex.more_lambda(0).sum()
    )
    ui.preset_buttons["uniform"].click()
    assert "not a MORE step" in ui.step_note.value
    ui.sliders[0].value = 0.8  # a real drag refits and leaves MORE's trajectory
    assert ui.refits["lambda"] == before + 4 and "not a MORE step" in ui.step_note.value
    assert ui.lambda_fig.layout.yaxis2.range == ece_range  # the ECE axis stays put


def test_load_resets_the_step_readout_and_entries_name_the_choice(ex):
    ui = widgets.ExplorerUI(ex)
    last = len(ex.more_trajectory()) - 1
    ui.preset_buttons["uniform"].click()
    ui.save("lambda")
    ui.preset_buttons["more"].click()
    ui.save("lambda")
    assert f"step {last} of {last}" in ui.step_note.value
    ui.load(0)  # the saved uniform choice: λ is no MORE step any more
    assert "not a MORE step" in ui.step_note.value and "(saved #0)" in ui.lambda_status.value
    assert [r.value for r in ui.lam_readouts] == ["<span class='explore-lam'>λ = 0.333</span>"] * 3
    ui.load(1)  # the saved MORE final λ is found on the trajectory again
    assert f"step {last} of {last}" in ui.step_note.value
    ex.set_mix({"a": 60, "b": 240, "c": 0})
    ui.save("mix")
    labels = [text for text, _ in ui.saved.options]
    assert labels[0].startswith("#0 λ a 0.33, b 0.33, c 0.33: fixed acc ")
    assert labels[2].startswith("#2 mix a 60, b 240: multitask acc ") and "; more acc " in labels[2]


def test_sliders_align_and_read_out_normalised_lambda(ex):
    ui = widgets.ExplorerUI(ex)
    styles = {s.style.description_width for s in [*ui.sliders, *ui.pairs, ui.step]}
    assert len(styles) == 1 and not any(s.readout for s in ui.sliders)
    ui.sliders[0].value = 0.66  # weights 0.66, 0.33, 0.33 → λ 0.5, 0.25, 0.25
    assert [r.value.split("= ")[1][:5] for r in ui.lam_readouts] == ["0.500", "0.250", "0.250"]
    assert "vs uniform λ" in ui.lambda_status.value and "95% CIs over test pairs" in ui.lambda_status.value
    assert "MORE − MultiTask: mean accuracy" in ui.mix_status.value
    assert ui.preset_buttons["tuned"].disabled and "no study results" in ui.preset_buttons["tuned"].tooltip


def test_debouncer_coalesces_a_drag():
    calls = []

    async def drag():
        debounce = widgets.Debouncer(lambda: calls.append(1), 0.2)  # far above a loaded CPU's sleep overshoot
        for _ in range(5):
            debounce.trigger()
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.5)

    asyncio.run(drag())
    assert calls == [1]


def test_from_study_uses_the_study_more_head(cfg):
    from morelib.study import pipeline

    data, _ = pipeline.synthetic_data(cfg)
    head = reward_head.train_head(
        {s: data.features[s]["train"] for s in data.sources},
        "more",
        *engine.explore_configs(cfg.train, cfg.head, cfg.explore),
        seed=0,
    )
    ex = engine.Explorer.from_study(data, cfg, more_head=head)
    np.testing.assert_allclose(ex.more_trajectory(), head.history["lam"].double().numpy())
    assert ex.names == data.sources and set(ex.test) == set(data.sources)
    head.history["source_names"] = list(reversed(data.sources))
    with pytest.raises(ConfigError, match="more_head was trained on"):
        engine.Explorer.from_study(data, cfg, more_head=head)
