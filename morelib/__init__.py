"""morelib: reward modeling on diversified human preferences (Zeng et al., MORE), as an importable library.

The package is flat (one module per concept); `LAYERS` below writes the pipeline order down. A module imports only
modules of its own layer or of layers before it, every import is at module top level, and there is no cycle
(tests/test_architecture.py walks every module's imports, function-level ones included, and checks all three).
Layers, first to last:
  base        errors, status (progress lines), hardware (device and dtype)
  math        pure numerics that import no trainer and no I/O: losses (BT loss, head gradients), solver (min-norm),
              metrics (accuracy, ECE; the one input check), stats (bootstrap CIs), temperature (scaling)
  settings    config (params YAML), runs (run folders, provenance), paper (the paper's reported numbers)
  data        formats, groups, data, splits, sampling (batch plans), datacard
  features    model (backbones), pairpack (prompt-sharing rows for fine-tuning), shared_prefix (a pair's common
              prefix through the KV cache, for extraction), features (pooled backbone features), synthetic
              (the feature-level benchmark)
  weighting   more (MORE's λ), weighting (simplex λ check, baselines)
  training    train (feature tier), finetune (full fine-tuning tier)
  evaluation  rms (reward-model keys and the one scoring protocol), diagnostics, findings
  study       study, scenarios, tables, plots, evaluate, explore, export
  alignment   explore_ui, judge, rjs, alignment
"""

__version__ = "0.1.0"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "status", "hardware")),
    ("math", ("losses", "solver", "metrics", "stats", "temperature")),
    ("settings", ("config", "runs", "paper")),
    ("data", ("formats", "groups", "data", "splits", "sampling", "datacard")),
    ("features", ("model", "pairpack", "shared_prefix", "features", "synthetic")),
    ("weighting", ("more", "weighting")),
    ("training", ("train", "finetune")),
    ("evaluation", ("rms", "diagnostics", "findings")),
    ("study", ("study", "scenarios", "tables", "plots", "evaluate", "explore", "export")),
    ("alignment", ("explore_ui", "judge", "rjs", "alignment")),
)
