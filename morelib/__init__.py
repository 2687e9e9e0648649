"""morelib: reward modeling on diversified human preferences (Zeng et al., MORE), as an importable library.

One folder per pipeline stage, in the order `STAGES` gives; a module imports only modules of its own stage or of
earlier ones, every import is at module top level, and there is no cycle (tests/test_architecture.py checks all three):
  core        errors, status, facts, hardware, config, reruns, runs
  data        formats, sources, groups, splits, sampling, paper, datacard, pairs_files
  backbone    model, prompt_sharing, features, hidden_states
  weighting   losses, solver, more, baselines
  train       reward_head, mlp_head, blocks, updates, finetune, reward_models
  evaluation  metrics, stats, temperature, diagnostics, length
  synthetic   synthetic, scenarios
  study       pipeline, capacity, tables, length_tables, findings, gpu_plan, plots
  explore     engine, widgets
  align       rjs, judge, rm_judge, alignment
  cli         export, evaluate, run_notebook
Entry points: `python -m morelib.export`, `python -m morelib.evaluate`, `accelerate launch -m morelib.finetune`.
"""

__version__ = "0.1.0"

STAGES: tuple[str, ...] = (
    "core",
    "data",
    "backbone",
    "weighting",
    "train",
    "evaluation",
    "synthetic",
    "study",
    "explore",
    "align",
    "cli",
)
