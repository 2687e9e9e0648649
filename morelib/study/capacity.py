"""The capacity curve (issues 23 and 32): MORE − MultiTask at each rung of trainable capacity and batch per source.

For every tier of `capacity.tiers` (linear = the reward head alone, convex; mlp = a shared trunk + head,
`morelib.train.mlp_head`; blocks = top transformer blocks on cached hidden states, `morelib.train.blocks`; finetune =
every parameter, `morelib.train.finetune`, the top rung on a GPU) and every B of `capacity.batch_per_source` (blocks:
`capacity.blocks_batch_per_source` when set; finetune: the profile's own `train.batch_per_source`, so the run's
notebook-02 fine-tunes are reused), the schemes of `capacity.schemes` (MultiTask, MORE, the grid-tuned fixed λ — not
on the finetune rung, where `tuned` does not exist) are fitted per seed on the same training pairs, initialisation and
batch order (one seed drives all three), through the run's RM cache (`pipeline.fit`; blocks: `blocks.fit`, its
hidden states cached beside the features). Reported per (tier, B):
- pooled MORE − MultiTask (and tuned − MultiTask) ECE-10 and accuracy with `stats.pooled_paired_bootstrap` (pairs
  resampled within each test source, seeds resampled, paired), the minimum detectable difference (80% power) and the
  ECE floor (the ECE a perfectly calibrated model gets on the same pairs, MultiTask's, mean over sources and seeds);
- the same difference per test source (seeds and pairs resampled), Holm-adjusted over sources;
- MORE's λ per source and seed: the mean over steps and the per-step sd, and whether the tilt (mean λ − 1/K) keeps
  its sign in every seed.
`finding` writes the verdict from the CIs first, names a trade-off when one source gains and another loses, and says
whether the λ tilt is systematic across seeds.
Checked in tests/test_capacity.py: pooled rows against direct `stats` calls, Holm, λ statistics against hand values,
sentences against built tables; `./run_all.sh --profile tiny-capacity` runs every notebook and 07 fits linear, mlp and
blocks (tests/test_notebooks_capacity.py); on `tiny-finetune` 07 fits the finetune rung
(tests/test_notebooks_finetune.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morelib.core.config import Config, with_overrides
from morelib.core.errors import RunError
from morelib.core.runs import Run
from morelib.evaluation import metrics, stats
from morelib.study import pipeline
from morelib.study.pipeline import StudyData
from morelib.train import blocks, finetune, mlp_head
from morelib.train.reward_models import RewardModel, RMKey

Fits = dict[tuple[str, int], dict[RMKey, RewardModel]]  # (tier, B) → the RMs of every scheme and seed
Diffs = dict[tuple[str, int], dict[RMKey, dict[str, np.ndarray]]]  # (tier, B) → test Δ per RM and source
METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ece_10": partial(metrics.batched_ece, n_bins=10),
    "accuracy": metrics.batched_accuracy,
}
LOWER_IS_BETTER = {"ece_10": True, "accuracy": False}
FEATURE_TIERS = ("linear", "mlp")  # tiers that train on the frozen features through pipeline.fit
ALPHA = 0.05  # family-wise level of the Holm-adjusted per-source differences


def study_config(cfg: Config) -> Config:
    """`cfg` on the feature tier (the linear and mlp rungs train on frozen features, whatever tier the profile's other
    notebooks fine-tune), its first `capacity.max_seeds` seeds and the coarser `tuned` grid of the capacity section."""
    cap = cfg.capacity
    overrides: dict[str, Any] = {
        "train.tier": "features",
        "train.tuned_step": cap.tuned_step,
        "train.tuned_max_points": cap.tuned_max_points,
    }
    if cap.max_seeds is not None:
        overrides["seeds"] = list(cfg.seeds[: cap.max_seeds])
    return with_overrides(cfg, overrides)


def prepare(cfg: Config, run: Run | None = None) -> StudyData:
    """Pairs and frozen features of every source (`pipeline.prepare` on the feature tier; cached by content)."""
    return pipeline.prepare(study_config(cfg), run)


def tier_config(cfg: Config, tier: str, B: int) -> Config:
    """The config of one rung: `study_config` with B pairs per source (and head.kind = tier on the feature tiers); on
    the finetune rung the profile's own training settings (so its fingerprint, and RMs, are notebook 02's)."""
    if tier == "finetune":
        seeds = cfg.seeds if cfg.capacity.max_seeds is None else cfg.seeds[: cfg.capacity.max_seeds]
        return with_overrides(cfg, {"train.tier": "finetune", "train.batch_per_source": B, "seeds": list(seeds)})
    overrides: dict[str, Any] = {"train.batch_per_source": B}
    if tier in FEATURE_TIERS:
        overrides["head.kind"] = tier
    return with_overrides(study_config(cfg), overrides)


def rung_schemes(cfg: Config, tier: str) -> list[str]:
    """The schemes of `capacity.schemes` a tier can fit: all, except the feature-tier-only baselines (`tuned`) on the
    finetune rung."""
    return [s for s in cfg.capacity.schemes if tier != "finetune" or s not in pipeline.FEATURE_ONLY]


def blocks_folders(cfg: Config, B: int, run: Run) -> pipeline.HeadFolders:
    """Where a run keeps its blocks-tier RMs of one rung, `<heads>/blocks-<12 hex>` (a digest of everything they
    depend on: pipeline.fingerprint's sections, the blocks section and B), and where this notebook saves new ones
    (the same, except under `interactive-<stamp>/heads/` in a rerun; `pipeline.head_folders`)."""
    blob = json.dumps({"head": pipeline.fingerprint(cfg), "blocks": cfg.to_dict()["blocks"], "B": B}, sort_keys=True)
    name = f"blocks-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    return run.heads_dir / name, run.save_heads_dir / name


def _fit_blocks(
    cfg: Config, data: StudyData, B: int, run: Run | None, progress: Callable[[str], None] | None = None
) -> dict[RMKey, RewardModel]:
    """The blocks tier's RMs of `capacity.schemes` × seeds (`blocks.fit`, hidden states cached beside the features):
    each seed trains on its own resample of every source's pairs, as `pipeline.fit` does on the feature tiers. With a
    run, each RM is saved when fitted and reloaded by a later (or resumed) 07 instead of being trained again; a rerun
    of a finished 07 saves only under its interactive folder."""
    cache = run.cache_dir if run is not None else Path(cfg.output_root) / "cache"
    folders = blocks_folders(cfg, B, run) if run is not None else None
    calib = {s: data.pairs[s]["calib"] for s in data.sources}
    rms: dict[RMKey, RewardModel] = {}
    paths = []
    todo = [(scheme, seed) for scheme in cfg.capacity.schemes for seed in cfg.seeds]
    for i, (scheme, seed) in enumerate(todo):
        key = RMKey(scheme, seed=seed)
        path = pipeline.kept_head(folders, key, False) if folders is not None else None
        if path is not None and path.exists():
            rms[key] = blocks.BlocksRM.load(path, cfg, cache)
        else:
            if progress is not None:
                progress(f"capacity: blocks B = {B}: fitting {key} ({i + 1}/{len(todo)})")
            train = {s: pipeline.seed_pairs(data.pairs[s]["train"], cfg, seed, s) for s in data.sources}
            rms[key] = blocks.fit(cfg, train, calib, scheme, seed, B, cache)
            if path is not None:
                rms[key].save(path)
        paths += [path] if path is not None else []
    if run is not None:
        pipeline.record_head_files(run, paths)
    return rms


def trainable_parameters(cfg: Config, data: StudyData) -> dict[str, int]:
    """Trainable parameters of each tier of `capacity.tiers` on the data's h-dim features: linear h (the bias
    cancels), mlp the trunk + head, blocks the top k blocks + norm + score layer, finetune the whole model."""
    h = data.features[data.sources[0]]["train"].dim
    counts = {"linear": lambda: h, "mlp": lambda: mlp_head.trainable_parameters(h, cfg.head.width, cfg.head.depth)}
    counts["blocks"] = lambda: blocks.trainable_parameters(cfg)
    counts["finetune"] = lambda: finetune.trainable_parameters(cfg)
    return {tier: counts[tier]() for tier in cfg.capacity.tiers}


def batch_sizes(cfg: Config, tier: str) -> tuple[int, ...]:
    """The B per source a tier runs at: `capacity.blocks_batch_per_source` for blocks when set, the profile's own
    `train.batch_per_source` for finetune, else `capacity.batch_per_source`."""
    if tier == "finetune":
        return (cfg.train.batch_per_source,)
    blocks_sizes = cfg.capacity.blocks_batch_per_source
    return blocks_sizes if tier == "blocks" and blocks_sizes else cfg.capacity.batch_per_source


def fit_all(
    cfg: Config, data: StudyData, run: Run | None = None, progress: Callable[[str], None] | None = None
) -> tuple[Fits, pd.DataFrame]:
    """The RMs of `capacity.schemes` × seeds for every (tier, B) of the capacity section (reused from the run), and
    a table of the seconds each (tier, B) took (near 0 when reused)."""
    fits: Fits = {}
    seconds = []
    for tier in cfg.capacity.tiers:
        for B in batch_sizes(cfg, tier):
            rung, schemes = tier_config(cfg, tier, B), rung_schemes(cfg, tier)
            if progress is not None:
                progress(f"capacity: tier {tier}, B = {B}: {', '.join(schemes)} × {len(rung.seeds)} seeds")
            start = time.perf_counter()
            if tier == "blocks":
                fits[(tier, B)] = _fit_blocks(rung, data, B, run, progress)
            else:
                fits[(tier, B)] = pipeline.fit(rung, data, schemes, run=run)
            seconds.append({"tier": tier, "B": B, "rms": len(fits[(tier, B)]), "seconds": time.perf_counter() - start})
    return fits, pd.DataFrame(seconds)


def diffs_of(fits: Fits, data: StudyData) -> Diffs:
    """Test reward differences Δ [N] of every RM on every source, per (tier, B)."""
    return {slot: pipeline.reward_diffs(rms, data, "test") for slot, rms in fits.items()}


def _stacked(diffs: dict[RMKey, dict[str, np.ndarray]], scheme: str) -> dict[str, np.ndarray]:
    """{source: Δ [N pairs, S seeds]} of one scheme, seeds in ascending order."""
    keys = sorted((k for k in diffs if k.scheme == scheme), key=lambda k: k.seed)
    if not keys:
        raise RunError(f"no test reward differences of scheme '{scheme}' (have {sorted({k.scheme for k in diffs})})")
    return {s: np.stack([diffs[k][s] for k in keys], axis=1) for s in diffs[keys[0]]}


def ece_floor(x: dict[str, np.ndarray], n_bins: int = 10) -> float:
    """Mean over sources and seeds of `metrics.ece_floor` of Δ [N, S]: what a calibrated model scores on the pairs."""
    return float(
        np.mean([np.mean([metrics.ece_floor(d[:, j], n_bins) for j in range(d.shape[1])]) for d in x.values()])
    )


def pooled_table(cfg: Config, diffs: Diffs, params: dict[str, int], level: float = 0.95) -> pd.DataFrame:
    """One row per (tier, B, scheme ≠ multitask, metric): trainable parameters (`params[tier]`), the pooled paired
    difference scheme − MultiTask (diff, lo, hi, se, p_value), its MDE and, on ECE rows, MultiTask's pooled floor."""
    rows = []
    for (tier, B), by_key in diffs.items():
        base, fitted = _stacked(by_key, "multitask"), {key.scheme for key in by_key}
        for scheme in [s for s in cfg.capacity.schemes if s != "multitask" and s in fitted]:
            other = _stacked(by_key, scheme)
            for metric, fn in METRICS.items():
                out = stats.pooled_paired_bootstrap(other, base, fn, cfg.n_boot, cfg.seeds[0], level)
                row = {"tier": tier, "B": B, "params": params[tier], "scheme": scheme}
                row |= {"metric": metric, "diff": out["diff"], "lo": out["lo"], "hi": out["hi"], "se": out["se"]}
                row |= {"p_value": out["p_value"], "mde": stats.minimum_detectable_effect(out["se"], level)}
                row |= {"n_seeds": out["n_seeds"], "n_pairs": out["n_pairs"]}
                row["floor"] = ece_floor(base) if metric.startswith("ece") else np.nan
                rows.append(row)
    return pd.DataFrame(rows)


