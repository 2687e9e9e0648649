"""Result tables of the notebooks (paper Tables 1, 3, 4, Fig 1's matrix) from tidy metrics or reward differences.

Every number shown next to a scheme is a mean over seeds; differences between schemes carry a two-component 95% CI
(`stats.pooled_paired_bootstrap`: between-seed variance / S + paired bootstrap variance over the same test pairs, t
on Welch df), per test source (`compare`) and pooled over sources (`pooled_compare`). Every ECE carries its noise
floor (the ECE of a perfectly calibrated model on the same pairs, `metrics.ece_floor_stats`), the excess over it (a
lower bound) and Kumar et al.'s debiased ECE (an estimate); ECE_NOTES says how to read them.
Checked in tests/test_study.py against hand-built tables and direct metric calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from morelib.backbone import features
from morelib.core.config import Config
from morelib.core.errors import RunError
from morelib.data import datacard, paper
from morelib.evaluation import diagnostics, metrics, stats
from morelib.study.pipeline import StudyData
from morelib.train.reward_models import RewardModel, RMKey, sort_key

Diffs = dict[RMKey, dict[str, np.ndarray]]  # reward differences Δ [N] per RM and test source (study.scheme_diffs)
# columns beside an ECE: its noise floor, the floor's p95, ECE − floor (a lower bound on miscalibration, N-dependent)
# and Kumar et al. 2019's debiased estimate (metrics.excess_over_floor, metrics.debiased_ece)
FLOOR_SUFFIXES = ("floor", "floor_p95", "excess", "debiased")
ECE_NOTES = (
    "ECE columns: `_floor` = the ECE a perfectly calibrated model gets on the same pairs, `_floor_p95` its 95th "
    "percentile, `_excess` = ECE − floor (a LOWER BOUND on miscalibration that depends on N: never compare it across "
    "different N), `_debiased` = Kumar et al. 2019's resampling-debiased ECE (an estimate; still biased up near 0). "
    "ECE-5 (any odd bin count): every pair with |Δ| < 0.405 lands in the middle bin with both of its ordered "
    "probabilities and scores 0 there whatever the model (inherited from the paper's reference code)."
)


def summary(
    table: pd.DataFrame, columns: Sequence[str] = ("accuracy", "ece_10"), by: Sequence[str] = ("scheme", "test_source")
) -> pd.DataFrame:
    """Mean, standard deviation over seeds and seed count of each metric per `by` group (tidy, one row a group); an ECE
    column whose `<ece>_floor`, `<ece>_floor_p95`, `<ece>_debiased` are in `table` gets their seed means beside it."""
    grouped = table.groupby(list(by), sort=False)
    out = grouped[list(columns)].mean()
    sd = grouped[list(columns)].std(ddof=1).fillna(0.0)
    order = []
    for m in columns:
        out[f"{m}_sd"] = sd[m]
        extra = [f"{m}_{s}" for s in FLOOR_SUFFIXES if f"{m}_{s}" in table.columns]
        out[extra] = grouped[extra].mean() if extra else out[extra]
        order += [m, f"{m}_sd", *extra]
    out["seeds"] = grouped["seed"].nunique()
    return out[order + ["seeds"]].reset_index()


def table3(
    table: pd.DataFrame, schemes: Sequence[str] = ("raw", "top", "multitask", "more"), ece: str = "ece_10"
) -> pd.DataFrame:
    """Paper Table 3 layout: accuracy per test source, their average, and ECE averaged over test sources (seed
    means)."""
    part = table[table["scheme"].isin(schemes)]
    acc = part.pivot_table(index="scheme", columns="test_source", values="accuracy", aggfunc="mean", sort=False)
    acc["avg"] = acc.mean(axis=1)
    acc["ece"] = part.groupby("scheme", sort=False)[ece].mean()
    for suffix in ("floor", "excess", "debiased"):
        if f"{ece}_{suffix}" in part:
            acc[f"ece_{suffix}"] = part.groupby("scheme", sort=False)[f"{ece}_{suffix}"].mean()
    return acc.reindex([s for s in schemes if s in acc.index])


def accuracy_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """K×K accuracy (seed mean) of each single-source RM (rows) on each test source (columns), plus a `raw` row."""
    single = table[table["scheme"] == "single"]
    matrix = single.pivot_table(
        index="train_source", columns="test_source", values="accuracy", aggfunc="mean", sort=False
    )
    raw = table[table["scheme"] == "raw"]
    if not raw.empty:
        matrix.loc["raw"] = raw.groupby("test_source")["accuracy"].mean()
    return matrix[[c for c in matrix.index if c in matrix.columns]]


def own_vs_best_other(diffs: Diffs, matrix: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per test source: accuracy of the RM trained on it (with a bootstrap 95% CI over test pairs, `own_lo`/`own_hi`)
    minus the best other single-source RM there, with a paired bootstrap 95% CI (seed means) — the uncertainty behind
    Fig 1's "each RM is best on its own source"."""
    rows = []
    singles = matrix.drop(index="raw", errors="ignore")
    for src in (s for s in singles.columns if s in singles.index and len(singles.index) > 1):
        other = singles[src].drop(index=src).idxmax()
        cmp = compare(diffs, f"single:{src}", f"single:{other}", cfg, ["accuracy"], [src]).iloc[0]
        own_lo, own_hi = _accuracy_ci(diffs, f"single:{src}", src, cfg)
        rows.append(
            {
                "test_source": src,
                "own": cmp[f"single:{src}"],
                "own_lo": own_lo,
                "own_hi": own_hi,
                "best_other": other,
                "best_other_accuracy": cmp[f"single:{other}"],
                "diff": cmp["diff"],
                "lo": cmp["lo"],
                "hi": cmp["hi"],
            }
        )
    return pd.DataFrame(rows)


