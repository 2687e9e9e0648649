# %% [markdown]
# # 06 · When does MORE help? Synthetic scenarios with a known shared reward (issue 17)
#
# **Question.** On the symmetric synthetic benchmark of notebook 02 MORE's λ stays at 1/K and MORE equals MultiTask by
# symmetry. Where theory says the weighting should matter — unequal sizes, unequal label noise, unequal drift norms, a
# source whose drift opposes the shared reward r*, and K from 2 to 8 — does MORE's min-norm λ beat MultiTask's
# uniform λ? Every scheme is scored against the SHARED truth: cos(w, r*) and the shared-truth ECE (predicted σ(Δ̂) vs
# p* = σ(r*·Δz), binned like the paper's ECE with each label replaced by its expectation: r* itself scores 0), beside
# the ECE on each source's own drifted labels. Baselines: size-proportional λ, a grid-tuned fixed λ (calibration
# log-loss), FAMO. Scenarios and seeds come from `synthetic_scenarios` in the params.

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {head.lr: 0.02}; checked by load_config

# %%
from IPython.display import Markdown, display

from morelib.core import runs
from morelib.study import findings, plots

run = runs.start(profile, run_dir, overrides, "06_when_more_helps")
runs.log_to_file(run)  # INFO lines go to <run>/06_when_more_helps/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")

# %% [markdown]
# ## The scenarios

# %%
from morelib.core import status
from morelib.synthetic import scenarios

described = scenarios.describe(cfg)
run.save_table("scenarios", described)

# %% [markdown]
# ## Every scenario × seed × scheme (mean and 95% t-CI over seeds)

# %%
with run.timer("scenario sweep"):
    tidy = scenarios.run_sweep(cfg, progress=status.report)
run.save_table("scenario_scores", tidy)
means = scenarios.scheme_means(tidy)
run.save_table("scenario_means", means)
means[["scenario", "scheme", "seeds", "cosine_to_r_star", "truth_ece", "truth_gap", "own_ece", "own_accuracy"]].round(4)

# %% [markdown]
# ## When does MORE help? Each scheme − MultiTask, paired by seed
# Left: closeness to the shared reward (higher is better); middle: calibration against the shared truth p*; right: the
# paper's ECE on each source's own drifted labels (lower is better).

# %%
diffs = scenarios.paired_differences(tidy)
run.save_table("scenario_vs_multitask", diffs)
fig = plots.when_more_helps(diffs, ["cosine_to_r_star", "truth_ece", "own_ece"])
run.save_figure("when_more_helps", fig)

# %% [markdown]
# ## Finding (computed from this run)

# %%
finding = findings.when_more_helps(diffs)
run.save_metrics(scenarios=described, means=means, vs_multitask=diffs, finding=finding)
display(Markdown(finding))

# %%
run.finish()

# %% [markdown]
# Next: [07 · the capacity curve](07_capacity.ipynb).
