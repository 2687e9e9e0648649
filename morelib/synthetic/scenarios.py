"""The "when does MORE help?" sweep: named synthetic scenarios (params `synthetic_scenarios`) × seeds × schemes.

Each scenario is the eq. 4 drift benchmark (`morelib.synthetic.synthetic`) with per-source train sizes, label scales,
drift
norms and drift directions, or the latent benchmark (`nonlinear` set: drifts in quadratic features of a shared latent).
Every scheme fits the scenario's `head` (linear, or mlp: `morelib.train.mlp_head`) and is scored against the SHARED
truth, not only against each source's drifted labels (which reward fitting the drift):
- `cosine_to_r_star`: cos(w/scale, r*) of the head's direction in feature space; for an mlp head or a nonlinear r*
  the sample cosine Σ Δ̂·Δ* / (‖Δ̂‖‖Δ*‖) over the test pairs, Δ* = r*(chosen) − r*(rejected) (for a linear head and
  r* on isotropic features both converge to the same number);
- `truth_ece`: the binned calibration gap against p* = σ(r*·(z_chosen − z_rejected)) on all sources' test pairs pooled:
  both ordered pairs (σ(Δ̂), p*) and (σ(−Δ̂), 1 − p*), equal-width (a, b] bins of the prediction (as
  `metrics.calibration_errors`), truth_ece = Σ_bins |Σ (p̂ − p*)| / 2N. It is the paper's ECE with each Bernoulli label
  replaced by its expectation, so it has no label-noise floor: a head equal to r* scores exactly 0;
- `truth_gap`: the unbinned mean |σ(Δ̂) − p*| over the same pairs;
- `own_ece`, `own_accuracy`: the paper's ECE and accuracy on each source's own labels, averaged over sources.
Differences between schemes are paired over seeds (same benchmark and batches per seed): mean ± Student-t 95% CI, a
one-sample t-test p-value, and Holm's step-down correction over every (scenario, metric) of one comparison.
Checked in tests/test_scenarios.py: truth_ece against a direct loop, r* itself scores 0, and the paired statistics
against scipy.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats as sps

from morelib.core.config import Config, ScenarioSpec, ScenarioSweep, TrainConfig
from morelib.evaluation import metrics, stats
from morelib.evaluation.stats import mean_and_ci_over_seeds
from morelib.synthetic import synthetic
from morelib.train import mlp_head, reward_head
from morelib.train.mlp_head import MlpHead
from morelib.train.reward_head import HeadModel

METRICS = ("cosine_to_r_star", "truth_ece", "truth_gap", "own_ece", "own_accuracy")
HIGHER_IS_BETTER = ("cosine_to_r_star", "own_accuracy")
Progress = Callable[[str], None]


def truth_ece(reward_diff: np.ndarray, p_true: np.ndarray, n_bins: int = 10) -> float:
    """Σ_bins |Σ (p̂ − p*)| / 2N over both ordered pairs, bins of p̂ = σ(Δ̂) equal-width (a, b] (module docstring)."""
    d = metrics.as_reward_diff(reward_diff)
    q = np.asarray(p_true, dtype=np.float64)
    if q.shape != d.shape or not ((q >= 0) & (q <= 1)).all():
        raise ValueError(f"p_true must be probabilities of shape {d.shape}, got shape {q.shape}")
    p = np.concatenate([1 / (1 + np.exp(-d)), 1 / (1 + np.exp(d))])
    q = np.concatenate([q, 1 - q])
    ids = np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p)
    return float(np.abs(np.bincount(ids, weights=p - q, minlength=n_bins)).sum() / p.size)


def benchmark(sweep: ScenarioSweep, spec: ScenarioSpec, seed: int) -> synthetic.SyntheticBenchmark:
    """The benchmark of one scenario and seed (its data seed depends on the scenario name, not on its position): the
    latent benchmark when the scenario sets `nonlinear`, else the eq. 4 drift benchmark."""
    data_seed = zlib.crc32(spec.name.encode()) % 1_000_003 + 7919 * seed
    if spec.nonlinear is not None:
        return synthetic.make_latent_benchmark(
            spec.K,
            sweep.dim,
            _ints(spec.n_train),
            _floats(spec.drift),
            data_seed,
            nonlinear=spec.nonlinear,
            n_calib=sweep.n_calib,
            n_test=sweep.n_test,
            reward_scale=sweep.reward_scale,
            source_scale=_floats(spec.source_scale),
        )
    return synthetic.make_drift_benchmark(
        spec.K,
        sweep.dim,
        _ints(spec.n_train),
        _floats(spec.drift),
        data_seed,
        n_calib=sweep.n_calib,
        n_test=sweep.n_test,
        reward_scale=sweep.reward_scale,
        drift_along=_floats(spec.drift_along),
        source_scale=_floats(spec.source_scale),
    )


def _ints(value: int | tuple[int, ...]) -> int | list[int]:
    """An int or a list of ints (the generator's per-source form)."""
    return value if isinstance(value, int) else list(value)


def _floats(value: float | tuple[float, ...]) -> float | list[float]:
    """A float or a list of floats (the generator's per-source form)."""
    return value if isinstance(value, float) else list(value)


def score(head: HeadModel | MlpHead, bench: synthetic.SyntheticBenchmark, n_bins: int = 10) -> dict[str, float]:
    """The METRICS of one head on the benchmark's test split (module docstring)."""
    with torch.no_grad():
        diffs = {s: head.reward_diff(pf).double().numpy() for s, pf in bench.test.items()}
    pooled = np.concatenate(list(diffs.values()))
    p_true = torch.cat([bench.shared_prob["test"][s] for s in diffs]).double().numpy()
    if isinstance(head, HeadModel) and bench.nonlinear == 0:
        direction, r_star = (head.w / head.scale).double(), bench.r_star.double()
        cos = float(direction @ r_star / (direction.norm() * r_star.norm()).clamp_min(1e-30))
    else:  # no direction to compare: the sample cosine of Δ̂ and the shared true Δ* (the same in expectation above)
        truth = torch.cat([bench.shared_diff["test"][s] for s in diffs]).double().numpy()
        cos = float(pooled @ truth / max(np.linalg.norm(pooled) * np.linalg.norm(truth), 1e-30))
    return {
        "cosine_to_r_star": cos,
        "truth_ece": truth_ece(pooled, p_true, n_bins),
        "truth_gap": float(np.mean(np.abs(1 / (1 + np.exp(-pooled)) - p_true))),
        "own_ece": float(np.mean([metrics.calibration_errors(d, n_bins)["ece"] for d in diffs.values()])),
        "own_accuracy": float(np.mean([metrics.accuracy(d) for d in diffs.values()])),
    }


def sweep_train_config(cfg: Config) -> TrainConfig:
    """cfg.train with the sweep's own `tuned` grid (coarser: the sweep fits it once per scenario and seed)."""
    sw = cfg.synthetic_scenarios
    return dataclasses.replace(cfg.train, tuned_step=sw.tuned_step, tuned_max_points=sw.tuned_max_points)


def run_scenario(cfg: Config, spec: ScenarioSpec, seeds: Sequence[int]) -> pd.DataFrame:
    """Tidy scores, one row per (seed, scheme) of one scenario, plus each head's mean λ over its training steps."""
    sweep, tcfg, rows = cfg.synthetic_scenarios, sweep_train_config(cfg), []
    for seed in seeds:
        bench = benchmark(sweep, spec, seed)
        for scheme in sweep.schemes:
            if spec.head == "mlp":
                head = mlp_head.train_mlp(bench.train, scheme, tcfg, cfg.head, seed, bench.calib, more=cfg.more)
            else:
                calib = bench.calib if scheme == "tuned" else None
                head = reward_head.train_head(bench.train, scheme, tcfg, cfg.head, seed, calib=calib, more=cfg.more)
            lam = head.history["lam"].double().mean(0).tolist()
            rows.append(
                {
                    "scenario": spec.name,
                    "K": spec.K,
                    "seed": seed,
                    "scheme": scheme,
                    **score(head, bench, sweep.n_bins),
                    "mean_lambda": [round(x, 4) for x in lam],
                }
            )
    return pd.DataFrame(rows)


def run_sweep(cfg: Config, progress: Progress | None = None) -> pd.DataFrame:
    """Tidy scores of every configured scenario × seed (0 … n_seeds − 1) × scheme."""
    sweep = cfg.synthetic_scenarios
    if not sweep.scenarios:
        raise ValueError("'synthetic_scenarios.scenarios' is empty: nothing to sweep")
    tables = []
    for spec in sweep.scenarios:
        if progress is not None:
            progress(f"scenario {spec.name}: K={spec.K}, {sweep.n_seeds} seeds × {len(sweep.schemes)} schemes")
        tables.append(run_scenario(cfg, spec, range(sweep.n_seeds)))
    return pd.concat(tables, ignore_index=True)


def paired_differences(
    tidy: pd.DataFrame,
    b: str = "multitask",
    schemes: Sequence[str] | None = None,
    metric_names: Sequence[str] = METRICS,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per (scheme ≠ b, scenario, metric): mean over seeds of (scheme − b), its t-CI, t-test p and Holm-adjusted p
    (Holm over all scenarios × metrics of that scheme); `better` = +1/−1/0 for a CI excluding 0 for/against it."""
    schemes = [s for s in (schemes or tidy["scheme"].unique()) if s != b]
    rows = []
    for scheme in schemes:
        part = []
        for scenario, g in tidy.groupby("scenario", sort=False):
            wide = g.pivot(index="seed", columns="scheme", values=list(metric_names))
            for m in metric_names:
                diff = (wide[(m, scheme)] - wide[(m, b)]).to_numpy()
                part.append({"scheme": scheme, "vs": b, "scenario": scenario, "metric": m, **_paired(diff, level)})
        adjusted = stats.holm([r["p"] for r in part])
        for r, p_adj in zip(part, adjusted):
            sign = 1 if r["metric"] in HIGHER_IS_BETTER else -1
            r["p_holm"] = float(p_adj)
            r["better"] = int(np.sign(r["diff"]) * sign) if (r["lo"] > 0 or r["hi"] < 0) else 0
        rows += part
    return pd.DataFrame(rows)


def _paired(diff: np.ndarray, level: float) -> dict[str, float]:
    """Mean, t-CI, two-sided one-sample t-test p and seed count of per-seed differences (p = 1 when all are equal)."""
    if np.allclose(diff, diff[0], rtol=0, atol=1e-12):
        return {
            "diff": float(diff.mean()),
            "lo": float(diff.mean()),
            "hi": float(diff.mean()),
            "p": 1.0 if abs(diff.mean()) < 1e-12 else 0.0,
            "n_seeds": int(diff.size),
        }
    half = float(sps.t.ppf((1 + level) / 2, df=diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size))
    return {
        "diff": float(diff.mean()),
        "lo": float(diff.mean() - half),
        "hi": float(diff.mean() + half),
        "p": float(sps.ttest_1samp(diff, 0.0).pvalue),
        "n_seeds": int(diff.size),
    }


def describe(cfg: Config) -> pd.DataFrame:
    """One row per configured scenario: name, K, per-source settings and the one-line reason it is there."""
    sweep = cfg.synthetic_scenarios
    return pd.DataFrame(
        [
            {
                "scenario": sc.name,
                "K": sc.K,
                "n_train": sc.n_train,
                "source_scale": sc.source_scale,
                "drift": sc.drift,
                "drift_along": sc.drift_along,
                "nonlinear": sc.nonlinear,
                "head": sc.head,
                "why": sc.why,
            }
            for sc in sweep.scenarios
        ]
    )


def scheme_means(tidy: pd.DataFrame, metric_names: Sequence[str] = METRICS, level: float = 0.95) -> pd.DataFrame:
    """Per (scenario, scheme): each metric's mean over seeds with its Student-t CI (`<metric>_lo`, `<metric>_hi`)."""
    rows = []
    for (scenario, scheme), g in tidy.groupby(["scenario", "scheme"], sort=False):
        row: dict[str, object] = {"scenario": scenario, "scheme": scheme, "seeds": int(g["seed"].nunique())}
        for m in metric_names:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean_and_ci_over_seeds(g[m].to_numpy(), level)
        rows.append(row)
    return pd.DataFrame(rows)
