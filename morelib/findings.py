"""Findings: one sentence per notebook section, formatted from the numbers just computed — never written in advance.

Each function takes a table from `morelib.tables`/`morelib.study` and says what it shows on THIS run, including when
the paper's claim does not hold (e.g. MORE not better calibrated than MultiTask), with values, CIs and seed counts.
A difference counts as a difference only when its paired bootstrap 95% CI excludes 0.
Checked in tests/test_study.py: opposite inputs give opposite verdicts.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from morelib.stats import mean_and_ci_over_seeds

# mean |Δ| counts as lower-is-better in the paper's sense (§5.3: smaller absolute rewards = less over-rewarding).
# ECE differences below this are reported as a tie: far inside the seed-to-seed spread of every run seen so far.
ECE_TIE = 1e-3
LOWER_IS_BETTER = ("ece", "ace", "mce", "brier", "log_loss", "true_prob_gap", "mean_abs_diff")
NAMES = {"raw": "Raw", "top": "Single-Top", "multitask": "MultiTask", "more": "MORE", "single": "Single"}


def _name(scheme: str) -> str:
    """Display name of a scheme ('more+T' → 'MORE+T')."""
    base, plus, rest = scheme.partition("+")
    return NAMES.get(base, base) + plus + rest


def _lower_better(metric: str) -> bool:
    """Whether smaller values of `metric` are better."""
    return metric.startswith(LOWER_IS_BETTER)


def _verdict(lo: float, hi: float, lower_better: bool) -> int:
    """+1 when the CI of a − b says a is better, −1 when worse, 0 when it includes 0."""
    if lo > 0:
        return -1 if lower_better else 1
    if hi < 0:
        return 1 if lower_better else -1
    return 0


def finding_comparison(cmp: pd.DataFrame, a: str, b: str, seeds: int) -> str:
    """Sentence per metric: a vs b averaged over test sources, and on how many sources the 95% CI favours either."""
    parts = []
    for metric, rows in cmp.groupby("metric", sort=False):
        lower = _lower_better(str(metric))
        verdicts = [_verdict(r.lo, r.hi, lower) for r in rows.itertuples()]
        wins = [r.test_source for r, v in zip(rows.itertuples(), verdicts) if v > 0]
        losses = [r.test_source for r, v in zip(rows.itertuples(), verdicts) if v < 0]
        mean_a, mean_b = rows[a].mean(), rows[b].mean()
        better = (mean_a < mean_b) == lower if mean_a != mean_b else None
        overall = ("no different from" if better is None else "better than" if better else "worse than")
        parts.append(
            f"{metric}: {_name(a)} {mean_a:.4f} vs {_name(b)} {mean_b:.4f} averaged over {len(rows)} test sources "
            f"({seeds} seed(s)) — on average {overall} {_name(b)}; the paired 95% CI favours {_name(a)} on "
            f"{len(wins)} source(s){_list(wins)} and {_name(b)} on {len(losses)}{_list(losses)}, "
            f"and includes 0 on the other {len(rows) - len(wins) - len(losses)}.")
    return " ".join(parts)


def _list(items: Sequence[str]) -> str:
    """' (a, b)' or ''."""
    return f" ({', '.join(items)})" if items else ""


def finding_more_vs_multitask(cmp: pd.DataFrame, seeds: int) -> str:
    """MORE vs MultiTask (paper §5.2: comparable accuracy, significantly lower ECE) as measured here."""
    text = finding_comparison(cmp, "more", "multitask", seeds)
    ece = cmp[cmp["metric"].str.startswith("ece")]
    if ece.empty:
        return text
    lower = ece["more"].mean() < ece["multitask"].mean()
    significant = int((ece["hi"] < 0).sum())
    if lower and significant:
        claim = (f"The paper's claim (MORE better calibrated than MultiTask) holds on this run, significantly on "
                 f"{significant} source(s).")
    elif lower:
        claim = ("MORE's ECE is lower on average, but no per-source 95% CI excludes 0: the paper's calibration claim "
                 "is NOT established on this run.")
    else:
        claim = "MORE's ECE is not lower than MultiTask's: the paper's calibration claim does NOT hold on this run."
    return f"{text} {claim}"


def finding_diversity(matrix: pd.DataFrame, leads: pd.DataFrame | None = None) -> str:
    """Fig 1: whether each single-source RM is best on its own test source, and how much it loses elsewhere;
    `leads` (tables.own_vs_best_other) adds how many of those leads a paired 95% CI confirms."""
    single = matrix.drop(index="raw", errors="ignore")
    own = [s for s in single.index if s in single.columns]
    if not own:
        return "No single-source RM shares a name with a test source; the diversity matrix cannot be read."
    diag = np.array([single.loc[s, s] for s in own])
    off = np.array([single.loc[s, t] for s in own for t in single.columns if t != s])
    best_own = [s for s in own if single[s].idxmax() == s]
    text = (f"The RM trained on a source is the most accurate on that source's test set for {len(best_own)} of "
            f"{len(own)} sources{_list(best_own)}; mean in-domain accuracy {diag.mean():.3f} vs "
            f"{off.mean():.3f} on the other sources (difference {diag.mean() - off.mean():+.3f}).")
    if leads is not None and not leads.empty:
        sure = leads[leads["lo"] > 0]["test_source"].tolist()
        text += (f" The in-domain lead over the best other RM has a paired 95% CI above 0 on {len(sure)} of "
                 f"{len(leads)} sources{_list(sure)}.")
    if "raw" in matrix.index:
        text += f" The untrained (raw) RM averages {matrix.loc['raw'].mean():.3f} (chance = 0.5)."
    return text


def _versus_multitask(diff: float) -> str:
    """'better/worse calibrated than MultiTask' or 'level with MultiTask' for an ECE difference MORE − MultiTask."""
    if abs(diff) < ECE_TIE:
        return f"level with MultiTask (|Δ| < {ECE_TIE})"
    return "better calibrated than MultiTask" if diff < 0 else "worse calibrated than MultiTask"


def finding_temperature(summary: pd.DataFrame, metric: str = "ece_10") -> str:
    """Whether MORE's calibration advantage over MultiTask survives temperature scaling fitted on calibration pairs."""
    means = summary.groupby("scheme")[metric].mean()
    need = ["more", "multitask", "more+T", "multitask+T"]
    if not all(s in means for s in need):
        return f"Temperature scaling comparison unavailable (have schemes {sorted(means.index)})."
    before, after = means["more"] - means["multitask"], means["more+T"] - means["multitask+T"]
    if before <= -ECE_TIE:
        verdict = ("so MORE's advantage survives recalibration" if after <= -ECE_TIE else
                   "so post-hoc recalibration alone closes the gap MORE had")
    else:
        verdict = "so there is no MORE advantage for recalibration to erase"
    return (f"{metric} before temperature scaling: MORE {means['more']:.4f}, MultiTask {means['multitask']:.4f} "
            f"(MORE − MultiTask {before:+.4f}); after (T fitted on the calibration split): MORE {means['more+T']:.4f}, "
            f"MultiTask {means['multitask+T']:.4f} ({after:+.4f}). On these means (the paired CIs above say whether a gap "
            f"is more than noise), before recalibration MORE is "
            f"{_versus_multitask(before)}; after, {_versus_multitask(after)} — {verdict}.")


