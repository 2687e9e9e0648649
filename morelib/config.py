"""Config: a params YAML profile becomes one frozen, typed, validated config tree.

`params/default.yaml` holds every key with a one-line reason; other profiles (`tiny`, `paper`) are short diffs of it.
Dotted overrides (`{"train.lr": 1e-3}`) are applied last. An unknown key, a wrong type or an impossible value raises one
`ConfigError` naming the key (and the closest valid key). Modelled on alignment-handbook's typed recipes.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from morelib.errors import ConfigError

PARAMS_DIR = Path(__file__).resolve().parents[1] / "params"
SCHEMES = ("raw", "single", "top", "multitask", "more", "fixed", "multitask-pooled", "sizeprop", "tuned", "famo")
NORMALIZATIONS = ("l2", "loss", "loss+", "none")
POOLINGS = ("last", "mean")  # feature tier: last real token | mean over the response's tokens (morelib.features)


@dataclass(frozen=True)
class SourceSpec:
    """One preference source: its key, display label, loader and how many pairs to use (None: all of that side)."""

    name: str
    label: str
    loader: str
    train_pairs: int | None = 1000
    test_pairs: int | None = 300
    calib_pairs: int | None = 100
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class SplitSpec:
    """Fractions of grouped train/calibration/test splits for sources that ship no splits."""

    train: float = 0.7
    calib: float = 0.1
    test: float = 0.2


@dataclass(frozen=True)
class SyntheticSpec:
    """The synthetic drift benchmark (paper eq. 4): K sources sharing r* plus a drift each."""

    K: int = 5
    dim: int = 64
    n_train: int = 2000
    n_calib: int = 500
    n_test: int = 1000
    drift: float = 0.5
    reward_scale: float = 3.0


@dataclass(frozen=True)
class ScenarioSpec:
    """One synthetic scenario (morelib.scenarios): K sources, each with its own train size, label scale c_k, drift
    norm (× ‖r*‖) and share of the drift along r* (negative: opposes r*); a number applies to every source."""

    name: str
    why: str
    K: int = 4
    n_train: int | tuple[int, ...] = 1000
    source_scale: float | tuple[float, ...] = 1.0
    drift: float | tuple[float, ...] = 0.5
    drift_along: float | tuple[float, ...] = 0.0


@dataclass(frozen=True)
class ScenarioSweep:
    """The "when does MORE help?" sweep: every scenario × n_seeds × scheme on the synthetic benchmark."""

    n_seeds: int = 10
    dim: int = 32
    n_calib: int = 200
    n_test: int = 1000
    reward_scale: float = 3.0
    n_bins: int = 10
    schemes: tuple[str, ...] = ("multitask", "more", "sizeprop", "tuned", "famo")
    tuned_step: float = 0.5
    tuned_max_points: int = 12
    scenarios: tuple[ScenarioSpec, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    """Where data comes from and which sources are used."""

    data_dir: str | None = None
    split: SplitSpec = field(default_factory=SplitSpec)
    sources: tuple[SourceSpec, ...] = ()
    synthetic: SyntheticSpec = field(default_factory=SyntheticSpec)


@dataclass(frozen=True)
class ModelConfig:
    """The backbone and how texts are tokenised for it."""

    name: str = "smollm2-135m"
    max_length: int = 256
    dtype: str = "auto"
    padding_side: str = "right"
    truncation_side: str = "left"
    batch_size: int = 16
    pooling: str = "last"
    layer: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """How reward models are trained, in either compute tier."""

    tier: str = "features"
    schemes: tuple[str, ...] = ("raw", "single", "multitask", "more")
    batch_per_source: int = 16
    epochs: float = 1.0
    steps: int | None = None
    lr: float = 1e-6
    weight_decay: float = 0.0
    alpha: float = 0.99
    normalization: str = "l2"
    resample_pairs: int | None = None
    warmup_ratio: float = 0.0
    grad_accum: int = 1
    save_steps: int = 200
    logging_steps: int = 10
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    head_lr: float = 0.003
    head_epochs: int = 5
    head_weight_decay: float = 2.0
    seed_subsample: float = 0.8
    temperature_scaling: bool = True
    single_batch: int | None = None
    tuned_step: float = 0.25
    tuned_max_points: int = 71
    famo_lr: float = 0.025
    famo_decay: float = 0.01


@dataclass(frozen=True)
class RJSConfig:
    """Rejection-sampling alignment (paper §5.4): sampling, selection and SFT of the policy."""

    policy: str = "smollm2-135m"
    n_prompts: int = 16
    n_samples: int = 4
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.95
    gen_batch_size: int = 16
    sft_epochs: float = 1.0
    sft_lr: float = 1e-5
    ppl_pairs: int = 50
    schemes: tuple[str, ...] = ("multitask", "more")
    prompt_sources: tuple[str, ...] = ("helpful", "harmless")
    n_eval_prompts: int = 16
    sft_batch_size: int = 4
    max_length: int = 512
    dtype: str = "auto"
    backend: str = "auto"
    keep_policies: bool = False


@dataclass(frozen=True)
class JudgeConfig:
    """The pairwise judge of Appendix D, asked twice with positions swapped."""

    kind: str = "local"
    model: str = "smollm2-135m"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    reliability_pairs: int = 40
    gold_rm: bool = True
    max_query_chars: int = 2000
    timeout_s: float = 60.0


@dataclass(frozen=True)
class ExploreConfig:
    """Interactive explorer settings."""

    train_pairs_per_source: int = 2000
    debounce_ms: int = 250
    head_epochs: int = 10
    batch_per_source: int = 100
    reliability_bins: int = 10
    seed: int = 0


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Silent-failure guards during training."""

    chance_after_steps: int = 50
    chance_band: float = 0.02
    collapse_tol: float = 1e-4
    pinned_tol: float = 1e-3


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one run."""

    profile: str = "default"
    seeds: tuple[int, ...] = (0, 1, 2)
    n_boot: int = 1000
    output_root: str = "outputs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rjs: RJSConfig = field(default_factory=RJSConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    synthetic_scenarios: ScenarioSweep = field(default_factory=ScenarioSweep)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-able nested dict of this config."""
        return _plain(dataclasses.asdict(self))

    def source_names(self) -> list[str]:
        """Names of the configured sources, in order."""
        return [s.name for s in self.data.sources]


