"""Result tables of the notebooks (paper Tables 1, 3, 4 and Fig 1's matrix), built from tidy metrics or reward differences.

Every number shown next to a scheme is a mean over seeds; differences between schemes carry a paired bootstrap 95% CI
over the same test pairs (`morelib.stats`), the metric being averaged over seeds inside each resample.
Checked in tests/test_study.py against hand-built tables and direct metric calls.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from morelib import datacard, diagnostics, features, metrics, stats
from morelib.config import Config
from morelib.errors import RunError
from morelib.study import StudyData, parse_key


def summary(table: pd.DataFrame, columns: Sequence[str] = ("accuracy", "ece_10"),
            by: Sequence[str] = ("scheme", "test_source")) -> pd.DataFrame:
    """Mean, standard deviation over seeds and seed count of each metric per `by` group (tidy, one row a group)."""
    grouped = table.groupby(list(by), sort=False)
    out = grouped[list(columns)].mean()
    sd = grouped[list(columns)].std(ddof=1).fillna(0.0)
    for m in columns:
        out[f"{m}_sd"] = sd[m]
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def table3(table: pd.DataFrame, schemes: Sequence[str] = ("raw", "top", "multitask", "more"),
           ece: str = "ece_10") -> pd.DataFrame:
    """Paper Table 3 layout: accuracy per test source, their average, and ECE averaged over test sources (seed means)."""
    part = table[table["scheme"].isin(schemes)]
    acc = part.pivot_table(index="scheme", columns="test_source", values="accuracy", aggfunc="mean", sort=False)
    acc["avg"] = acc.mean(axis=1)
    acc["ece"] = part.groupby("scheme", sort=False)[ece].mean()
    return acc.reindex([s for s in schemes if s in acc.index])


def accuracy_matrix(table: pd.DataFrame) -> pd.DataFrame:
    """K×K accuracy (seed mean) of each single-source RM (rows) on each test source (columns), plus a `raw` row."""
    single = table[table["scheme"] == "single"]
    matrix = single.pivot_table(index="train_source", columns="test_source", values="accuracy", aggfunc="mean", sort=False)
    raw = table[table["scheme"] == "raw"]
    if not raw.empty:
        matrix.loc["raw"] = raw.groupby("test_source")["accuracy"].mean()
    return matrix[[c for c in matrix.index if c in matrix.columns]]


def own_vs_best_other(diffs: dict[str, dict[str, np.ndarray]], matrix: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Per test source: accuracy of the RM trained on it minus the best other single-source RM there, with a paired
    bootstrap 95% CI (seed means) — the uncertainty behind Fig 1's "each RM is best on its own source"."""
    rows = []
    singles = matrix.drop(index="raw", errors="ignore")
    for src in (s for s in singles.columns if s in singles.index and len(singles.index) > 1):
        other = singles[src].drop(index=src).idxmax()
        cmp = compare(diffs, f"single:{src}", f"single:{other}", cfg, ["accuracy"], [src]).iloc[0]
        rows.append({"test_source": src, "own": cmp[f"single:{src}"], "best_other": other,
                     "best_other_accuracy": cmp[f"single:{other}"], "diff": cmp["diff"], "lo": cmp["lo"], "hi": cmp["hi"]})
    return pd.DataFrame(rows)


def _stacked(diffs: dict[str, dict[str, np.ndarray]], scheme: str, source: str) -> np.ndarray:
    """Reward differences of `scheme` on `source` stacked over seeds: [N pairs, S seeds] (same test pairs per seed)."""
    cols = [by_src[source] for key, by_src in sorted(diffs.items()) if key.rsplit("/", 1)[0] == scheme]
    if not cols:
        raise RunError(f"no reward differences for scheme '{scheme}' on '{source}' (have {sorted(diffs)})")
    return np.stack(cols, axis=1)