def per_source_table(cfg: Config, diffs: Diffs, scheme: str = "more", level: float = 0.95) -> pd.DataFrame:
    """One row per (tier, B, metric, test source): scheme − MultiTask with seeds and pairs resampled (diff, lo, hi,
    p_value) and `p_holm`, Holm-adjusted over the sources of one (tier, B, metric)."""
    rows = []
    for (tier, B), by_key in diffs.items():
        a, b = _stacked(by_key, scheme), _stacked(by_key, "multitask")
        for metric, fn in METRICS.items():
            part = []
            for src in a:
                out = stats.pooled_paired_bootstrap({src: a[src]}, {src: b[src]}, fn, cfg.n_boot, cfg.seeds[0], level)
                part.append({"tier": tier, "B": B, "metric": metric, "test_source": src, "diff": out["diff"]})
                part[-1] |= {"lo": out["lo"], "hi": out["hi"], "p_value": out["p_value"]}
            for row, p in zip(part, stats.holm([r["p_value"] for r in part])):
                row["p_holm"] = float(p)
            rows += part
    return pd.DataFrame(rows)


def lambda_table(fits: Fits, scheme: str = "more") -> pd.DataFrame:
    """One row per (tier, B, seed, source): the mean over training steps of MORE's λ and its per-step sd."""
    rows = []
    for (tier, B), rms in fits.items():
        for key, rm in sorted(rms.items(), key=lambda item: str(item[0])):
            if key.scheme != scheme:
                continue
            lam = np.asarray(rm.history["lam"], dtype=np.float64)
            for i, src in enumerate(rm.history["source_names"]):
                rows.append({"tier": tier, "B": B, "seed": key.seed, "source": src, "K": lam.shape[1]})
                rows[-1] |= {"lambda_mean": float(lam[:, i].mean()), "lambda_step_sd": float(lam[:, i].std(ddof=0))}
    return pd.DataFrame(rows)


