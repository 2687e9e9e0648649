"""Interactive explorer: refit the reward head with chosen source weights λ, or on a chosen data mix.

The λ explorer trains the feature-tier head on Σ_i λ_i L_i with λ held fixed (`train_head` scheme "fixed", paper
Eq. 8 without MORE's update) and shows accuracy and ECE per test source, a reliability diagram and the reward-difference
distribution. Presets: uniform (= MultiTask), size-proportional (plain mixing: λ_i ∝ N_i, the full training sets'
sizes as the study's `sizeprop`, even where the explorer's cap makes its own sets equal), MORE's learned λ, whose
trajectory [steps, K] is replayed step by step, and the study's `tuned` and `famo` λ when the run has them
(`explore.reference`). The mix explorer picks pairs per source and which sources take part, then refits MultiTask
and MORE on that mix side by side.
Every fit carries bootstrap replicates over its test pairs (`explore.intervals`: 95% CIs of accuracy and ECE per
source and of their means, paired across fits so `change` gives a fit's difference to uniform λ with a CI) and the
ECE noise floor of each test source at its N.
λ convention: `Explorer.set_lambda(lam)` takes weights on the simplex (≥ 0, summing to 1 within 1e-5) and raises
ConfigError otherwise; `normalise=True` divides raw ≥ 0 weights by their sum (the sliders use it).
All-zero λ → ConfigError.
Refits use `ExploreConfig.head_epochs` / `batch_per_source` (fewer, larger steps than the study); each update's measured
time is shown in the status line (measured update times: docs/explorer.md).
Layers: `Explorer` is pure state (no widgets); `ExplorerUI` wraps it in ipywidgets and plotly FigureWidgets updated in
place; `lambda_figure` / `mix_figure` draw the same panels as plain go.Figure for papermill and static viewers.
On the fine-tuning tier the heads are refitted on the pooled features of a fine-tuned RM's backbone
(`Explorer.from_study`), so the sliders stay live after a GPU run.
Checked in tests/test_explore.py (equal to a direct train_head + metrics.all_metrics) and tests/test_browser.py
(JupyterLab in headless chromium: moving a slider changes the shown metrics).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from morelib.backbone.features import PairFeatures
from morelib.core.config import MIX_SCHEMES, Config, ExploreConfig, HeadConfig, MoreConfig, TrainConfig
from morelib.core.errors import ConfigError, RunError
from morelib.core.runs import atomic_write
from morelib.evaluation import metrics
from morelib.explore import intervals
from morelib.explore.reference import StudyRefs, no_study, study_refs
from morelib.study import pipeline
from morelib.train import reward_head
from morelib.train.reward_models import RewardModel, RMKey
from morelib.weighting.baselines import simplex_weights

SAVED_CSV = "explore_saved.csv"


@dataclass
class Fit:
    """One refit: scheme, λ [K] (fixed, or MORE's final), training pairs per source, and its test-set results.

    metrics[test_source] = `metrics.all_metrics` with the explorer's bin count; diffs[test_source] = Δ [N];
    reliability[test_source] = `metrics.reliability`, pooled_reliability over all test pairs; lam_history
    [steps, K]; seconds = refit + evaluation time; boot[key] = bootstrap replicates [n_boot, S] of "accuracy" and
    "ece_<B>" over the S test sources (`intervals.metric_replicates`); floor[test_source] = {"floor", "p95"}.
    """

    scheme: str
    lam: np.ndarray
    pairs: dict[str, int]
    metrics: dict[str, dict[str, float]]
    diffs: dict[str, np.ndarray]
    reliability: dict[str, dict[str, np.ndarray]]
    pooled_reliability: dict[str, np.ndarray]
    lam_history: np.ndarray
    seconds: float
    boot: dict[str, np.ndarray]
    floor: dict[str, dict[str, float]]

    def mean(self, key: str) -> float:
        """Unweighted mean of one metric over the test sources."""
        return float(np.mean([m[key] for m in self.metrics.values()]))

    def ci(self, key: str) -> dict[str, tuple[float, float]]:
        """Per test source, the 95% bootstrap CI (over its test pairs) of "accuracy" or "ece_<B>"."""
        lo, hi = intervals.percentile_ci(self.boot[key])
        return {s: (float(a), float(b)) for s, a, b in zip(self.metrics, lo, hi)}

    def mean_ci(self, key: str) -> tuple[float, float]:
        """The 95% bootstrap CI of the mean over test sources (each source's pairs resampled on their own)."""
        lo, hi = intervals.percentile_ci(self.boot[key].mean(axis=1))
        return float(lo), float(hi)


def change(fit: Fit, base: Fit, key: str) -> tuple[float, float, float]:
    """(diff, lo, hi): mean `key` over test sources of `fit` minus `base`, paired 95% CI (same resampled pairs)."""
    return intervals.mean_change(fit.boot[key], base.boot[key], fit.mean(key), base.mean(key))


def explore_configs(tcfg: TrainConfig, hcfg: HeadConfig, ecfg: ExploreConfig) -> tuple[TrainConfig, HeadConfig]:
    """The study's training and head settings with the explorer's faster head schedule (batch per source, epochs)."""
    return (
        dataclasses.replace(tcfg, batch_per_source=ecfg.batch_per_source),
        dataclasses.replace(hcfg, epochs=ecfg.head_epochs),
    )


def _seeded_orders(by_source: Mapping[str, PairFeatures], seed: int) -> dict[str, torch.Tensor]:
    """Per source, the seeded order in which its pairs enter a mix (so smaller mixes are nested in larger ones)."""
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randperm(len(pf), generator=gen) for n, pf in by_source.items()}


def capped_subsets(sizes: Mapping[str, int], ecfg: ExploreConfig) -> dict[str, torch.Tensor | None]:
    """Per source, the seeded pairs kept under `train_pairs_per_source` (None: within the cap, all kept as given)."""
    cap, gen = ecfg.train_pairs_per_source, torch.Generator().manual_seed(ecfg.seed)
    return {n: None if size <= cap else torch.randperm(size, generator=gen)[:cap] for n, size in sizes.items()}


def _finetuned_features(
    data: pipeline.StudyData, cfg: Config, run: Any, rm: RewardModel | None
) -> tuple[dict[str, PairFeatures], dict[str, PairFeatures]]:
    """(train, test) features per source from a fine-tuned RM's backbone; only the explorer's capped train pairs."""
    if rm is None or rm.uses_features:  # a head has no backbone of its own: use this run's fine-tuned MORE RM
        rm = pipeline.fit(cfg, data, ["more"], seeds=[cfg.seeds[0]], run=run)[RMKey("more", seed=cfg.seeds[0])]
    picks = capped_subsets({s: len(data.pairs[s]["train"]) for s in data.sources}, cfg.explore)
    keep = {s: {"train": idx.tolist()} for s, idx in picks.items() if idx is not None}
    feats = pipeline.rm_features(cfg, data, rm, run, ("train", "test"), keep)
    return {s: f["train"] for s, f in feats.items()}, {s: f["test"] for s, f in feats.items()}


class Explorer:
    """Pure explorer state: the training/test features, the current λ fit and the current mix fits (no widgets)."""

    def __init__(
        self,
        train_by_source: Mapping[str, PairFeatures],
        test_by_source: Mapping[str, PairFeatures],
        tcfg: TrainConfig,
        hcfg: HeadConfig,
        ecfg: ExploreConfig | None = None,
        out_dir: str | Path | None = None,
        more_history: torch.Tensor | np.ndarray | None = None,
        more: MoreConfig | None = None,
        study: StudyRefs | None = None,
    ) -> None:
        """Cap training sources at ecfg.train_pairs_per_source (seeded subset if larger); `out_dir` holds saved choices.

        more_history [steps, K]: MORE's λ trajectory from an earlier fit (e.g. notebook 02's head); None → fitted here.
        study: the study's ghost markers and tuned/famo presets (`reference.study_refs`); None → none (named missing).
        """
        if not train_by_source or not test_by_source:
            raise ConfigError("Explorer needs at least one training source and one test source")
        self.ecfg = ecfg or ExploreConfig()
        self.more = more or MoreConfig()
        self.tcfg, self.hcfg = explore_configs(tcfg, hcfg, self.ecfg)
        self.names = list(train_by_source)
        self.test = dict(test_by_source)
        self.sizes = {n: len(pf) for n, pf in train_by_source.items()}  # before the cap: the size preset's N_i
        self.study = study or no_study()
        self._counts = intervals.resample_counts(
            [len(pf) for pf in self.test.values()], self.ecfg.n_boot, self.ecfg.seed
        )
        self._uniform: Fit | None = None
        picks = capped_subsets({n: len(pf) for n, pf in train_by_source.items()}, self.ecfg)
        # a source within the cap is used as given, so a λ fit equals train_head on the caller's features
        self.train = {n: pf if picks[n] is None else pf.subset(picks[n]) for n, pf in train_by_source.items()}
        self.available = {n: len(pf) for n, pf in self.train.items()}
        self._order = _seeded_orders(self.train, self.ecfg.seed + 1)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._more_history = None if more_history is None else self._check_history(more_history)
        self.current: Fit | None = None
        self.mix: dict[str, Fit] = {}

    @classmethod
    def from_study(
        cls,
        data: pipeline.StudyData,
        cfg: Config,
        run: Any = None,
        more_head: RewardModel | None = None,
        backbone: RewardModel | None = None,
        summary: pd.DataFrame | None = None,
        heads: Mapping[RMKey, RewardModel] | None = None,
    ) -> Explorer:
        """An explorer over a `pipeline.StudyData` (train and test splits); MORE's trajectory from `more_head` if given.

        The study's ghost markers come from `summary` (notebook 02's `tables.summary`), its tuned/famo presets from
        `heads` (their first seed); either falls back to the run folder's notebook-02 metrics when not given.

        Fine-tuning tier (no frozen features in `data`): heads are refitted on the pooled last-layer features of a
        fine-tuned backbone — `backbone`, else `more_head`, else this run's MORE RM of the first seed (reused from the
        run, trained if absent) — extracted through the feature cache (`pipeline.rm_features`).
        """
        if data.features:
            tr = {s: data.features[s]["train"] for s in data.sources}
            te = {s: data.features[s]["test"] for s in data.sources}
        else:
            tr, te = _finetuned_features(data, cfg, run, backbone or more_head)
        history = None
        if more_head is not None:
            if list(more_head.history.get("source_names", [])) != list(tr):
                raise ConfigError(f"more_head was trained on {more_head.history.get('source_names')}, not {list(tr)}")
            history = more_head.history["lam"]
        root = run.root if run is not None else None
        refs = study_refs(list(tr), f"ece_{cfg.explore.reliability_bins}", cfg.seeds[0], summary, heads, root)
        return cls(
            tr,
            te,
            cfg.train,
            cfg.head,
            cfg.explore,
            out_dir=run.dir if run is not None else None,
            more_history=history,
            more=cfg.more,
            study=refs,
        )

    def _check_history(self, history: torch.Tensor | np.ndarray) -> np.ndarray:
        """MORE's λ trajectory as float64 [steps, K], checked against the sources."""
        h = np.asarray(history.detach().cpu() if hasattr(history, "detach") else history, dtype=np.float64)
        if h.ndim != 2 or h.shape[1] != len(self.names) or h.shape[0] == 0:
            raise ConfigError(f"MORE λ history must have shape [steps≥1, {len(self.names)}], got {h.shape}")
        return h

    @property
    def settings(self) -> str:
        """The refit schedule, for the status line."""
        t, h = self.tcfg, self.hcfg
        return f"head_epochs={h.epochs}, batch_per_source={t.batch_per_source}, head_lr={h.lr:g}"

    def fit(self, train_by_source: Mapping[str, PairFeatures], scheme: str, lam: np.ndarray | None = None) -> Fit:
        """Train one head (scheme "fixed" with λ, "multitask" or "more") and evaluate it on every test source."""
        start = time.perf_counter()
        largest = max(len(pf) for pf in train_by_source.values())
        tcfg = dataclasses.replace(self.tcfg, batch_per_source=min(self.tcfg.batch_per_source, largest))
        head = reward_head.train_head(
            dict(train_by_source),
            scheme,
            tcfg,
            self.hcfg,
            self.ecfg.seed,
            lam=None if lam is None else lam.tolist(),
            more=self.more,
        )
        nb = self.ecfg.reliability_bins
        diffs = {s: head.reward_diff(pf).double().numpy() for s, pf in self.test.items()}
        history = head.history["lam"].double().numpy()
        return Fit(
            boot=intervals.metric_replicates(diffs, self._counts, nb),
            floor=intervals.floor_band(diffs, nb, self.ecfg.seed),
            scheme=scheme,
            lam=history[-1] if lam is None else lam,
            pairs={n: len(pf) for n, pf in train_by_source.items()},
            metrics={s: metrics.all_metrics(d, bins=(nb,)) for s, d in diffs.items()},
            diffs=diffs,
            reliability={s: metrics.reliability(d, nb) for s, d in diffs.items()},
            pooled_reliability=metrics.reliability(np.concatenate(list(diffs.values())), nb),
            lam_history=history,
            seconds=time.perf_counter() - start,
        )

    def set_lambda(self, lam: Sequence[float], normalise: bool = False) -> Fit:
        """Refit with fixed source weights λ [K] (see the module docstring for the simplex rule); returns the fit."""
        weights = simplex_weights(lam, self.names, normalise)
        uniform = np.allclose(weights, 1.0 / len(self.names), rtol=0, atol=1e-12)
        self.current = self.uniform_fit() if uniform else self.fit(self.train, "fixed", weights)
        return self.current

    def metrics(self, which: str = "lambda") -> pd.DataFrame:
        """Metrics of the current λ fit ("lambda") or of the mix fits ("mix"): one row per (scheme, test source)."""
        fits = [self.current] if which == "lambda" else [self.mix[s] for s in MIX_SCHEMES if s in self.mix]
        if not fits or fits[0] is None:
            raise ConfigError(f"no {which} fit yet: call {'set_lambda' if which == 'lambda' else 'set_mix'} first")
        rows = [{"scheme": f.scheme, "test_source": s, **m} for f in fits for s, m in f.metrics.items()]
        return pd.DataFrame(rows)

    def more_trajectory(self) -> np.ndarray:
        """MORE's λ per training step [steps, K] (given at construction, else fitted once on all training pairs)."""
        if self._more_history is None:
            self._more_history = self.fit(self.train, "more").lam_history
        return self._more_history

    def presets(self) -> dict[str, np.ndarray]:
        """Named λ [K]: uniform (MultiTask), size (plain mixing, λ_i ∝ full training sets' N_i), more (MORE's final λ)
        and the study's tuned / famo λ where the run has them (`self.study.missing` says why one is absent)."""
        sizes = np.array([self.sizes[n] for n in self.names], dtype=np.float64)
        return {
            "uniform": np.full(len(self.names), 1.0 / len(self.names)),
            "size": sizes / sizes.sum(),
            "more": self.more_lambda(-1),
            **self.study.presets,
        }

    def size_is_uniform(self) -> bool:
        """Whether size-proportional λ equals uniform λ (every source has the same number of training pairs)."""
        return len(set(self.sizes.values())) == 1

    def uniform_fit(self) -> Fit:
        """The uniform-λ fit (= MultiTask on the explorer's schedule) every λ fit is compared with; fitted once."""
        if self._uniform is None:
            self._uniform = self.fit(self.train, "fixed", np.full(len(self.names), 1.0 / len(self.names)))
        return self._uniform

    def more_step_of(self, lam: Sequence[float], atol: float = 1e-5) -> int | None:
        """The last MORE step whose λ equals `lam` within `atol` (None: λ is not on MORE's trajectory)."""
        traj = self.more_trajectory()
        traj = traj / traj.sum(axis=1, keepdims=True)
        hits = np.flatnonzero(np.all(np.abs(traj - np.asarray(lam, dtype=np.float64)) <= atol, axis=1))
        return int(hits[-1]) if hits.size else None

    def more_lambda(self, step: int) -> np.ndarray:
        """MORE's λ [K] at one training step (negative counts from the end), renormalised against float32 rounding."""
        traj = self.more_trajectory()
        if not -len(traj) <= step < len(traj):
            raise ConfigError(f"MORE step {step} is outside its {len(traj)} recorded steps")
        return traj[step] / traj[step].sum()

    def mix_pairs(
        self, pairs: Mapping[str, int] | Sequence[int], include: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Checked pairs per included source (0 or excluded sources are dropped); raises on an empty mix."""
        counts = dict(pairs) if isinstance(pairs, Mapping) else dict(zip(self.names, pairs, strict=True))
        unknown = sorted(set(counts) - set(self.names)) + sorted(set(include or ()) - set(self.names))
        if unknown:
            raise ConfigError(f"unknown source(s) {unknown} in the mix; sources: {self.names}")
        keep = {}
        for name in self.names if include is None else [n for n in self.names if n in include]:
            n = int(counts.get(name, self.available[name]))
            if not 0 <= n <= self.available[name]:
                raise ConfigError(f"mix asks {n} pairs of '{name}', which has 0…{self.available[name]}")
            if n:
                keep[name] = n
        if not keep:
            raise ConfigError("the mix is empty: include at least one source with more than 0 pairs")
        return keep

    def set_mix(self, pairs: Mapping[str, int] | Sequence[int], include: Sequence[str] | None = None) -> dict[str, Fit]:
        """Refit MultiTask and MORE on `pairs` per source (n in a seeded order; all → as given); returns both fits."""
        keep = self.mix_pairs(pairs, include)
        subset = {
            n: self.train[n] if k == self.available[n] else self.train[n].subset(self._order[n][:k])
            for n, k in keep.items()
        }
        self.mix = {scheme: self.fit(subset, scheme) for scheme in MIX_SCHEMES}
        return self.mix

    def save(self, which: str = "lambda", note: str = "") -> Path:
        """Append the current λ fit (or both mix fits) with its metrics to `<out_dir>/tables/explore_saved.csv`."""
        if self.out_dir is None:
            raise RunError("this Explorer has no out_dir (run folder) to save into; pass out_dir= or run=")
        self.metrics(which)
        fits = [self.current] if which == "lambda" else [self.mix[s] for s in MIX_SCHEMES]
        table = self.load_saved()
        save_id = int(table["save_id"].max()) + 1 if len(table) else 0
        rows = pd.DataFrame([self._row(f, which, save_id, note) for f in fits])
        table = rows if table.empty else pd.concat([table, rows], ignore_index=True)
        text = table.to_csv(index=False)
        return atomic_write(self.saved_path(), lambda fh: fh.write(text))

    def _row(self, f: Fit, which: str, save_id: int, note: str) -> dict[str, Any]:
        """One saved CSV row: what was chosen (λ, pairs) and the metrics per test source and on average."""
        nb = self.ecfg.reliability_bins
        row: dict[str, Any] = {
            "save_id": save_id,
            "saved_at": datetime.now().isoformat(timespec="seconds"),
            "kind": which,
            "scheme": f.scheme,
            "note": note,
            "lam": json.dumps(dict(zip(f.pairs, np.round(f.lam, 6).tolist()))),
            "pairs": json.dumps(f.pairs),
            "settings": self.settings,
            "accuracy_mean": f.mean("accuracy"),
            f"ece_{nb}_mean": f.mean(f"ece_{nb}"),
        }
        for s, m in f.metrics.items():
            row[f"accuracy:{s}"], row[f"ece_{nb}:{s}"] = m["accuracy"], m[f"ece_{nb}"]
        return row

    def saved_path(self) -> Path:
        """Where saved choices go: `<out_dir>/tables/explore_saved.csv`."""
        if self.out_dir is None:
            raise RunError("this Explorer has no out_dir (run folder); saved choices live in a run folder")
        return self.out_dir / "tables" / SAVED_CSV

    def load_saved(self) -> pd.DataFrame:
        """Every saved row so far (empty table when nothing was saved)."""
        path = self.saved_path()
        return pd.read_csv(path) if path.exists() else pd.DataFrame()

    def restore(self, save_id: int) -> Fit | dict[str, Fit]:
        """Refit a saved choice: its λ (kind "lambda") or its mix (kind "mix"); returns the new fit(s)."""
        table = self.load_saved()
        rows = table[table["save_id"] == save_id] if len(table) else table
        if rows.empty:
            raise ConfigError(f"no saved row with save_id {save_id} in {self.saved_path()}")
        row = rows.iloc[0]
        if row["kind"] == "lambda":
            lam = json.loads(row["lam"])
            return self.set_lambda([lam[n] for n in self.names], normalise=True)
        return self.set_mix(json.loads(row["pairs"]), include=list(json.loads(row["pairs"])))
