"""The study the notebooks run (paper §3–5.3): load sources, extract features once, fit RMs once per run, score them.

Notebooks call only these functions, so each reads like a section of the paper. `prepare` loads every configured
source (a missing one — no files for it here, e.g. WebGPT offline — is reported on the terminal and in
`StudyData.missing`, never faked; a source whose file is there but unreadable stops the run naming file and line) and
extracts features through the content-keyed cache in `outputs/cache`. `fit` trains the reward heads of a scheme for
every seed and saves them under `<run>/heads/<config fingerprint>/`, so later notebooks of the same run reuse them
instead of retraining, and lists them in the notebook's manifest (`head_files`: what an export may take).
`metric_table` gives a tidy table (one row per RM, seed and test source). The Single-Top scheme of Table 3 is the
single-source RM with the best *calibration-split* accuracy on each test source (NOTE(paper): the paper picks it on
test). Checked in tests/test_study.py against direct calls to train/metrics on the synthetic benchmark.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd

from morelib.backbone import features
from morelib.backbone.features import PairFeatures
from morelib.core import status
from morelib.core.config import TRAINED_SCHEMES, Config
from morelib.core.errors import DataError, MissingDataError, RunError
from morelib.core.runs import Run
from morelib.data import paper, sampling, splits
from morelib.data.sources import Pair
from morelib.evaluation import metrics, temperature
from morelib.synthetic import synthetic
from morelib.train import finetune, mlp_head, reward_head
from morelib.train.reward_models import FinetunedRM, HeadRM, RewardModel, RMKey

log = logging.getLogger(__name__)
SIDES = ("train", "calib", "test")
SYNTHETIC_SEED_OFFSET = 10_007


@dataclass
class StudyData:
    """Pairs and features of every available source, plus what is missing and why."""

    pairs: dict[str, dict[str, list[Pair]]] = field(default_factory=dict)
    features: dict[str, dict[str, PairFeatures]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    reports: dict[str, splits.SplitReport] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        """Available sources, in config order."""
        return list(self.features or self.pairs)


def prepare(cfg: Config, run: Run | None = None) -> StudyData:
    """Load every configured source's train/calib/test pairs and their backbone features (cached by content).

    The split uses the first seed for every seed (seeds vary the RM training, not the test pairs), so paired
    comparisons across seeds score the same pairs.
    """
    data = StudyData()
    cache = run.cache_dir if run is not None else Path(cfg.output_root) / "cache"
    for spec in cfg.data.sources:
        data.labels[spec.name] = spec.label
        report = splits.SplitReport()
        try:
            data.pairs[spec.name] = splits.load_source_splits(spec, cfg.data, cfg.seeds[0], report)
        except MissingDataError as err:  # no files there; a broken file raises DataError and stops the run
            data.missing[spec.name] = str(err)
            log.warning("source %s missing: %s", spec.name, err)
            status.report(f"source {spec.name} missing, left out of this run: {err}")
            continue
        data.counts[spec.name] = report.to_dict()
        data.reports[spec.name] = report
    if cfg.train.tier == "features":
        todo = features.uncached([sides[s] for sides in data.pairs.values() for s in SIDES], cfg.model, cache)
        with status.overall("features", todo):
            for name, sides in data.pairs.items():
                log.info(
                    "features of %s (%s pairs) from %s",
                    name,
                    "/".join(str(len(sides[s])) for s in SIDES),
                    cfg.model.name,
                )
                share = cfg.head.share_prompt
                data.features[name] = {
                    s: features.extract(sides[s], cfg.model, cache, share_prompt=share) for s in SIDES
                }
    if not data.sources:
        raise DataError(f"no configured source could be loaded: {data.missing}")
    if run is not None:
        run.manifest_extra["data"] = {"counts": data.counts, "missing": data.missing}
    return data


def unavailable(data: StudyData, cfg: Config) -> dict[str, str]:
    """The paper's sources (Table 4) not measured in this run, with why: missing data or not configured."""
    out = dict(data.missing)
    configured = set(cfg.source_names())
    for name in paper.table4().index:
        if name not in configured:
            out[name] = f"not configured in profile '{cfg.profile}'"
    return out


