"""Study orchestration on the synthetic benchmark: fit-once-per-run, Single-Top on calib, tables vs direct metric calls,
paired CIs, computed findings (opposite data → opposite verdict) and paper tables read from the CSVs."""

import csv

import numpy as np
import pandas as pd
import pytest

from morelib.core import runs
from morelib.core.config import load_config
from morelib.core.errors import DataError, RunError
from morelib.data import paper
from morelib.evaluation import metrics, stats
from morelib.study import findings, pipeline, tables
from morelib.train import reward_head, reward_models
from morelib.train.reward_models import RMKey


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    return load_config(
        "tiny", {"output_root": str(root), "data.synthetic.n_train": 200, "data.synthetic.n_test": 150, "n_boot": 50}
    )


@pytest.fixture(scope="module")
def fitted(cfg):
    data, bench = pipeline.synthetic_data(cfg)
    run = runs.open_run(cfg, "", "test")
    heads = pipeline.fit(cfg, data, ["raw", "top", "multitask", "more"], run=run)
    return data, bench, run, heads


def test_keys_and_reuse_from_run(cfg, fitted, monkeypatch):
    data, _, run, heads = fitted
    assert set(heads) == {
        RMKey(s, source=src, seed=k)
        for k in cfg.seeds
        for s, src in [("raw", None), ("multitask", None), ("more", None)] + [("single", n) for n in data.sources]
    }
    monkeypatch.setattr(reward_head, "train_head", lambda *a, **k: pytest.fail("a head of this run was retrained"))
    again = pipeline.fit(cfg, data, ["more", "single"], run=run)
    key = RMKey("more", seed=cfg.seeds[0])
    assert np.array_equal(again[key].head.w.numpy(), heads[key].head.w.numpy())
    loaded = pipeline.load_heads(run, ["more", "single"])
    assert set(loaded) == {k for k in heads if k.scheme in ("more", "single")}
    assert np.array_equal(loaded[key].head.w.numpy(), heads[key].head.w.numpy())


def test_manifest_records_each_heads_grad_norm_and_temperature_bounds(cfg, fitted):
    data, _, run, heads = fitted
    norms = run.manifest_extra["heads"]
    assert set(norms) == set(map(str, heads)) and norms[str(RMKey("raw", seed=cfg.seeds[0]))]["grad_norm"] is None
    key = RMKey("multitask", seed=cfg.seeds[0])
    assert norms[str(key)]["grad_norm"] == heads[key].history["grad_norm"] >= 0
    fits = pipeline.temperature_fits(heads, data)
    assert set(fits) == {k for k in heads if k.scheme != "raw"}
    assert all(f.bound in (None, "upper", "lower") and f.T > 0 for f in fits.values())
    assert pipeline.temperatures(heads, data) == {k: f.T for k, f in fits.items()}


def test_top_is_best_single_on_calib(cfg, fitted):
    data, _, _, heads = fitted
    top = pipeline.select_top(heads, data)
    for (seed, test_src), chosen in top.items():
        accs = {
            s: metrics.accuracy(
                heads[RMKey("single", source=s, seed=seed)].head.reward_diff(data.features[test_src]["calib"])
            )
            for s in data.sources
        }
        assert accs[chosen] == max(accs.values())
    diffs = pipeline.scheme_diffs(heads, data)
    seed, src = next(iter(top))
    assert np.array_equal(
        diffs[RMKey("top", seed=seed)][src], diffs[RMKey("single", source=top[(seed, src)], seed=seed)][src]
    )


def test_metric_table_matches_direct_metrics_and_temperature_keeps_accuracy(cfg, fitted):
    data, _, _, heads = fitted
    table = pipeline.metric_table(heads, data, cfg, temperature_scaled=True)
    key, src = RMKey("more", seed=cfg.seeds[0]), data.sources[0]
    direct = metrics.all_metrics(heads[key].head.reward_diff(data.features[src]["test"]).numpy())
    row = table[(table.scheme == "more") & (table.seed == cfg.seeds[0]) & (table.test_source == src)].iloc[0]
    assert row["ece_10"] == pytest.approx(direct["ece_10"]) and row["accuracy"] == pytest.approx(direct["accuracy"])
    scaled = table[(table.scheme == "more+T") & (table.seed == cfg.seeds[0]) & (table.test_source == src)].iloc[0]
    assert scaled["accuracy"] == pytest.approx(row["accuracy"]), "a positive temperature cannot change the ranking"
    t3 = tables.table3(table)
    assert list(t3.index) == ["raw", "top", "multitask", "more"]
    assert t3.loc["more", src] == pytest.approx(
        table[(table.scheme == "more") & (table.test_source == src)]["accuracy"].mean()
    )