def _accuracy_ci(diffs: Diffs, scheme: str, source: str, cfg: Config) -> tuple[float, float]:
    """95% percentile-bootstrap CI over test pairs of `scheme`'s seed-mean accuracy on `source`."""
    correct = (_stacked(diffs, scheme, source) > 0).mean(axis=1)  # seed-mean correctness per test pair
    _, lo, hi = stats.bootstrap_ci(correct, n_boot=cfg.n_boot, seed=cfg.seeds[0])
    return lo, hi


def accuracy_cis(diffs: Diffs, matrix: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Every cell of Fig 1's matrix with the interval `own_vs_best_other` gives its diagonal: rm (row: a source or
    `raw`), test_source, accuracy (seed mean), lo, hi (95% bootstrap over test pairs)."""
    rows = []
    for rm in matrix.index:
        for src in matrix.columns:
            lo, hi = _accuracy_ci(diffs, "raw" if rm == "raw" else f"single:{rm}", src, cfg)
            rows.append({"rm": rm, "test_source": src, "accuracy": matrix.loc[rm, src], "lo": lo, "hi": hi})
    return pd.DataFrame(rows)


# a reward difference no sigmoid tells from +∞: its accuracy (1), ECE (0) and other metrics are the same on every
# resample, so the paired CI of a scheme against it is the scheme's own two-component CI, shifted
CERTAIN = 50.0


def with_cis(
    summary_table: pd.DataFrame, diffs: Diffs, cfg: Config, columns: Sequence[str] = ("accuracy", "ece_10")
) -> pd.DataFrame:
    """`summary_table` (rows scheme, test_source) with `<metric>_lo`/`<metric>_hi`: each scheme's 95% CI on that
    source from the same two components as `compare` (between-seed variance / S + bootstrap over test pairs, t on
    Welch df) — the error bars of Fig 4."""
    out = summary_table.copy()
    for metric in columns:
        _check_metric(metric)
        for i, row in out.iterrows():
            x = _stacked(diffs, row["scheme"], row["test_source"])
            ci = stats.pooled_paired_bootstrap(
                {"s": x}, {"s": np.full_like(x, CERTAIN)}, BATCHED_FNS[metric], n_boot=cfg.n_boot, seed=cfg.seeds[0]
            )
            out.loc[i, [f"{metric}_lo", f"{metric}_hi"]] = [ci["lo"] + ci["b"], ci["hi"] + ci["b"]]
    return out


def _stacked(diffs: Diffs, scheme: str, source: str) -> np.ndarray:
    """Reward differences of `scheme` on `source` stacked over seeds: [N pairs, S seeds] (same test pairs per seed)."""
    cols = [by_src[source] for key, by_src in sorted(diffs.items(), key=sort_key) if key.name == scheme]
    if not cols:
        raise RunError(f"no reward differences for scheme '{scheme}' on '{source}' (have {sorted(diffs)})")
    return np.stack(cols, axis=1)


def _outlier_count(d: np.ndarray) -> int:
    """Positive plus negative box-plot outliers of Δ (metrics.outliers)."""
    out = metrics.outliers(d)
    return out["pos_count"] + out["neg_count"]


def _batched_outlier_count(d: np.ndarray) -> np.ndarray:
    """`_outlier_count` of every row of [..., N] at once (same linear quartiles and 1.5·IQR fences)."""
    q1, q3 = np.percentile(d, 25, axis=-1, keepdims=True), np.percentile(d, 75, axis=-1, keepdims=True)
    return ((d > q3 + 1.5 * (q3 - q1)) | (d < q1 - 1.5 * (q3 - q1))).sum(axis=-1).astype(np.float64)


METRIC_FNS = {
    "accuracy": metrics.accuracy,
    "ece_10": lambda d: metrics.calibration_errors(d, 10)["ece"],
    "ece_5": lambda d: metrics.calibration_errors(d, 5)["ece"],
    "ece_20": lambda d: metrics.calibration_errors(d, 20)["ece"],
    "log_loss": metrics.log_loss,
    "mean_abs_diff": lambda d: float(np.mean(np.abs(d))),
    "outlier_count": _outlier_count,
}
BATCHED_FNS = {  # PairAdditive forms where the metric is a function of per-pair sums (fast bootstrap by counts)
    "accuracy": metrics.ADDITIVE_ACCURACY,
    "ece_5": metrics.additive_ece(5),
    "ece_10": metrics.additive_ece(10),
    "ece_20": metrics.additive_ece(20),
    "log_loss": metrics.ADDITIVE_LOG_LOSS,
    "mean_abs_diff": metrics.ADDITIVE_MEAN_ABS,
    "outlier_count": _batched_outlier_count,
}


def _seed_mean(metric: str) -> Callable[[np.ndarray], float]:
    """A metric over [N, S] stacked reward differences: the metric of each seed column, averaged over seeds."""
    fn = METRIC_FNS[metric]
    return lambda x: float(np.mean([fn(x[:, j]) for j in range(x.shape[1])]))


def compare(
    diffs: Diffs,
    a: str,
    b: str,
    cfg: Config,
    columns: Sequence[str] = ("accuracy", "ece_10"),
    sources: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Scheme `a` − scheme `b` per test source and metric (seed means) with the two-component 95% CI of
    `stats.pooled_paired_bootstrap` on that one source: between-seed variance / S + paired pair-bootstrap variance, t
    on Welch df — the CIs Holm's correction reads.

    Metrics: accuracy, ece_5/10/20, log_loss, mean_abs_diff (mean |Δ|), outlier_count (pos + neg box-plot outliers).
    Columns: metric, test_source, a, b, diff, lo, hi, se, df, p_value (two-sided t); ECE rows also carry each scheme's
    noise floor, its 95th percentile, the excess over the floor and the debiased ECE (`<a>_floor`, `<a>_floor_p95`,
    `<a>_excess`, `<a>_debiased`, same for b; seed means; see ECE_NOTES), NaN on other metrics.
    """
    if sources is None:
        sources = _sources_of(diffs, a)
    rows = []
    for metric in columns:
        _check_metric(metric)
        for src in sources:
            xa, xb = _stacked(diffs, a, src), _stacked(diffs, b, src)
            ci = stats.pooled_paired_bootstrap(
                {src: xa}, {src: xb}, BATCHED_FNS[metric], n_boot=cfg.n_boot, seed=cfg.seeds[0]
            )
            floors = {**_floor_fields(xa, a, metric), **_floor_fields(xb, b, metric)}
            rows.append(
                {
                    "metric": metric,
                    "test_source": src,
                    a: ci["a"],
                    b: ci["b"],
                    **{k: ci[k] for k in ("diff", "lo", "hi", "se", "df", "p_value")},
                    **floors,
                }
            )
    table = pd.DataFrame(rows)
    for name in (f"{s}_{x}" for s in (a, b) for x in FLOOR_SUFFIXES):
        table[name] = table[name] if name in table else np.nan
    return table