def finding_synthetic(truth: pd.DataFrame, summary: pd.DataFrame) -> str:
    """Synthetic benchmark (true r* known): cosine to r*, gap to the true probabilities and ECE per scheme."""
    cos = truth.groupby("scheme", sort=False)["cosine_to_r_star"].mean()
    gap = truth.groupby("scheme", sort=False)["true_prob_gap"].mean()
    ece = summary.groupby("scheme", sort=False)["ece_10"].mean()
    parts = [f"{_name(s)}: cos(w, r*) {cos[s]:.3f}, |p̂ − p*| {gap[s]:.4f}, ECE {ece.get(s, np.nan):.4f}" for s in cos.index]
    best_cos = [_name(s) for s in cos.index if cos[s] >= cos.max() - 1e-3]
    best_gap = [_name(s) for s in gap.index if gap[s] <= gap.min() + 1e-3]
    return (f"On the synthetic drift benchmark — {'; '.join(parts)}. Closest to the shared reward r* (within 0.001): "
            f"{' = '.join(best_cos)}; closest to the true preference probabilities: {' = '.join(best_gap)}.")


def _side(rows: pd.DataFrame, scheme: str) -> str:
    """'+1.02 (n=5) / −0.92 (n=3)' for one scheme's positive/negative outliers (counts: mean over seeds); 'none' if empty."""
    out = []
    for side in ("pos", "neg"):
        n, mean = float(rows.loc[scheme, f"{side}_outlier_count"]), rows.loc[scheme, f"{side}_outlier_mean"]
        out.append("none" if n == 0 or not np.isfinite(mean) else f"{mean:+.3f} (n={n:.3g})")
    return " / ".join(out) + " (pos / neg)"