def fingerprint(cfg: Config) -> str:
    """12-hex digest of everything a trained head depends on (data, model, both tiers' training and MORE settings)."""
    blob = json.dumps(
        {k: cfg.to_dict()[k] for k in ("data", "model", "train", "head", "finetune", "more")}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def head_file(folder: Path, key: RMKey) -> Path:
    """File (feature tier) or folder (finetune tier) of the RM `key` inside a run's heads folder."""
    return folder / quote(str(key), safe="@+")


HeadFolders = tuple[Path, Path]  # (the run's RMs of a config, where this notebook saves new ones): equal but in a rerun


def head_folders(run: Run, cfg: Config) -> HeadFolders:
    """Where the run keeps its RMs of `cfg`, and where this notebook saves those it fits: the same folder, except in a
    rerun of a finished notebook, which saves under `<run>/interactive-<stamp>/heads/` (the run's own stay as they
    are)."""
    return run.heads_dir / fingerprint(cfg), run.save_heads_dir / fingerprint(cfg)


def kept_head(folders: HeadFolders, key: RMKey, finetuned: bool) -> Path:
    """The RM `key`'s .pt file (or fine-tune folder when `finetuned`): the run's copy when it is complete there, else
    its place in this notebook's save folder."""
    own, new = (
        head_file(folder, key) if finetuned else head_file(folder, key).with_suffix(".pt") for folder in folders
    )
    return own if (own / finetune.MODEL_DIR if finetuned else own).exists() else new


def seed_pairs(pairs: list[Pair], cfg: Config, seed: int, source: str) -> list[Pair]:
    """The training pairs of `source` that seed `seed` trains on (`train.seed_resample`, `train.seed_subsample`; see
    sampling.seed_indices)."""
    t = cfg.train
    return [
        pairs[i] for i in sampling.seed_indices(len(pairs), t.seed_subsample, seed, source, t.seed_resample).tolist()
    ]


def available_train(data: StudyData, source: str) -> int:
    """Training pairs of `source` on its split before any `train_pairs` cap (the split report's `available`), else the
    pairs its features hold (synthetic data): the n_i of the `sizeprop` baseline."""
    return int(data.counts.get(source, {}).get("available", {}).get("train", len(data.features[source]["train"])))


def _fit_one(cfg: Config, data: StudyData, key: RMKey, sources: list[str], folders: HeadFolders | None) -> RewardModel:
    """Load the RM `key` if it was fitted earlier in this run (`folders`), else train (and save) it."""
    if cfg.train.tier == "finetune" and data.pairs:  # feature-only data (the synthetic benchmark) trains heads
        return _finetune_one(cfg, data, key, sources, folders)
    scheme, seed = key.scheme, key.seed
    path = kept_head(folders, key, False) if folders is not None else None
    if path is not None and path.exists():
        return HeadRM(mlp_head.load_head(path))
    by_source = {
        s: data.features[s]["train"].subset(
            sampling.seed_indices(
                len(data.features[s]["train"]), cfg.train.seed_subsample, seed, s, cfg.train.seed_resample
            )
        )
        for s in sources
    }
    needs_calib = scheme == "tuned" or (cfg.head.kind == "mlp" and scheme != "raw")  # λ / the mlp tier's epoch
    calib = {s: data.features[s]["calib"] for s in sources} if needs_calib else None
    sizes = {s: available_train(data, s) for s in sources} if scheme == "sizeprop" else None
    if cfg.head.kind == "mlp":
        head = mlp_head.train_mlp(by_source, scheme, cfg.train, cfg.head, seed, calib, more=cfg.more, sizes=sizes)
    else:
        head = reward_head.train_head(
            by_source, scheme, cfg.train, cfg.head, seed, calib=calib, more=cfg.more, sizes=sizes
        )
    if path is not None:
        head.save(path)
    return HeadRM(head)


def rm_features(
    cfg: Config,
    data: StudyData,
    rm: FinetunedRM,
    run: Run | None,
    sides: Sequence[str] = ("train", "test"),
    keep: dict[str, dict[str, Sequence[int]]] | None = None,
) -> dict[str, dict[str, PairFeatures]]:
    """{source: {side: PairFeatures}} of the pooled last-layer features of a fine-tuned RM's backbone.

    Extracted through the content-keyed feature cache: the cache key holds the RM folder and `model_identity` (config +
    a weight sample), so two fine-tuned RMs never share features. `keep[source][side]` picks a subset of pairs first.
    """
    model_cfg = dataclasses.replace(cfg.model, name=str(rm.path))
    cache = run.cache_dir if run is not None else Path(cfg.output_root) / "cache"
    out: dict[str, dict[str, PairFeatures]] = {}
    for name in data.sources:
        out[name] = {}
        for side in sides:
            pairs = data.pairs[name][side]
            idx = (keep or {}).get(name, {}).get(side)
            picked = pairs if idx is None else [pairs[i] for i in idx]
            out[name][side] = features.extract(picked, model_cfg, cache, share_prompt=cfg.head.share_prompt)
    return out


def finetune_history(log_file: Path) -> dict[str, Any]:
    """λ and per-source loss logs [logs, K] from morelib.train.finetune's `more_log.jsonl` (empty dict if absent)."""
    if not log_file.exists():
        return {}
    rows = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if any(k.startswith("lam/") for k in r)]
    if not rows:
        return {}
    names = [k[4:] for k in rows[0] if k.startswith("lam/")]
    return {
        "lam": np.array([[r[f"lam/{n}"] for n in names] for r in rows]),
        "loss": np.array([[r[f"loss/{n}"] for n in names] for r in rows]),
        "step": np.array([r["step"] for r in rows]),
        "source_names": names,
    }