def _check_metric(metric: str) -> None:
    """RunError unless `metric` has a batched implementation (BATCHED_FNS)."""
    if metric not in BATCHED_FNS:
        raise RunError(f"no comparison for metric '{metric}' (valid: {', '.join(BATCHED_FNS)})")


def _sources_of(diffs: Diffs, scheme: str) -> list[str]:
    """Test sources on which `scheme` has reward differences, sorted."""
    return sorted({s for key, by in diffs.items() if key.name == scheme for s in by})


def _ece_bins(metric: str) -> int | None:
    """Bin count of an `ece_<B>` metric name, None for any other metric."""
    return int(metric.split("_")[1]) if metric.startswith("ece_") else None


def _floor_fields(x: np.ndarray, scheme: str, metric: str) -> dict[str, float]:
    """`<scheme>_floor`, `_floor_p95`, `_excess` (ECE − floor) and `_debiased` (`metrics.debiased_ece`) of an ECE
    metric on [N, S] differences (seed means); {} otherwise."""
    bins = _ece_bins(metric)
    if bins is None:
        return {}
    per_seed = [metrics.ece_floor_stats(x[:, j], bins) for j in range(x.shape[1])]
    floor = float(np.mean([f["floor"] for f in per_seed]))
    return {
        f"{scheme}_floor": floor,
        f"{scheme}_floor_p95": float(np.mean([f["p95"] for f in per_seed])),
        f"{scheme}_excess": _seed_mean(metric)(x) - floor,
        f"{scheme}_debiased": float(np.mean([metrics.debiased_ece(x[:, j], bins) for j in range(x.shape[1])])),
    }