def finding_outliers(table: pd.DataFrame) -> str:
    """Paper Table 1: does MORE give fewer/smaller extreme reward differences than the baselines here?"""
    parts = []
    for src, rows in table.groupby(level=0, sort=False):
        rows = rows.droplevel(0)
        if not {"more", "multitask"} <= set(rows.index):
            continue
        pos = rows["pos_outlier_mean"].fillna(0.0)  # no outliers on a side: nothing extreme there
        neg = rows["neg_outlier_mean"].fillna(0.0)
        smaller = pos["more"] <= pos["multitask"] and abs(neg["more"]) <= abs(neg["multitask"])
        parts.append(f"on {src}, MORE's outliers average {_side(rows, 'more')} vs MultiTask "
                     f"{_side(rows, 'multitask')} — {'less' if smaller else 'not less'} extreme")
    if not parts:
        return "Outlier comparison unavailable: MORE and MultiTask rows are both needed."
    return "Reward-difference outliers (beyond 1.5·IQR): " + "; ".join(parts) + "."


def finding_k_ablation(ks: pd.DataFrame, top_ece: pd.Series, skipped: Sequence[str], metric: str = "ece_10") -> str:
    """Fig 6: does MORE's ECE on H&H fall as sources are added, and does it end below MultiTask and Single-Top?"""
    means = ks.groupby(["scheme", "K"])[metric].mean().unstack("K")
    k_min, k_max = means.columns.min(), means.columns.max()
    text = []
    for scheme in means.index:
        first, last = means.loc[scheme, k_min], means.loc[scheme, k_max]
        text.append(f"{_name(scheme)} {first:.4f} at K={k_min} → {last:.4f} at K={k_max} "
                    f"({'falls' if last < first else 'does not fall'})")
    out = f"H&H {metric} (mean over test sources and seeds): " + "; ".join(text) + "."
    if {"more", "multitask"} <= set(means.index) and np.isclose(means.loc["more", k_min], means.loc["multitask", k_min]):
        out += (f" At K={k_min} MORE equals MultiTask: with l2 normalisation the min-norm weights of two unit "
                f"gradients are always (½, ½).") if k_min == 2 else f" At K={k_min} MORE equals MultiTask."
    if "more" in means.index and len(top_ece):
        beats = means.loc["more", k_max] < top_ece.mean()
        out += (f" Single-Top's H&H {metric} is {top_ece.mean():.4f}: MORE at K={k_max} is "
                f"{'below' if beats else 'not below'} it (paper Fig 6: ECE falls with K and MORE ends below Top).")
    if skipped:
        out += f" Skipped (not available here): {', '.join(skipped)}."
    return out