def _finetune_one(
    cfg: Config, data: StudyData, key: RMKey, sources: list[str], folders: HeadFolders | None
) -> FinetunedRM:
    """Full fine-tuning of one RM through morelib.train.finetune (resumed if interrupted, reused if finished), or the
    untrained model for `raw`."""
    scheme, seed = key.scheme, key.seed
    if scheme == "raw":
        return FinetunedRM(cfg.model.name, cfg.model)
    if folders is None:
        raise RunError("the finetune tier needs a run folder for its checkpoints: pass run=")
    out = kept_head(folders, key, True)
    final = out / finetune.MODEL_DIR
    if not final.exists():
        final = finetune.finetune(
            cfg,
            {s: seed_pairs(data.pairs[s]["train"], cfg, seed, s) for s in sources},
            scheme,
            out,
            resume=True,
            seed=seed,
        )
    return FinetunedRM(final, cfg.model, finetune_history(out / finetune.LOG_FILE))


def single_config(cfg: Config, K: int) -> Config:
    """The config a single-source RM trains with beside K-source RMs: batch = `train.single_batch(cfg.train, K)`."""
    return dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, batch_per_source=reward_head.single_batch(cfg.train, K))
    )


def fit(
    cfg: Config,
    data: StudyData,
    schemes: Sequence[str],
    seeds: Sequence[int] | None = None,
    run: Run | None = None,
    sources: Sequence[str] | None = None,
) -> dict[RMKey, RewardModel]:
    """Fit (or reload from the run) every RM of `schemes` × `seeds` on `sources` (default: all available).

    `single` fits one RM per source; `top` needs the singles (it is chosen at evaluation). Keys: `rms.RMKey`;
    a source subset other than all available sources is part of the key (`more@helpful+harmless/seed0`).
    """
    seeds = tuple(cfg.seeds if seeds is None else seeds)
    srcs = list(data.sources if sources is None else sources)
    unknown = [s for s in srcs if s not in data.sources]
    if unknown:
        raise DataError(
            f"sources {unknown} are not available (available: {data.sources}; missing: {list(data.missing)})"
        )
    subset = None if srcs == data.sources else srcs
    folders = head_folders(run, cfg) if run is not None else None
    heads: dict[RMKey, RewardModel] = {}
    for scheme in schemes:
        if scheme not in TRAINED_SCHEMES + ("top",):
            raise RunError(f"unknown scheme '{scheme}' (valid: {', '.join(TRAINED_SCHEMES + ('top',))})")
        for seed in seeds:
            if scheme in ("single", "top"):
                one = single_config(cfg, len(srcs))
                for s in srcs:
                    key = RMKey("single", source=s, seed=seed)
                    heads[key] = _fit_one(one, data, key, [s], folders)
            else:
                key = RMKey(scheme, subset=subset, seed=seed)
                heads[key] = _fit_one(cfg, data, key, srcs, folders)
    if run is not None:  # each head's final full-batch gradient norm: how far from its optimum the fit stopped
        run.manifest_extra.setdefault("heads", {}).update(
            {str(k): {"grad_norm": h.meta.get("grad_norm")} for k, h in heads.items()}
        )
        record_head_files(run, [kept_head(folders, key, cfg.train.tier == "finetune") for key in heads])
    return heads


