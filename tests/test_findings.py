"""Verdict logic of morelib.study.findings on constructed tables: no verdict word without a CI that supports it."""

import pandas as pd

from morelib.study import findings


def ece_table(diffs, los, his, ps, more=None, multitask=None, floor_p95=0.0):
    """A `tables.compare` ECE table over len(diffs) sources (floors far below the ECEs unless floor_p95 is set)."""
    n = len(diffs)
    more = more or [0.05] * n
    multitask = multitask or [m - d for m, d in zip(more, diffs)]
    return pd.DataFrame(
        {
            "metric": "ece_10",
            "test_source": [f"s{i}" for i in range(n)],
            "more": more,
            "multitask": multitask,
            "diff": diffs,
            "lo": los,
            "hi": his,
            "p_value": ps,
            "more_floor_p95": floor_p95,
            "multitask_floor_p95": floor_p95,
        }
    )


def pooled_row(lo, hi, more=0.05, multitask=0.06, floor_p95=0.0):
    return pd.DataFrame(
        {
            "metric": ["ece_10"],
            "more": [more],
            "multitask": [multitask],
            "diff": [(lo + hi) / 2],
            "lo": [lo],
            "hi": [hi],
            "se": [(hi - lo) / 3.92],
            "mde": [2.8 * (hi - lo) / 3.92],
            "n_sources": [4],
            "n_pairs": [1600],
            "n_seeds": [5],
            "more_floor_p95": [floor_p95],
            "multitask_floor_p95": [floor_p95],
        }
    )


def test_mixed_significant_signs_never_hold():
    """MORE significantly better on 1 source, significantly worse on 3: no "holds", even with a favourable pooled CI."""
    cmp = ece_table(
        [-0.03, 0.02, 0.02, 0.02], [-0.04, 0.01, 0.01, 0.01], [-0.02, 0.03, 0.03, 0.03], [0.001, 0.001, 0.002, 0.003]
    )
    for pooled in (None, pooled_row(-0.01, -0.002)):
        text = findings.more_vs_multitask(cmp, 5, pooled)
        assert "holds" not in text and "does NOT hold" in text and "significantly lower on 3 source(s)" in text


def test_holds_only_with_a_ci_in_mores_favour_and_no_significant_loss():
    cmp = ece_table(
        [-0.01, -0.005, 0.002, -0.003],
        [-0.02, -0.012, -0.004, -0.01],
        [-0.001, 0.002, 0.008, 0.004],
        [0.03, 0.2, 0.5, 0.4],
    )
    assert "holds on this run by the pooled paired CI" in findings.more_vs_multitask(cmp, 5, pooled_row(-0.008, -0.001))
    assert "NOT established" in findings.more_vs_multitask(cmp, 5, pooled_row(-0.008, 0.001))
    # without a pooled CI: the one raw-significant source (p = 0.03) does not survive Holm over 4 sources
    assert "NOT established" in findings.more_vs_multitask(cmp, 5)


def test_ece_within_the_floor_is_never_better():
    cmp = ece_table([-0.01, -0.01], [-0.015, -0.015], [-0.005, -0.005], [0.001, 0.001], floor_p95=0.08)
    text = findings.more_vs_multitask(cmp, 5, pooled_row(-0.015, -0.005, floor_p95=0.08))
    assert "holds" not in text and "neither is called better" in text and "within a perfectly calibrated" in text
    assert "NOT established" in text and "better than" not in text
    # the significant difference is reported first, the floor caveat after it (issue 24)
    assert text.index("significantly lower") < text.index("within a perfectly calibrated")


def test_a_significant_difference_inside_the_floor_is_reported_as_significant():
    """CI in MultiTask's favour, both ECEs inside the floor: the text says so (never "not distinguishable" or "No CI
    establishes"), then the caveat, and the paper's claim does not hold."""
    cmp = ece_table([0.01, 0.01], [0.005, 0.005], [0.015, 0.015], [0.001, 0.001], floor_p95=0.08)
    text = findings.more_vs_multitask(cmp, 5, pooled_row(0.005, 0.015, floor_p95=0.08))
    lead = findings.headline(text)
    assert "\n" not in lead and "significantly higher than MultiTask's" in lead and "does NOT hold" in lead
    assert lead.index("significantly higher") < lead.index("within a perfectly calibrated")
    assert "not distinguishable" not in lead and "No CI establishes" not in text
    assert "MORE's ece_10 is significantly higher than MultiTask's: pooled MORE − MultiTask = +0.0100" in text


def test_pooled_comparison_words_follow_the_ci():
    cmp = ece_table([0.01], [0.005], [0.015], [0.001])
    text = findings.comparison(cmp, "more", "multitask", 3, pooled_row(0.005, 0.015))
    assert text.startswith("MORE's ece_10 is significantly higher than MultiTask's: pooled MORE − MultiTask = +0.0100")
    acc = findings.comparison(
        cmp.assign(metric="accuracy"), "more", "multitask", 3, pooled_row(0.005, 0.015).assign(metric="accuracy")
    )
    assert acc.startswith("MORE is better than MultiTask on accuracy") and "| s0 | 0.0500 | 0.0400 | +0.0100 |" in acc
    assert "no overall verdict" in findings.comparison(cmp, "more", "multitask", 3)


