"""Evaluate any Hugging Face reward model the workbook's way: the profile's test pairs, CIs, calibration, length bias.

`python -m morelib.cli.evaluate --model PATH_OR_NAME [--model2 PATH_OR_NAME] [--profile default] [--out DIR]` scores the
test split of every configured source (the very pairs `pipeline.prepare` holds: split seed = the profile's first seed)
with an `AutoModelForSequenceClassification` of one logit, at the profile's max_length and truncation side, and
writes per source: accuracy with a bootstrap CI, ECE/ACE/MCE (10 bins) beside the ECE a perfectly calibrated model
would get on the same N (noise floor), Brier, log-loss, the "longer response wins" baseline and the RM's length bias
(diagnostics.length_bias; lengths in the RM's own tokens); reliability diagrams as HTML. Two models → a paired
bootstrap of their accuracy and ECE differences on the same pairs (stats.paired_bootstrap_diff).
Checked against the workbook's own evaluation of an exported head (tests/test_evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs
from tqdm.auto import tqdm
from transformers import AutoConfig

from morelib.backbone.features import response_lengths
from morelib.backbone.model import REGISTRY, load_reward_model, score
from morelib.core.config import Config, load_config
from morelib.core.errors import DataError, ModelError, MoreError
from morelib.data import splits
from morelib.data.sources import Pair
from morelib.evaluation import diagnostics, metrics, stats
from morelib.study import plots

N_BINS = 10
CHUNK = 32  # pairs scored per progress-bar update
SHOWN = (
    "n",
    "accuracy",
    "accuracy_lo",
    "accuracy_hi",
    f"ece_{N_BINS}",
    f"ece_{N_BINS}_floor",
    f"ece_{N_BINS}_debiased",
    "brier",
    "log_loss",
    "longer_baseline_accuracy",
    "rm_prefers_longer",
)  # columns printed on the terminal


def check_one_logit(name_or_path: str) -> None:
    """Raise ModelError unless the model is a sequence classifier with exactly one output (a reward model)."""
    if name_or_path in REGISTRY or not Path(name_or_path).is_dir():
        return  # registry models are built as one-logit RMs; a hub id is checked by the loader
    config = AutoConfig.from_pretrained(name_or_path)
    archs = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelError(
            f"{name_or_path} is not a sequence-classification model (architectures: {archs or 'none'}); "
            "a reward model is an AutoModelForSequenceClassification with one logit"
        )
    if config.num_labels != 1:
        raise ModelError(
            f"{name_or_path} has {config.num_labels} output logits; a reward model has exactly one "
            "(num_labels=1), the reward"
        )


def test_pairs(cfg: Config) -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """({source: test pairs}, {source: why missing}) exactly as pipeline.prepare splits them."""
    found, missing = {}, {}
    for spec in cfg.data.sources:
        try:
            found[spec.name] = splits.load_source_splits(spec, cfg.data, cfg.seeds[0])["test"]
        except DataError as err:
            missing[spec.name] = str(err)
    if not found:
        raise DataError(f"no configured source of profile '{cfg.profile}' could be loaded: {missing}")
    return found, missing


def score_pairs(net: Any, tok: Any, pairs: Sequence[Pair], cfg: Config, bar: tqdm) -> tuple[np.ndarray, np.ndarray]:
    """(r_chosen [N], r_rejected [N]) float64 of `pairs` at the profile's max_length and truncation side."""
    kw = {
        "max_length": cfg.model.max_length,
        "truncation_side": cfg.model.truncation_side,
        "batch_size": cfg.model.batch_size,
    }
    rc, rr = [], []
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        prompts = [p.prompt for p in chunk]
        rc.append(score(net, tok, prompts, [p.chosen for p in chunk], **kw).double().numpy())
        rr.append(score(net, tok, prompts, [p.rejected for p in chunk], **kw).double().numpy())
        bar.update(len(chunk))
    return np.concatenate(rc), np.concatenate(rr)


def source_report(rc: np.ndarray, rr: np.ndarray, lc: np.ndarray, lr: np.ndarray, n_boot: int) -> dict[str, float]:
    """One source's row: n, accuracy + CI, ECE/ACE/MCE + floor, Brier, log-loss, length bias."""
    diff = rc - rr
    acc, lo, hi = stats.bootstrap_ci((diff > 0).astype(float), n_boot=n_boot)
    cal = metrics.calibration_errors(diff, N_BINS)
    floor = metrics.ece_floor_stats(diff, N_BINS)
    bias = diagnostics.length_bias(rc, rr, lc, lr)
    return {
        "n": diff.size,
        "accuracy": acc,
        "accuracy_lo": lo,
        "accuracy_hi": hi,
        **{f"{k}_{N_BINS}": v for k, v in cal.items()},
        f"ece_{N_BINS}_floor": floor["floor"],
        f"ece_{N_BINS}_floor_p95": floor["p95"],
        f"ece_{N_BINS}_debiased": cal["ece"] - floor["floor"],
        "brier": metrics.brier(diff),
        "log_loss": metrics.log_loss(diff),
        "longer_baseline_accuracy": bias["longer_baseline_accuracy"],
        **{
            k: bias[k]
            for k in (
                "rm_prefers_longer",
                "rm_accuracy_longer_won",
                "rm_accuracy_shorter_won",
                "n_longer_won",
                "n_shorter_won",
                "pearson",
                "spearman",
            )
        },
    }