def saved_head(folder: Path, key: RMKey, cfg: Config) -> Path:
    """Where `_fit_one` keeps the RM `key` in a run's heads folder: a .pt file (feature tier) or a folder."""
    path = head_file(folder, key)
    return path if cfg.train.tier == "finetune" else path.with_suffix(".pt")


def record_head_files(run: Run, paths: Sequence[Path]) -> None:
    """Add the saved RMs this notebook used to its manifest's `head_files` (paths under the run folder), so an export
    offers exactly the RMs the run's notebooks evaluated."""
    have = set(run.manifest_extra.get("head_files", []))
    have |= {str(p.relative_to(run.root)) for p in paths if p.exists() and p.is_relative_to(run.root)}
    run.manifest_extra["head_files"] = sorted(have)


def load_heads(run: Run, schemes: Sequence[str] | None = None) -> dict[RMKey, RewardModel]:
    """The RMs fitted earlier in this run under its current config, optionally only those of `schemes`."""
    folders = head_folders(run, run.cfg)
    if not any(folder.is_dir() for folder in folders):
        raise RunError(f"no reward models fitted in {run.root} for this config yet: run notebook 02 first")
    paths = [path for folder in dict.fromkeys(folders) if folder.is_dir() for path in sorted(folder.iterdir())]
    heads: dict[RMKey, RewardModel] = {}
    for path in paths:
        key = RMKey.parse(unquote(path.name[:-3] if path.suffix == ".pt" else path.name))
        if key not in heads and (schemes is None or key.scheme in schemes):
            heads[key] = (
                HeadRM(mlp_head.load_head(path))
                if path.suffix == ".pt"
                else _finetune_one(run.cfg, StudyData(), key, [], folders)
            )
    return heads


def reward_diffs(
    heads: dict[RMKey, RewardModel], data: StudyData, split: str = "test", sources: Sequence[str] | None = None
) -> dict[RMKey, dict[str, np.ndarray]]:
    """Reward differences r(chosen) − r(rejected) [N] of every RM on every source's `split`: {key: {source: Δ}}."""
    srcs = list(data.sources if sources is None else sources)
    return {key: {s: rm.reward_diff(*_split_of(data, s, split)) for s in srcs} for key, rm in heads.items()}


def _split_of(data: StudyData, source: str, split: str) -> tuple[list[Pair] | None, PairFeatures | None]:
    """(pairs, features) of one source's split; None for what `data` does not hold (features on the finetune tier)."""
    if source not in data.pairs and source not in data.features:
        raise DataError(f"source '{source}' is not loaded (available: {data.sources}; missing: {list(data.missing)})")
    pairs = data.pairs[source][split] if source in data.pairs else None
    return pairs, data.features[source][split] if source in data.features else None


def select_top(heads: dict[RMKey, RewardModel], data: StudyData) -> dict[tuple[int, str], str]:
    """For each (seed, test source): the single-source RM's training source with the best calib accuracy."""
    calib = reward_diffs({k: h for k, h in heads.items() if k.scheme == "single"}, data, "calib")
    best: dict[tuple[int, str], tuple[float, str]] = {}
    for key, by_src in calib.items():
        for test_src, diff in by_src.items():
            acc = metrics.accuracy(diff)
            slot = (key.seed, test_src)
            if slot not in best or acc > best[slot][0]:
                best[slot] = (acc, key.source)
    if not best:
        raise RunError("the 'top' scheme needs single-source RMs: fit(..., schemes=['single']) first")
    return {slot: src for slot, (_, src) in best.items()}


def scheme_diffs(
    heads: dict[RMKey, RewardModel], data: StudyData, split: str = "test", temperature_scaled: bool = False
) -> dict[RMKey, dict[str, np.ndarray]]:
    """Test reward differences keyed like the heads, plus `top/seed<k>` (Single-Top); `<key>+T` when
    temperature-scaled."""
    diffs = reward_diffs(heads, data, split)
    if any(k.scheme == "single" for k in heads):
        for (seed, test_src), src in select_top(heads, data).items():
            diffs.setdefault(RMKey("top", seed=seed), {})[test_src] = diffs[RMKey("single", source=src, seed=seed)][
                test_src
            ]
    if not temperature_scaled:
        return diffs
    temps = temperatures(heads, data)
    top = select_top(heads, data) if any(k.name == "top" for k in diffs) else {}
    scaled = {}
    for key, by_src in diffs.items():
        if key.scheme == "raw":
            continue  # NOTE(paper): the untrained RM is a reference point, not a model one would recalibrate
        for s, d in by_src.items():  # `single:a/seed0` → `single+T:a/seed0`: the temperature-scaled RM
            scaled.setdefault(key.with_scheme(key.scheme + "+T"), {})[s] = temperature.apply(
                d, temps[serving_head(key, s, top)]
            )
    return scaled


