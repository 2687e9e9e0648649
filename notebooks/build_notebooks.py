"""Write notebooks 01–06 (without outputs, `parameters` cell tagged) from the cell lists below: `python notebooks/build_notebooks.py`.

Keeping the source here makes the notebooks reviewable as plain Python and guarantees they stay thin: every code
cell only calls morelib (notebook 05's steps live in morelib.alignment), and each writes its metrics.json through
`Run.save_metrics`. tests/test_notebooks.py checks the stored notebooks equal what this script writes.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMS = '''profile = "tiny"  # params profile: tiny (tests), default (this CPU), paper (GPU), or a path to a YAML file
run_dir = ""  # run folder to write into and reuse RMs from; empty: a new run; latest: the newest run of this profile
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {train.head_lr: 0.02}; checked by load_config'''


def setup(notebook: str, *params: str) -> str:
    """The set-up cell: imports, validated config (and the notebook's own `params`) and the run folder."""
    own = "".join(f", {p}={p}" for p in params)
    return f'''from IPython.display import Markdown, display

from morelib import findings, paper, plots, rms, runs, study, tables

run = runs.start(profile, run_dir, overrides, "{notebook}"{own})
runs.log_to_file(run)  # INFO lines go to <run>/{notebook}/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {{run.root}}  (profile {{cfg.profile}}, seeds {{list(cfg.seeds)}})")'''


DATA = '''with run.timer("data + features"):
    data = study.prepare(cfg, run)
display(Markdown(findings.missing_note(study.unavailable(data, cfg))))'''

FINISH = '''run.finish()'''

# Cells of notebook 02's "Explore λ" section, as (kind, source) pairs — owned by the explorer engineer; edit them HERE
# (not in the .ipynb), since this script rewrites the notebooks.
EXPLORE: list[tuple[str, str]] = [
    ("md", """Refit the reward head with **fixed** loss weights λ (one slider per source, normalised to sum 1) and watch
accuracy, ECE, reliability and reward differences per test source move. Presets: uniform (= MultiTask),
size-proportional (plain mixing) and MORE's learned λ, whose trajectory the *MORE step* slider replays. Each refit
uses the short head schedule of `explore` in the params (shown in the status line); choices can be saved to
`tables/explore_saved.csv` of this run and reloaded. The first figure is a static snapshot (uniform λ) that renders
without a widget front-end; the widget below it needs JupyterLab (see docs/explorer.md)."""),
    ("code", '''from morelib import explore, explore_ui

explorer = explore.Explorer.from_study(data, cfg, run, more_head=heads[rms.RMKey("more", seed=cfg.seeds[0])])
with run.timer("explorer: uniform-λ refit"):
    explorer.set_lambda(explorer.presets()["uniform"])
fig = explore_ui.lambda_figure(explorer)
run.save_figure("explore_lambda", fig)
fig'''),
    ("code", '''explore_ui.show(explorer, views=("lambda",))'''),
]

# Cells of notebook 04's mix explorer, placed before run.finish() — owned by the explorer engineer; edit them HERE.
EXPLORE_MIX: list[tuple[str, str]] = [
    ("md", """## Explore the mix
Choose how many training pairs each source contributes (0 leaves it out) and which sources take part; MultiTask and
MORE are refitted on that mix and shown side by side, evaluated on every test source. The static figure is the full
mix; the widget below it refits on every change."""),
    ("code", '''from morelib import explore, explore_ui

mix_explorer = explore.Explorer.from_study(data, cfg, run)
with run.timer("explorer: MultiTask vs MORE on the full mix"):
    mix_explorer.set_mix(mix_explorer.available)
fig = explore_ui.mix_figure(mix_explorer)
run.save_figure("explore_mix", fig)
fig'''),
    ("code", '''explore_ui.show(mix_explorer, views=("mix",))'''),
]

NB01 = [
    ("md", """# 01 · Diversified preferences disagree (paper §3, Fig 1, Fig 3)

**Question.** Do reward models trained on different human-preference sources agree? The paper trains one RM per
source and finds each is best on its own test set and weaker elsewhere (Fig 1), and that their reward differences on
the same pairs are distributed differently (Fig 3). Here: one RM per available source (`single`) and the untrained
`raw` RM, on frozen backbone features (feature tier; see the README for how this differs from full fine-tuning)."""),
    ("params", PARAMS + '''
focus_source = "harmless"  # test set of the reward-difference plots (paper Fig 3 uses Harmless)'''),
    ("code", setup("01_diversity", "focus_source")),
    ("md", "## Data card\nPairs per source and split used here, beside the paper's Table 4 sizes, with dropped rows."),
    ("code", DATA + '''
card = tables.data_card(data, cfg)
run.save_table("data_card", card)
card'''),
    ("md", "## One reward model per source\nEach RM is trained for every seed; later notebooks of this run reuse them."),
    ("code", '''with run.timer("fit single + raw"):
    heads = study.fit(cfg, data, ["raw", "single"], run=run)
with run.timer("evaluate"):
    table = study.evaluate(heads, data, cfg)
run.save_table("metrics_tidy", table)
matrix = tables.accuracy_matrix(table)
run.save_table("accuracy_matrix", matrix)
matrix.round(3)'''),
    ("md", "## Fig 1 · Accuracy of each RM on each test source"),
    ("code", '''fig = plots.accuracy_heatmap(matrix)
run.save_figure("fig1_accuracy_heatmap", fig)
fig'''),
    ("code", '''fig = plots.accuracy_radar(matrix)
run.save_figure("fig1_accuracy_radar", fig)
fig'''),
    ("md", "## Fig 3 · Reward differences of each RM on one test set\nr(chosen) − r(rejected) of every RM (first seed)."),
    ("code", '''diffs = study.reward_diffs(heads, data)
frame = tables.diff_frame(diffs, ["raw", "single"], [focus_source], seed=cfg.seeds[0])
fig = plots.reward_diff_histograms(frame, f"Reward differences on the {focus_source} test set")
run.save_figure("fig3a_reward_diff_hist", fig)
fig'''),
    ("code", '''fig = plots.reward_box(frame, x="scheme", y="abs_reward_diff", color="ranked",
                       title=f"|reward difference| of correctly vs wrongly ranked {focus_source} pairs")
run.save_figure("fig3b_correct_vs_wrong", fig)
fig'''),
    ("md", "## Finding (computed from this run)"),
    ("code", '''with run.timer("bootstrap CIs"):
    own = tables.own_vs_best_other(diffs, matrix, cfg)
run.save_table("own_vs_best_other", own)
finding = findings.finding_diversity(matrix, own)
run.save_metrics(accuracy_matrix=matrix, own_vs_best_other=own, tidy=table, missing=data.missing, finding=finding,
                 wide=["accuracy_matrix"])
display(own.round(4), Markdown(finding))'''),
    ("code", FINISH),
    ("md", "Next: [02 · MORE training](02_more_training.ipynb)."),
]

NB02 = [
    ("md", """# 02 · MORE vs MultiTask on mixed preferences (paper §4–5.2, Fig 4, Table 3)

**Question.** Trained on all sources at once, does MORE (per-source head gradients → momentum → normalise →
min-norm λ) keep MultiTask's accuracy while lowering calibration error, as the paper reports? Schemes: `raw`,
`top` (best single-source RM per test source, chosen on the calibration split), `multitask` (λ = 1/K), `more`.
Every difference comes with a paired bootstrap 95% CI over the same test pairs, and seeds are averaged; one pooled
CI over all test sources resamples pairs within each source and the seeds too. Every ECE stands beside its noise floor
(the ECE a perfectly calibrated model gets on the same pairs) and its debiased value (ECE − floor)."""),
    ("params", PARAMS + '''
paper_model = "Pythia-1.4B"  # paper row set to show beside ours: Pythia-1.4B, Pythia-2.8B or LLaMa-7B'''),
    ("code", setup("02_more_training", "paper_model")),
    ("code", DATA),
    ("code", '''with run.timer("fit raw/top/multitask/more + baselines sizeprop/tuned/famo"):
    baselines = study.baselines(cfg)  # sizeprop, tuned, famo (feature tier only)
    heads = study.fit(cfg, data, ["raw", "top", "multitask", "more", *baselines], run=run)
with run.timer("evaluate (+ temperature scaling)"):
    table = study.evaluate(heads, data, cfg, temperature_scaled=True)
    diffs = study.scheme_diffs(heads, data)
run.save_table("metrics_tidy", table)
summary = tables.summary(table, ["accuracy", "ece_5", "ece_10", "ece_20", "ace_10", "mce_10"])
run.save_table("summary", summary)
summary.round(4)'''),
    ("md", "## Table 3 · ours beside the paper's\nAccuracy per test source (fraction), its average, and ECE (10 bins) averaged over test sources."),
    ("code", '''ours = tables.table3(table, ["raw", "top", "multitask", "more", *baselines])
side = paper.side_by_side(ours, paper.table3(paper_model), ours_only=["ece_floor", "ece_debiased"])
run.save_table("table3_ours", ours)
run.save_table("table3_vs_paper", side)
side.round(4)'''),
    ("md", "## Fig 4 · accuracy and ECE per test source (mean ± sd over seeds; grey: the ECE noise floor)"),
    ("code", '''plain = summary[summary["scheme"].isin(["raw", "top", "multitask", "more"])]
fig = plots.metric_bars(plain, "accuracy", "Accuracy per test source")
run.save_figure("fig4_accuracy", fig)
fig'''),
    ("code", '''fig = plots.metric_bars(plain, "ece_10", "ECE (10 bins) per test source")
run.save_figure("fig4_ece", fig)
fig'''),
    ("md", """## MORE vs MultiTask, MORE vs Single-Top: paired bootstrap 95% CIs
First the pooled comparison (all test sources, pairs resampled within each source, seeds resampled, paired
throughout; `mde` = the smallest difference this run detects with 80% power), then the CI per test source."""),
    ("code", '''with run.timer("bootstrap CIs"):
    pooled = tables.pooled_compare(diffs, "more", "multitask", cfg)
    pooled_top = tables.pooled_compare(diffs, "more", "top", cfg)
    more_vs_mt = tables.compare(diffs, "more", "multitask", cfg)
    more_vs_top = tables.compare(diffs, "more", "top", cfg)
run.save_table("pooled_more_vs_multitask", pooled)
run.save_table("pooled_more_vs_top", pooled_top)
run.save_table("more_vs_multitask", more_vs_mt)
run.save_table("more_vs_top", more_vs_top)
finding = findings.finding_more_vs_multitask(more_vs_mt, len(cfg.seeds), pooled)
finding_power = findings.finding_power(pooled, paper.ece_effect(paper_model), paper_model)
display(pooled.round(4), more_vs_mt.round(4), Markdown(finding), Markdown(finding_power),
        Markdown(findings.finding_comparison(more_vs_top, "more", "top", len(cfg.seeds), pooled_top)))'''),
    ("md", """## Baselines beside MORE: size-proportional λ, a tuned fixed λ, FAMO
`sizeprop`: λ_i = n_i/Σn (plain mixing). `tuned`: the fixed λ of a coarse simplex grid (step `train.tuned_step`)
whose head has the lowest calibration-split log-loss (mean over sources) — "a tuned weighted sum is enough" (Xin et
al., NeurIPS 2022; Kurin et al., 2022). `famo`: FAMO (Liu et al., NeurIPS 2023) on the head's per-source losses.
Their rows are in Table 3 above; below, the λ they trained with and MORE against each (paired bootstrap 95% CIs)."""),
    ("code", '''lambdas = tables.chosen_lambdas(heads)
run.save_table("baseline_lambdas", lambdas)
with run.timer("bootstrap CIs (baselines)"):
    more_vs_baselines = tables.compare_each(diffs, "more", baselines, cfg)
run.save_table("more_vs_baselines", more_vs_baselines)
baseline_findings = findings.finding_baselines(more_vs_baselines, len(cfg.seeds), lambdas=lambdas)
display(lambdas.round(3), *[Markdown(t) for t in baseline_findings])'''),
    ("md", "## Training dynamics · λ and per-source losses of MORE (first seed)"),
    ("code", '''fig = plots.training_curves(heads[rms.RMKey("more", seed=cfg.seeds[0])].history, "MORE: λ and batch loss per source")
run.save_figure("lambda_trajectory", fig)
fig'''),
    ("md", "## Reliability diagrams (all test sources and seeds pooled), before and after temperature scaling\n"
           "Shaded: where 95% of a perfectly calibrated model's bin accuracies would fall on these pairs."),
    ("code", '''all_diffs = {**diffs, **study.scheme_diffs(heads, data, temperature_scaled=True)}
curves = tables.reliability_curves(all_diffs, ["top", "multitask", "more", "multitask+T", "more+T"])
fig = plots.reliability_diagrams(curves, "Reliability (10 bins)")
run.save_figure("reliability", fig)
fig'''),
    ("md", "## Does MORE's calibration gain survive post-hoc temperature scaling (T fitted on the calibration split)?"),
    ("code", '''with run.timer("bootstrap CIs (temperature-scaled)"):
    pooled_t = tables.pooled_compare(all_diffs, "more+T", "multitask+T", cfg, ["ece_10"])
run.save_table("pooled_more_vs_multitask_T", pooled_t)
finding_t = findings.finding_temperature(summary, pooled_before=pooled, pooled_after=pooled_t)
display(pooled_t.round(4), Markdown(finding_t))'''),
    ("md", """## Synthetic drift benchmark (paper eq. 4): the truth is known
K sources share a reward direction r* and each adds its own drift. Here we can measure how close each RM's
direction is to r* and how far its probabilities are from the true preference probabilities."""),
    ("code", '''with run.timer("synthetic benchmark"):
    syn_data, bench = study.synthetic_data(cfg)
    syn_heads = study.fit(cfg, syn_data, ["raw", "top", "multitask", "more"])
    syn_table = study.evaluate(syn_heads, syn_data, cfg, temperature_scaled=True)
    syn_truth = study.synthetic_truth(syn_heads, syn_data, bench)
syn_summary = tables.summary(syn_table, ["accuracy", "ece_10"])
syn_truth_summary = tables.summary(syn_truth, ["cosine_to_r_star", "true_prob_gap"])
run.save_table("synthetic_summary", syn_summary)
run.save_table("synthetic_truth", syn_truth_summary)
finding_syn = findings.finding_synthetic(syn_truth, syn_summary)
display(syn_truth_summary.round(4), Markdown(finding_syn))'''),
    ("code", '''fig = plots.scatter_xy(syn_truth, "cosine_to_r_star", "true_prob_gap", "scheme",
                       "Synthetic: distance to r* vs gap to the true probabilities (one point per seed and source)")
run.save_figure("synthetic_truth", fig)
fig'''),
    ("md", "## Diagnostics · length bias and training guards"),
    ("code", '''bias = tables.length_bias(heads, data, ["single", "multitask", "more"])
run.save_table("length_bias", bias)
bias.round(3)'''),
    ("code", '''guards = tables.guards(heads, data, cfg)
run.save_table("guards", guards)
guards'''),
    ("md", "## Explore λ"),
    *EXPLORE,
    ("md", "## Findings (computed from this run)"),
    ("code", '''run.save_metrics(summary=summary, table3=ours, more_vs_multitask=more_vs_mt, more_vs_top=more_vs_top,
                 pooled_more_vs_multitask=pooled, power=finding_power, synthetic=syn_truth_summary, guards=guards,
                 findings=[finding, finding_t, finding_syn], baseline_findings=baseline_findings,
                 more_vs_baselines=more_vs_baselines, baseline_lambdas=lambdas, wide=["table3"])
display(Markdown(finding), Markdown(finding_power), Markdown(finding_t), Markdown(finding_syn))'''),
    ("code", FINISH),
    ("md", "Next: [03 · H&H analysis](03_hh_analysis.ipynb)."),
]

NB03 = [
    ("md", """# 03 · Reward differences on Helpful & Harmless (paper §5.3, Fig 5, Tables 1/5/6)

**Question.** The paper finds that MORE gives smaller absolute reward differences and fewer extreme ones
("over-rewarding") than Single-Top and MultiTask on Helpful & Harmless. Does that hold here? The RMs are those of
notebook 02 of the same run (reused, not retrained)."""),
    ("params", PARAMS + '''
paper_model = "Pythia-1.4B"  # paper rows beside ours: LLaMa-7B (Table 1), Pythia-1.4B (Table 5), Pythia-2.8B (Table 6)
hh_sources = ["helpful", "harmless"]  # test sets analysed'''),
    ("code", setup("03_hh_analysis", "paper_model")),
    ("code", DATA),
    ("code", '''with run.timer("fit (reused from 02 when present)"):
    heads = study.fit(cfg, data, ["top", "multitask", "more"], run=run)
    diffs = study.scheme_diffs(heads, data)
frame = tables.diff_frame(diffs, ["top", "multitask", "more"], hh_sources, seed=cfg.seeds[0])'''),
    ("md", "## Fig 5 · reward differences per RM (first seed)"),
    ("code", '''fig = plots.reward_box(frame, x="test_source", y="reward_diff", color="scheme",
                       title="Reward differences r(chosen) − r(rejected) on H&H")
run.save_figure("fig5_reward_diff_box", fig)
fig'''),
    ("md", "## Table 1 layout · ECE and outliers (beyond 1.5·IQR), seed means, beside the paper's\n"
           "The paper's test sets are larger (Table 4), so compare counts relative to `n`."),
    ("code", '''outliers = tables.outlier_table(diffs, ["top", "multitask", "more"], hh_sources)
counts = tables.outlier_counts(diffs, ["top", "multitask", "more"], hh_sources)
side = paper.side_by_side(outliers, paper.outliers(paper_model), ours_only=["ece_floor", "ece_debiased"])
run.save_table("outlier_counts_per_seed", counts)
run.save_table("outliers_ours", outliers)
run.save_table("outliers_vs_paper", side)
side.round(3)'''),
    ("md", "## Mean |reward difference|, ECE and outlier count: MORE vs MultiTask and vs Single-Top\n"
           "Pooled over H&H (pairs and seeds resampled), then per test source (paired bootstrap 95% CIs)."),
    ("code", '''hh_metrics = ["mean_abs_diff", "ece_10", "outlier_count"]
with run.timer("bootstrap CIs"):
    pooled_mt = tables.pooled_compare(diffs, "more", "multitask", cfg, hh_metrics, hh_sources)
    pooled_top = tables.pooled_compare(diffs, "more", "top", cfg, hh_metrics, hh_sources)
    vs_mt = tables.compare(diffs, "more", "multitask", cfg, hh_metrics, hh_sources)
    vs_top = tables.compare(diffs, "more", "top", cfg, hh_metrics, hh_sources)
run.save_table("pooled_more_vs_multitask_hh", pooled_mt)
run.save_table("pooled_more_vs_top_hh", pooled_top)
run.save_table("more_vs_multitask_hh", vs_mt)
run.save_table("more_vs_top_hh", vs_top)
display(pooled_mt.round(4), pooled_top.round(4), vs_mt.round(4), vs_top.round(4))'''),
    ("md", "## Findings (computed from this run)"),
    ("code", '''texts = [findings.finding_outliers(counts, vs_mt),
         findings.finding_comparison(vs_mt, "more", "multitask", len(cfg.seeds), pooled_mt),
         findings.finding_comparison(vs_top, "more", "top", len(cfg.seeds), pooled_top)]
run.save_metrics(outliers=outliers, more_vs_multitask=vs_mt, more_vs_top=vs_top, outlier_counts=counts,
                 pooled_more_vs_multitask=pooled_mt, findings=texts)
display(*[Markdown(t) for t in texts])'''),
    ("code", FINISH),
    ("md", "Next: [04 · K-ablation](04_k_ablation.ipynb)."),
]

NB04 = [
    ("md", """# 04 · More sources, lower ECE? (paper §5.3, Fig 6)

**Question.** The paper trains MORE on Helpful & Harmless (K = 2) and adds OASST1, WebGPT and Summarize one at a
time; ECE on Helpful and Harmless falls with K and ends below Single-Top (dashed). Here the same ladder, with
MultiTask alongside; a source missing on this machine is skipped and named."""),
    ("params", PARAMS + '''
k_order = ["helpful", "harmless", "oasst1", "webgpt", "summarize"]  # the order sources are added (paper Fig 6)
hh_sources = ["helpful", "harmless"]  # test sets whose ECE is tracked'''),
    ("code", setup("04_k_ablation", "k_order", "hh_sources")),
    ("code", DATA),
    ("code", '''with run.timer("K-ablation fits"):
    ks, skipped = study.k_ablation(cfg, data, run, k_order, tests=hh_sources)
    top_heads = study.fit(cfg, data, ["top"], run=run)
    top_ref = tables.top_reference(study.evaluate(top_heads, data, cfg), hh_sources)
run.save_table("k_ablation_tidy", ks)
k_summary = tables.summary(ks, ["ece_10", "accuracy"], by=("scheme", "test_source", "K"))
run.save_table("k_ablation", k_summary)
k_summary.round(4)'''),
    ("md", "## Fig 6 · ECE on H&H vs number of sources (mean ± sd over seeds; Single-Top dashed; grey: ECE noise floor)"),
    ("code", '''fig = plots.ece_vs_k(k_summary, top_ref, "ECE on Helpful & Harmless vs K")
run.save_figure("fig6_ece_vs_k", fig)
fig'''),
    ("md", "## Finding (computed from this run) vs the paper's claim\n"
           "Each trend and the comparison with Single-Top come from a pooled paired bootstrap CI (pairs and seeds "
           "resampled): the largest K minus the smallest, and MORE at the largest K minus Single-Top."),
    ("code", '''with run.timer("K trend: pooled paired CIs"):
    ends = study.k_endpoints(cfg, data, run, k_order, tests=hh_sources)
    trend = tables.k_trend(ends, study.scheme_diffs(top_heads, data), cfg, hh_sources)
run.save_table("k_trend", trend)
finding = findings.finding_k_ablation(ks, top_ref.set_index("test_source")["ece_10"], skipped, trend=trend)
run.save_metrics(k_ablation=k_summary, top_reference=top_ref, k_trend=trend, skipped=skipped, finding=finding)
display(trend.round(4), Markdown(finding))'''),
    ("md", """## The K = 2 degeneracy, and the non-degenerate `loss+` normalisation
With the paper's l2 normalisation every source gradient is scaled to unit length before the min-norm solve, and the
min-norm point of two unit vectors is always their midpoint: at K = 2 MORE's λ is (½, ½) and MORE trains exactly as
MultiTask (in the paper and its reference code too). `more.normalization: loss+` (g_i/(‖g_i‖·L_i)) keeps the
sources' losses in the weighting, so λ can move at K = 2. Below: MORE's measured λ at K = 2 under both, and the
K-curve of MORE with loss+ beside l2's (its heads are keyed by their own config fingerprint, so they never collide)."""),
    ("code", '''from morelib import config

cfg_alt = config.with_overrides(cfg, {"more.normalization": "loss+"})
with run.timer("K-ablation, MORE with loss+ normalisation"):
    ks_alt, _ = study.k_ablation(cfg_alt, data, run, k_order, tests=hh_sources, schemes=["more"])
    lam_l2 = tables.lambda_range(study.k_ablation_heads(cfg, data, run, k_order, 2))
    lam_alt = tables.lambda_range(study.k_ablation_heads(cfg_alt, data, run, k_order, 2))
k_both = tables.summary(tables.with_variant(ks, ks_alt, "more[loss+]"), ["ece_10", "accuracy"],
                        by=("scheme", "test_source", "K"))
run.save_table("k_ablation_lossplus_tidy", ks_alt)
run.save_table("k_ablation_l2_vs_lossplus", k_both)
fig = plots.ece_vs_k(k_both, top_ref, "ECE on H&H vs K: MORE with l2 (paper) and loss+ normalisation, MultiTask")
run.save_figure("fig6_ece_vs_k_normalisations", fig)
fig'''),
    ("code", '''finding_k2 = findings.finding_k2_degeneracy(lam_l2, lam_alt, ks, ks_alt)
run.save_metrics(file="k2_degeneracy", lambda_l2=lam_l2, lambda_lossplus=lam_alt, k_ablation_l2_vs_lossplus=k_both,
                 finding=finding_k2)
display(lam_l2.round(6), lam_alt.round(4), Markdown(finding_k2))'''),
    *EXPLORE_MIX,
    ("code", FINISH),
    ("md", "Next: [05 · alignment](05_alignment.ipynb) (rejection sampling with these RMs)."),
]

SETUP05 = '''from IPython.display import Markdown, display

from morelib import alignment, findings, judge, plots, rjs, runs, study

run = runs.start(profile, run_dir, overrides, "05_alignment")
runs.log_to_file(run)  # INFO lines go to <run>/05_alignment/log.txt; warnings stay visible here
cfg = run.cfg
r = cfg.rjs
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")
print(f"policy {r.policy}: {r.n_prompts} prompts × {r.n_samples} samples × ≤{r.max_new_tokens} new tokens "
      f"(batch {r.gen_batch_size}, T={r.temperature}, top-p={r.top_p}); SFT {r.sft_epochs} epoch(s) at lr {r.sft_lr}; "
      f"judge {cfg.judge.kind} ({cfg.judge.model}) on {r.n_eval_prompts} test prompts, reliability on "
      f"{cfg.judge.reliability_pairs} pairs per source")'''

NB05 = [
    ("md", """# 05 · Rejection-sampling alignment with MORE vs MultiTask reward models (paper §5.4, Table 2)

**Question.** Does a better-calibrated reward model (MORE) make a better policy when used for rejection sampling?
The paper samples 4 responses per H&H training prompt from Alpaca-7B, fine-tunes on the response each RM scores best,
and reports lower perplexity on H&H test responses and a 44/22/34 GPT-4 win/tie/lose of MORE over MultiTask
(Table 2). Here the same pipeline runs with the RMs of notebook 02 (reused from this run folder, else fitted now),
a small policy and an offline judge whose own reliability is measured first — if it is near chance, the finding says so.

**Budget (default profile, this 2-core CPU, < 20 min).** SmolLM2-135M-Instruct as policy; 16 H&H training-side
prompts × 4 samples × ≤ 48 new tokens, batch 16 (the fastest batch size in `benchmarks/generation.py`); SFT for one
epoch (≤ 256 tokens per example); perplexity on 16 test chosen responses per source; 16 held-out test prompts for
the judges; 16 human-labelled test pairs per source to measure each judge. Measured: 13.5 min on the machine shared
by other jobs (`OMP_NUM_THREADS=1`, load ≈ 5), reusing notebook 02's RMs and cached features, with a tiny RM
backbone; the SmolLM2 RM's features of the ≈ 100 new texts add ≈ 1–2 min. The paper profile runs the same cells at
the paper's scale on a GPU (vLLM sampling when installed)."""),
    ("params", PARAMS),
    ("code", SETUP05),
    ("md", "## Reward models\nThe MultiTask and MORE heads of this run (first seed) and their calibration on the prompt sources' test sets (Table 2's *RM ECE*)."),
    ("code", '''with run.timer("data + features"):
    data = study.prepare(cfg, run)
display(Markdown(findings.missing_note(data.missing)))
with run.timer("reward models"):
    heads = alignment.selection_heads(cfg, data, run)
    rms = alignment.rm_table(heads, data, cfg)
run.save_table("rm_table", rms)
rms.round(4)'''),
    ("md", "## Sampling and best-of-n selection\nn responses per training-side prompt from the base policy; each RM keeps the one it scores highest."),
    ("code", '''prompts = alignment.rjs_prompts(data, cfg)
texts = [p for p, _ in prompts]
with run.timer("sampling"):
    candidates = rjs.sample(r.policy, texts, r, cfg.seeds[0])
with run.timer("scoring candidates"):
    scores = alignment.score_candidates(texts, candidates, heads, cfg, run.cache_dir)
selected = {s: rjs.best_of_n(candidates, sc) for s, sc in scores.items()}
agreement = alignment.pick_agreement(scores)
cands = alignment.candidate_frame(candidates, scores)
run.save_table("candidates", cands)
print(f"MORE and MultiTask picked the same response for {agreement:.0%} of {len(texts)} prompts")
cands.head(8)'''),
    ("code", '''fig = plots.scatter_xy(cands, "reward_multitask", "reward_more", "picked_more",
                      "Reward of every sampled response: MultiTask RM vs MORE RM (colour: picked by MORE)")
run.save_figure("candidate_rewards", fig)
fig'''),
    ("md", "## SFT on the selected responses\nOne fine-tuned policy per RM (transformers `Trainer`, loss on response tokens only)."),
    ("code", '''with run.timer("SFT"):
    aligned = alignment.align_policies(cfg, run, texts, selected)
policies = {"base": r.policy, **{s: str(path) for s, path in aligned.items()}}
policies'''),
    ("md", "## Perplexity on the chosen responses of the Helpful and Harmless test sets (Table 2, lower is better)"),
    ("code", '''ppl_pairs = alignment.held_out_pairs(data, cfg, r.ppl_pairs, cfg.seeds[0])
with run.timer("perplexity"):
    ppl = alignment.perplexity_table(cfg, ppl_pairs, policies)
run.save_table("perplexity", ppl)
tidy_ppl = ppl.reset_index().melt(id_vars="policy", var_name="test_set", value_name="perplexity")
fig = plots.metric_bars(tidy_ppl, "perplexity", "Perplexity of test chosen responses", x="test_set", color="policy")
run.save_figure("perplexity", fig)
display(ppl.round(3))
fig'''),
    ("md", "## The judge: how far can it be trusted?\nAgreement with the human label on held-out test pairs (Appendix D prompt, asked in both orders; a disagreement between orders is a tie) and its position-bias rate."),
    ("code", '''with run.timer("judges"):
    judges = alignment.make_judges(cfg, data, run.cache_dir)
    rel_pairs = alignment.held_out_pairs(data, cfg, cfg.judge.reliability_pairs, cfg.seeds[0] + 2)
    reliability = alignment.judge_reliability(judges, rel_pairs, cfg)
run.save_json("judge_reliability", reliability)
display(*[Markdown(judge.reliability_sentence(rel)) for rel in reliability.values()])'''),
    ("md", "## MORE vs MultiTask policies: win / tie / lose\nEach aligned policy answers the same held-out test prompts; every judge compares the answers (swap rule), 95% CIs by bootstrap over prompts."),
    ("code", '''items = alignment.eval_prompts(data, cfg)
with run.timer("answers"):
    said = alignment.answers(cfg, {s: policies[s] for s in ("multitask", "more")}, [p for p, _ in items])
with run.timer("judging"):
    wtl = alignment.judge_wtl(judges, items, said, cfg)
run.save_json("win_tie_lose", wtl)
outcomes = alignment.outcome_frame(wtl)
fig = plots.metric_bars(outcomes, "share", "MORE vs MultiTask policy: share of prompts won / tied / lost", x="judge", color="outcome")
run.save_figure("win_tie_lose", fig)
display(*[Markdown(judge.wtl_sentence(v)) for v in wtl.values()])
display(Markdown(alignment.drop_policies(cfg, aligned)))
fig'''),
    ("md", "## Table 2 · ours beside the paper's\nThe paper's rows are read from `table2_rjs_alignment.csv` at run time; W/T/L (%) is on the MORE row and comes from our configured judge."),
    ("code", '''primary = cfg.judge.kind if cfg.judge.kind in wtl else next(iter(wtl))
ours = alignment.table2(rms, ppl, wtl[primary], f"{cfg.model.name} features (policy {r.policy})")
side = alignment.table2_side_by_side(ours)
run.save_table("table2_ours", ours)
run.save_table("table2_vs_paper", side)
side.round(4)'''),
    ("md", "## Finding"),
    ("code", '''finding = alignment.finding(rms, ppl, agreement, reliability, wtl)
run.save_metrics(rm=rms, perplexity=ppl, pick_agreement=agreement, judge_reliability=reliability, win_tie_lose=wtl,
                 primary_judge=primary, judge_near_chance=judge.near_chance(reliability[primary]), missing=data.missing,
                 finding=finding)
display(Markdown(finding))'''),
    ("code", "run.finish()"),
    ("md", "Back to [01 · diversity](01_diversity.ipynb). This is the last notebook of the workbook."),
]

NB06 = [
    ("md", """# 06 · When does MORE help? Synthetic scenarios with a known shared reward (issue 17)

**Question.** On the symmetric synthetic benchmark of notebook 02 MORE's λ stays at 1/K and MORE equals MultiTask by
symmetry. Where theory says the weighting should matter — unequal sizes, unequal label noise, unequal drift norms, a
source whose drift opposes the shared reward r*, and K from 2 to 8 — does MORE's min-norm λ beat MultiTask's
uniform λ? Every scheme is scored against the SHARED truth: cos(w, r*) and the shared-truth ECE (predicted σ(Δ̂) vs
p* = σ(r*·Δz), binned like the paper's ECE with each label replaced by its expectation: r* itself scores 0), beside
the ECE on each source's own drifted labels. Baselines: size-proportional λ, a grid-tuned fixed λ (calibration
log-loss), FAMO. Scenarios and seeds come from `synthetic_scenarios` in the params."""),
    ("params", PARAMS),
    ("code", setup("06_when_more_helps")),
    ("md", "## The scenarios"),
    ("code", '''from morelib import scenarios, status

described = scenarios.describe(cfg)
run.save_table("scenarios", described)
described'''),
    ("md", "## Every scenario × seed × scheme (mean and 95% t-CI over seeds)"),
    ("code", '''with run.timer("scenario sweep"):
    tidy = scenarios.run_sweep(cfg, progress=status.report)
run.save_table("scenario_scores", tidy)
means = scenarios.scheme_means(tidy)
run.save_table("scenario_means", means)
means[["scenario", "scheme", "seeds", "cosine_to_r_star", "truth_ece", "truth_gap", "own_ece", "own_accuracy"]].round(4)'''),
    ("md", "## When does MORE help? Each scheme − MultiTask, paired by seed\n"
           "Left: closeness to the shared reward (higher is better); middle: calibration against the shared truth p*; "
           "right: the paper's ECE on each source's own drifted labels (lower is better)."),
    ("code", '''diffs = scenarios.paired_differences(tidy)
run.save_table("scenario_vs_multitask", diffs)
fig = plots.when_more_helps(diffs, ["cosine_to_r_star", "truth_ece", "own_ece"])
run.save_figure("when_more_helps", fig)
fig'''),
    ("md", "## Finding (computed from this run)"),
    ("code", '''finding = findings.finding_when_more_helps(diffs)
run.save_metrics(scenarios=described, means=means, vs_multitask=diffs, finding=finding)
display(Markdown(finding))'''),
    ("code", FINISH),
    ("md", "Back to [01 · diversity](01_diversity.ipynb)."),
]

NOTEBOOKS = {"01_diversity": NB01, "02_more_training": NB02, "03_hh_analysis": NB03, "04_k_ablation": NB04,
             "05_alignment": NB05, "06_when_more_helps": NB06}


def build(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """A notebook from (kind, source) pairs; kind 'params' becomes the tagged parameters cell."""
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(new_markdown_cell(source))
        else:
            cell = new_code_cell(source)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
            nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def main(out_dir: Path = HERE) -> None:
    """Write every notebook of this file into `out_dir`."""
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(cells), out_dir / f"{name}.ipynb")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