def _pooled_floor(diffs: Diffs, scheme: str, sources: Sequence[str], bins: int) -> dict[str, float]:
    """`<scheme>_floor` and `<scheme>_floor_p95` of the pooled ECE (mean over sources of seed-mean ECE): the null
    ECEs of every (source, seed) averaged simulation by simulation, so the p95 is that of the pooled statistic."""
    null = np.mean(
        [
            np.mean([metrics.ece_null_samples(x[:, j], bins) for j in range(x.shape[1])], axis=0)
            for x in (_stacked(diffs, scheme, s) for s in sources)
        ],
        axis=0,
    )
    return {f"{scheme}_floor": float(null.mean()), f"{scheme}_floor_p95": float(np.quantile(null, 0.95))}


def pooled_compare(
    diffs: Diffs,
    a: str,
    b: str,
    cfg: Config,
    columns: Sequence[str] = ("accuracy", "ece_10"),
    sources: Sequence[str] | None = None,
    power: float = 0.8,
) -> pd.DataFrame:
    """One pooled, paired comparison of schemes `a` − `b` over all test sources per metric
    (`stats.pooled_paired_bootstrap`: between-seed variance / S + stratified paired pair-bootstrap variance, t on
    Welch df).

    Statistic: the mean over test sources of the seed-mean metric (each source weighs the same). Columns: metric, a, b,
    diff, lo, hi (95%), se, df, se_seed, se_pairs, p_value, mde (the smallest true difference a two-sided 5% test
    detects with probability `power`, from se and df), n_boot, n_sources, n_seeds, n_pairs; ECE rows also
    `<a>_floor`, `<a>_floor_p95` (same for b).
    """
    sources = list(_sources_of(diffs, a) if sources is None else sources)
    rows = []
    for metric in columns:
        _check_metric(metric)
        xa = {s: _stacked(diffs, a, s) for s in sources}
        xb = {s: _stacked(diffs, b, s) for s in sources}
        out = stats.pooled_paired_bootstrap(xa, xb, BATCHED_FNS[metric], n_boot=cfg.n_boot, seed=cfg.seeds[0])
        row = {
            "metric": metric,
            a: out.pop("a"),
            b: out.pop("b"),
            **out,
            "mde": stats.minimum_detectable_effect(out["se"], power=power, df=out["df"]),
        }
        bins = _ece_bins(metric)
        if bins is not None:
            row.update({**_pooled_floor(diffs, a, sources, bins), **_pooled_floor(diffs, b, sources, bins)})
        rows.append(row)
    return pd.DataFrame(rows)


