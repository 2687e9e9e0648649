# %% [markdown]
# # 03 · Reward differences on Helpful & Harmless (paper §5.3, Fig 5, Tables 1/5/6)
#
# **Question.** The paper finds that MORE gives smaller absolute reward differences and fewer extreme ones
# ("over-rewarding") than Single-Top and MultiTask on Helpful & Harmless. Does that hold here? The RMs are those of
# notebook 02 of the same run (reused, not retrained).

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {head.lr: 0.02}; checked by load_config
paper_model = "Pythia-1.4B"  # paper rows beside ours: LLaMa-7B (Table 1), Pythia-1.4B (Table 5), Pythia-2.8B (Table 6)
hh_sources = ["helpful", "harmless"]  # test sets analysed

# %%
from IPython.display import Markdown, display

from morelib.core import runs
from morelib.data import paper
from morelib.study import findings, pipeline, plots, tables

run = runs.start(profile, run_dir, overrides, "03_hh_analysis", paper_model=paper_model)
runs.log_to_file(run)  # INFO lines go to <run>/03_hh_analysis/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")

# %%
with run.timer("data + features"):
    data = pipeline.prepare(cfg, run)
display(Markdown(findings.missing_note(pipeline.unavailable(data, cfg))))

# %%
with run.timer("fit (reused from 02 when present)"):
    heads = pipeline.fit(cfg, data, ["top", "multitask", "more"], run=run)
    diffs = pipeline.scheme_diffs(heads, data)
frame = tables.diff_frame(diffs, ["top", "multitask", "more"], hh_sources, seed=cfg.seeds[0])

# %% [markdown]
# ## Fig 5 · reward differences per RM (first seed)

# %%
fig = plots.reward_box(
    frame, x="test_source", y="reward_diff", color="scheme", title="Reward differences r(chosen) − r(rejected) on H&H"
)
run.save_figure("fig5_reward_diff_box", fig)

# %% [markdown]
# ## Table 1 layout · ECE and outliers (beyond 1.5·IQR), seed means, beside the paper's
# The paper's test sets are larger (Table 4), so compare counts relative to `n`.

# %%
outliers = tables.outlier_table(diffs, ["top", "multitask", "more"], hh_sources)
counts = tables.outlier_counts(diffs, ["top", "multitask", "more"], hh_sources)
side = paper.side_by_side(outliers, paper.outliers(paper_model), ours_only=["ece_floor", "ece_excess", "ece_debiased"])
run.save_table("outlier_counts_per_seed", counts)
run.save_table("outliers_ours", outliers)
display(run.save_table("outliers_vs_paper", side).round(3), Markdown(tables.ECE_NOTES))

# %% [markdown]
# ## Mean |reward difference|, ECE and outlier count: MORE vs MultiTask and vs Single-Top
# Pooled over H&H, then per test source: 95% CIs from the spread over seeds plus a paired bootstrap over test pairs.

# %%
hh_metrics = ["mean_abs_diff", "ece_10", "outlier_count"]
with run.timer("bootstrap CIs"):
    pooled_mt = tables.pooled_compare(diffs, "more", "multitask", cfg, hh_metrics, hh_sources)
    pooled_top = tables.pooled_compare(diffs, "more", "top", cfg, hh_metrics, hh_sources)
    vs_mt = tables.compare(diffs, "more", "multitask", cfg, hh_metrics, hh_sources)
    vs_top = tables.compare(diffs, "more", "top", cfg, hh_metrics, hh_sources)
run.save_table("pooled_more_vs_multitask_hh", pooled_mt)
run.save_table("pooled_more_vs_top_hh", pooled_top)
run.save_table("more_vs_multitask_hh", vs_mt)
run.save_table("more_vs_top_hh", vs_top)
display(pooled_mt.round(4), pooled_top.round(4), vs_mt.round(4), vs_top.round(4))

# %% [markdown]
# ## Forest plot · MORE − MultiTask and MORE − Single-Top on H&H
# The intervals above; the paper's ECE Δ per source and their mean (Tables 1/5/6, `paper_model`) as the reference. Its
# outlier counts come from larger test sets (Table 4), so no paper reference is drawn for them.

# %%
from morelib.study import forest

headline = [
    forest.rows(vs_mt, pooled_mt, "more", "multitask", paper.deltas("more", "multitask", paper_model, "outliers")),
    forest.rows(vs_top, pooled_top, "more", "top", paper.deltas("more", "top", paper_model, "outliers")),
]
run.save_table("forest_hh", forest.stack(headline))
fig = forest.figure(headline, f"MORE on Helpful & Harmless against MultiTask and Single-Top (paper: {paper_model})")
run.save_figure("forest_hh", fig)

# %% [markdown]
# ## Findings (computed from this run)

# %%
texts = [
    findings.outliers(counts, vs_mt),
    findings.comparison(vs_mt, "more", "multitask", len(cfg.seeds), pooled_mt),
    findings.comparison(vs_top, "more", "top", len(cfg.seeds), pooled_top),
]
run.save_metrics(
    outliers=outliers,
    more_vs_multitask=vs_mt,
    more_vs_top=vs_top,
    outlier_counts=counts,
    pooled_more_vs_multitask=pooled_mt,
    findings=texts,
)
display(*[Markdown(t) for t in texts])

# %%
run.finish()

# %% [markdown]
# Next: [04 · K-ablation](04_k_ablation.ipynb).
