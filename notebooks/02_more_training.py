# %% [markdown]
# # 02 · MORE vs MultiTask on mixed preferences (paper §4–5.2, Fig 4, Table 3)
#
# **Question.** Trained on all sources at once, does MORE (per-source head gradients → momentum → normalise →
# min-norm λ) keep MultiTask's accuracy while lowering calibration error, as the paper reports? Schemes: `raw`,
# `top` (best single-source RM per test source, chosen on the calibration split), `multitask` (λ = 1/K), `more`.
# Every difference comes with a 95% CI from two components — the spread over seeds (each seed trains on its own
# resample of the training pairs) and a paired bootstrap over the same test pairs — per test source and pooled over all
# of them. Every ECE stands beside its noise floor (the ECE a perfectly calibrated model gets on the same pairs), the
# excess over it (a lower bound on miscalibration) and Kumar et al.'s debiased ECE (an estimate).

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {head.lr: 0.02}; checked by load_config
paper_model = "Pythia-1.4B"  # paper row set to show beside ours: Pythia-1.4B, Pythia-2.8B or LLaMa-7B

# %%
from IPython.display import Markdown, display

from morelib.core import runs
from morelib.data import paper
from morelib.study import findings, length_tables, pipeline, plots, tables
from morelib.train import reward_models

run = runs.start(profile, run_dir, overrides, "02_more_training", paper_model=paper_model)
runs.log_to_file(run)  # INFO lines go to <run>/02_more_training/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")

# %%
with run.timer("data + features"):
    data = pipeline.prepare(cfg, run)
display(Markdown(findings.missing_note(pipeline.unavailable(data, cfg))))

# %%
with run.timer("fit raw/top/multitask/more + baselines sizeprop/tuned/famo"):
    baselines = pipeline.baselines(cfg)  # sizeprop, tuned, famo (feature tier only)
    heads = pipeline.fit(cfg, data, ["raw", "top", "multitask", "more", *baselines], run=run)
with run.timer("evaluate (+ temperature scaling)"):
    table = pipeline.metric_table(heads, data, cfg, temperature_scaled=True)
    diffs = pipeline.scheme_diffs(heads, data)
run.save_table("metrics_tidy", table)
summary = tables.summary(table, ["accuracy", "ece_5", "ece_10", "ece_20", "ace_10", "mce_10"])
run.save_table("summary", summary).round(4)

# %% [markdown]
# ## Table 3 · ours beside the paper's
# Accuracy per test source (fraction), its average, and ECE (10 bins) averaged over test sources.

# %%
ours = tables.table3(table, ["raw", "top", "multitask", "more", *baselines])
side = paper.side_by_side(ours, paper.table3(paper_model), ours_only=["ece_floor", "ece_excess", "ece_debiased"])
run.save_table("table3_ours", ours)
display(run.save_table("table3_vs_paper", side).round(4), Markdown(tables.ECE_NOTES))

# %% [markdown]
# ## Fig 4 · accuracy and ECE per test source
# Bars: seed means; error bars: each scheme's 95% CI on that source (between-seed variance / seeds + bootstrap over
# test pairs, as in the comparisons below); grey: the ECE noise floor.

# %%
plain = tables.with_cis(summary[summary["scheme"].isin(["raw", "top", "multitask", "more"])], diffs, cfg)
run.save_table("fig4_with_cis", plain)
bars = "error bars: 95% CI per source (seeds + test pairs)"
fig = plots.metric_bars(plain, "accuracy", "Accuracy per test source", errors=bars)
run.save_figure("fig4_accuracy", fig)

# %%
fig = plots.metric_bars(plain, "ece_10", "ECE (10 bins) per test source", errors=bars)
run.save_figure("fig4_ece", fig)

# %% [markdown]
# ## MORE vs MultiTask, MORE vs Single-Top: paired bootstrap 95% CIs
# First the pooled comparison (all test sources; se² = between-seed variance / seeds + paired bootstrap variance over
# test pairs resampled within each source; t on Welch df; `mde` = the smallest difference this run detects with 80%
# power), then the same two-component CI per test source. Power: for each of the paper's gaps, as a plug-in ECE gap at
# this run's N.

# %%
with run.timer("bootstrap CIs"):
    pooled = tables.pooled_compare(diffs, "more", "multitask", cfg)
    pooled_top = tables.pooled_compare(diffs, "more", "top", cfg)
    more_vs_mt = tables.compare(diffs, "more", "multitask", cfg)
    more_vs_top = tables.compare(diffs, "more", "top", cfg)