def paper_power(
    diffs: Diffs, pooled: pd.DataFrame, a: str = "more", b: str = "multitask", metric: str = "ece_10"
) -> pd.DataFrame:
    """Power of this run's pooled `metric` comparison for each of the paper's MultiTask − MORE ECE gaps (Table 3 CSV).

    A true gap shows smaller in plug-in ECE at small N: per test source, `metrics.plugin_gap_attenuation` over `b`'s
    test Δ (all seeds) at that source's N, with the paper's two ECEs as the true ones; the pooled statistic averages
    sources, so the attenuation is the mean over sources. Columns: base_model, multitask, more, gap (paper),
    attenuation, seen_gap (gap × attenuation), power (two-sided 5% t-test on the pooled se and df at the seen gap),
    power_unattenuated, mde (80% power), se, df, n_pairs.
    """
    row = pooled[pooled["metric"] == metric]
    if row.empty:
        raise RunError(f"no pooled {metric} comparison to compute power from (have {list(pooled['metric'])})")
    row, bins = row.iloc[0], _ece_bins(metric)
    sources = _sources_of(diffs, b)
    out = []
    for model in paper.read("table3")["base_model"].drop_duplicates():
        eff = paper.ece_effect(model)
        share = float(
            np.mean(
                [
                    metrics.plugin_gap_attenuation(
                        _stacked(diffs, b, s).ravel(),
                        eff["multitask"],
                        eff["more"],
                        _stacked(diffs, b, s).shape[0],
                        bins,
                    )
                    for s in sources
                ]
            )
        )
        out.append(
            {
                "base_model": model,
                "multitask": eff["multitask"],
                "more": eff["more"],
                "gap": eff["effect"],
                "attenuation": share,
                "seen_gap": eff["effect"] * share,
                "power": stats.power_at(eff["effect"] * share, row["se"], df=row["df"]),
                "power_unattenuated": stats.power_at(eff["effect"], row["se"], df=row["df"]),
                "mde": row["mde"],
                "se": row["se"],
                "df": row["df"],
                "n_pairs": int(row["n_pairs"]),
            }
        )
    return pd.DataFrame(out)


OUTLIER_COLUMNS = {
    "pos_count": "pos_outlier_count",
    "pos_mean": "pos_outlier_mean",
    "neg_count": "neg_outlier_count",
    "neg_mean": "neg_outlier_mean",
}


def top_reference(table: pd.DataFrame, sources: Sequence[str], metric: str = "ece_10") -> pd.DataFrame:
    """Single-Top's `metric` per test source in `sources` (seed mean): the dashed reference lines of Fig 6."""
    top = table[(table["scheme"] == "top") & table["test_source"].isin(list(sources))]
    if top.empty:
        raise RunError(f"no Single-Top rows for test sources {list(sources)}: fit 'top' first")
    return top.groupby("test_source", sort=False)[metric].mean().reset_index()


def _tested(diffs: Diffs, schemes: Sequence[str], sources: Sequence[str]) -> Iterator[tuple[RMKey, str, np.ndarray]]:
    """(key, test source, Δ [N]) of every RM of `schemes` on each of `sources` it was tested on."""
    for key, by_src in diffs.items():
        if key.scheme in schemes:
            for src in (s for s in sources if s in by_src):
                yield key, src, by_src[src]


