"""The capacity study (morelib.study.capacity): pooled and per-source rows against direct `stats` calls, λ statistics
against hand values, sentences that follow their CIs, an unavailable tier failing clearly, and a tiny end-to-end fit."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from morelib.core import runs
from morelib.core.config import load_config
from morelib.core.errors import ConfigError
from morelib.evaluation import metrics, stats
from morelib.study import capacity, pipeline
from morelib.train.reward_models import RMKey


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", {"seeds": [0, 1, 2], "n_boot": 200})


def _diffs(shift: float, seeds: int = 3, n: int = 150) -> dict:
    """Δ per RM and source: multitask random, more = multitask × (1 + shift) (over-confident), tuned = multitask."""
    rng = np.random.default_rng(0)
    out = {}
    for seed in range(seeds):
        base = {src: rng.normal(0.4, 1.0, n) for src in ("a", "b")}
        out[RMKey("multitask", seed=seed)] = base
        out[RMKey("more", seed=seed)] = {s: (1.0 + shift) * d for s, d in base.items()}
        out[RMKey("tuned", seed=seed)] = {s: d.copy() for s, d in base.items()}
    return out


def test_pooled_rows_equal_direct_bootstrap_calls(cfg):
    diffs = {("mlp", 4): _diffs(2.0)}
    table = capacity.pooled_table(cfg, diffs, {"mlp": 1234})
    row = table[(table["scheme"] == "more") & (table["metric"] == "ece_10")].iloc[0]
    stack = lambda scheme: {  # noqa: E731
        s: np.stack([diffs[("mlp", 4)][RMKey(scheme, seed=k)][s] for k in range(3)], axis=1) for s in ("a", "b")
    }
    ece = lambda d: metrics.batched_ece(d, n_bins=10)  # noqa: E731
    direct = stats.pooled_paired_bootstrap(stack("more"), stack("multitask"), ece, 200, 0, 0.95)
    assert row[["diff", "lo", "hi", "se"]].tolist() == pytest.approx([direct[k] for k in ("diff", "lo", "hi", "se")])
    assert row["mde"] == pytest.approx(stats.minimum_detectable_effect(direct["se"]))
    assert row["params"] == 1234 and row["n_seeds"] == 3 and row["n_pairs"] == 300
    floors = [metrics.ece_floor(stack("multitask")[s][:, j], 10) for s in ("a", "b") for j in range(3)]
    assert row["floor"] == pytest.approx(np.mean(floors))
    tuned = table[(table["scheme"] == "tuned") & (table["metric"] == "accuracy")].iloc[0]
    assert tuned["diff"] == 0 and tuned["lo"] == 0 and tuned["hi"] == 0  # tuned = multitask here
    assert np.isnan(tuned["floor"])


def test_per_source_rows_are_holm_adjusted_over_sources(cfg):
    table = capacity.per_source_table(cfg, {("linear", 4): _diffs(1.5)})
    for _, g in table.groupby("metric"):
        assert sorted(g["test_source"]) == ["a", "b"]
        assert g["p_holm"].tolist() == pytest.approx(stats.holm(g["p_value"].to_numpy()).tolist())
    ece = table[table["metric"] == "ece_10"]
    assert (ece["diff"] > 0).all(), "scaling Δ by 2.5 makes MORE over-confident: its ECE is higher on both sources"
    assert ((ece["lo"] <= ece["diff"]) & (ece["diff"] <= ece["hi"])).all()


def _rm(lam: list[list[float]]) -> SimpleNamespace:
    return SimpleNamespace(history={"lam": np.array(lam), "source_names": ["a", "b"]}, meta={})


def test_lambda_table_and_tilt_by_hand():
    fits = {
        ("mlp", 16): {
            RMKey("more", seed=0): _rm([[0.6, 0.4], [0.8, 0.2]]),
            RMKey("more", seed=1): _rm([[0.7, 0.3], [0.5, 0.5]]),
            RMKey("multitask", seed=0): _rm([[0.5, 0.5]]),
        },
        ("linear", 16): {RMKey("more", seed=0): _rm([[0.6, 0.4]]), RMKey("more", seed=1): _rm([[0.4, 0.6]])},
    }
    lams = capacity.lambda_table(fits)
    mlp = lams[(lams["tier"] == "mlp") & (lams["source"] == "a")]
    assert mlp["lambda_mean"].tolist() == pytest.approx([0.7, 0.6]) and mlp["lambda_step_sd"].tolist() == pytest.approx(
        [0.1, 0.1]
    )
    tilt = capacity.lambda_tilt(lams).set_index(["tier", "source"])
    assert tilt.loc[("mlp", "a"), "same_sign"] == 1 and tilt.loc[("mlp", "b"), "same_sign"] == -1
    assert tilt.loc[("linear", "a"), "same_sign"] == 0 and tilt.loc[("mlp", "a"), "lambda_mean"] == pytest.approx(0.65)
    lines = capacity.tilt_lines(capacity.lambda_tilt(lams))
    assert "a above (0.600–0.700)" in lines[0] and "no source's λ stays on one side" in lines[1]


def _pooled(rows: list[tuple]) -> pd.DataFrame:
    cols = ["tier", "B", "params", "scheme", "metric", "diff", "lo", "hi", "mde", "floor", "n_seeds"]
    return pd.DataFrame([dict(zip(cols, r)) for r in rows])


def test_headline_follows_the_cis():
    rows = [
        ("linear", 16, 576, "more", "ece_10", -0.002, -0.007, 0.002, 0.007, 0.03, 5),
        ("linear", 16, 576, "more", "accuracy", 0.0, -0.01, 0.01, 0.02, np.nan, 5),
        ("mlp", 16, 148000, "more", "ece_10", -0.005, -0.017, 0.003, 0.01, 0.03, 5),
        ("mlp", 16, 148000, "more", "accuracy", 0.001, -0.01, 0.01, 0.02, np.nan, 5),
        ("mlp", 64, 148000, "more", "ece_10", -0.013, -0.027, -0.0001, 0.01, 0.03, 5),
        ("mlp", 64, 148000, "more", "accuracy", -0.001, -0.01, 0.01, 0.02, np.nan, 5),
    ]
    text = capacity.headline(_pooled(rows))
    assert text.startswith("MORE's calibration advantage appears at mlp (148,000 trainable parameters), B = 64")
    assert "-0.0130 [-0.0270, -0.0001]" in text and "at smaller capacity (linear) no CI excludes 0" in text
    lines = capacity.verdict_lines(_pooled(rows))
    assert "no difference established" in lines[0] and "MORE better (the CI excludes 0)" in lines[2]
    null = _pooled([r for r in rows if r[1] == 16])
    assert capacity.headline(null).startswith("At no rung measured here (2 tier × batch settings, 5 seeds)")
    worse = _pooled([("mlp", 16, 9, "more", "ece_10", 0.02, 0.01, 0.03, 0.01, 0.03, 5)])
    assert "it is higher at mlp (9 trainable parameters), B = 16" in capacity.headline(worse)


def test_trade_off_is_named_when_one_source_gains_and_another_loses():
    cols = ["tier", "B", "metric", "test_source", "diff", "lo", "hi", "p_value", "p_holm"]
    rows = [
        ("mlp", 64, "ece_10", "harmless", -0.03, -0.05, -0.01, 0.001, 0.004),
        ("mlp", 64, "accuracy", "helpful", -0.02, -0.03, -0.01, 0.002, 0.006),
        ("mlp", 64, "accuracy", "oasst1", 0.01, -0.02, 0.04, 0.5, 1.0),
        ("mlp", 16, "ece_10", "harmless", -0.03, -0.05, -0.01, 0.001, 0.004),
        ("linear", 16, "ece_10", "harmless", -0.01, -0.03, 0.01, 0.3, 0.9),
    ]
    lines = capacity.trade_offs(pd.DataFrame([dict(zip(cols, r)) for r in rows]))
    assert len(lines) == 2
    assert lines[0].startswith("- trade-off at mlp, B = 64: MORE gains on harmless ece_10")
    assert "loses on helpful accuracy -0.0200 [-0.0300, -0.0100]" in lines[0] and "oasst1" not in lines[0]
    assert (
        lines[1] == "- mlp, B = 16: MORE gains on harmless ece_10 -0.0300 [-0.0500, -0.0100], no source the other way"
    )


def test_blocks_rung_config_keeps_the_head_and_sets_b(cfg):
    rung = capacity.tier_config(cfg, "blocks", 16)
    assert rung.train.batch_per_source == 16 and rung.head.kind == cfg.head.kind and rung.train.tier == "features"
    assert capacity.tier_config(cfg, "mlp", 8).head.kind == "mlp"


def test_tiny_end_to_end_on_synthetic_features():
    cfg = load_config("tiny", {"seeds": [0, 1], "n_boot": 50, "data.synthetic.n_train": 64})
    data, _ = pipeline.synthetic_data(cfg)
    fits, seconds = capacity.fit_all(cfg, data)
    assert sorted(fits) == [("linear", 4), ("linear", 8), ("mlp", 4), ("mlp", 8)] and len(seconds) == 4
    keys = {str(k) for k in fits[("mlp", 8)]}
    assert keys == {f"{s}/seed{k}" for s in ("multitask", "more", "tuned") for k in (0, 1)}
    assert fits[("mlp", 4)][RMKey("more", seed=0)].meta["batch_per_source"] == 4
    assert fits[("mlp", 4)][RMKey("more", seed=0)].head.meta["kind"] == "mlp"
    params = capacity.trainable_parameters(cfg, data)
    assert params == {"linear": 16, "mlp": 16 * 16 + 16 + 16}
    diffs = capacity.diffs_of(fits, data)
    pooled = capacity.pooled_table(cfg, diffs, params)
    assert len(pooled) == 4 * 2 * 2 and (pooled["lo"] <= pooled["diff"] + 1e-12).all()
    per_source = capacity.per_source_table(cfg, diffs)
    tilt = capacity.lambda_tilt(capacity.lambda_table(fits))
    assert set(tilt["source"]) == set(data.sources) and (tilt["seeds"] == 2).all()
    text = capacity.finding(pooled, per_source, tilt)
    assert text.split("\n")[0].startswith(("MORE's calibration advantage appears", "At no rung measured here"))
    assert "MORE's λ (1/K = uniform):" in text


def test_blocks_tier_may_run_at_its_own_batch_sizes():
    cfg = load_config("tiny", {"capacity.blocks_batch_per_source": [4]})
    assert capacity.batch_sizes(cfg, "blocks") == (4,) and capacity.batch_sizes(cfg, "mlp") == (4, 8)
    assert capacity.batch_sizes(load_config("tiny"), "blocks") == (4, 8)
    with pytest.raises(ConfigError, match="'capacity.blocks_batch_per_source' must list distinct positive"):
        load_config("tiny", {"capacity.blocks_batch_per_source": [8, 8]})


def test_rungs_use_the_first_max_seeds_seeds():
    cfg = load_config("tiny", {"seeds": [3, 1, 4, 5], "capacity.max_seeds": 2})
    assert capacity.study_config(cfg).seeds == (3, 1) and capacity.tier_config(cfg, "mlp", 4).seeds == (3, 1)
    assert capacity.study_config(load_config("tiny", {"capacity.max_seeds": None})).seeds == (0, 1)
    with pytest.raises(ConfigError, match="'capacity.max_seeds' must be positive"):
        load_config("tiny", {"capacity.max_seeds": 0})


def test_finetune_rung_reuses_the_profiles_fine_tunes_and_skips_tuned():
    ft = load_config("tiny-finetune", {"capacity.tiers": ["linear", "mlp", "finetune"]})
    assert capacity.batch_sizes(ft, "finetune") == (ft.train.batch_per_source,)
    rung = capacity.tier_config(ft, "finetune", ft.train.batch_per_source)
    assert rung.train.tier == "finetune" and pipeline.fingerprint(rung) == pipeline.fingerprint(ft)
    assert capacity.rung_schemes(ft, "finetune") == ["multitask", "more"]
    assert capacity.rung_schemes(ft, "mlp") == list(ft.capacity.schemes)
    assert capacity.tier_config(ft, "mlp", 4).train.tier == "features"


def test_pooled_table_compares_only_the_schemes_a_rung_fitted(cfg):
    both = {("linear", 4): _diffs(1.0)}
    no_tuned = {k: v for k, v in _diffs(1.0).items() if k.scheme != "tuned"}
    table = capacity.pooled_table(cfg, {**both, ("finetune", 4): no_tuned}, {"linear": 10, "finetune": 10**6})
    assert set(table.loc[table["tier"] == "finetune", "scheme"]) == {"more"}
    assert set(table.loc[table["tier"] == "linear", "scheme"]) == {"more", "tuned"}


def test_blocks_rms_are_saved_in_the_run_and_a_rerun_writes_only_under_interactive(tmp_path):
    cfg = load_config(
        "tiny-capacity",
        {"seeds": [0], "capacity.schemes": ["multitask", "more"], "blocks.epochs": 1, "output_root": str(tmp_path)},
    )
    data = capacity.prepare(cfg)
    first = runs.Run(root=tmp_path / "run", notebook="07_capacity", cfg=cfg)
    fitted = capacity._fit_blocks(cfg, data, 4, first)
    own, new = capacity.blocks_folders(cfg, 4, first)
    assert own == new and sorted(p.name for p in own.glob("*.pt")) == ["more%2Fseed0.pt", "multitask%2Fseed0.pt"]
    pairs = data.pairs["helpful"]["test"]
    again = capacity._fit_blocks(cfg, data, 4, first)  # reloaded, not refitted
    assert all((again[k].reward_diff(pairs) == fitted[k].reward_diff(pairs)).all() for k in fitted)
    rerun = runs.Run(root=tmp_path / "run2", notebook="07_capacity", cfg=cfg, sub="interactive-x")
    capacity._fit_blocks(cfg, data, 4, rerun)
    own, new = capacity.blocks_folders(cfg, 4, rerun)
    assert not own.exists() and len(list(new.glob("*.pt"))) == 2 and "interactive-x" in new.parts