run.save_table("pooled_more_vs_multitask", pooled)
run.save_table("pooled_more_vs_top", pooled_top)
run.save_table("more_vs_multitask", more_vs_mt)
run.save_table("more_vs_top", more_vs_top)
finding = findings.more_vs_multitask(more_vs_mt, len(cfg.seeds), pooled)
power = run.save_table("power_vs_paper_gaps", tables.paper_power(diffs, pooled))
finding_power = findings.power(pooled, power)
display(
    pooled.round(4),
    more_vs_mt.round(4),
    power.round(4),
    Markdown(finding),
    Markdown(finding_power),
    Markdown(findings.comparison(more_vs_top, "more", "top", len(cfg.seeds), pooled_top)),
)

# %% [markdown]
# ## Forest plot · MORE − MultiTask and MORE − Single-Top, per test source and pooled
# The intervals of the tables above; the paper's Δ (Table 3, `paper_model`) as the reference: dotted where pooled (its
# ECE and average accuracy), open crosses per source (accuracy).

# %%
from morelib.study import forest

headline = [
    forest.rows(more_vs_mt, pooled, "more", "multitask", paper.deltas("more", "multitask", paper_model)),
    forest.rows(more_vs_top, pooled_top, "more", "top", paper.deltas("more", "top", paper_model)),
]
run.save_table("forest_headline", forest.stack(headline))
fig = forest.figure(headline, f"MORE against MultiTask and Single-Top (paper: {paper_model})")
run.save_figure("forest_headline", fig)

# %% [markdown]
# ## Baselines beside MORE: size-proportional λ, a tuned fixed λ, FAMO
# `sizeprop`: λ_i = n_i/Σn (plain mixing). `tuned`: the fixed λ of a coarse simplex grid (step `train.tuned_step`)
# whose head has the lowest calibration-split log-loss (mean over sources) — "a tuned weighted sum is enough" (Xin et
# al., NeurIPS 2022; Kurin et al., 2022). `famo`: FAMO (Liu et al., NeurIPS 2023) on the head's per-source losses.
# Their rows are in Table 3 above; below, the λ they trained with and MORE against each (paired bootstrap 95% CIs).

# %%
lambdas = tables.chosen_lambdas(heads)
run.save_table("baseline_lambdas", lambdas)
with run.timer("bootstrap CIs (baselines)"):
    more_vs_baselines = tables.compare_each(diffs, "more", baselines, cfg)
run.save_table("more_vs_baselines", more_vs_baselines)
baseline_findings = findings.baselines(more_vs_baselines, len(cfg.seeds), lambdas=lambdas)
display(lambdas.round(3), *[Markdown(t) for t in baseline_findings])

# %% [markdown]
# ## Training dynamics · λ and per-source losses of MORE (first seed)

# %%
fig = plots.training_curves(
    heads[reward_models.RMKey("more", seed=cfg.seeds[0])].history, "MORE: λ and batch loss per source"
)
run.save_figure("lambda_trajectory", fig)

# %% [markdown]
# ## Reliability diagrams (all test sources and seeds pooled), before and after temperature scaling
# Shaded: where 95% of a perfectly calibrated model's bin accuracies would fall on these pairs.

# %%
all_diffs = {**diffs, **pipeline.scheme_diffs(heads, data, temperature_scaled=True)}
curves = tables.reliability_curves(all_diffs, ["top", "multitask", "more", "multitask+T", "more+T"])
fig = plots.reliability_diagrams(curves, "Reliability (10 bins)")
run.save_figure("reliability", fig)

# %% [markdown]
# ## Does MORE's calibration gain survive post-hoc temperature scaling (T fitted on the calibration split)?

# %%
with run.timer("bootstrap CIs (temperature-scaled)"):
    pooled_t = tables.pooled_compare(all_diffs, "more+T", "multitask+T", cfg, ["ece_10"])
run.save_table("pooled_more_vs_multitask_T", pooled_t)
finding_t = findings.temperature(summary, pooled_before=pooled, pooled_after=pooled_t)
display(pooled_t.round(4), Markdown(finding_t))

# %% [markdown]
# ## Synthetic drift benchmark (paper eq. 4): the truth is known
# K sources share a reward direction r* and each adds its own drift. Here we can measure how close each RM's
# direction is to r* and how far its probabilities are from the true preference probabilities. Each seed draws its own
# benchmark instance (as notebook 06 does), so the seed CI covers the benchmark draw, not one instance.

# %%
with run.timer("synthetic benchmark (one instance per seed)"):
    syn_table, syn_truth = pipeline.synthetic_study(cfg, ["raw", "top", "multitask", "more"])
syn_summary = tables.summary(syn_table, ["accuracy", "ece_10"])
syn_truth_summary = tables.summary(syn_truth, ["cosine_to_r_star", "true_prob_gap"])
run.save_table("synthetic_summary", syn_summary)
run.save_table("synthetic_truth", syn_truth_summary)
finding_syn = findings.synthetic(syn_truth, syn_summary)
display(syn_truth_summary.round(4), Markdown(finding_syn))

# %%
fig = plots.scatter_xy(
    syn_truth,
    "cosine_to_r_star",
    "true_prob_gap",
    "scheme",
    "Synthetic: distance to r* vs gap to the true probabilities (one point per seed and source)",
)
run.save_figure("synthetic_truth", fig)