def outlier_table(
    diffs: Diffs,
    schemes: Sequence[str] = ("top", "multitask", "more"),
    sources: Sequence[str] = ("helpful", "harmless"),
) -> pd.DataFrame:
    """Paper Table 1 layout per (test source, scheme): ECE with its noise floor, excess over it and debiased value
    (ece_floor, ece_excess, ece_debiased; ECE_NOTES) and positive/negative reward-difference outliers (seed means)."""
    rows = []
    for key, src, d in _tested(diffs, schemes, sources):
        out, ece, floor = metrics.outliers(d), metrics.calibration_errors(d, 10)["ece"], metrics.ece_floor(d, 10)
        debiased = metrics.debiased_ece(d, 10)
        rows.append(
            {
                "test_source": src,
                "scheme": key.scheme,
                "seed": key.seed,
                "n": len(d),
                "ece": ece,
                "ece_floor": floor,
                "ece_excess": ece - floor,
                "ece_debiased": debiased,
                **{new: out[old] for old, new in OUTLIER_COLUMNS.items()},
            }
        )
    if not rows:
        raise RunError(f"no reward differences for schemes {list(schemes)} on sources {list(sources)}")
    table = pd.DataFrame(rows).groupby(["test_source", "scheme"], sort=False).mean(numeric_only=True)
    return table.drop(columns="seed").reindex([(s, m) for s in sources for m in schemes if (s, m) in table.index])


def outlier_counts(
    diffs: Diffs,
    schemes: Sequence[str] = ("top", "multitask", "more"),
    sources: Sequence[str] = ("helpful", "harmless"),
) -> pd.DataFrame:
    """Integer outlier counts per (test source, scheme, seed): pos_outlier_count, neg_outlier_count and n (pairs)."""
    rows = []
    for key, src, d in _tested(diffs, schemes, sources):
        out = metrics.outliers(d)
        rows.append(
            {
                "test_source": src,
                "scheme": key.scheme,
                "seed": key.seed,
                "n": len(d),
                "pos_outlier_count": out["pos_count"],
                "neg_outlier_count": out["neg_count"],
            }
        )
    if not rows:
        raise RunError(f"no reward differences for schemes {list(schemes)} on sources {list(sources)}")
    return pd.DataFrame(rows).sort_values(["test_source", "scheme", "seed"], ignore_index=True)


def k_trend(
    ends: dict[int, Diffs], top: Diffs | None, cfg: Config, sources: Sequence[str], metric: str = "ece_10"
) -> pd.DataFrame:
    """Pooled paired CIs behind Fig 6's verdicts: each scheme at the largest K minus itself at the smallest K, and MORE
    at the largest K minus Single-Top (if `top` is given), over test `sources`.

    ends: {K: reward differences keyed `RMKey(<scheme>, seed=k)`} for the smallest and largest K (`study.k_endpoints`).
    Columns: contrast, scheme, reference, K, metric, a, b (pooled values), a_floor_p95, b_floor_p95 (ECE metrics),
    diff, lo, hi, se, p_value, n_sources, n_pairs, n_seeds.
    """
    k_lo, k_hi = min(ends), max(ends)
    rows = []
    schemes = sorted({k.name for k in ends[k_hi]})
    for scheme in schemes:  # each end relabelled `<scheme>@K<k>` so both ends sit in one comparison
        pair = {
            key.with_scheme(f"{scheme}@K{k}"): d
            for k in (k_hi, k_lo)
            for key, d in ends[k].items()
            if key.name == scheme
        }
        rows.append(
            _contrast(
                pair,
                f"{scheme}@K{k_hi}",
                f"{scheme}@K{k_lo}",
                cfg,
                sources,
                metric,
                {"contrast": "K trend", "scheme": scheme, "reference": f"K={k_lo}", "K": k_hi},
            )
        )
    if top is not None and any(k.name == "more" for k in ends[k_hi]):
        pair = {
            **{k: d for k, d in ends[k_hi].items() if k.name == "more"},
            **{k: d for k, d in top.items() if k.name == "top"},
        }
        rows.append(
            _contrast(
                pair,
                "more",
                "top",
                cfg,
                sources,
                metric,
                {"contrast": "vs Single-Top", "scheme": "more", "reference": "top", "K": k_hi},
            )
        )
    return pd.DataFrame(rows)