METRIC_FNS = {"accuracy": metrics.accuracy, "ece_10": lambda d: metrics.calibration_errors(d, 10)["ece"],
              "ece_5": lambda d: metrics.calibration_errors(d, 5)["ece"],
              "ece_20": lambda d: metrics.calibration_errors(d, 20)["ece"], "log_loss": metrics.log_loss,
              "mean_abs_diff": lambda d: float(np.mean(np.abs(d)))}


def _seed_mean(metric: str) -> Callable[[np.ndarray], float]:
    """A metric over [N, S] stacked reward differences: the metric of each seed column, averaged over seeds."""
    fn = METRIC_FNS[metric]
    return lambda x: float(np.mean([fn(x[:, j]) for j in range(x.shape[1])]))


def compare(diffs: dict[str, dict[str, np.ndarray]], a: str, b: str, cfg: Config,
            columns: Sequence[str] = ("accuracy", "ece_10"), sources: Sequence[str] | None = None) -> pd.DataFrame:
    """Scheme `a` − scheme `b` per test source and metric (seed means) with a paired bootstrap 95% CI over test pairs.

    Metrics: accuracy, ece_5/10/20, log_loss, mean_abs_diff (mean |Δ|). Columns: metric, test_source, a, b, diff, lo, hi.
    """
    if sources is None:
        sources = sorted({s for key, by in diffs.items() if key.rsplit("/", 1)[0] == a for s in by})
    rows = []
    for metric in columns:
        fn = _seed_mean(metric)
        for src in sources:
            xa, xb = _stacked(diffs, a, src), _stacked(diffs, b, src)
            ci = stats.paired_bootstrap_diff(xa, xb, fn, n_boot=cfg.n_boot, seed=cfg.seeds[0])
            rows.append({"metric": metric, "test_source": src, a: fn(xa), b: fn(xb), **_ci_fields(ci)})
    return pd.DataFrame(rows)


def _ci_fields(ci: Any) -> dict[str, float]:
    """`diff`, `lo`, `hi` from what stats.paired_bootstrap_diff returns."""
    if isinstance(ci, dict):
        return {"diff": float(ci["diff"]), "lo": float(ci["lo"]), "hi": float(ci["hi"])}
    return {"diff": float(ci.estimate), "lo": float(ci.lo), "hi": float(ci.hi)}


OUTLIER_COLUMNS = {"pos_count": "pos_outlier_count", "pos_mean": "pos_outlier_mean",
                   "neg_count": "neg_outlier_count", "neg_mean": "neg_outlier_mean"}


def top_reference(table: pd.DataFrame, sources: Sequence[str], metric: str = "ece_10") -> pd.DataFrame:
    """Single-Top's `metric` per test source in `sources` (seed mean): the dashed reference lines of Fig 6."""
    top = table[(table["scheme"] == "top") & table["test_source"].isin(list(sources))]
    if top.empty:
        raise RunError(f"no Single-Top rows for test sources {list(sources)}: fit 'top' first")
    return top.groupby("test_source", sort=False)[metric].mean().reset_index()


def outlier_table(diffs: dict[str, dict[str, np.ndarray]], schemes: Sequence[str] = ("top", "multitask", "more"),
                  sources: Sequence[str] = ("helpful", "harmless")) -> pd.DataFrame:
    """Paper Table 1 layout per (test source, scheme): ECE and positive/negative reward-difference outliers (seed means)."""
    rows = []
    for key, by_src in diffs.items():
        info = parse_key(key)
        if info["scheme"] not in schemes:
            continue
        for src in (s for s in sources if s in by_src):
            out = metrics.outliers(by_src[src])
            rows.append({"test_source": src, "scheme": info["scheme"], "seed": info["seed"], "n": len(by_src[src]),
                         "ece": metrics.calibration_errors(by_src[src], 10)["ece"],
                         **{new: out[old] for old, new in OUTLIER_COLUMNS.items()}})
    if not rows:
        raise RunError(f"no reward differences for schemes {list(schemes)} on sources {list(sources)}")
    table = pd.DataFrame(rows).groupby(["test_source", "scheme"], sort=False).mean(numeric_only=True)
    return table.drop(columns="seed").reindex([(s, m) for s in sources for m in schemes if (s, m) in table.index])