def temperatures(heads: dict[RMKey, RewardModel], data: StudyData) -> dict[RMKey, float]:
    """Temperature of each RM, fitted on the calibration pairs of the sources it was trained on."""
    return {key: fit.T for key, fit in temperature_fits(heads, data).items()}


def temperature_fits(heads: dict[RMKey, RewardModel], data: StudyData) -> dict[RMKey, temperature.TemperatureFit]:
    """Each RM's temperature fit (T and the search bound it hit, if any) on its training sources' calibration pairs."""
    calib = reward_diffs({k: h for k, h in heads.items() if k.scheme != "raw"}, data, "calib")
    out = {}
    for key, by_src in calib.items():
        trained_on = [key.source] if key.source else (key.subset or data.sources)
        out[key] = temperature.fit_temperature_report(np.concatenate([by_src[s] for s in trained_on]))
    return out


def metric_table(
    heads: dict[RMKey, RewardModel],
    data: StudyData,
    cfg: Config,
    temperature_scaled: bool = False,
    diffs: dict[RMKey, dict[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Tidy test metrics: one row per (scheme, seed, train_source, test_source) with accuracy, ECE/ACE/MCE (each ECE
    with its noise floor, floor p95, excess over the floor and debiased value: `metrics.all_metrics(floor=True)`),
    Brier, NLL."""
    if diffs is None:
        diffs = scheme_diffs(heads, data, "test")
        if temperature_scaled and cfg.train.temperature_scaling:
            diffs = {**diffs, **scheme_diffs(heads, data, "test", temperature_scaled=True)}
    top = select_top(heads, data) if any(k.scheme.startswith("top") for k in diffs) else {}
    rows = []
    for key, by_src in diffs.items():
        for test_src, d in by_src.items():
            train_src = key.source or ("+".join(key.subset) if key.subset else "all")
            if key.scheme.startswith("top"):
                train_src = top[(key.seed, test_src)]
            rows.append(
                {
                    "scheme": key.scheme,
                    "seed": key.seed,
                    "train_source": train_src,
                    "test_source": test_src,
                    "n": len(d),
                    **metrics.all_metrics(d, floor=True),
                }
            )
    return pd.DataFrame(rows)


def synthetic_data(cfg: Config, seed: int | None = None) -> tuple[StudyData, Any]:
    """The synthetic drift benchmark of cfg.data.synthetic as StudyData (features only) and the benchmark itself."""
    # Offset: the raw head draws w from the same seeded generator, which would align it with r* by construction.
    bench = synthetic.from_spec(cfg.data.synthetic, SYNTHETIC_SEED_OFFSET + (cfg.seeds[0] if seed is None else seed))
    data = StudyData()
    for name in bench.source_names:
        data.features[name] = {s: bench.split(s)[name] for s in SIDES}
        data.labels[name] = name
        data.counts[name] = {"used": {s: int(bench.split(s)[name].chosen.shape[0]) for s in SIDES}}
    return data, bench


def synthetic_study(cfg: Config, schemes: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tidy test metrics, truth table) of `schemes` on the synthetic benchmark with ONE benchmark instance per seed
    (`synthetic_data(cfg, seed)`), as notebook 06 draws them: the spread over seeds then covers the benchmark draw
    (r*, drifts, pairs) as well as the training resample, so a seed CI speaks for the benchmark, not one instance."""
    tables, truths = [], []
    for seed in cfg.seeds:
        data, bench = synthetic_data(cfg, seed)
        heads = fit(cfg, data, schemes, seeds=[seed])
        tables.append(metric_table(heads, data, cfg, temperature_scaled=True))
        truths.append(synthetic_truth(heads, data, bench))
    return pd.concat(tables, ignore_index=True), pd.concat(truths, ignore_index=True)


def serving_head(key: RMKey, test_source: str, top: dict[tuple[int, str], str]) -> RMKey:
    """The fitted head behind a scheme key on a test source (`top/seed0` → the chosen `single:<src>/seed0`)."""
    if key.scheme == "top":
        return RMKey("single", source=top[(key.seed, test_source)], seed=key.seed)
    return key


def synthetic_truth(heads: dict[RMKey, HeadRM], data: StudyData, bench: Any) -> pd.DataFrame:
    """Per RM and test source on the synthetic benchmark: cosine of the head's direction to r*, and the mean gap
    |σ(Δ̂) − p*| between predicted and TRUE preference probabilities (known here, unlike on real data)."""
    diffs = scheme_diffs(heads, data, "test")
    top = select_top(heads, data) if any(k.scheme == "single" for k in heads) else {}
    r_star = bench.r_star.double()
    rows = []
    for key, by_src in diffs.items():
        for src, d in by_src.items():
            head = heads[serving_head(key, src, top)].head
            direction = (head.w / head.scale).double()
            cos = float(direction @ r_star / (direction.norm() * r_star.norm()).clamp_min(1e-30))
            p_true = bench.true_prob["test"][src].double().numpy()
            gap = float(np.mean(np.abs(1.0 / (1.0 + np.exp(-d)) - p_true)))
            rows.append(
                {
                    "scheme": key.scheme,
                    "seed": key.seed,
                    "test_source": src,
                    "cosine_to_r_star": cos,
                    "true_prob_gap": gap,
                }
            )
    return pd.DataFrame(rows)


def sources_in_order(data: StudyData, order: Sequence[str], K: int) -> list[str]:
    """The sources of `order` this study has, in that order; DataError unless there are at least K."""
    present = [s for s in order if s in data.sources]
    if len(present) < K:
        raise DataError(f"K-ablation needs at least {K} available sources of {list(order)}; have {present}")
    return present


def k_ablation(
    cfg: Config,
    data: StudyData,
    run: Run | None,
    order: Sequence[str],
    tests: Sequence[str] = ("helpful", "harmless"),
    schemes: Sequence[str] = ("multitask", "more"),
    start: int = 2,
) -> tuple[pd.DataFrame, list[str]]:
    """Fig 6: train `schemes` on the first K sources of `order` (K ≥ start), skipping missing ones; test metrics per K.

    Returns the tidy metrics table (with columns K and added) and the list of skipped sources with reasons.
    """
    present = sources_in_order(data, order, start)
    skipped = [
        f"{s} ({'missing: ' + data.missing[s] if s in data.missing else 'not configured'})"
        for s in order
        if s not in data.sources
    ]
    tables = []
    for k in range(start, len(present) + 1):
        subset = present[:k]
        heads = fit(cfg, data, schemes, run=run, sources=subset)
        table = metric_table(heads, data, cfg, diffs=reward_diffs(heads, data, "test", sources=tests))
        tables.append(table.assign(K=k, added=subset[-1]))
    return pd.concat(tables, ignore_index=True), skipped


def k_endpoints(
    cfg: Config,
    data: StudyData,
    run: Run | None,
    order: Sequence[str],
    tests: Sequence[str] = ("helpful", "harmless"),
    schemes: Sequence[str] = ("multitask", "more"),
    start: int = 2,
) -> dict[int, dict[RMKey, dict[str, np.ndarray]]]:
    """Test reward differences of `schemes` at the smallest (start) and largest K of `k_ablation` (the same fits, reused
    from the run), keyed `<scheme>/seed<k>` without the subset: {K: {key: {test source: Δ [N]}}}."""
    present = sources_in_order(data, order, start)
    out = {}
    for k in (start, len(present)):
        heads = fit(cfg, data, schemes, run=run, sources=present[:k])
        out[k] = {
            RMKey(key.scheme, seed=key.seed): d for key, d in reward_diffs(heads, data, "test", sources=tests).items()
        }
    return out


def k_ablation_heads(
    cfg: Config, data: StudyData, run: Run | None, order: Sequence[str], K: int, schemes: Sequence[str] = ("more",)
) -> dict[RMKey, RewardModel]:
    """The RMs `k_ablation` fitted on the first K available sources of `order` (reloaded from the run when present)."""
    return fit(cfg, data, schemes, run=run, sources=sources_in_order(data, order, K)[:K])


FEATURE_ONLY = ("sizeprop", "tuned", "famo")


def baselines(cfg: Config) -> list[str]:
    """The weighting baselines this run can fit: sizeprop, tuned, famo on the feature tier; none on the finetune tier
    (morelib.train.finetune does not implement them)."""
    return list(FEATURE_ONLY) if cfg.train.tier == "features" else []