def _contrast(
    diffs: Diffs, a: str, b: str, cfg: Config, sources: Sequence[str], metric: str, label: dict[str, Any]
) -> dict[str, Any]:
    """One labelled row of `pooled_compare` with the schemes' values under the neutral names a and b."""
    row = pooled_compare(diffs, a, b, cfg, [metric], sources).iloc[0]
    floors = {
        f"{side}_floor_p95": row[f"{name}_floor_p95"]
        for side, name in (("a", a), ("b", b))
        if f"{name}_floor_p95" in row
    }
    return {
        **label,
        "metric": metric,
        "a": row[a],
        "b": row[b],
        **floors,
        **{k: row[k] for k in ("diff", "lo", "hi", "se", "p_value", "n_sources", "n_pairs", "n_seeds")},
    }


def diff_frame(diffs: Diffs, schemes: Sequence[str], sources: Sequence[str], seed: int) -> pd.DataFrame:
    """Tidy reward differences (scheme, test_source, reward_diff, correct) of one seed, for box plots and histograms."""
    parts = []
    for key, by_src in diffs.items():
        name = f"{key.scheme}:{key.source}" if key.source else key.scheme
        if key.seed != seed or (key.scheme not in schemes and name not in schemes):
            continue
        for src in (s for s in sources if s in by_src):
            d = by_src[src]
            parts.append(
                pd.DataFrame(
                    {
                        "scheme": name,
                        "test_source": src,
                        "reward_diff": d,
                        "abs_reward_diff": np.abs(d),
                        "ranked": np.where(d > 0, "correct", "wrong"),
                    }
                )
            )
    return pd.concat(parts, ignore_index=True)


def reliability_curves(diffs: Diffs, schemes: Sequence[str], n_bins: int = 10) -> dict[str, dict[str, np.ndarray]]:
    """Reliability-diagram data per scheme, pooling every seed and test source of that scheme."""
    out = {}
    for scheme in schemes:
        keys = [key for key in diffs if key.name == scheme]
        if keys:
            # every seed scores the same pairs: the consistency band counts them once (repeats = seeds)
            out[scheme] = metrics.reliability(
                np.concatenate([d for key in keys for d in diffs[key].values()]), n_bins, repeats=len(keys)
            )
    return out


def data_card(data: StudyData, cfg: Config) -> pd.DataFrame:
    """Pairs per source and split used here beside the paper's Table 4 sizes, drops, and the missing sources; in the
    feature tier also token-length quantiles and the share of pairs truncated at cfg.model.max_length."""
    tokenize = None
    if cfg.train.tier == "features":
        _, tok, _ = features.backbone(cfg.model.name, cfg.model.dtype, cfg.model.padding_side)
        tokenize = lambda text: tok(text, add_special_tokens=True)["input_ids"]  # noqa: E731
    card = datacard.source_rows(
        data.pairs, data.labels, reports=data.reports, tokenizer=tokenize, max_length=cfg.model.max_length
    )
    card["status"] = "ok"
    missing = [
        {"source": s.name, "label": s.label, "status": f"missing: {data.missing[s.name]}"}
        for s in cfg.data.sources
        if s.name in data.missing
    ]
    table = pd.concat([card, pd.DataFrame(missing)], ignore_index=True) if missing else card
    return table.set_index("source")


def guards(heads: dict[RMKey, RewardModel], data: StudyData, cfg: Config) -> pd.DataFrame:
    """Training guards of every RM (chance accuracy, reward collapse, pinned λ): one row per RM and guard."""
    d = cfg.diagnostics
    rows = []
    for key, head in heads.items():
        hist = head.history
        acc = np.asarray(hist["acc"]).mean(axis=1) if np.asarray(hist.get("acc", [])).size else np.empty(0)
        results = [diagnostics.check_chance_accuracy(acc, d.chance_after_steps, d.chance_band)]
        if head.uses_features and data.features:
            rewards = np.concatenate(
                [head.rewards([], [], data.features[s]["test"].chosen).numpy() for s in data.sources]
            )
            results.append(diagnostics.check_reward_collapse(rewards, d.collapse_tol))
        if key.scheme == "more":
            results.append(diagnostics.check_lambda_pinned(hist.get("lam", []), d.pinned_tol))
        rows += [{"rm": str(key), "guard": r.name, "ok": r.ok, "message": r.message} for r in results]
    return pd.DataFrame(rows)