def model_report(name_or_path: str, cfg: Config, pairs: dict[str, list[Pair]]) -> tuple[pd.DataFrame, dict]:
    """(per-source report, {source: Δ [N]}) of one reward model on the test pairs."""
    check_one_logit(name_or_path)
    net, tok = load_reward_model(name_or_path, cfg.model.dtype, cfg.model.padding_side)
    rows, diffs = [], {}
    with tqdm(total=sum(map(len, pairs.values())), unit="pair", desc=f"scoring {name_or_path}") as bar:
        for source, ps in pairs.items():
            rc, rr = score_pairs(net, tok, ps, cfg, bar)
            lc = response_lengths(tok, [p.chosen for p in ps]).numpy()
            lr = response_lengths(tok, [p.rejected for p in ps]).numpy()
            rows.append({"test_source": source, **source_report(rc, rr, lc, lr, cfg.n_boot)})
            diffs[source] = rc - rr
    return pd.DataFrame(rows).set_index("test_source"), diffs


def paired(diffs_a: dict[str, np.ndarray], diffs_b: dict[str, np.ndarray], n_boot: int) -> pd.DataFrame:
    """Model A − model B per source and pooled, accuracy and ECE, paired bootstrap CI over the same pairs."""
    ece = lambda d: metrics.calibration_errors(d, N_BINS)["ece"]  # noqa: E731
    groups = {**diffs_a, "all": None}
    rows = []
    for source in groups:
        a = np.concatenate(list(diffs_a.values())) if source == "all" else diffs_a[source]
        b = np.concatenate(list(diffs_b.values())) if source == "all" else diffs_b[source]
        for name, fn in (("accuracy", metrics.accuracy), (f"ece_{N_BINS}", ece)):
            rows.append({"test_source": source, "metric": name, **stats.paired_bootstrap_diff(a, b, fn, n_boot)})
    return pd.DataFrame(rows)


def write_report(
    out: Path,
    reports: dict[str, pd.DataFrame],
    diffs: dict[str, dict],
    comparison: pd.DataFrame | None,
    missing: dict[str, str],
) -> None:
    """report.csv (one row per model and source), reliability.html per model, paired.csv, missing.json."""
    out.mkdir(parents=True, exist_ok=True)
    pd.concat({m: r for m, r in reports.items()}, names=["model"]).to_csv(out / "report.csv")
    (out / "plotly.min.js").write_text(get_plotlyjs())
    for i, (name, by_src) in enumerate(diffs.items(), start=1):
        curves = {s: metrics.reliability(d, N_BINS) for s, d in by_src.items()}
        fig = plots.reliability_diagrams(curves, f"Reliability of {name} per test source")
        fig.write_html(out / f"reliability_model{i}.html", include_plotlyjs="directory")
    if comparison is not None:
        comparison.to_csv(out / "paired.csv", index=False)
    (out / "missing.json").write_text(json.dumps(missing, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m morelib.cli.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF reward-model folder, hub id or registry name")
    parser.add_argument("--model2", help="a second RM: adds the paired comparison model − model2")
    parser.add_argument("--profile", default="default", help="params profile whose test pairs are scored")
    parser.add_argument("--out", type=Path, default=Path("outputs/evaluate"), help="report folder")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.profile)
        pairs, missing = test_pairs(cfg)
        reports, diffs = {}, {}
        for name in filter(None, (args.model, args.model2)):
            reports[name], diffs[name] = model_report(name, cfg, pairs)
        comparison = paired(diffs[args.model], diffs[args.model2], cfg.n_boot) if args.model2 else None
        write_report(args.out, reports, diffs, comparison, missing)
    except (MoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 12):
        for name, table in reports.items():
            print(f"\n{name} (all columns in {args.out / 'report.csv'})\n{table[list(SHOWN)].round(3)}")
        if comparison is not None:
            print(f"\n{args.model} − {args.model2}\n{comparison.round(3)}")
    print(f"\nreport written to {args.out}" + (f"; missing sources: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
