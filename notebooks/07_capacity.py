# %% [markdown]
# # 07 · The capacity curve: where can MORE's weighting act? (issues 23 and 32)
#
# **Question.** On a linear head over frozen features (convex) MORE can differ from MultiTask only through the average
# λ it settles on. In the paper Σ λ_i L_i trains a shared backbone, so the weighting shapes a representation every
# source uses. Does MORE's calibration advantage (paper Table 3, Fig 4) appear once a shared trainable representation
# exists — a small MLP trunk on the cached features (`mlp`), top transformer blocks (`blocks`, where the run has them)
# — and how does it depend on the batch per source B, whose gradient noise pins MORE's λ near 1/K? Every rung fits
# MultiTask, MORE and the grid-tuned fixed λ on the same training pairs, initialisation and batch order per seed.

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {capacity.batch_per_source: [16]}; checked

# %%
from IPython.display import Markdown, display

from morelib.core import runs, status
from morelib.study import capacity, findings, pipeline, plots

run = runs.start(profile, run_dir, overrides, "07_capacity")
runs.log_to_file(run)  # INFO lines go to <run>/07_capacity/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")
print(f"tiers {list(cfg.capacity.tiers)} × B {list(cfg.capacity.batch_per_source)} × {list(cfg.capacity.schemes)}")

# %%
with run.timer("data + features"):
    data = capacity.prepare(cfg, run)
display(Markdown(findings.missing_note(pipeline.unavailable(data, cfg))))

# %% [markdown]
# ## Fit every rung: tier × batch per source × scheme × seed

# %%
with run.timer("fit every tier × B × scheme × seed"):
    fits, seconds = capacity.fit_all(cfg, data, run, progress=status.report)
run.save_table("fit_seconds", seconds).round(2)

# %% [markdown]
# ## MORE − MultiTask per rung, pooled over test sources
# Pairs resampled within each test source and seeds resampled, paired throughout (95% CI); `mde` = the smallest
# difference this run detects with 80% power; `floor` = the ECE-10 a perfectly calibrated model gets on the same pairs.

# %%
with run.timer("bootstrap CIs"):
    diffs = capacity.diffs_of(fits, data)
    pooled = capacity.pooled_table(cfg, diffs, capacity.trainable_parameters(cfg, data))
    per_source = capacity.per_source_table(cfg, diffs)
run.save_table("pooled", pooled).round(4)

# %% [markdown]
# ## Per test source (Holm-adjusted over sources within each rung and metric)

# %%
run.save_table("per_source", per_source).round(4)

# %% [markdown]
# ## MORE's λ per source: mean over steps, per-step sd, per seed, and whether the tilt keeps its sign

# %%
lambdas = capacity.lambda_table(fits)
tilt = capacity.lambda_tilt(lambdas)
tuned = capacity.scheme_lambdas(fits)
run.save_table("more_lambdas", lambdas)
run.save_table("tuned_lambdas", tuned)
run.save_table("lambda_tilt", tilt).round(3)

# %% [markdown]
# ## The curve: trainable parameters (log) against MORE − MultiTask ECE-10

# %%
fig = plots.capacity_curve(pooled)
run.save_figure("capacity_curve", fig)

# %% [markdown]
# ## Finding (computed from this run)

# %%
finding = capacity.finding(pooled, per_source, tilt)
run.save_metrics(
    pooled=pooled,
    per_source=per_source,
    lambdas=lambdas,
    lambda_tilt=tilt,
    tuned_lambdas=tuned,
    fit_seconds=seconds,
    finding=finding,
)
display(Markdown(finding))

# %%
run.finish()

# %% [markdown]
# Back to [01 · diversity](01_diversity.ipynb).
