# %% [markdown]
# # 04 · More sources, lower ECE? (paper §5.3, Fig 6)
#
# **Question.** The paper trains MORE on Helpful & Harmless (K = 2) and adds OASST1, WebGPT and Summarize one at a
# time; ECE on Helpful and Harmless falls with K and ends below Single-Top (dashed). Here the same ladder, with
# MultiTask alongside; a source missing on this machine is skipped and named.

# %% tags=["parameters"]
profile = "default"  # params profile: default (CPU), tiny, paper, a YAML path; with run_dir, default: the run's own
run_dir = ""  # empty: a new run; a run folder or latest (the newest finished run): reuse it, on its own config
overrides = "{}"  # dotted config overrides as one YAML/JSON mapping, e.g. {head.lr: 0.02}; checked by load_config
k_order = ["helpful", "harmless", "oasst1", "webgpt", "summarize"]  # the order sources are added (paper Fig 6)
hh_sources = ["helpful", "harmless"]  # test sets whose ECE is tracked

# %%
from IPython.display import Markdown, display

from morelib.core import runs
from morelib.study import findings, pipeline, plots, tables

run = runs.start(profile, run_dir, overrides, "04_k_ablation", k_order=k_order, hh_sources=hh_sources)
runs.log_to_file(run)  # INFO lines go to <run>/04_k_ablation/log.txt; warnings stay visible here
cfg = run.cfg
print(f"run folder: {run.root}  (profile {cfg.profile}, seeds {list(cfg.seeds)})")

# %%
with run.timer("data + features"):
    data = pipeline.prepare(cfg, run)
display(Markdown(findings.missing_note(pipeline.unavailable(data, cfg))))

# %%
with run.timer("K-ablation fits"):
    ks, skipped = pipeline.k_ablation(cfg, data, run, k_order, tests=hh_sources)
    top_heads = pipeline.fit(cfg, data, ["top"], run=run)
    top_ref = tables.top_reference(pipeline.metric_table(top_heads, data, cfg), hh_sources)
run.save_table("k_ablation_tidy", ks)
k_summary = tables.summary(ks, ["ece_10", "accuracy"], by=("scheme", "test_source", "K", "added"))
run.save_table("k_ablation", k_summary).round(4)

# %% [markdown]
# ## Fig 6 · ECE on H&H vs number of sources
# Mean over seeds (error bars: ± 1 sd over seeds, a spread; the CIs of the trend are in the forest plot below);
# one colour per scheme, one line style per test source; Single-Top and the noise floor (p95) are legend entries.

# %%
fig = plots.ece_vs_k(k_summary, top_ref, "ECE on Helpful & Harmless vs K")
run.save_figure("fig6_ece_vs_k", fig)

# %% [markdown]
# ## Finding (computed from this run) vs the paper's claim
# Each trend and the comparison with Single-Top come from a pooled paired bootstrap CI (pairs and seeds resampled): the
# largest K minus the smallest, and MORE at the largest K minus Single-Top.

# %%
with run.timer("K trend: pooled paired CIs"):
    ends = pipeline.k_endpoints(cfg, data, run, k_order, tests=hh_sources)
    top_diffs = pipeline.scheme_diffs(top_heads, data)
    trend = tables.k_trend(ends, top_diffs, cfg, hh_sources)
run.save_table("k_trend", trend)
finding = findings.k_ablation(ks, top_ref.set_index("test_source")["ece_10"], skipped, trend=trend)
run.save_metrics(k_ablation=k_summary, top_reference=top_ref, k_trend=trend, skipped=skipped, finding=finding)
display(trend.round(4), Markdown(finding))

# %% [markdown]
# ## Forest plot · the K trend and MORE − Single-Top, per test source and pooled
# Each scheme at the largest K minus itself at the smallest, and MORE at the largest K minus Single-Top (the pooled rows
# are the table above). Reference: the paper's MORE − Single-Top ECE on H&H (Table 5, Pythia-1.4B); its Fig 6 trend is
# not in the paper's tables, so the trend rows have none.

# %%
from morelib.data import paper
from morelib.study import forest

k_forest = forest.k_rows(trend, ends, top_diffs, cfg, hh_sources, paper.deltas("more", "top", table="outliers"))
run.save_table("forest_k_trend", k_forest)
fig = forest.figure(k_forest, "K-ablation: ECE trend with K and MORE against Single-Top")
run.save_figure("forest_k_trend", fig)

# %% [markdown]
# ## The K = 2 degeneracy, and the non-degenerate `loss+` normalisation
# With the paper's l2 normalisation every source gradient is scaled to unit length before the min-norm solve, and the
# min-norm point of two unit vectors is always their midpoint: at K = 2 MORE's λ is (½, ½) and MORE trains exactly as
# MultiTask (in the paper and its reference code too). `more.normalization: loss+` (g_i/(‖g_i‖·L_i)) keeps the
# sources' losses in the weighting, so λ can move at K = 2. Below: MORE's measured λ at K = 2 under both, and the
# K-curve of MORE with loss+ beside l2's (its heads are keyed by their own config fingerprint, so they never collide).

# %%
from morelib.core import config

cfg_alt = config.with_overrides(cfg, {"more.normalization": "loss+"})
with run.timer("K-ablation, MORE with loss+ normalisation"):
    ks_alt, _ = pipeline.k_ablation(cfg_alt, data, run, k_order, tests=hh_sources, schemes=["more"])
    lam_l2 = tables.lambda_range(pipeline.k_ablation_heads(cfg, data, run, k_order, 2))
    lam_alt = tables.lambda_range(pipeline.k_ablation_heads(cfg_alt, data, run, k_order, 2))
k_both = tables.summary(
    tables.with_variant(ks, ks_alt, "more[loss+]"), ["ece_10", "accuracy"], by=("scheme", "test_source", "K", "added")
)
run.save_table("k_ablation_lossplus_tidy", ks_alt)
run.save_table("k_ablation_l2_vs_lossplus", k_both)
fig = plots.ece_vs_k(k_both, top_ref, "ECE on H&H vs K: MORE with l2 (paper) and loss+ normalisation, MultiTask")
run.save_figure("fig6_ece_vs_k_normalisations", fig)

# %%
finding_k2 = findings.k2_degeneracy(lam_l2, lam_alt, ks, ks_alt)
run.save_metrics(
    file="k2_degeneracy",
    lambda_l2=lam_l2,
    lambda_lossplus=lam_alt,
    k_ablation_l2_vs_lossplus=k_both,
    finding=finding_k2,
)
display(lam_l2.round(6), lam_alt.round(4), Markdown(finding_k2))

# %% [markdown]
# ## Explore the mix
# Choose how many training pairs each source contributes (0 leaves it out) and which sources take part; MultiTask and
# MORE are refitted on that mix and shown side by side, evaluated on every test source. The static figure is the full
# mix; the widget below it refits on every change.

# %%
from morelib.explore import engine, widgets

mix_explorer = engine.Explorer.from_study(data, cfg, run)
with run.timer("explorer: MultiTask vs MORE on the full mix"):
    mix_explorer.set_mix(mix_explorer.available)
fig = widgets.mix_figure(mix_explorer)
run.save_figure("explore_mix", fig)

# %%
widgets.show(mix_explorer, views=("mix",))

# %%
run.finish()

# %% [markdown]
# Next: [05 · alignment](05_alignment.ipynb) (rejection sampling with these RMs).