def lambda_tilt(lams: pd.DataFrame) -> pd.DataFrame:
    """Per (tier, B, source): the seed mean of MORE's mean λ, its range over seeds, the seed mean of the per-step sd,
    and `same_sign`: whether mean λ − 1/K is non-zero with one sign in every seed (+1 above 1/K, −1 below, 0 mixed)."""
    rows = []
    for (tier, B, src), g in lams.groupby(["tier", "B", "source"], sort=False):
        tilt = g["lambda_mean"].to_numpy() - 1.0 / g["K"].iloc[0]
        signs = set(np.sign(np.round(tilt, 6)).tolist())
        row = {"tier": tier, "B": B, "source": src, "seeds": len(g), "lambda_mean": float(g["lambda_mean"].mean())}
        row |= {"lambda_min": float(g["lambda_mean"].min()), "lambda_max": float(g["lambda_mean"].max())}
        row |= {"lambda_step_sd": float(g["lambda_step_sd"].mean())}
        row["same_sign"] = int(signs.pop()) if len(signs) == 1 else 0
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict(row: Any, metric: str) -> str:
    """The word a CI allows: MORE better/worse only when the CI excludes 0, else 'no difference established'."""
    if row["lo"] <= 0 <= row["hi"]:
        return "no difference established (the CI includes 0)"
    better = (row["hi"] < 0) == LOWER_IS_BETTER[metric]
    return f"MORE {'better' if better else 'worse'} (the CI excludes 0)"