def test_compare_is_seed_mean_difference_with_ci(cfg, fitted):
    data, _, _, heads = fitted
    diffs = pipeline.scheme_diffs(heads, data)
    cmp = tables.compare(diffs, "more", "multitask", cfg, ["ece_10"])
    src = data.sources[0]
    ece = [
        metrics.calibration_errors(diffs[RMKey(s, seed=k)][src], 10)["ece"]
        for s in ("more", "multitask")
        for k in cfg.seeds
    ]
    row = cmp[cmp.test_source == src].iloc[0]
    n = len(cfg.seeds)
    assert row["diff"] == pytest.approx(np.mean(ece[:n]) - np.mean(ece[n:]))
    assert row["lo"] <= row["hi"]
    # the per-source CI Holm reads is the two-component one (seed spread + test pairs), not pairs with seeds fixed
    stack = {s: {src: tables._stacked(diffs, s, src)} for s in ("more", "multitask")}
    same = stats.pooled_paired_bootstrap(stack["more"], stack["multitask"], tables.BATCHED_FNS["ece_10"], cfg.n_boot)
    assert (row["lo"], row["hi"], row["se"], row["df"]) == pytest.approx(
        (same["lo"], same["hi"], same["se"], same["df"])
    )
    per_seed = np.subtract(ece[:n], ece[n:])
    assert row["se"] ** 2 >= per_seed.var(ddof=1) / n - 1e-15


def test_paper_power_reads_every_paper_gap_and_attenuates_it(cfg, fitted):
    data, _, _, heads = fitted
    diffs = pipeline.scheme_diffs(heads, data)
    pooled = tables.pooled_compare(diffs, "more", "multitask", cfg, ["ece_10"])
    power = tables.paper_power(diffs, pooled)
    t3 = paper.read("table3")
    assert list(power["base_model"]) == list(t3["base_model"].drop_duplicates())
    for r in power.itertuples():
        eff = paper.ece_effect(r.base_model)
        assert r.gap == pytest.approx(eff["effect"]) and 0 < r.attenuation < 1.2
        assert r.power == pytest.approx(stats.power_at(r.gap * r.attenuation, pooled["se"][0], df=pooled["df"][0]))


def test_synthetic_truth_and_outliers(cfg, fitted):
    data, bench, _, heads = fitted
    truth = pipeline.synthetic_truth(heads, data, bench)
    means = truth.groupby("scheme")["cosine_to_r_star"].mean()
    assert means["more"] > 0.8 and means["multitask"] > 0.8, "pooled sources recover r* on low drift"
    diffs = pipeline.scheme_diffs(heads, data)
    src = data.sources[0]
    out = tables.outlier_table(diffs, ["more"], [src])
    direct = [metrics.outliers(diffs[RMKey("more", seed=k)][src])["pos_count"] for k in cfg.seeds]
    assert out.loc[(src, "more"), "pos_outlier_count"] == pytest.approx(np.mean(direct))


def test_k_ablation_skips_missing_and_fits_subsets(cfg, fitted):
    data, _, run, _ = fitted
    data.missing["webgpt"] = "no local data"
    order = [data.sources[0], data.sources[1], "webgpt", data.sources[2]]
    ks, skipped = pipeline.k_ablation(cfg, data, run, order, tests=data.sources[:2], start=2)
    assert sorted(ks["K"].unique()) == [2, 3] and any("webgpt" in s and "missing" in s for s in skipped)
    assert set(ks["train_source"]) == {"+".join(order[:2]), "all"}
    with pytest.raises(DataError, match="not available"):
        pipeline.fit(cfg, data, ["more"], sources=["webgpt"])