def test_k_trend_from_point_means_alone_says_nothing():
    ks = pd.DataFrame(
        {"scheme": ["more", "more"], "K": [2, 4], "ece_10": [0.06, 0.03], "test_source": "helpful", "seed": 0}
    )
    text = findings.k_ablation(ks, pd.Series({"helpful": 0.05}), [])
    assert ": falls" not in text and "below it" not in text and "no CI: trend not assessed" in text
    trend = pd.DataFrame(
        {
            "contrast": ["K trend", "vs Single-Top"],
            "scheme": ["more", "more"],
            "diff": [-0.03, -0.02],
            "lo": [-0.05, -0.03],
            "hi": [-0.01, -0.01],
            "a": [0.03, 0.03],
            "b": [0.06, 0.05],
            "a_floor_p95": [0.02, 0.02],
            "b_floor_p95": [0.02, 0.02],
        }
    )
    assert ": falls" in findings.k_ablation(ks, pd.Series({"helpful": 0.05}), [], trend=trend)
    flat = trend.assign(hi=[0.01, 0.01])
    text = findings.k_ablation(ks, pd.Series({"helpful": 0.05}), [], trend=flat)
    assert ": falls" not in text and "not distinguishable from it" in text
    floor = trend.assign(a_floor_p95=0.1, b_floor_p95=0.1)
    text = findings.k_ablation(ks, pd.Series({"helpful": 0.05}), [], trend=floor)
    assert ": falls" not in text and "below it" not in text and "noise floor" in text


def test_power_lists_each_paper_gap_with_its_attenuated_size_and_power():
    pooled = pooled_row(-0.01, 0.0).assign(se=0.004, mde=0.0112, df=30.0)
    power = pd.DataFrame(
        {
            "base_model": ["Pythia-1.4B", "Pythia-2.8B"],
            "multitask": [0.0541, 0.0456],
            "more": [0.0364, 0.0366],
            "gap": [0.0177, 0.0090],
            "attenuation": [0.7, 0.6],
            "seen_gap": [0.01239, 0.0054],
            "power": [0.85, 0.31],
            "mde": 0.0112,
        }
    )
    text = findings.power(pooled, power)
    assert "smallest difference this run detects with 80% power (two-sided 5%) is 0.0112" in text
    assert "Pythia-1.4B: gap 0.0177 (MultiTask 0.0541 → MORE 0.0364) shows as 0.0124" in text
    assert "(70% of it): power 85% — could be seen" in text
    assert "(60% of it): power 31% — could NOT reliably be seen" in text
    # CI [−0.0100, 0.0000]: excludes a seen MORE advantage of 0.0124, not one of 0.0054
    assert text.count("the pooled CI excludes a MORE advantage this large") == 1
    narrow = findings.power(pooled_row(-0.002, 0.001).assign(se=0.0007, mde=0.002, df=30.0), power)
    assert narrow.count("the pooled CI excludes a MORE advantage this large") == 2
    assert "Power unavailable" in findings.power(pooled.assign(metric="accuracy"))


def test_size_metrics_say_smaller_not_better():
    """Mean |Δ| and outlier counts describe a distribution's shape: a CI below 0 says "smaller", never "better"."""
    row = pooled_row(-0.004, -0.001).assign(metric="mean_abs_diff")
    cmp = ece_table([-0.003], [-0.004], [-0.001], [0.001]).assign(metric="mean_abs_diff")
    text = findings.comparison(cmp, "more", "multitask", 5, row)
    assert "MORE's mean_abs_diff is smaller than MultiTask's" in text and "better than" not in text


def test_uniform_baseline_lambda_is_named_multitask():
    cmp = (
        ece_table([0.0], [-0.001], [0.001], [0.9])
        .rename(columns={"multitask": "baseline_value"})
        .assign(baseline="sizeprop")
    )
    lam = pd.DataFrame(
        {"rm": "sizeprop/seed0", "scheme": "sizeprop", "seed": 0, "source": ["a", "b"], "lambda": [0.5, 0.5]}
    )
    assert "trains exactly as MultiTask" in findings.baselines(cmp, 5, lambdas=lam)[0]
    assert (
        "trains exactly as MultiTask" not in findings.baselines(cmp, 5, lambdas=lam.assign(**{"lambda": [0.7, 0.3]}))[0]
    )


def test_synthetic_finding_words_come_from_a_seed_ci():
    rows = []
    for seed, (c_more, c_mt) in enumerate([(0.97, 0.96), (0.975, 0.962), (0.972, 0.965)]):
        for scheme, c in (("more", c_more), ("multitask", c_mt)):
            rows.append(
                {
                    "scheme": scheme,
                    "seed": seed,
                    "test_source": "s",
                    "cosine_to_r_star": c,
                    "true_prob_gap": 0.13 + 0.001 * seed,
                }
            )
    truth = pd.DataFrame(rows)
    summary = truth.assign(ece_10=0.03)
    text = findings.synthetic(truth, summary)
    assert "cos(w, r*): +0.0100" in text and "(closer to r*)" in text
    assert "|p̂ − p*|: +0.0000" in text and "(not distinguishable)" in text
    assert "Closest" not in text