def diff_frame(diffs: dict[str, dict[str, np.ndarray]], schemes: Sequence[str], sources: Sequence[str],
               seed: int) -> pd.DataFrame:
    """Tidy reward differences (scheme, test_source, reward_diff, correct) of one seed, for box plots and histograms."""
    parts = []
    for key, by_src in diffs.items():
        info = parse_key(key)
        name = f"{info['scheme']}:{info['source']}" if info["source"] else info["scheme"]
        if info["seed"] != seed or (info["scheme"] not in schemes and name not in schemes):
            continue
        for src in (s for s in sources if s in by_src):
            d = by_src[src]
            parts.append(pd.DataFrame({"scheme": name, "test_source": src, "reward_diff": d,
                                       "abs_reward_diff": np.abs(d), "ranked": np.where(d > 0, "correct", "wrong")}))
    return pd.concat(parts, ignore_index=True)


def reliability_curves(diffs: dict[str, dict[str, np.ndarray]], schemes: Sequence[str],
                       n_bins: int = 10) -> dict[str, dict[str, np.ndarray]]:
    """Reliability-diagram data per scheme, pooling every seed and test source of that scheme."""
    out = {}
    for scheme in schemes:
        pooled = [d for key, by in diffs.items() if key.rsplit("/", 1)[0] == scheme for d in by.values()]
        if pooled:
            out[scheme] = metrics.reliability(np.concatenate(pooled), n_bins)
    return out



def data_card(data: StudyData, cfg: Config) -> pd.DataFrame:
    """Pairs per source and split used here beside the paper's Table 4 sizes, drops, and the missing sources; in the
    feature tier also token-length quantiles and the share of pairs truncated at cfg.model.max_length."""
    tokenize = None
    if cfg.train.tier == "features":
        _, tok, _ = features.backbone(cfg.model.name, cfg.model.dtype, cfg.model.padding_side)
        tokenize = lambda text: tok(text, add_special_tokens=True)["input_ids"]  # noqa: E731
    card = datacard.data_card(data.pairs, data.labels, reports=data.reports, tokenizer=tokenize,
                              max_length=cfg.model.max_length)
    card["status"] = "ok"
    missing = [{"source": s.name, "label": s.label, "status": f"missing: {data.missing[s.name]}"}
               for s in cfg.data.sources if s.name in data.missing]
    table = pd.concat([card, pd.DataFrame(missing)], ignore_index=True) if missing else card
    return table.set_index("source")


def guards(heads: dict[str, Any], data: StudyData, cfg: Config) -> pd.DataFrame:
    """Training guards of every RM (chance accuracy, reward collapse, pinned λ): one row per RM and guard."""
    d = cfg.diagnostics
    rows = []
    for key, head in heads.items():
        hist = head.history
        acc = np.asarray(hist["acc"]).mean(axis=1) if np.asarray(hist.get("acc", [])).size else np.empty(0)
        results = [diagnostics.check_chance_accuracy(acc, d.chance_after_steps, d.chance_band)]
        if hasattr(head, "reward") and data.features:
            rewards = np.concatenate([head.reward(data.features[s]["test"].chosen).numpy() for s in data.sources])
            results.append(diagnostics.check_reward_collapse(rewards, d.collapse_tol))
        if parse_key(key)["scheme"] == "more":
            results.append(diagnostics.check_lambda_pinned(hist.get("lam", []), d.pinned_tol))
        rows += [{"rm": key, "guard": r.name, "ok": r.ok, "message": r.message} for r in results]
    return pd.DataFrame(rows)


