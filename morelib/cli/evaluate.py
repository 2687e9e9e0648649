"""Evaluate any Hugging Face reward model the workbook's way: the profile's test pairs, CIs, calibration, length bias.

`python -m morelib.cli.evaluate --model PATH_OR_NAME [--model2 PATH_OR_NAME] [--profile default] [--out DIR]` scores the
test split of every configured source (the very pairs `pipeline.prepare` holds: split seed = the profile's first seed)
with an `AutoModelForSequenceClassification` of one logit, at the profile's max_length and truncation side, and
writes per source: accuracy with a bootstrap CI, ECE/ACE/MCE (10 bins) beside the ECE a perfectly calibrated model
would get on the same N (noise floor), Brier, log-loss, the "longer response wins" baseline and the RM's length bias
(diagnostics.length_bias; lengths in the RM's own tokens), length-controlled accuracy (chosen longer / shorter, each
with a CI, and RM − "longer wins" with a paired CI: evaluation.length.length_split) and, with two or more sources, a
`worst` row (the source of lowest accuracy: PPE's worst-case aggregation); reliability diagrams as HTML. Two models →
a paired bootstrap of their accuracy and ECE differences on the same pairs, per source and pooled over sources with
the notebooks' stratified estimator (stats.pooled_paired_bootstrap: each source weighs the same, pairs resampled
within it; one checkpoint each, so the interval covers test pairs only).
`--pairs FILE [--pairs FILE2 …]` scores the user's files instead (data.pairs_files: JSON/JSONL/parquet, TRL,
pairwise-judge or HH layout), each file its own source. `--run RUN --key more/seed0` scores a feature-tier head of a
run (its backbone features through the run's cache; no export needed) instead of `--model`.
`--length-calibrate [lowess|linear]` fits each RM's reward–length term on the calibration split of the profile's (or
run's) sources (evaluation.length; a run head: the sources it was trained on), never on the scored pairs, subtracts
it, and writes accuracy, ECE (with floors) and rm_prefers_longer before/after with paired CIs (length_calibration.csv)
and the fits (length_fits.json).
Checked against the workbook's own evaluation of an exported head (tests/test_evaluate.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from plotly.offline import get_plotlyjs
from tqdm.auto import tqdm
from transformers import AutoConfig

from morelib.backbone import features
from morelib.backbone.features import response_lengths
from morelib.backbone.model import REGISTRY, load_reward_model, score
from morelib.cli.export import run_heads
from morelib.core import runs
from morelib.core.config import Config, load_config
from morelib.core.errors import DataError, ModelError, MoreError, RunError
from morelib.data import pairs_files, splits
from morelib.data.sources import Pair
from morelib.evaluation import diagnostics, length, metrics, stats
from morelib.study import plots
from morelib.train.reward_head import HeadModel
from morelib.train.reward_models import HeadRM, RMKey

N_BINS = 10
CHUNK = 32  # pairs scored per progress-bar update
SHOWN = (
    "n",
    "accuracy",
    "accuracy_lo",
    "accuracy_hi",
    f"ece_{N_BINS}",
    f"ece_{N_BINS}_floor",
    f"ece_{N_BINS}_excess",
    f"ece_{N_BINS}_debiased",
    "brier",
    "log_loss",
    "longer_baseline_accuracy",
    "accuracy_longer_won",
    "accuracy_shorter_won",
    "rm_prefers_longer",
)  # columns printed on the terminal
Scores = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # r_chosen, r_rejected, len_chosen, len_rejected [N]
Scorer = Callable[[Sequence[Pair], str], Scores]  # (pairs, what they are) → their scores


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


def test_pairs(cfg: Config, split: str = "test") -> tuple[dict[str, list[Pair]], dict[str, str]]:
    """({source: `split` pairs}, {source: why missing}) exactly as pipeline.prepare splits them."""
    found, missing = {}, {}
    for spec in cfg.data.sources:
        try:
            found[spec.name] = splits.load_source_splits(spec, cfg.data, cfg.seeds[0])[split]
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


def hf_scorer(name_or_path: str, cfg: Config) -> Scorer:
    """Scores of pairs by a Hugging Face reward model (lengths in its own tokens)."""
    check_one_logit(name_or_path)
    net, tok = load_reward_model(name_or_path, cfg.model.dtype, cfg.model.padding_side)

    def scorer(pairs: Sequence[Pair], what: str) -> Scores:
        with tqdm(total=len(pairs), unit="pair", desc=f"scoring {what} with {name_or_path}") as bar:
            rc, rr = score_pairs(net, tok, pairs, cfg, bar)
        lc = response_lengths(tok, [p.chosen for p in pairs]).numpy()
        return rc, rr, lc, response_lengths(tok, [p.rejected for p in pairs]).numpy()

    return scorer


def head_scorer(head: HeadRM, cfg: Config, cache: Path) -> Scorer:
    """Scores of pairs by a feature-tier head on its backbone features (content-keyed cache; lengths in tokens)."""

    def one_source(pairs: list[Pair]) -> Scores:
        pf = features.extract(pairs, cfg.model, cache, progress=True, share_prompt=cfg.head.share_prompt)
        rc, rr = (head.rewards([], [], f).double().numpy() for f in (pf.chosen, pf.rejected))
        return rc, rr, np.asarray(pf.chosen_len, dtype=np.float64), np.asarray(pf.rejected_len, dtype=np.float64)

    def scorer(pairs: Sequence[Pair], what: str) -> Scores:
        sources = list(dict.fromkeys(p.source for p in pairs))  # features are extracted (and cached) per source
        parts = [one_source([p for p in pairs if p.source == s]) for s in sources]
        return tuple(np.concatenate(cols) for cols in zip(*parts))

    return scorer


def source_report(rc: np.ndarray, rr: np.ndarray, lc: np.ndarray, lr: np.ndarray, n_boot: int) -> dict[str, float]:
    """One source's row: n, accuracy + CI, ECE/ACE/MCE + floor, Brier, log-loss, length bias and length split."""
    diff = rc - rr
    acc, lo, hi = stats.bootstrap_ci((diff > 0).astype(float), n_boot=n_boot)
    cal = metrics.calibration_errors(diff, N_BINS)
    floor = metrics.ece_floor_stats(diff, N_BINS)
    bias = diagnostics.length_bias(rc, rr, lc, lr)
    split = length.length_split(diff, lc, lr, n_boot=n_boot)
    return {
        "n": diff.size,
        "accuracy": acc,
        "accuracy_lo": lo,
        "accuracy_hi": hi,
        **{f"{k}_{N_BINS}": v for k, v in cal.items()},
        f"ece_{N_BINS}_floor": floor["floor"],
        f"ece_{N_BINS}_floor_p95": floor["p95"],
        f"ece_{N_BINS}_excess": cal["ece"] - floor["floor"],
        f"ece_{N_BINS}_debiased": metrics.debiased_ece(diff, N_BINS),
        "brier": metrics.brier(diff),
        "log_loss": metrics.log_loss(diff),
        "longer_baseline_accuracy": bias["longer_baseline_accuracy"],
        **{k: v for k, v in split.items() if k not in ("n", "accuracy", "longer_baseline_accuracy")},
        **{k: bias[k] for k in ("rm_prefers_longer", "n_equal_length", "pearson", "spearman")},
    }