def _interval(row: Any) -> str:
    """'−0.0046 [−0.0174, +0.0033]'."""
    return f"{row['diff']:+.4f} [{row['lo']:+.4f}, {row['hi']:+.4f}]"


def _rung(tier: str, B: int, params: int) -> str:
    """'mlp (148,224 trainable parameters), B = 16'."""
    return f"{tier} ({params:,} trainable parameters), B = {B}"


def verdict_lines(pooled: pd.DataFrame) -> list[str]:
    """One line per rung: MORE − MultiTask ECE-10 and accuracy with CIs, MDE and floor, and the word the CI allows."""
    more = pooled[pooled["scheme"] == "more"]
    lines = []
    for (tier, B), g in more.groupby(["tier", "B"], sort=False):
        ece, acc = (g[g["metric"] == m].iloc[0] for m in ("ece_10", "accuracy"))
        lines.append(
            f"- {_rung(tier, B, int(ece['params']))}: ECE-10 {_interval(ece)} — {_verdict(ece, 'ece_10')}; "
            f"MDE {ece['mde']:.4f}, floor {ece['floor']:.4f}. Accuracy {_interval(acc)} — {_verdict(acc, 'accuracy')}."
        )
    return lines


def headline(pooled: pd.DataFrame) -> str:
    """The verdict first: the smallest capacity at which MORE's pooled ECE-10 is lower than MultiTask's with a CI
    excluding 0, or that no rung measured shows it (and whether any rung shows it higher)."""
    ece = pooled[(pooled["scheme"] == "more") & (pooled["metric"] == "ece_10")].sort_values(["params", "B"])
    n_seeds = int(ece["n_seeds"].iloc[0])
    better, worse = ece[ece["hi"] < 0], ece[ece["lo"] > 0]
    if not better.empty:
        first = better.iloc[0]
        text = (
            f"MORE's calibration advantage appears at {_rung(first['tier'], int(first['B']), int(first['params']))}: "
            f"pooled MORE − MultiTask ECE-10 {_interval(first)} (95% CI over test pairs and {n_seeds} seeds)"
        )
        lower = ece[ece["params"] < first["params"]]
        if not lower.empty:
            text += f"; at smaller capacity ({', '.join(sorted(set(lower['tier'])))}) no CI excludes 0 in MORE's favour"
        return text + "."
    text = (
        f"At no rung measured here ({len(ece)} tier × batch settings, {n_seeds} seeds) is MORE's pooled ECE-10 lower "
        "than MultiTask's with a CI excluding 0"
    )
    if not worse.empty:
        rungs = [_rung(r["tier"], int(r["B"]), int(r["params"])) for _, r in worse.iterrows()]
        text += f"; it is higher at {', '.join(rungs)}"
    return text + "."