def missing_note(missing: dict[str, str]) -> str:
    """Which configured sources are missing and what therefore could not be tested."""
    if not missing:
        return "All of the paper's sources are available and configured."
    names = "; ".join(f"**{k}** ({v})" for k, v in missing.items())
    return (f"Not measured here: {names} — so their test columns of Table 3 / the radar chart, their row of the diversity "
            f"matrix, and their step in the K-ablation (Fig 6) are not measured; averages are over the available "
            f"sources only and are not directly comparable to the paper's five-source averages.")


SYNTHETIC_METRICS = {"cosine_to_r_star": ("cos(w, r*)", "closer to r*", "further from r*"),
                     "truth_ece": ("shared-truth ECE", "better calibrated to p*", "worse calibrated to p*")}


def _scenario_list(rows: pd.DataFrame) -> str:
    """'a (+0.0123 [+0.0100, +0.0150]), b (…)' of paired-difference rows, or 'none'."""
    if rows.empty:
        return "none"
    return ", ".join(f"{r.scenario} ({r.diff:+.4f} [{r.lo:+.4f}, {r.hi:+.4f}])" for r in rows.itertuples())


def finding_when_more_helps(diffs: pd.DataFrame, alpha: float = 0.05) -> str:
    """Synthetic scenarios: where MORE − MultiTask is significant (t-CI over seeds excludes 0 AND Holm-adjusted
    p < alpha over every scenario × metric), on cos(w, r*) and the shared-truth ECE; the baselines counted the same way."""
    more = diffs[diffs["scheme"] == "more"]
    if more.empty:
        return "MORE was not fitted in the scenario sweep: no comparison."
    sure = more[(more["better"] != 0) & (more["p_holm"] < alpha)]
    n_scen, seeds = more["scenario"].nunique(), int(more["n_seeds"].min())
    parts, helped = [], set()
    for metric, (label, good, bad) in SYNTHETIC_METRICS.items():
        rows = sure[sure["metric"] == metric]
        wins, losses = rows[rows["better"] > 0], rows[rows["better"] < 0]
        helped |= set(wins["scenario"])
        parts.append(f"{label}: MORE {good} than MultiTask in {len(wins)} scenario(s) — {_scenario_list(wins)}; "
                     f"{bad} in {len(losses)} — {_scenario_list(losses)}; no significant difference in the other "
                     f"{n_scen - len(wins) - len(losses)}")
    verdict = (f"MORE helps (on at least one of the two) only in: {', '.join(sorted(helped))}." if helped else
               "MORE does not significantly beat MultiTask on either metric in any scenario here.")
    own = sure[sure["metric"] == "own_ece"]
    own_text = (f" On each source's OWN drifted labels (the paper's ECE) MORE is significantly lower in "
                f"{int((own.better > 0).sum())} scenario(s){_names(own[own.better > 0])} and higher in "
                f"{int((own.better < 0).sum())}{_names(own[own.better < 0])}." if "own_ece" in set(more["metric"]) else "")
    worse_truth = set(sure[(sure["better"] < 0) & sure["metric"].isin(list(SYNTHETIC_METRICS))]["scenario"])
    misled = sorted(set(own[own.better > 0]["scenario"]) & worse_truth)
    if misled:
        own_text += (f" In {', '.join(misled)} the paper's metric favours MORE while the shared truth favours "
                     f"MultiTask: there it rewards fitting the drift.")
    text = (f"MORE − MultiTask over {n_scen} synthetic scenarios, {seeds} seeds each (paired by seed; mean "
            f"[95% t-CI]; a difference counts when its CI excludes 0 and its Holm-adjusted p < {alpha} over all "
            f"scenarios × metrics). " + "; ".join(parts) + f". {verdict}{own_text}")
    return text + " " + _baseline_counts(diffs[diffs["scheme"] != "more"], alpha)


def _names(rows: pd.DataFrame) -> str:
    """' (a, b)' of the scenarios in `rows`, or ''."""
    return _list(list(rows["scenario"]))