def test_findings_follow_the_numbers():
    better = pd.DataFrame(
        {
            "metric": ["ece_10"] * 2,
            "test_source": ["a", "b"],
            "more": [0.02, 0.03],
            "multitask": [0.05, 0.06],
            "diff": [-0.03, -0.03],
            "lo": [-0.05, -0.04],
            "hi": [-0.01, -0.02],
            "p_value": [0.002, 0.004],
        }
    )
    worse = better.assign(more=[0.07, 0.08], diff=[0.02, 0.02], lo=[0.01, 0.01], hi=[0.03, 0.04])
    assert "holds on this run" in findings.more_vs_multitask(better, 3)
    assert "does NOT hold" in findings.more_vs_multitask(worse, 3)
    assert "favours MORE on 2" in findings.more_vs_multitask(better, 3)
    matrix = pd.DataFrame([[0.7, 0.5], [0.4, 0.8]], index=["a", "b"], columns=["a", "b"])
    assert "for 2 of 2 sources" in findings.diversity(matrix)
    assert "for 0 of 2 sources" in findings.diversity(matrix.T.rename(index={"a": "b", "b": "a"}))
    assert "WebGPT" not in findings.missing_note({}) and "webgpt" in findings.missing_note({"webgpt": "x"})


def test_paper_tables_are_read_from_the_csvs():
    with open(paper.paper_dir() / "table3_rm_accuracy_ece.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["base_model"] == "Pythia-1.4B" and r["scheme"] == "MORE"]
    t3 = paper.table3("Pythia-1.4B")
    assert t3.loc["more", "helpful"] == pytest.approx(float(rows[0]["helpful"]) / 100)
    assert t3.loc["more", "ece"] == pytest.approx(float(rows[0]["ece"]))
    assert paper.outliers("LLaMa-7B").loc[("harmless", "more"), "neg_outlier_count"] == 57
    with pytest.raises(DataError, match="unknown paper table"):
        paper.read("table9")


def test_fit_rejects_unknown_scheme(cfg, fitted):
    data, *_ = fitted
    with pytest.raises(RunError, match="unknown scheme"):
        pipeline.fit(cfg, data, ["mroe"])


def test_k_ablation_finding_and_smaller_abs_diff_is_better():
    ks = pd.DataFrame(
        {
            "scheme": ["more", "multitask", "more", "multitask"],
            "K": [2, 2, 3, 3],
            "ece_10": [0.05, 0.05, 0.03, 0.06],
            "test_source": "helpful",
            "seed": 0,
        }
    )
    trend = pd.DataFrame(
        {
            "contrast": ["K trend", "K trend", "vs Single-Top"],
            "scheme": ["more", "multitask", "more"],
            "diff": [-0.02, 0.01, -0.01],
            "lo": [-0.03, -0.01, -0.02],
            "hi": [-0.01, 0.03, -0.001],
        }
    )
    text = findings.k_ablation(ks, pd.Series({"helpful": 0.04}), ["webgpt (missing)"], trend=trend)
    assert "MORE 0.0500 at K=2 → 0.0300 at K=3 (K-trend" in text and ": falls)" in text and "below it" in text
    assert "(½, ½)" in text and "no change the CI can confirm" in text
    assert "webgpt" in text
    cmp = pd.DataFrame(
        {
            "metric": ["mean_abs_diff"],
            "test_source": ["a"],
            "more": [0.2],
            "top": [0.5],
            "diff": [-0.3],
            "lo": [-0.4],
            "hi": [-0.2],
        }
    )
    assert "favours MORE on 1" in findings.comparison(cmp, "more", "top", 1)


def test_finetune_tier_dispatch(tmp_path):
    cfg = load_config(
        "tiny", {"output_root": str(tmp_path), "train.tier": "finetune", "finetune.steps": 2, "seeds": [0]}
    )
    run = runs.open_run(cfg, "", "ft")
    data = pipeline.prepare(cfg, run)
    assert not data.features and data.sources, "the finetune tier scores pairs with the model, no frozen features"
    heads = pipeline.fit(cfg, data, ["raw", "more"], run=run, sources=data.sources[:2])
    key = RMKey("more", subset=data.sources[:2], seed=0)
    assert isinstance(heads[key], reward_models.FinetunedRM) and heads[key].history["lam"].shape[1] == 2
    table = pipeline.metric_table(heads, data, cfg, diffs=pipeline.reward_diffs(heads, data, sources=data.sources[:1]))
    assert set(table["scheme"]) == {"raw", "more"} and table["accuracy"].between(0, 1).all()
    again = pipeline.fit(cfg, data, ["more"], run=run, sources=data.sources[:2])
    assert again[key].path == heads[key].path, "a finished fine-tuned RM is reused, not retrained"


def test_synthetic_benchmark_trains_heads_even_in_finetune_tier():
    cfg = load_config("tiny", {"train.tier": "finetune", "seeds": [0]})
    data, _ = pipeline.synthetic_data(cfg)
    heads = pipeline.fit(cfg, data, ["more"])
    assert isinstance(heads[RMKey("more", seed=0)], reward_models.HeadRM)


def test_synthetic_study_draws_one_benchmark_instance_per_seed(cfg):
    """Issue 24: notebook 02's synthetic verdict, like notebook 06's, draws a benchmark per seed (its r* differs)."""
    table, truth = pipeline.synthetic_study(cfg, ["multitask"])
    assert sorted(truth["seed"].unique()) == sorted(cfg.seeds) and sorted(table["seed"].unique()) == sorted(cfg.seeds)
    r0, r1 = (pipeline.synthetic_data(cfg, s)[1].r_star for s in cfg.seeds[:2])
    assert not np.allclose(r0, r1)
    one = pipeline.synthetic_truth(
        pipeline.fit(cfg, pipeline.synthetic_data(cfg, cfg.seeds[1])[0], ["multitask"], seeds=[cfg.seeds[1]]),
        *pipeline.synthetic_data(cfg, cfg.seeds[1]),
    )
    mine = truth[truth["seed"] == cfg.seeds[1]].reset_index(drop=True)
    assert mine["cosine_to_r_star"].to_numpy() == pytest.approx(one["cosine_to_r_star"].to_numpy())


def test_own_vs_best_other_matches_matrix(cfg, fitted):
    data, _, _, heads = fitted
    table = pipeline.metric_table(heads, data, cfg)
    matrix = tables.accuracy_matrix(table)
    own = tables.own_vs_best_other(pipeline.scheme_diffs(heads, data), matrix, cfg)
    assert list(own["test_source"]) == data.sources
    for row in own.itertuples():
        assert row.own == pytest.approx(matrix.loc[row.test_source, row.test_source])
        assert row.best_other_accuracy == pytest.approx(matrix[row.test_source].drop(["raw", row.test_source]).max())
        assert row.own_lo <= row.own <= row.own_hi  # percentile bootstrap of the seed-mean correctness
    text = findings.diversity(matrix, own)
    assert "paired 95% CI above 0" in text and "CI lies above chance" in text


def test_temperature_finding_closes_a_gap_only_by_an_equivalence_test():
    import pandas as pd

    from morelib.study import findings

    rows = lambda more_t: pd.DataFrame(
        {
            "scheme": ["more", "multitask", "more+T", "multitask+T"],  # noqa: E731
            "ece_10": [0.060, 0.070, more_t, 0.050],
        }
    )
    pooled = lambda a, b, lo, hi: pd.DataFrame(
        {
            "metric": ["ece_10"],
            a: [0.06],
            b: [0.07],
            "diff": [(lo + hi) / 2],  # noqa: E731
            "lo": [lo],
            "hi": [hi],
            "se": [(hi - lo) / 3.92],
            "df": [float("inf")],
            "n_sources": [2],
            "n_pairs": [300],
            "n_seeds": [3],
        }
    )
    before = pooled("more", "multitask", -0.015, -0.005)
    closed = findings.temperature(
        rows(0.0502), pooled_before=before, pooled_after=pooled("more+T", "multitask+T", -0.004, 0.005)
    )
    kept = findings.temperature(
        rows(0.040), pooled_before=before, pooled_after=pooled("more+T", "multitask+T", -0.015, -0.005)
    )
    assert "closes the gap" in closed and "90% CI [-0.0033, +0.0043]" in closed and "±0.0050" in closed
    assert "survives recalibration" in kept
    # the after-CI includes 0 but is too wide for equivalence at ±0.005: "no longer established", never "closes"
    wide = findings.temperature(
        rows(0.0502), pooled_before=before, pooled_after=pooled("more+T", "multitask+T", -0.009, 0.010)
    )
    assert "no longer established" in wide and "closes" not in wide and "equivalence test fails" in wide
    assert "no verdict" in findings.temperature(rows(0.040)), "means alone never choose the verdict"


def test_outlier_finding_gives_integer_counts_per_seed_and_a_ci_verdict():
    counts = pd.DataFrame(
        {
            "test_source": "helpful",
            "scheme": ["more", "more", "multitask", "multitask"],
            "seed": [0, 1, 0, 1],
            "n": 200,
            "pos_outlier_count": [0, 2, 3, 1],
            "neg_outlier_count": [1, 1, 2, 2],
        }
    )
    cmp = pd.DataFrame(
        {"metric": ["outlier_count"], "test_source": ["helpful"], "diff": [-1.5], "lo": [-3.0], "hi": [-0.5]}
    )
    text = findings.outliers(counts, cmp)
    assert "MORE +0/−1, +2/−1 (seeds 0, 1)" in text and "n=" not in text and "nan" not in text
    assert "MORE has fewer outliers than MultiTask" in text
    wide = findings.outliers(counts, cmp.assign(hi=0.5))
    assert "MORE's outlier count is not distinguishable" in wide and "fewer" not in wide
    assert "no verdict" in findings.outliers(counts) and "fewer" not in findings.outliers(counts)


def test_floor_columns_and_pooled_comparison(cfg, fitted):
    data, _, _, heads = fitted
    table = pipeline.metric_table(heads, data, cfg)
    key, src = RMKey("more", seed=cfg.seeds[0]), data.sources[0]
    d = heads[key].head.reward_diff(data.features[src]["test"]).numpy()
    row = table[(table.scheme == "more") & (table.seed == cfg.seeds[0]) & (table.test_source == src)].iloc[0]
    assert row["ece_10_floor"] == pytest.approx(metrics.ece_floor(d, 10))
    assert row["ece_10_excess"] == pytest.approx(row["ece_10"] - row["ece_10_floor"])
    assert row["ece_10_debiased"] == pytest.approx(metrics.debiased_ece(d, 10))
    summ = tables.summary(table, ["accuracy", "ece_10"])
    assert list(summ.columns[2:]) == [
        "accuracy",
        "accuracy_sd",
        "ece_10",
        "ece_10_sd",
        "ece_10_floor",
        "ece_10_floor_p95",
        "ece_10_excess",
        "ece_10_debiased",
        "seeds",
    ]
    assert {"ece_floor", "ece_excess", "ece_debiased"} <= set(tables.table3(table).columns)
    diffs = pipeline.scheme_diffs(heads, data)
    cmp = tables.compare(diffs, "more", "multitask", cfg, ["accuracy", "ece_10"])
    ece = cmp[cmp.metric == "ece_10"]
    first = [metrics.ece_floor(diffs[RMKey("more", seed=k)][src], 10) for k in cfg.seeds]
    assert ece.iloc[0]["more_floor"] == pytest.approx(np.mean(first)) and cmp["p_value"].between(0, 1).all()
    assert cmp[cmp.metric == "accuracy"]["more_floor"].isna().all()
    pooled = tables.pooled_compare(diffs, "more", "multitask", cfg).set_index("metric")
    for metric in ("accuracy", "ece_10"):
        assert pooled.loc[metric, "diff"] == pytest.approx(cmp[cmp.metric == metric]["diff"].mean())
        se, df = pooled.loc[metric, "se"], pooled.loc[metric, "df"]
        assert pooled.loc[metric, "mde"] == pytest.approx(stats.minimum_detectable_effect(se, df=df), rel=1e-9)
        assert se**2 == pytest.approx(pooled.loc[metric, "se_seed"] ** 2 + pooled.loc[metric, "se_pairs"] ** 2)
    assert pooled.loc["ece_10", "more_floor"] == pytest.approx(ece["more_floor"].mean())
    assert pooled.loc["ece_10", "n_pairs"] == sum(len(data.features[s]["test"].chosen) for s in data.sources)


def test_k_endpoints_and_trend(cfg, fitted):
    data, _, run, heads = fitted
    ends = pipeline.k_endpoints(cfg, data, run, data.sources, tests=data.sources[:2])
    assert sorted(ends) == [2, len(data.sources)] and set(ends[2]) == {
        RMKey(s, seed=k) for s in ("multitask", "more") for k in cfg.seeds
    }
    top = pipeline.scheme_diffs(heads, data)
    trend = tables.k_trend(ends, top, cfg, data.sources[:2])
    assert list(trend["contrast"]) == ["K trend", "K trend", "vs Single-Top"]
    more = trend[(trend.contrast == "K trend") & (trend.scheme == "more")].iloc[0]
    ece = (
        lambda ds, s: np.mean(
            [
                metrics.calibration_errors(ds[RMKey(s, seed=k)][src], 10)["ece"]  # noqa: E731
                for k in cfg.seeds
                for src in data.sources[:2]
            ]
        )
    )
    assert more["diff"] == pytest.approx(ece(ends[len(data.sources)], "more") - ece(ends[2], "more"))
    assert more["lo"] <= more["diff"] <= more["hi"] and np.isfinite(more["a_floor_p95"])