def _lengths(data: StudyData, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Chosen/rejected response lengths of a source's test pairs: tokens from the features, else words from the text."""
    pf = data.features[source]["test"]
    if getattr(pf, "chosen_len", None) is not None and getattr(pf, "rejected_len", None) is not None:
        return np.asarray(pf.chosen_len), np.asarray(pf.rejected_len), "tokens"
    pairs = data.pairs[source]["test"]
    return (np.array([len(p.chosen.split()) for p in pairs]), np.array([len(p.rejected.split()) for p in pairs]), "words")


def length_bias(heads: dict[str, Any], data: StudyData, schemes: Sequence[str]) -> pd.DataFrame:
    """Length-bias report (diagnostics.length_bias) per RM of `schemes` and test source, rows averaged over seeds."""
    rows = []
    for key, head in heads.items():
        info = parse_key(key)
        if info["scheme"] not in schemes or not hasattr(head, "reward"):
            continue
        for src in data.sources:
            if src not in data.pairs:
                continue
            pf = data.features[src]["test"]
            lc, lr, unit = _lengths(data, src)
            report = diagnostics.length_bias(head.reward(pf.chosen).numpy(), head.reward(pf.rejected).numpy(), lc, lr)
            rows.append({"scheme": info["scheme"], "test_source": src, "length_unit": unit, **report})
    if not rows:
        return pd.DataFrame(columns=["scheme", "test_source"])
    return pd.DataFrame(rows).groupby(["scheme", "test_source", "length_unit"], sort=False).mean().reset_index()


def lambda_range(heads: dict[str, Any]) -> pd.DataFrame:
    """Per RM: K, steps, the range of λ_1 and the largest |λ_i − 1/K| over every training step (from its history)."""
    rows = []
    for key, head in heads.items():
        lam = np.asarray(head.history.get("lam", np.empty((0, 0))), dtype=np.float64)
        if lam.ndim != 2 or lam.size == 0:
            continue
        info = parse_key(key)
        rows.append({"rm": key, "scheme": info["scheme"], "seed": info["seed"], "K": lam.shape[1], "steps": lam.shape[0],
                     "lam1_min": float(lam[:, 0].min()), "lam1_max": float(lam[:, 0].max()),
                     "max_dev_uniform": float(np.abs(lam - 1.0 / lam.shape[1]).max())})
    return pd.DataFrame(rows)


def chosen_lambdas(heads: dict[str, Any], schemes: Sequence[str] = ("sizeprop", "tuned")) -> pd.DataFrame:
    """The fixed λ each RM of `schemes` trained with (one row per RM and source): size-proportional or grid-tuned."""
    rows = []
    for key, head in heads.items():
        info = parse_key(key)
        if info["scheme"] in schemes and "lam" in getattr(head, "meta", {}):
            names = head.history["source_names"]
            rows += [{"rm": key, "scheme": info["scheme"], "seed": info["seed"], "source": s, "lambda": float(lam)}
                     for s, lam in zip(names, head.meta["lam"])]
    return pd.DataFrame(rows, columns=["rm", "scheme", "seed", "source", "lambda"])


def compare_each(diffs: dict[str, dict[str, np.ndarray]], a: str, others: Sequence[str], cfg: Config) -> pd.DataFrame:
    """`compare(diffs, a, b, cfg)` for every b in `others`, stacked: column `baseline` names b, `baseline_value` holds
    b's metric (paired bootstrap CIs over the same test pairs); empty when `others` is."""
    parts = [compare(diffs, a, b, cfg).rename(columns={b: "baseline_value"}).assign(baseline=b) for b in others]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["baseline", "baseline_value"])


def with_variant(table: pd.DataFrame, variant: pd.DataFrame, label: str) -> pd.DataFrame:
    """`table` with the rows of `variant` appended, their scheme renamed to `label` (e.g. MORE with loss+)."""
    return pd.concat([table, variant.assign(scheme=label)], ignore_index=True)