def _baseline_counts(diffs: pd.DataFrame, alpha: float) -> str:
    """How many scenarios each other scheme significantly beats / trails MultiTask on cos(w, r*) and shared-truth ECE."""
    out = []
    for scheme, rows in diffs.groupby("scheme", sort=False):
        sure = rows[(rows["better"] != 0) & (rows["p_holm"] < alpha)]
        counts = [f"{SYNTHETIC_METRICS[m][0]} better in {int((sure[sure.metric == m].better > 0).sum())}, worse in "
                  f"{int((sure[sure.metric == m].better < 0).sum())}" for m in SYNTHETIC_METRICS]
        out.append(f"{_name(str(scheme))} vs MultiTask: {'; '.join(counts)} of {rows['scenario'].nunique()}")
    return ("Baselines, same rule — " + " | ".join(out) + ".") if out else ""


K2_TOL = 1e-5  # |λ − ½| above this at K = 2 under l2 is more than float32 rounding of the min-norm solve


def finding_k2_degeneracy(lam_l2: pd.DataFrame, lam_alt: pd.DataFrame, ks: pd.DataFrame, ks_alt: pd.DataFrame,
                          alt: str = "loss+", metric: str = "ece_10") -> str:
    """K = 2 with l2 normalisation: the measured λ of MORE's K = 2 heads (tables.lambda_range) and what the `alt`
    normalisation changes; `ks`/`ks_alt` tidy K-ablation tables (scheme, seed, K, metric) of l2 and `alt`."""
    if lam_l2.empty:
        return "No K = 2 MORE head with a λ history: the K = 2 degeneracy cannot be checked on this run."
    dev, steps = lam_l2["max_dev_uniform"].max(), int(lam_l2["steps"].sum())
    text = (f"At K = 2 with l2 normalisation MORE's λ stayed within {dev:.1e} of (½, ½) over all {steps} steps of its "
            f"{len(lam_l2)} K = 2 head(s)")
    text += (": the min-norm point of two unit gradients g₁, g₂ is λ₁ = (1 − g₁·g₂)/(2 − 2 g₁·g₂) = ½ whatever their "
             "angle, so MORE trains as MultiTask there (true of the paper and its code too)." if dev < K2_TOL else
             f", more than the {K2_TOL:g} float rounding allows: unexpected, since the min-norm point of two unit "
             "gradients is their midpoint — check the normalisation of this run.")
    if not lam_alt.empty:
        text += (f" With `{alt}` normalisation λ₁ ranged over [{lam_alt['lam1_min'].min():.3f}, "
                 f"{lam_alt['lam1_max'].max():.3f}] (largest |λ − ½| {lam_alt['max_dev_uniform'].max():.3f}).")
    if not ks_alt.empty:
        k = int(min(ks["K"].max(), ks_alt["K"].max()))
        a = ks_alt[ks_alt["K"] == k].groupby("seed")[metric].mean()
        b = ks[(ks["K"] == k) & (ks["scheme"] == "more")].groupby("seed")[metric].mean()
        mean, lo, hi = mean_and_ci_over_seeds((a - b.reindex(a.index)).to_numpy())
        word = ("lower than" if hi < 0 else "higher than" if lo > 0 else "not distinguishable from") \
            if np.isfinite(lo) else "untestable (one seed) against"
        text += (f" At K = {k}, MORE({alt}) − MORE(l2) {metric} = {mean:+.4f} [95% t-CI over {len(a)} seed(s) "
                 f"{lo:+.4f}, {hi:+.4f}]: MORE's {metric} with {alt} is {word} with l2 there.")
    return text


def finding_baselines(cmp: pd.DataFrame, seeds: int, a: str = "more") -> list[str]:
    """One `finding_comparison` sentence per baseline of `tables.compare_each`, or one saying none was fitted."""
    if cmp.empty:
        return ["The weighting baselines (sizeprop, tuned, famo) are feature-tier only: not fitted in this run."]
    return [finding_comparison(rows.drop(columns="baseline").rename(columns={"baseline_value": b}), a, str(b), seeds)
            for b, rows in cmp.groupby("baseline", sort=False)]