# %% [markdown]
# ## Diagnostics · length bias and training guards

# %%
bias = tables.length_bias(heads, data, ["single", "multitask", "more"])
run.save_table("length_bias", bias).round(3)

# %%
guards = tables.guards(heads, data, cfg)
run.save_table("guards", guards)

# %% [markdown]
# ## Length · post-hoc length calibration and length-controlled accuracy
# Post-hoc length calibration (Huang et al., ICLR 2025, arXiv 2409.17407), a baseline beside temperature scaling:
# each RM's reward–length relation is fitted by locally weighted regression on the calibration pairs of the sources
# it was trained on and subtracted from its rewards (`<scheme>+L`); the test pairs are never seen by the fit. First the
# fitted slopes (reward per token, 95% bootstrap CI), then Table 3 with the calibrated rows, then before/after per
# source (accuracy, ECE with its floor, share of pairs where the RM prefers the longer response; paired 95% CIs).

# %%
with run.timer("length calibration"):
    length_fits = length_tables.length_fits(heads, data, ["multitask", "more"], cfg)
    length_diffs = length_tables.calibrated_diffs(diffs, data, length_fits)
    length_rows = pipeline.metric_table(heads, data, cfg, diffs=length_diffs)
    length_vs = length_tables.before_after({**diffs, **length_diffs}, ["multitask", "more"], data, cfg)
run.save_table("length_fits", length_tables.fit_table(length_fits))
table3_length = length_tables.table3_with(table, length_rows, ["multitask", "more", "multitask+L", "more+L"])
run.save_table("table3_length_calibrated", table3_length)
run.save_table("length_calibration", length_vs)
display(length_tables.fit_table(length_fits).round(5), table3_length.round(4), length_vs.round(4))

# %% [markdown]
# Length-controlled accuracy: accuracy on pairs whose chosen response is the longer one and on pairs where it is the
# shorter one (bootstrap 95% CIs), and each RM against the "longer wins" rule on the same pairs (paired 95% CI).

# %%
with run.timer("length-controlled accuracy"):
    length_split = length_tables.length_split(
        {**diffs, **length_diffs}, ["multitask", "more", "multitask+L", "more+L"], data, cfg
    )
run.save_table("length_split", length_split)
length_findings = length_tables.finding_length_alone(length_split) + length_tables.finding_calibration(length_vs)
display(length_split.round(3), *[Markdown(t) for t in length_findings])

# %% [markdown]
# ## Explore λ

# %% [markdown]
# Refit the reward head with **fixed** loss weights λ (one slider per source, normalised to sum 1) and watch
# accuracy, ECE, reliability and reward differences per test source move: whiskers are 95% CIs over test pairs, the
# grey band the ECE of a perfectly calibrated model at each source's N, open markers the study's seed means. Presets:
# uniform (= MultiTask), size-proportional (plain mixing), MORE's learned λ, whose trajectory the *MORE step* slider
# replays, and the study's tuned and FAMO λ. Each refit
# uses the short head schedule of `explore` in the params (shown in the status line); choices can be saved to
# `tables/explore_saved.csv` of this run and reloaded. The first figure is a static snapshot (uniform λ) that renders
# without a widget front-end; the widget below it needs JupyterLab (see docs/explorer.md).

# %%
from morelib.explore import engine, widgets

more_head = heads[reward_models.RMKey("more", seed=cfg.seeds[0])]
explorer = engine.Explorer.from_study(data, cfg, run, more_head=more_head, summary=summary, heads=heads)
with run.timer("explorer: uniform-λ refit"):
    explorer.set_lambda(explorer.presets()["uniform"])
fig = widgets.lambda_figure(explorer)
run.save_figure("explore_lambda", fig)

# %%
widgets.show(explorer, views=("lambda",))

# %% [markdown]
# ## Findings (computed from this run)

# %%
run.save_metrics(
    summary=summary,
    table3=ours,
    more_vs_multitask=more_vs_mt,
    more_vs_top=more_vs_top,
    pooled_more_vs_multitask=pooled,
    power=finding_power,
    power_vs_paper_gaps=power,
    synthetic=syn_truth_summary,
    guards=guards,
    findings=[finding, finding_t, finding_syn],
    baseline_findings=baseline_findings,
    more_vs_baselines=more_vs_baselines,
    baseline_lambdas=lambdas,
    table3_length_calibrated=table3_length,
    length_calibration=length_vs,
    length_split=length_split,
    length_findings=length_findings,
    wide=["table3", "table3_length_calibrated"],
)
display(Markdown(finding), Markdown(finding_power), Markdown(finding_t), Markdown(finding_syn))

# %%
run.finish()

# %% [markdown]
# Next: [03 · H&H analysis](03_hh_analysis.ipynb).