def trade_offs(per_source: pd.DataFrame, alpha: float = ALPHA) -> list[str]:
    """Per rung where, Holm-adjusted, one source gains under MORE and another loses (any of ECE-10 and accuracy)."""
    lines = []
    for (tier, B), g in per_source.groupby(["tier", "B"], sort=False):
        sig = g[g["p_holm"] < alpha]
        gains, losses = [], []
        for _, r in sig.iterrows():
            better = (r["diff"] < 0) == LOWER_IS_BETTER[r["metric"]]
            (gains if better else losses).append(f"{r['test_source']} {r['metric']} {_interval(r)}")
        if gains and losses:
            lines.append(
                f"- trade-off at {tier}, B = {B}: MORE gains on {'; '.join(gains)} and loses on {'; '.join(losses)}"
            )
        elif gains or losses:
            lines.append(
                f"- {tier}, B = {B}: MORE {'gains' if gains else 'loses'} on {'; '.join(gains or losses)}, "
                "no source the other way"
            )
    return lines


def tilt_lines(tilt: pd.DataFrame) -> list[str]:
    """Per rung: the sources whose λ tilt keeps one sign in every seed (systematic), or that none does."""
    lines = []
    for (tier, B), g in tilt.groupby(["tier", "B"], sort=False):
        steady, seeds = g[g["same_sign"] != 0], int(g["seeds"].iloc[0])
        sd = f"mean per-step sd {g['lambda_step_sd'].mean():.3f}"
        if steady.empty:
            lines.append(f"- {tier}, B = {B}: no source's λ stays on one side of 1/K in all {seeds} seeds ({sd})")
            continue
        parts = [
            f"{r['source']} {'above' if r['same_sign'] > 0 else 'below'} ({r['lambda_min']:.3f}–{r['lambda_max']:.3f})"
            for _, r in steady.iterrows()
        ]
        lines.append(f"- {tier}, B = {B}: λ tilt of one sign in all {seeds} seeds for {', '.join(parts)} ({sd})")
    return lines


def finding(pooled: pd.DataFrame, per_source: pd.DataFrame, tilt: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The capacity finding as Markdown: headline verdict, one line per rung, trade-offs, then the λ tilt."""
    parts = [headline(pooled), "", "Per rung (MORE − MultiTask, pooled over test sources):", *verdict_lines(pooled)]
    offs = trade_offs(per_source, alpha)
    parts += ["", f"Per source (Holm-adjusted over sources, family-wise {alpha:g}):"]
    parts += offs or ["- no source differs between MORE and MultiTask at any rung after Holm's correction"]
    parts += ["", "MORE's λ (1/K = uniform):", *tilt_lines(tilt)]
    return "\n".join(parts)


def scheme_lambdas(fits: Fits, schemes: Sequence[str] = ("tuned",)) -> pd.DataFrame:
    """One row per (tier, B, scheme, seed, source): the fixed λ a baseline trained with (e.g. the tuned grid point)."""
    rows = []
    for (tier, B), rms in fits.items():
        for key, rm in rms.items():
            if key.scheme in schemes:
                for src, lam in zip(rm.history["source_names"], np.asarray(rm.history["lam"])[0]):
                    rows.append(
                        {
                            "tier": tier,
                            "B": B,
                            "scheme": key.scheme,
                            "seed": key.seed,
                            "source": src,
                            "lambda": float(lam),
                        }
                    )
    return pd.DataFrame(rows)
