# %% [markdown]
# # 01 · Diversified preferences disagree (paper §3, Fig 1, Fig 3)
#
# **Question.** Do reward models trained on different human-preference sources agree? The paper trains one RM per
# source and finds each is best on its own test set and weaker elsewhere (Fig 1), and that their reward differences on
# the same pairs are distributed differently (Fig 3). Here: one RM per available source (`single`) and the untrained
# `raw` RM, on frozen backbone features (feature tier; see the README for how this differs from full fine-tuning).

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {head.lr: 0.02}; checked by load_config
focus_source = "harmless"  # test set of the reward-difference plots (paper Fig 3 uses Harmless)

# %%
from IPython.display import Markdown, display

from morelib.core import runs
from morelib.study import findings, pipeline, plots, tables

run = runs.start(profile, run_dir, overrides, "01_diversity", focus_source=focus_source)
runs.log_to_file(run)  # INFO lines go to <run>/01_diversity/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")

# %% [markdown]
# ## Data card
# Pairs per source and split used here, beside the paper's Table 4 sizes, with dropped rows.

# %%
with run.timer("data + features"):
    data = pipeline.prepare(cfg, run)
display(Markdown(findings.missing_note(pipeline.unavailable(data, cfg))))
card = tables.data_card(data, cfg)
run.save_table("data_card", card)

# %% [markdown]
# ## One reward model per source
# Each RM is trained for every seed; later notebooks of this run reuse them.

# %%
with run.timer("fit single + raw"):
    heads = pipeline.fit(cfg, data, ["raw", "single"], run=run)
with run.timer("evaluate"):
    table = pipeline.metric_table(heads, data, cfg)
run.save_table("metrics_tidy", table)
matrix = tables.accuracy_matrix(table)
run.save_table("accuracy_matrix", matrix).round(3)

# %% [markdown]
# ## Fig 1 · Accuracy of each RM on each test source
# Each cell: accuracy (seed mean) with its 95% bootstrap CI over test pairs; red below chance (0.5), blue above.

# %%
diffs = pipeline.reward_diffs(heads, data)
cis = run.save_table("accuracy_cis", tables.accuracy_cis(diffs, matrix, cfg))
fig = plots.accuracy_heatmap(matrix, cis)
run.save_figure("fig1_accuracy_heatmap", fig)

# %%
fig = plots.accuracy_radar(matrix)
run.save_figure("fig1_accuracy_radar", fig)

# %% [markdown]
# ## Fig 3 · Reward differences of each RM on one test set
# r(chosen) − r(rejected) of every RM (first seed).

# %%
frame = tables.diff_frame(diffs, ["raw", "single"], [focus_source], seed=cfg.seeds[0])
fig = plots.reward_diff_histograms(frame, f"Reward differences on the {focus_source} test set")
run.save_figure("fig3a_reward_diff_hist", fig)

# %%
fig = plots.reward_box(
    frame,
    x="scheme",
    y="abs_reward_diff",
    color="ranked",
    title=f"|reward difference| of correctly vs wrongly ranked {focus_source} pairs",
)
run.save_figure("fig3b_correct_vs_wrong", fig)

# %% [markdown]
# ## Finding (computed from this run)

# %%
with run.timer("bootstrap CIs"):
    own = tables.own_vs_best_other(diffs, matrix, cfg)
run.save_table("own_vs_best_other", own)
finding = findings.diversity(matrix, own)
run.save_metrics(
    accuracy_matrix=matrix,
    own_vs_best_other=own,
    tidy=table,
    missing=data.missing,
    finding=finding,
    wide=["accuracy_matrix"],
)
display(own.round(4), Markdown(finding))

# %%
run.finish()

# %% [markdown]
# Next: [02 · MORE training](02_more_training.ipynb).