def with_worst(table: pd.DataFrame) -> pd.DataFrame:
    """`table` (a row per source) plus a `worst` row: the lowest-accuracy source's row, named in `worst_source`."""
    if len(table) < 2:
        return table
    worst = table.loc[[table["accuracy"].idxmin()]].rename(index=lambda s: "worst")
    worst["worst_source"] = table["accuracy"].idxmin()
    return pd.concat([table, worst])


def evaluate_scores(scores: dict[str, Scores], n_boot: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(per-source report with a worst row, {source: Δ [N]}) of one RM's scores."""
    rows = [{"test_source": s, **source_report(*sc, n_boot)} for s, sc in scores.items()]
    table = with_worst(pd.DataFrame(rows).set_index("test_source"))
    return table, {s: sc[0] - sc[1] for s, sc in scores.items()}


def model_report(name_or_path: str, cfg: Config, pairs: dict[str, list[Pair]]) -> tuple[pd.DataFrame, dict]:
    """(per-source report, {source: Δ [N]}) of one Hugging Face reward model on `pairs`."""
    scorer = hf_scorer(name_or_path, cfg)
    return evaluate_scores({s: scorer(ps, s) for s, ps in pairs.items()}, cfg.n_boot)


def length_calibrate(
    scorer: Scorer, calib: list[Pair], scores: dict[str, Scores], method: str, cfg: Config
) -> tuple[length.LengthFit, pd.DataFrame]:
    """(length fit on the calibration pairs, before/after rows per scored source with paired CIs)."""
    fit = length.fit(*scorer(calib, "calibration pairs"), method=method, n_boot=cfg.n_boot, seed=cfg.seeds[0])
    rows = []
    for source, (rc, rr, lc, lr) in scores.items():
        after = fit.apply_diff(rc - rr, lc, lr)
        for row in length.before_after(rc - rr, after, lc, lr, n_boot=cfg.n_boot, seed=cfg.seeds[0]):
            rows.append({"test_source": source, "n": rc.size, **row})
    return fit, pd.DataFrame(rows)


def fit_record(fit: length.LengthFit, calib_sources: Sequence[str]) -> dict[str, Any]:
    """The JSON-ready summary of a length fit: method, slope (reward per token) with its 95% CI, knots and values."""
    return {
        "method": fit.method,
        "calibration_sources": list(calib_sources),
        "n_pairs": fit.n_pairs,
        "slope_per_token": fit.slope,
        "slope_lo": fit.slope_lo,
        "slope_hi": fit.slope_hi,
        "knots": fit.knots.tolist(),
        "bias": fit.bias.tolist(),
    }


def paired(diffs_a: dict[str, np.ndarray], diffs_b: dict[str, np.ndarray], n_boot: int) -> pd.DataFrame:
    """Model A − model B per source and pooled ("all": mean over sources, each weighing the same), accuracy and ECE,
    paired over the same pairs by `stats.pooled_paired_bootstrap` (the notebooks' stratified estimator)."""
    fns = {"accuracy": metrics.batched_accuracy, f"ece_{N_BINS}": partial(metrics.batched_ece, n_bins=N_BINS)}
    groups = {**{s: [s] for s in diffs_a}, "all": list(diffs_a)}
    rows = []
    for source, members in groups.items():
        a, b = ({s: d[s][:, None] for s in members} for d in (diffs_a, diffs_b))
        for name, fn in fns.items():
            rows.append({"test_source": source, "metric": name, **stats.pooled_paired_bootstrap(a, b, fn, n_boot)})
    return pd.DataFrame(rows)


def write_report(
    out: Path,
    reports: dict[str, pd.DataFrame],
    diffs: dict[str, dict],
    comparison: pd.DataFrame | None,
    missing: dict[str, str],
    calibrated: dict[str, tuple[dict, pd.DataFrame]] | None = None,
) -> None:
    """report.csv (one row per model and source), reliability.html per model, paired.csv, missing.json and, when
    length-calibrated, length_calibration.csv and length_fits.json."""
    out.mkdir(parents=True, exist_ok=True)
    pd.concat({m: r for m, r in reports.items()}, names=["model"]).to_csv(out / "report.csv")
    (out / "plotly.min.js").write_text(get_plotlyjs())
    for i, (name, by_src) in enumerate(diffs.items(), start=1):
        curves = {s: metrics.reliability(d, N_BINS) for s, d in by_src.items()}
        fig = plots.reliability_diagrams(curves, f"Reliability of {name} per test source")
        fig.write_html(out / f"reliability_model{i}.html", include_plotlyjs="directory")
    if comparison is not None:
        comparison.to_csv(out / "paired.csv", index=False)
    if calibrated:
        pd.concat({m: t for m, (_, t) in calibrated.items()}, names=["model"]).to_csv(out / "length_calibration.csv")
        fits = {m: f for m, (f, _) in calibrated.items()}
        (out / "length_fits.json").write_text(json.dumps(fits, indent=2) + "\n")
    (out / "missing.json").write_text(json.dumps(missing, indent=2) + "\n")


def run_scorers(run_dir: Path, keys: Sequence[str]) -> tuple[Config, dict[str, tuple[Scorer, list[str] | None]]]:
    """(the run's config, {key: (scorer, sources it was trained on or None = all)}) of feature-tier heads of a run."""
    cfg, files = run_heads(run_dir)
    cache = runs.Run(root=run_dir, notebook="evaluate", cfg=cfg).cache_dir
    out = {}
    for text in keys:
        key = RMKey.parse(text)
        if key not in files:
            listed = ", ".join(map(str, files)) or "none: run notebook 02 first"
            raise RunError(f"no feature-tier RM {text!r} in {run_dir} (RMs there: {listed})")
        trained = [key.source] if key.source else (list(key.subset) if key.subset else None)
        out[text] = (head_scorer(HeadRM(HeadModel.load(files[key])), cfg, cache), trained)
    return cfg, out


def parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m morelib.cli.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", help="HF reward-model folder, hub id or registry name")
    p.add_argument("--model2", help="a second RM: adds the paired comparison model − model2")
    p.add_argument("--run", type=Path, help="run folder whose feature-tier heads --key names (instead of --model)")
    p.add_argument("--key", action="append", default=[], help="RM key of --run, e.g. more/seed0 (twice: paired)")
    p.add_argument("--pairs", action="append", type=Path, default=[], help="pairs file to score (repeatable)")
    p.add_argument(
        "--length-calibrate",
        nargs="?",
        const="lowess",
        choices=length.METHODS,
        help="subtract a reward–length fit from the calibration split (default estimator: lowess)",
    )
    p.add_argument("--profile", default="default", help="params profile whose test (and calibration) pairs are used")
    p.add_argument("--out", type=Path, default=Path("outputs/evaluate"), help="report folder")
    return p


def scorers_of(args: argparse.Namespace) -> tuple[Config, dict[str, tuple[Scorer, list[str] | None]]]:
    """(config, {name: (scorer, calibration sources or None = all)}) of the RMs the arguments name."""
    if bool(args.run) == bool(args.model) or bool(args.run) != bool(args.key) or (args.run and args.model2):
        raise RunError("name the RMs either by --model [--model2] or by --run RUN --key KEY [--key KEY2]")
    if args.run:
        return run_scorers(args.run, args.key)
    cfg = load_config(args.profile)
    return cfg, {n: (hf_scorer(n, cfg), None) for n in filter(None, (args.model, args.model2))}


def evaluate_all(args: argparse.Namespace) -> tuple[dict, dict, pd.DataFrame | None, dict, dict]:
    """(reports, diffs, comparison, missing, length calibrations) of every RM the arguments name."""
    cfg, scorers = scorers_of(args)
    pairs, missing = (pairs_files.read_all(args.pairs), {}) if args.pairs else test_pairs(cfg)
    calib = test_pairs(cfg, "calib")[0] if args.length_calibrate else {}
    reports, diffs, calibrated = {}, {}, {}
    for name, (scorer, trained) in scorers.items():
        scores = {s: scorer(ps, s) for s, ps in pairs.items()}
        reports[name], diffs[name] = evaluate_scores(scores, cfg.n_boot)
        if args.length_calibrate:
            used = [s for s in (trained or calib) if s in calib]
            pooled = [p for s in used for p in calib[s]]
            if not pooled:
                raise DataError(f"no calibration pairs of {trained or list(calib)} to fit {name}'s length term on")
            fit, table = length_calibrate(scorer, pooled, scores, args.length_calibrate, cfg)
            calibrated[name] = (fit_record(fit, used), table)
    names = list(scorers)
    comparison = paired(diffs[names[0]], diffs[names[1]], cfg.n_boot) if len(names) == 2 else None
    return reports, diffs, comparison, missing, calibrated


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (see the module docstring)."""
    args = parser().parse_args(argv)
    try:
        reports, diffs, comparison, missing, calibrated = evaluate_all(args)
        write_report(args.out, reports, diffs, comparison, missing, calibrated)
    except (MoreError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 14):
        for name, table in reports.items():
            print(f"\n{name} (all columns in {args.out / 'report.csv'})\n{table[list(SHOWN)].round(3)}")
        for name, (fit, table) in calibrated.items():
            print(
                f"\n{name}: length calibration ({fit['method']}, slope {fit['slope_per_token']:.4g} per token "
                f"[{fit['slope_lo']:.4g}, {fit['slope_hi']:.4g}] on {fit['n_pairs']} calibration pairs)\n"
                f"{table[['test_source', 'metric', 'before', 'after', 'diff', 'lo', 'hi']].round(3)}"
            )
        if comparison is not None:
            print(f"\n{' − '.join(reports)}\n{comparison.round(3)}")
    print(f"\nreport written to {args.out}" + (f"; missing sources: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