def _plain(obj: Any) -> Any:
    """Tuples → lists, recursively, so YAML/JSON stay plain."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _closest(key: str, valid: list[str]) -> str:
    """A ' (did you mean X?)' hint, or ''."""
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid keys: {', '.join(valid)})"


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against the annotation `tp`, converting lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping for {tp.__name__}, got {type(value).__name__}: {value!r}")
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {type(value).__name__}: {value!r}")
        (item_tp, *_) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"'{where}' must be {tp.__name__}, got {type(value).__name__}: {value!r}")
    return value


def _build(cls: type, raw: dict[str, Any], where: str = "") -> Any:
    """Instantiate dataclass `cls` from `raw`, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if key not in hints:
            raise ConfigError(f"unknown parameter '{path}'{_closest(key, names)}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _merge(base: dict[str, Any], diff: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `diff` into `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in diff.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_override(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c = value` inside the nested dict `raw`, creating levels as needed."""
    *parents, leaf = dotted.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[leaf] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    """Read one params YAML file as a mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping at top level")
    return data


def profile_path(profile: str | Path) -> Path:
    """Path of a profile given by name (`tiny`) or as a YAML path."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"params file not found: {path}")
        return path
    path = PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown profile '{profile}'{_closest(str(profile), names)}")
    return path


def load_config(profile: str | Path = "default", overrides: dict[str, Any] | None = None, **kw: Any) -> Config:
    """Build the validated `Config` for a profile, with dotted `overrides` (and `**kw` top-level ones) applied last."""
    raw = _read_yaml(PARAMS_DIR / "default.yaml")
    path = profile_path(profile)
    if path.resolve() != (PARAMS_DIR / "default.yaml").resolve():
        raw = _merge(raw, _read_yaml(path))
    raw["profile"] = raw.get("profile", Path(path).stem)
    for dotted, value in {**(overrides or {}), **kw}.items():
        _apply_override(raw, dotted, value)
    cfg = _build(Config, raw)
    validate(cfg)
    return cfg


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A validated copy of `cfg` with dotted `overrides` applied (e.g. {"train.normalization": "loss+"})."""
    raw = cfg.to_dict()
    for dotted, value in overrides.items():
        _apply_override(raw, dotted, value)
    out = _build(Config, raw)
    validate(out)
    return out


def _check(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Check value ranges and combinations that types alone cannot express."""
    _check(len(cfg.seeds) > 0, "'seeds' must list at least one seed")
    _check(cfg.n_boot > 0, f"'n_boot' must be positive, got {cfg.n_boot}")
    split = cfg.data.split
    for name in ("train", "calib", "test"):
        _check(0 <= getattr(split, name) <= 1, f"'data.split.{name}' must be in [0, 1]")
    _check(abs(split.train + split.calib + split.test - 1) < 1e-6, "'data.split' fractions must sum to 1")
    names = [s.name for s in cfg.data.sources]
    _check(len(names) == len(set(names)), f"'data.sources' names must be unique, got {names}")
    for i, src in enumerate(cfg.data.sources):
        for key in ("train_pairs", "calib_pairs", "test_pairs"):
            n = getattr(src, key)
            _check(n is None or n > 0,
                   f"'data.sources[{i}].{key}' must be positive, got {n} (or null: all pairs of that side)")
    syn = cfg.data.synthetic
    for name in ("K", "dim", "n_train", "n_calib", "n_test"):
        _check(getattr(syn, name) > 0, f"'data.synthetic.{name}' must be positive, got {getattr(syn, name)}")
    _check(cfg.model.max_length > 0, f"'model.max_length' must be positive, got {cfg.model.max_length}")
    _check(cfg.model.batch_size > 0, f"'model.batch_size' must be positive, got {cfg.model.batch_size}")
    _check(cfg.model.dtype in ("auto", "bf16", "fp32", "fp16"), f"'model.dtype' must be auto|bf16|fp32|fp16, got '{cfg.model.dtype}'")
    for key in ("padding_side", "truncation_side"):
        val = getattr(cfg.model, key)
        _check(val in ("left", "right"), f"'model.{key}' must be 'left' or 'right', got '{val}'")
    _check(cfg.model.pooling in POOLINGS,
           f"'model.pooling' must be one of {', '.join(POOLINGS)}, got '{cfg.model.pooling}'")
    _check((cfg.model.pooling == "last" and cfg.model.layer is None) or cfg.train.tier == "features",
           "'model.pooling' / 'model.layer' choose frozen features: they need train.tier 'features' "
           f"(got pooling '{cfg.model.pooling}', layer {cfg.model.layer}; fine-tuning scores the last token)")
    _validate_train(cfg.train)
    for key in ("train_pairs_per_source", "head_epochs", "batch_per_source", "reliability_bins"):
        _check(getattr(cfg.explore, key) > 0, f"'explore.{key}' must be positive, got {getattr(cfg.explore, key)}")
    _check(cfg.explore.debounce_ms >= 0, f"'explore.debounce_ms' must be ≥ 0, got {cfg.explore.debounce_ms}")
    _validate_sweep(cfg.synthetic_scenarios)


def _validate_train(t: TrainConfig) -> None:
    """Range checks of the training section."""
    _check(t.tier in ("features", "finetune"), f"'train.tier' must be 'features' or 'finetune', got '{t.tier}'")
    for s in t.schemes:
        _check(s in SCHEMES, f"unknown scheme '{s}' in 'train.schemes'{_closest(s, list(SCHEMES))}")
    _check(t.normalization in NORMALIZATIONS,
           f"'train.normalization' must be one of {', '.join(NORMALIZATIONS)}, got '{t.normalization}'")
    _check(0 < t.alpha <= 1, f"'train.alpha' must be in (0, 1], got {t.alpha}")
    _check(t.batch_per_source > 0, f"'train.batch_per_source' must be positive, got {t.batch_per_source}")
    _check(t.lr > 0 and t.head_lr > 0, "'train.lr' and 'train.head_lr' must be positive")
    _check(t.epochs > 0, f"'train.epochs' must be positive, got {t.epochs}")
    _check(t.steps is None or t.steps > 0, f"'train.steps' must be positive or null, got {t.steps}")
    _check(t.resample_pairs is None or t.resample_pairs > 0, "'train.resample_pairs' must be positive or null")
    _check(t.single_batch is None or t.single_batch > 0, "'train.single_batch' must be positive or null")
    _check(t.head_epochs > 0, f"'train.head_epochs' must be positive, got {t.head_epochs}")
    _check(t.weight_decay >= 0 and t.head_weight_decay >= 0, "weight decays must be ≥ 0")
    _check(0.0 < t.seed_subsample <= 1.0, f"'train.seed_subsample' must be in (0, 1], got {t.seed_subsample}")
    _check(0 < t.tuned_step <= 1 and abs(round(1 / t.tuned_step) * t.tuned_step - 1) < 1e-9,
           f"'train.tuned_step' must be 1/m for a positive integer m (e.g. 0.25), got {t.tuned_step}")
    _check(t.tuned_max_points > 0, f"'train.tuned_max_points' must be positive, got {t.tuned_max_points}")
    _check(t.famo_lr > 0 and t.famo_decay >= 0, "'train.famo_lr' must be > 0 and 'train.famo_decay' ≥ 0")


def data_root(cfg: Config) -> Path | None:
    """The local data root: params, else $MORE_DATA_DIR, else ../shared/data beside the repo; None means the hub."""
    if cfg.data.data_dir == "hub":
        return None
    if cfg.data.data_dir:
        return Path(os.path.expandvars(os.path.expanduser(cfg.data.data_dir)))
    if os.environ.get("MORE_DATA_DIR"):
        return Path(os.environ["MORE_DATA_DIR"])
    return PARAMS_DIR.parents[1] / "shared" / "data"


SWEEP_SCHEMES = ("multitask", "more", "sizeprop", "tuned", "famo")
_SCENARIO_BOUNDS = {"n_train": (1, float("inf")), "source_scale": (1e-12, float("inf")), "drift": (0.0, float("inf")),
                    "drift_along": (-1.0, 1.0)}


def _validate_sweep(sweep: ScenarioSweep) -> None:
    """Range checks of the synthetic scenario sweep: sizes, schemes, and every per-source list of length K."""
    _check(sweep.n_seeds >= 2, f"'synthetic_scenarios.n_seeds' must be ≥ 2 (a CI over seeds), got {sweep.n_seeds}")
    for key in ("dim", "n_calib", "n_test", "n_bins", "tuned_max_points"):
        _check(getattr(sweep, key) > 0, f"'synthetic_scenarios.{key}' must be positive, got {getattr(sweep, key)}")
    _check(sweep.reward_scale > 0, f"'synthetic_scenarios.reward_scale' must be positive, got {sweep.reward_scale}")
    _check(0 < sweep.tuned_step <= 1 and abs(round(1 / sweep.tuned_step) * sweep.tuned_step - 1) < 1e-9,
           f"'synthetic_scenarios.tuned_step' must be 1/m for a positive integer m, got {sweep.tuned_step}")
    for s in sweep.schemes:
        _check(s in SWEEP_SCHEMES, f"unknown scheme '{s}' in 'synthetic_scenarios.schemes'; valid: {', '.join(SWEEP_SCHEMES)}")
    _check({"multitask", "more"} <= set(sweep.schemes), "'synthetic_scenarios.schemes' must include multitask and more")
    names = [sc.name for sc in sweep.scenarios]
    _check(len(names) == len(set(names)), f"'synthetic_scenarios.scenarios' names must be unique, got {names}")
    for i, sc in enumerate(sweep.scenarios):
        where = f"synthetic_scenarios.scenarios[{i}] ({sc.name})"
        _check(sc.K >= 2, f"'{where}.K' must be ≥ 2, got {sc.K}")
        for key, (lo, hi) in _SCENARIO_BOUNDS.items():
            value = getattr(sc, key)
            values = value if isinstance(value, tuple) else (value,) * sc.K
            _check(len(values) == sc.K, f"'{where}.{key}' must be one number or K={sc.K} numbers, got {list(values)}")
            _check(all(lo <= v <= hi for v in values), f"'{where}.{key}' values must be in [{lo:g}, {hi:g}], got {list(values)}")