def _lengths(data: StudyData, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Chosen/rejected response lengths of a source's test pairs: tokens from the features, else words from the text."""
    pf = data.features[source]["test"]
    if getattr(pf, "chosen_len", None) is not None and getattr(pf, "rejected_len", None) is not None:
        return np.asarray(pf.chosen_len), np.asarray(pf.rejected_len), "tokens"
    pairs = data.pairs[source]["test"]
    return (
        np.array([len(p.chosen.split()) for p in pairs]),
        np.array([len(p.rejected.split()) for p in pairs]),
        "words",
    )


def length_bias(heads: dict[RMKey, RewardModel], data: StudyData, schemes: Sequence[str]) -> pd.DataFrame:
    """Length-bias report (diagnostics.length_bias) per RM of `schemes` and test source, rows averaged over seeds
    (RMs that score frozen features only: a fine-tuned RM gets no row)."""
    rows = []
    for key, head in heads.items():
        if key.scheme not in schemes or not head.uses_features:
            continue
        for src in data.sources:
            if src not in data.pairs:
                continue
            pf = data.features[src]["test"]
            lc, lr, unit = _lengths(data, src)
            report = diagnostics.length_bias(
                head.rewards([], [], pf.chosen).numpy(), head.rewards([], [], pf.rejected).numpy(), lc, lr
            )
            rows.append({"scheme": key.scheme, "test_source": src, "length_unit": unit, **report})
    if not rows:
        return pd.DataFrame(columns=["scheme", "test_source"])
    return pd.DataFrame(rows).groupby(["scheme", "test_source", "length_unit"], sort=False).mean().reset_index()


def lambda_range(heads: dict[RMKey, RewardModel]) -> pd.DataFrame:
    """Per RM: K, steps, the range of λ_1 and the largest |λ_i − 1/K| over every training step (from its history)."""
    rows = []
    for key, head in heads.items():
        lam = np.asarray(head.history.get("lam", np.empty((0, 0))), dtype=np.float64)
        if lam.ndim != 2 or lam.size == 0:
            continue
        rows.append(
            {
                "rm": str(key),
                "scheme": key.scheme,
                "seed": key.seed,
                "K": lam.shape[1],
                "steps": lam.shape[0],
                "lam1_min": float(lam[:, 0].min()),
                "lam1_max": float(lam[:, 0].max()),
                "max_dev_uniform": float(np.abs(lam - 1.0 / lam.shape[1]).max()),
            }
        )
    return pd.DataFrame(rows)


def chosen_lambdas(heads: dict[RMKey, RewardModel], schemes: Sequence[str] = ("sizeprop", "tuned")) -> pd.DataFrame:
    """The fixed λ each RM of `schemes` trained with (one row per RM and source): size-proportional or grid-tuned."""
    rows = []
    for key, head in heads.items():
        if key.scheme in schemes and "lam" in head.meta:
            names = head.history["source_names"]
            rows += [
                {"rm": str(key), "scheme": key.scheme, "seed": key.seed, "source": s, "lambda": float(lam)}
                for s, lam in zip(names, head.meta["lam"])
            ]
    return pd.DataFrame(rows, columns=["rm", "scheme", "seed", "source", "lambda"])


def compare_each(diffs: Diffs, a: str, others: Sequence[str], cfg: Config) -> pd.DataFrame:
    """`compare(diffs, a, b, cfg)` for every b in `others`, stacked: column `baseline` names b, `baseline_value` holds
    b's metric (paired bootstrap CIs over the same test pairs); empty when `others` is."""
    parts = [compare(diffs, a, b, cfg).rename(columns={b: "baseline_value"}).assign(baseline=b) for b in others]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["baseline", "baseline_value"])


def with_variant(table: pd.DataFrame, variant: pd.DataFrame, label: str) -> pd.DataFrame:
    """`table` with the rows of `variant` appended, their scheme renamed to `label` (e.g. MORE with loss+)."""
    return pd.concat([table, variant.assign(scheme=label)], ignore_index=True)
