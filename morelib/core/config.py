"""Config: a params YAML profile becomes one frozen, typed, validated config tree.

`params/default.yaml` holds every key with a one-line reason and is the ONE source of defaults: each section's
dataclass takes its field defaults from it (`_defaults_from`), so `Config()` equals `load_config("default")`. Other
profiles (`tiny`, `paper`) are short diffs of it. Every enumerated parameter has one `Literal` type here (schemes,
normalisations, tiers, dtypes, judge kinds, RJS backends, …), checked for every field in `validate`. Dotted
overrides (`{"head.lr": 1e-3}`) are applied last. An unknown key, a wrong type or an impossible value raises one
`ConfigError` naming the key (and the closest valid key). Training settings live in three sections: `train` (what
both tiers share), `head` (the feature tier) and `finetune` (the fine-tuning tier); a key from before that split raises
"'train.head_lr' was renamed to 'head.lr'" (`RENAMED`). Modelled on alignment-handbook's typed recipes.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from morelib.core.errors import ConfigError, DataError

PARAMS_DIR = Path(__file__).resolve().parents[2] / "params"
DEFAULT_DATA_ROOT = PARAMS_DIR.parents[1] / "shared" / "data"  # ../shared/data beside the repository

Scheme = Literal["raw", "single", "top", "multitask", "more", "fixed", "multitask-pooled", "sizeprop", "tuned", "famo"]
Normalization = Literal[
    "l2", "loss", "loss+", "none"
]  # MORE's gradient normalisation before eq. 9 (morelib.weighting.more)
Tier = Literal["features", "finetune"]
HeadKind = Literal[
    "linear", "mlp"
]  # feature tier: the reward head alone | a shared MLP trunk + head (morelib.train.mlp_head)
CapacityTier = Literal["linear", "mlp", "blocks", "finetune"]  # rungs of the capacity curve (morelib.study.capacity)
SeedResample = Literal["bootstrap", "halves", "subsample"]  # how each seed draws its training pairs (sampling.py)
Dtype = Literal["auto", "bf16", "fp32", "fp16"]
StoreDtype = Literal["fp16", "bf16", "fp32"]  # on-disk dtype of cached hidden states (morelib.backbone.hidden_states)
Side = Literal["left", "right"]
Pooling = Literal[
    "last", "mean"
]  # feature tier: last real token | mean over the response's tokens (morelib.backbone.features)
JudgeKind = Literal["minilm-rm", "gold-rm", "local", "openai"]  # morelib.align.judge / rm_judge
RJSBackend = Literal["auto", "hf", "ct2", "vllm"]  # morelib.align.sampler
CT2Compute = Literal["int8", "float32"]  # CTranslate2 weight/compute type of the ct2 sampling backend
PaperModel = Literal["Pythia-1.4B", "Pythia-2.8B", "LLaMa-7B"]  # base models of the paper's Tables 1/3/5/6
Loader = Literal[  # the named sources of morelib.data.sources (it checks this list against its SOURCES at import)
    "hh-helpful",
    "hh-harmless",
    "hh-helpful-online",
    "hh-helpful-rejection-sampled",
    "oasst1",
    "webgpt",
    "summarize",
    "ultrafeedback",
]
LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")  # a data.sources loader may also be a local file of these kinds

SCHEMES: tuple[str, ...] = typing.get_args(Scheme)
NORMALIZATIONS: tuple[str, ...] = typing.get_args(Normalization)
POOLINGS: tuple[str, ...] = typing.get_args(Pooling)
JUDGE_KINDS: tuple[str, ...] = typing.get_args(JudgeKind)
HEAD_KINDS: tuple[str, ...] = typing.get_args(HeadKind)
CAPACITY_TIERS: tuple[str, ...] = typing.get_args(CapacityTier)
RJS_BACKENDS: tuple[str, ...] = typing.get_args(RJSBackend)
PAPER_MODELS: tuple[str, ...] = typing.get_args(PaperModel)
LOADERS: tuple[str, ...] = typing.get_args(Loader)
# Named subsets of SCHEMES, one per consumer (tests/test_config.py checks each is a subset):
HEAD_SCHEMES = tuple(s for s in SCHEMES if s != "top")  # train.train_head ('top' = 'single' on the best source)
TRAINED_SCHEMES = tuple(s for s in HEAD_SCHEMES if s != "fixed")  # study.fit trains these for every seed (and 'top')
FINETUNE_SCHEMES = ("single", "multitask", "more", "fixed", "multitask-pooled")  # morelib.train.finetune
BLOCKS_SCHEMES = ("single", "multitask", "more", "fixed", "sizeprop", "tuned")  # morelib.train.blocks
SWEEP_SCHEMES = ("multitask", "more", "sizeprop", "tuned", "famo")  # notebook 06's scenario sweep
CAPACITY_SCHEMES = ("multitask", "more", "tuned")  # notebook 07's capacity curve (multitask and more required)
MIX_SCHEMES = ("multitask", "more")  # the pair the explorer's mix view and the alignment summary compare


def _read_yaml(path: Path) -> dict[str, Any]:
    """Read one params YAML file as a mapping."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping at top level")
    return data


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
    if origin is Literal:  # membership is checked in `validate` (_check_choices), with every other range check
        kinds = tuple({type(a) for a in typing.get_args(tp)})
        if not isinstance(value, kinds):
            raise ConfigError(
                f"'{where}' must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}: {value!r}"
            )
        return value
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


DEFAULTS = _read_yaml(PARAMS_DIR / "default.yaml")  # the one source of every default


def _defaults_from(*section: str) -> Callable[[type], type]:
    """Class decorator (under @dataclass): every field's default is default.yaml's value at `section`; a field that
    default.yaml lacks is a ConfigError at import."""

    def give(cls: type) -> type:
        raw = DEFAULTS
        for part in section:
            raw = raw.get(part, {})
        hints = typing.get_type_hints(cls)
        for name in cls.__annotations__:
            where = ".".join((*section, name))
            if name not in raw:
                raise ConfigError(f"params/default.yaml lacks '{where}' (every config key needs a default there)")
            setattr(cls, name, _coerce(raw[name], hints[name], where))
        return cls

    return give


@dataclass(frozen=True)
class SourceSpec:
    """One preference source: its key, display label, loader and how many pairs to use (None: all of that side).

    An item of the `data.sources` list: default.yaml lists whole sources, so the caps' item defaults live here."""

    name: str
    label: str
    loader: str
    train_pairs: int | None = 1000
    test_pairs: int | None = 300
    calib_pairs: int | None = 100
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
@_defaults_from("data", "split")
class SplitSpec:
    """Fractions of grouped train/calibration/test splits for sources that ship no splits."""

    train: float
    calib: float
    test: float


@dataclass(frozen=True)
@_defaults_from("data", "synthetic")
class SyntheticSpec:
    """The synthetic drift benchmark (paper eq. 4): K sources sharing r* plus a drift each."""

    K: int
    dim: int
    n_train: int
    n_calib: int
    n_test: int
    drift: float
    reward_scale: float


@dataclass(frozen=True)
class ScenarioSpec:
    """One synthetic scenario (morelib.synthetic.scenarios): K sources, each with its own train size, label scale c_k,
    drift
    norm (× ‖r*‖) and share of the drift along r* (negative: opposes r*); a number applies to every source.
    `nonlinear` (a share in [0, 1]) switches to the latent benchmark (`synthetic.make_latent_benchmark`: every drift
    in quadratic features of a shared latent, r* with that share of its variance on quadratic features); `head` is the
    reward model every scheme fits (linear | mlp, the `head` section's trunk).

    An item of the `synthetic_scenarios.scenarios` list: the item defaults (the symmetric scenario) live here."""

    name: str
    why: str
    K: int = 4
    n_train: int | tuple[int, ...] = 1000
    source_scale: float | tuple[float, ...] = 1.0
    drift: float | tuple[float, ...] = 0.5
    drift_along: float | tuple[float, ...] = 0.0
    nonlinear: float | None = None
    head: HeadKind = "linear"


@dataclass(frozen=True)
@_defaults_from("synthetic_scenarios")
class ScenarioSweep:
    """The "when does MORE help?" sweep: every scenario × n_seeds × scheme on the synthetic benchmark."""

    n_seeds: int
    dim: int
    n_calib: int
    n_test: int
    reward_scale: float
    n_bins: int
    schemes: tuple[Scheme, ...]
    tuned_step: float
    tuned_max_points: int
    scenarios: tuple[ScenarioSpec, ...]


@dataclass(frozen=True)
@_defaults_from("data")
class DataConfig:
    """Where data comes from and which sources are used."""

    data_dir: str | None
    split: SplitSpec
    sources: tuple[SourceSpec, ...]
    synthetic: SyntheticSpec


@dataclass(frozen=True)
@_defaults_from("model")
class ModelConfig:
    """The backbone and how texts are tokenised for it."""

    name: str
    max_length: int
    dtype: Dtype
    padding_side: Side
    truncation_side: Side
    batch_size: int
    pooling: Pooling
    layer: int | None


@dataclass(frozen=True)
@_defaults_from("train")
class TrainConfig:
    """What both compute tiers share: the tier, the schemes, the balanced batch plan, seeds and the baselines."""

    tier: Tier
    schemes: tuple[Scheme, ...]
    batch_per_source: int
    resample_pairs: int | None
    seed_subsample: float
    seed_resample: SeedResample
    temperature_scaling: bool
    single_batch: int | None
    tuned_step: float
    tuned_max_points: int
    famo_lr: float
    famo_decay: float


@dataclass(frozen=True)
@_defaults_from("head")
class HeadConfig:
    """The feature tier: a reward model trained on frozen backbone features — the linear head alone
    (morelib.train.reward_head: lr, epochs, weight_decay) or a shared MLP trunk (depth × [Linear(width) + GELU]) before
    it (morelib.train.mlp_head: mlp_lr, mlp_epochs, mlp_weight_decay; the epoch is chosen on calibration NLL)."""

    kind: HeadKind
    lr: float
    epochs: int
    weight_decay: float
    share_prompt: bool
    width: int
    depth: int
    mlp_lr: float
    mlp_epochs: int
    mlp_weight_decay: float


@dataclass(frozen=True)
@_defaults_from("finetune")
class FinetuneConfig:
    """The fine-tuning tier: the whole backbone trained as a reward model (morelib.train.finetune)."""

    epochs: float
    steps: int | None
    lr: float
    weight_decay: float
    warmup_ratio: float
    max_device_pairs: int | None
    save_every: float
    save_steps: int | None
    logging_steps: int
    gradient_checkpointing: bool
    group_by_length: bool
    share_prompt: bool


@dataclass(frozen=True)
@_defaults_from("blocks")
class BlocksConfig:
    """The blocks tier: the backbone's top k blocks + final norm + score layer trained on cached hidden states."""

    k: int
    lr: float
    head_lr: float
    weight_decay: float
    epochs: int
    batch_size: int
    cache_dtype: StoreDtype
    tuned_max_points: int


@dataclass(frozen=True)
@_defaults_from("capacity")
class CapacityConfig:
    """The capacity curve (notebook 07): MultiTask, MORE and tuned per tier and batch per source."""

    tiers: tuple[CapacityTier, ...]
    batch_per_source: tuple[int, ...]
    blocks_batch_per_source: tuple[int, ...] | None
    max_seeds: int | None
    schemes: tuple[Scheme, ...]
    tuned_step: float
    tuned_max_points: int


@dataclass(frozen=True)
@_defaults_from("more")
class MoreConfig:
    """MORE's source weighting (paper §4): how the head gradients entering eq. 9's min-norm λ are prepared."""

    alpha: float
    normalization: Normalization


@dataclass(frozen=True)
@_defaults_from("rjs")
class RJSConfig:
    """Rejection-sampling alignment (paper §5.4): sampling, selection and SFT of the policy."""

    policy: str
    n_prompts: int
    n_samples: int
    max_new_tokens: int
    temperature: float
    top_p: float
    gen_batch_size: int
    sft_epochs: float
    sft_lr: float
    ppl_pairs: int
    schemes: tuple[Scheme, ...]
    prompt_sources: tuple[str, ...]
    n_eval_prompts: int
    sft_batch_size: int
    max_length: int
    dtype: Dtype
    backend: RJSBackend
    ct2_compute_type: CT2Compute
    bon_n: tuple[int, ...]
    keep_policies: bool

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens a sampled response is conditioned on (the last ones): max_length − max_new_tokens, so prompt
        and response fit max_length as in SFT and perplexity."""
        return self.max_length - self.max_new_tokens


@dataclass(frozen=True)
@_defaults_from("judge", "rm")
class JudgeRMConfig:
    """The `minilm-rm` judge (morelib.align.rm_judge): a Bradley–Terry head on another backbone's frozen features,
    trained on training pairs no selecting RM can touch."""

    model: str
    max_length: int
    pooling: Pooling
    batch_size: int
    train_pairs: int | None


@dataclass(frozen=True)
@_defaults_from("judge")
class JudgeConfig:
    """The judges of notebook 05 (Appendix D's pairwise judge, asked twice with positions swapped, and RM judges)."""

    kinds: tuple[JudgeKind, ...]
    model: str
    base_url: str | None
    api_key_env: str
    reliability_pairs: int | None
    max_query_chars: int
    timeout_s: float
    rm: JudgeRMConfig


@dataclass(frozen=True)
@_defaults_from("explore")
class ExploreConfig:
    """Interactive explorer settings."""

    train_pairs_per_source: int
    debounce_ms: int
    head_epochs: int
    batch_per_source: int
    reliability_bins: int
    n_boot: int
    seed: int


@dataclass(frozen=True)
@_defaults_from("diagnostics")
class DiagnosticsConfig:
    """Silent-failure guards during training."""

    chance_after_steps: int
    chance_band: float
    collapse_tol: float
    pinned_tol: float


@dataclass(frozen=True)
@_defaults_from()
class Config:
    """The whole validated configuration of one run (its defaults: params/default.yaml)."""

    profile: str
    seeds: tuple[int, ...]
    n_boot: int
    output_root: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    head: HeadConfig
    finetune: FinetuneConfig
    blocks: BlocksConfig
    capacity: CapacityConfig
    more: MoreConfig
    rjs: RJSConfig
    judge: JudgeConfig
    explore: ExploreConfig
    diagnostics: DiagnosticsConfig
    synthetic_scenarios: ScenarioSweep

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-able nested dict of this config."""
        return _plain(dataclasses.asdict(self))

    def source_names(self) -> list[str]:
        """Names of the configured sources, in order."""
        return [s.name for s in self.data.sources]


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


RENAMED: dict[str, str] = {  # old dotted key → its new name (issue 25 split `train:` into train, head and finetune)
    "train.head_lr": "head.lr",
    "train.head_epochs": "head.epochs",
    "train.head_weight_decay": "head.weight_decay",
    "model.share_prompt": "head.share_prompt",
    "train.epochs": "finetune.epochs",
    "train.steps": "finetune.steps",
    "train.lr": "finetune.lr",
    "train.weight_decay": "finetune.weight_decay",
    "train.warmup_ratio": "finetune.warmup_ratio",
    "train.save_steps": "finetune.save_steps",
    "train.logging_steps": "finetune.logging_steps",
    "train.gradient_checkpointing": "finetune.gradient_checkpointing",
    "train.group_by_length": "finetune.group_by_length",
    "train.share_prompt": "finetune.share_prompt",
}


_ACCUMULATION = (
    "gradient accumulation now follows from train.batch_per_source (pairs per update), the number of processes and "
    "finetune.max_device_pairs"
)
_JUDGES = "judge.kinds lists every judge to run (its first gives Table 2's W/T/L), e.g. [minilm-rm, gold-rm]"
REMOVED: dict[
    str, str
] = {  # old dotted key → what replaced it (issue 31: the global batch per update; issue 26: judges)
    "train.grad_accum": _ACCUMULATION,
    "finetune.grad_accum": _ACCUMULATION,
    "judge.kind": _JUDGES,
    "judge.gold_rm": _JUDGES,
}


def _reject_renamed(raw: dict[str, Any], where: str) -> None:
    """ConfigError naming the first key of the nested mapping `raw` that RENAMED moved (and its new name) or that
    REMOVED dropped (and what replaced it)."""
    for old, new in RENAMED.items():
        section, key = old.split(".")
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ConfigError(f"{where}: '{old}' was renamed to '{new}'")
    for old, why in REMOVED.items():
        section, key = old.split(".")
        if isinstance(raw.get(section), dict) and key in raw[section]:
            raise ConfigError(f"{where}: '{old}' was removed: {why}")


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
        diff = _read_yaml(path)
        _reject_renamed(diff, f"params file {path}")
        raw = _merge(raw, diff)
    raw["profile"] = raw.get("profile", Path(path).stem)
    return _overridden(raw, {**(overrides or {}), **kw})


def with_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """A validated copy of `cfg` with dotted `overrides` applied (e.g. {"more.normalization": "loss+"})."""
    return _overridden(cfg.to_dict(), overrides)


def _overridden(raw: dict[str, Any], overrides: dict[str, Any]) -> Config:
    """The validated Config of plain data `raw` with dotted `overrides` applied."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        _apply_override(nested, dotted, value)
    _reject_renamed(nested, "override")
    for dotted, value in overrides.items():
        _apply_override(raw, dotted, value)
    cfg = _build(Config, raw)
    validate(cfg)
    return cfg


def _check(ok: bool, message: str) -> None:
    """Raise ConfigError(message) unless ok."""
    if not ok:
        raise ConfigError(message)


def validate(cfg: Config) -> None:
    """Check every enumerated value, value ranges and combinations that types alone cannot express."""
    _check_choices(cfg)
    _check(len(cfg.seeds) > 0, "'seeds' must list at least one seed")
    repeated = sorted({s for s in cfg.seeds if cfg.seeds.count(s) > 1})
    _check(not repeated, f"'seeds' repeats {repeated} in {list(cfg.seeds)}: each seed is one fit, list each once")
    _check(cfg.n_boot > 0, f"'n_boot' must be positive, got {cfg.n_boot}")
    split = cfg.data.split
    for name in ("train", "calib", "test"):
        _check(0 <= getattr(split, name) <= 1, f"'data.split.{name}' must be in [0, 1]")
    _check(abs(split.train + split.calib + split.test - 1) < 1e-6, "'data.split' fractions must sum to 1")
    names = [s.name for s in cfg.data.sources]
    _check(len(names) == len(set(names)), f"'data.sources' names must be unique, got {names}")
    for i, src in enumerate(cfg.data.sources):
        _check_loader(src.loader, f"data.sources[{i}].loader")
        for key in ("train_pairs", "calib_pairs", "test_pairs"):
            n = getattr(src, key)
            _check(
                n is None or n > 0,
                f"'data.sources[{i}].{key}' must be positive, got {n} (or null: all pairs of that side)",
            )
    syn = cfg.data.synthetic
    for name in ("K", "dim", "n_train", "n_calib", "n_test"):
        _check(getattr(syn, name) > 0, f"'data.synthetic.{name}' must be positive, got {getattr(syn, name)}")
    _check(cfg.model.max_length > 0, f"'model.max_length' must be positive, got {cfg.model.max_length}")
    _check(cfg.model.batch_size > 0, f"'model.batch_size' must be positive, got {cfg.model.batch_size}")
    _check(
        (cfg.model.pooling == "last" and cfg.model.layer is None) or cfg.train.tier == "features",
        "'model.pooling' / 'model.layer' choose frozen features: they need train.tier 'features' "
        f"(got pooling '{cfg.model.pooling}', layer {cfg.model.layer}; fine-tuning scores the last token)",
    )
    _validate_train(cfg.train)
    _validate_head(cfg.head)
    _validate_finetune(cfg.finetune)
    _validate_blocks(cfg.blocks)
    _check(
        not (cfg.finetune.share_prompt and cfg.train.tier == "finetune") or cfg.model.truncation_side == "left",
        "'finetune.share_prompt' cuts the shared prompt on the left: fine-tuning with it needs model.truncation_side "
        f"'left', got '{cfg.model.truncation_side}' (or set finetune.share_prompt false)",
    )
    _check(0 < cfg.more.alpha <= 1, f"'more.alpha' must be in (0, 1], got {cfg.more.alpha}")
    _check_subset(cfg.rjs.schemes, TRAINED_SCHEMES, "rjs.schemes")
    _validate_rjs(cfg.rjs)
    for key in ("train_pairs_per_source", "head_epochs", "batch_per_source", "reliability_bins", "n_boot"):
        _check(getattr(cfg.explore, key) > 0, f"'explore.{key}' must be positive, got {getattr(cfg.explore, key)}")
    _check(cfg.explore.debounce_ms >= 0, f"'explore.debounce_ms' must be ≥ 0, got {cfg.explore.debounce_ms}")
    _validate_sweep(cfg.synthetic_scenarios)
    _validate_capacity(cfg.capacity)
    _validate_judge(cfg.judge)


def _validate_judge(j: JudgeConfig) -> None:
    """Range checks of the judge section: judges listed once each, positive sizes (null: all pairs)."""
    _check(
        len(j.kinds) > 0 and len(set(j.kinds)) == len(j.kinds),
        f"'judge.kinds' must list distinct judges (first: Table 2's), got {list(j.kinds)}",
    )
    for key, n in (("reliability_pairs", j.reliability_pairs), ("rm.train_pairs", j.rm.train_pairs)):
        _check(n is None or n > 0, f"'judge.{key}' must be positive, got {n} (or null: all pairs)")
    for key, n in (
        ("max_query_chars", j.max_query_chars),
        ("rm.max_length", j.rm.max_length),
        ("rm.batch_size", j.rm.batch_size),
    ):
        _check(n > 0, f"'judge.{key}' must be positive, got {n}")
    _check(j.timeout_s > 0, f"'judge.timeout_s' must be positive, got {j.timeout_s}")


def _validate_rjs(r: RJSConfig) -> None:
    """Sizes of the rjs section positive; best-of-n sizes distinct, increasing, from 1, within the samples drawn."""
    for key in ("n_prompts", "n_samples", "max_new_tokens", "gen_batch_size", "n_eval_prompts", "ppl_pairs"):
        _check(getattr(r, key) > 0, f"'rjs.{key}' must be positive, got {getattr(r, key)}")
    n = list(r.bon_n)
    _check(
        bool(n) and n[0] == 1 and all(a < b for a, b in zip(n, n[1:])),
        f"'rjs.bon_n' must be increasing best-of-n sizes starting at 1 (the baseline), got {n}",
    )
    _check(
        n[-1] <= r.n_samples,
        f"'rjs.bon_n' asks for best of {n[-1]} but 'rjs.n_samples' draws only {r.n_samples} per prompt: "
        f"raise rjs.n_samples to ≥ {n[-1]} or drop the larger n",
    )
    _check(
        r.max_length > r.max_new_tokens,
        f"'rjs.max_length' ({r.max_length}) must exceed 'rjs.max_new_tokens' ({r.max_new_tokens}): sampled responses "
        f"are conditioned on the last max_length − max_new_tokens prompt tokens",
    )


def _validate_capacity(c: CapacityConfig) -> None:
    """Range checks of the capacity section: tiers and batch sizes listed once each, schemes with multitask and more."""
    _check(
        len(c.tiers) > 0 and len(set(c.tiers)) == len(c.tiers),
        f"'capacity.tiers' must list distinct tiers, got {list(c.tiers)}",
    )
    for key in ("batch_per_source", "blocks_batch_per_source"):
        sizes = getattr(c, key)
        _check(
            (sizes is None and key.startswith("blocks"))
            or (sizes and all(b > 0 for b in sizes) and len(set(sizes)) == len(sizes)),
            f"'capacity.{key}' must list distinct positive batch sizes, got {sizes}",
        )
    _check(
        c.max_seeds is None or c.max_seeds > 0,
        f"'capacity.max_seeds' must be positive (or null: all of 'seeds'), got {c.max_seeds}",
    )
    _check_subset(c.schemes, CAPACITY_SCHEMES, "capacity.schemes")
    _check(
        {"multitask", "more"} <= set(c.schemes),
        f"'capacity.schemes' must include multitask and more, got {list(c.schemes)}",
    )
    _check_grid(c.tuned_step, c.tuned_max_points, "capacity")


def _check_loader(loader: str, where: str) -> None:
    """DataError (the data loaders' own error) naming the valid loaders, unless `loader` is one or a local file."""
    if loader not in LOADERS and not loader.endswith(LOCAL_SUFFIXES):
        raise DataError(_choice_error(loader, (*LOADERS, f"a path ending in {'|'.join(LOCAL_SUFFIXES)}"), where))


def _choice_error(value: Any, choices: Sequence[Any], where: str, prefix: str = "") -> str:
    """ "<prefix>'where' must be one of a, b, c, got 'x' (did you mean 'y'?)"."""
    match = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    return f"{prefix}'{where}' must be one of {', '.join(map(str, choices))}, got '{value}'{hint}"


def _check_subset(values: Sequence[str], allowed: Sequence[str], where: str, prefix: str = "") -> None:
    """ConfigError naming the first of `values` not in `allowed`."""
    for i, value in enumerate(values):
        _check(value in allowed, _choice_error(value, allowed, f"{where}[{i}]", prefix))


def _check_choices(node: Any, where: str = "") -> None:
    """ConfigError for a `Literal`-typed field (or list item) anywhere in the config tree outside its choices."""
    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value, tp, path = getattr(node, f.name), hints[f.name], f"{where}.{f.name}" if where else f.name
        args = typing.get_args(tp)
        if typing.get_origin(tp) is Literal:
            _check(value in args, _choice_error(value, args, path))
        elif typing.get_origin(tp) is tuple and args and typing.get_origin(args[0]) is Literal:
            _check_subset(value, typing.get_args(args[0]), path)
        elif dataclasses.is_dataclass(value):
            _check_choices(value, path)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for i, item in enumerate(value):
                _check_choices(item, f"{path}[{i}]")


def _validate_train(t: TrainConfig) -> None:
    """Range checks of the section both tiers share."""
    _check(t.batch_per_source > 0, f"'train.batch_per_source' must be positive, got {t.batch_per_source}")
    _check(t.resample_pairs is None or t.resample_pairs > 0, "'train.resample_pairs' must be positive or null")
    _check(t.single_batch is None or t.single_batch > 0, "'train.single_batch' must be positive or null")
    _check(0.0 < t.seed_subsample <= 1.0, f"'train.seed_subsample' must be in (0, 1], got {t.seed_subsample}")
    _check_grid(t.tuned_step, t.tuned_max_points, "train")
    _check(t.famo_lr > 0 and t.famo_decay >= 0, "'train.famo_lr' must be > 0 and 'train.famo_decay' ≥ 0")


def _validate_head(h: HeadConfig) -> None:
    """Range checks of the feature tier's head schedule and trunk (at least one layer of at least one unit)."""
    _check(h.lr > 0, f"'head.lr' must be positive, got {h.lr}")
    _check(h.epochs > 0, f"'head.epochs' must be positive, got {h.epochs}")
    _check(h.weight_decay >= 0, f"'head.weight_decay' must be ≥ 0, got {h.weight_decay}")
    _check(h.width > 0, f"'head.width' must be a positive number of hidden units, got {h.width}")
    _check(h.depth >= 1, f"'head.depth' must be ≥ 1 hidden layer, got {h.depth} (for no trunk use head.kind linear)")
    _check(h.mlp_lr > 0, f"'head.mlp_lr' must be positive, got {h.mlp_lr}")
    _check(h.mlp_epochs > 0, f"'head.mlp_epochs' must be positive, got {h.mlp_epochs}")
    _check(h.mlp_weight_decay >= 0, f"'head.mlp_weight_decay' must be ≥ 0, got {h.mlp_weight_decay}")


def _validate_finetune(f: FinetuneConfig) -> None:
    """Range checks of the fine-tuning tier."""
    _check(f.lr > 0, f"'finetune.lr' must be positive, got {f.lr}")
    _check(f.epochs > 0, f"'finetune.epochs' must be positive, got {f.epochs}")
    _check(f.steps is None or f.steps > 0, f"'finetune.steps' must be positive or null, got {f.steps}")
    _check(f.weight_decay >= 0, f"'finetune.weight_decay' must be ≥ 0, got {f.weight_decay}")
    _check(0 < f.save_every <= 1, f"'finetune.save_every' must be a share of the updates in (0, 1], got {f.save_every}")
    _check(
        f.save_steps is None or f.save_steps > 0, f"'finetune.save_steps' must be positive or null, got {f.save_steps}"
    )
    _check(
        f.max_device_pairs is None or f.max_device_pairs > 0,
        f"'finetune.max_device_pairs' must be positive or null, got {f.max_device_pairs}",
    )


def _check_grid(step: float, max_points: int, section: str) -> None:
    """The `tuned` simplex grid of `section`: step = 1/m for a positive integer m, and a positive point cap."""
    _check(
        0 < step <= 1 and abs(round(1 / step) * step - 1) < 1e-9,
        f"'{section}.tuned_step' must be 1/m for a positive integer m (e.g. 0.25), got {step}",
    )
    _check(max_points > 0, f"'{section}.tuned_max_points' must be positive, got {max_points}")


def _validate_blocks(b: BlocksConfig) -> None:
    """Range checks of the blocks tier (k above the backbone's layer count is checked where the model is loaded)."""
    _check(b.k >= 1, f"'blocks.k' must be ≥ 1 (the top k transformer blocks are trained), got {b.k}")
    _check(b.lr > 0 and b.head_lr > 0, f"'blocks.lr' and 'blocks.head_lr' must be positive, got {b.lr}, {b.head_lr}")
    _check(b.weight_decay >= 0, f"'blocks.weight_decay' must be ≥ 0, got {b.weight_decay}")
    for key in ("epochs", "batch_size", "tuned_max_points"):
        _check(getattr(b, key) > 0, f"'blocks.{key}' must be positive, got {getattr(b, key)}")


def data_root(cfg: Config | DataConfig | str | Path | None) -> Path | None:
    """The local data root of a config (or a `data.data_dir` value): data_dir, else $MORE_DATA_DIR, else
    ../shared/data beside the repository; None for "hub"."""
    data_dir = cfg.data.data_dir if isinstance(cfg, Config) else cfg.data_dir if isinstance(cfg, DataConfig) else cfg
    if data_dir is not None and str(data_dir) == "hub":
        return None
    if data_dir:
        return Path(os.path.expandvars(os.path.expanduser(str(data_dir))))
    if os.environ.get("MORE_DATA_DIR"):
        return Path(os.path.expanduser(os.environ["MORE_DATA_DIR"]))
    return DEFAULT_DATA_ROOT


def parse_overrides(overrides: str | dict[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """Dotted overrides → {key: value}: a dict, a YAML/JSON mapping string (a notebook's `overrides`), or a list of
    `key=value` strings (run_all.sh -p, the finetune CLI) whose values are parsed as YAML."""
    if overrides is None or isinstance(overrides, dict):
        return dict(overrides or {})
    if isinstance(overrides, str):
        try:
            data = yaml.safe_load(overrides) if overrides.strip() else {}
        except yaml.YAMLError as err:
            raise ConfigError(f"'overrides' is not valid YAML/JSON: {err}") from err
        if not isinstance(data or {}, dict):
            raise ConfigError(f"'overrides' must be a mapping like {{\"head.lr\": 0.001}}, got {overrides!r}")
        return dict(data or {})
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(item, str) for item in overrides):
        raise ConfigError(
            f"'overrides' must be a YAML/JSON mapping string or a dict, "
            f"got {type(overrides).__name__}: {overrides!r} (or a list of key=value strings)"
        )
    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' must look like key=value (e.g. finetune.lr=1e-5)")
        out[key.strip()] = yaml.safe_load(value)
    return out


def check_notebook_params(cfg: Config, **params: Any) -> None:
    """ConfigError for a notebook parameter outside its choices: paper_model (a base model of the paper's tables),
    focus_source and hh_sources (configured sources), k_order (sources of this profile or of default.yaml; one not
    configured here is skipped by the K-ablation and named)."""
    sources = cfg.source_names()
    known = list(dict.fromkeys(sources + [s["name"] for s in DEFAULTS["data"]["sources"]]))
    for name, value in params.items():
        if name == "paper_model":
            _check(value in PAPER_MODELS, _choice_error(value, PAPER_MODELS, name, "notebook parameter "))
        elif name == "focus_source":
            _check(value in sources, _choice_error(value, sources, name, "notebook parameter "))
        elif name in ("k_order", "hh_sources"):
            _check(
                isinstance(value, (list, tuple)) and len(value) > 0,
                f"notebook parameter '{name}' must be a non-empty list of source names, got {value!r}",
            )
            _check(len(set(value)) == len(value), f"notebook parameter '{name}' repeats a source: {list(value)}")
            _check_subset(value, known if name == "k_order" else sources, name, "notebook parameter ")
        else:
            raise ConfigError(f"unknown notebook parameter '{name}'{_closest(name, list(NOTEBOOK_PARAMS))}")


NOTEBOOK_PARAMS = ("paper_model", "focus_source", "k_order", "hh_sources")  # checked by check_notebook_params
_SCENARIO_BOUNDS = {
    "n_train": (1, float("inf")),
    "source_scale": (1e-12, float("inf")),
    "drift": (0.0, float("inf")),
    "drift_along": (-1.0, 1.0),
}


def _validate_sweep(sweep: ScenarioSweep) -> None:
    """Range checks of the synthetic scenario sweep: sizes, schemes, and every per-source list of length K."""
    _check(sweep.n_seeds >= 2, f"'synthetic_scenarios.n_seeds' must be ≥ 2 (a CI over seeds), got {sweep.n_seeds}")
    for key in ("dim", "n_calib", "n_test", "n_bins"):
        _check(getattr(sweep, key) > 0, f"'synthetic_scenarios.{key}' must be positive, got {getattr(sweep, key)}")
    _check(sweep.reward_scale > 0, f"'synthetic_scenarios.reward_scale' must be positive, got {sweep.reward_scale}")
    _check_grid(sweep.tuned_step, sweep.tuned_max_points, "synthetic_scenarios")
    _check_subset(sweep.schemes, SWEEP_SCHEMES, "synthetic_scenarios.schemes")
    _check({"multitask", "more"} <= set(sweep.schemes), "'synthetic_scenarios.schemes' must include multitask and more")
    names = [sc.name for sc in sweep.scenarios]
    _check(len(names) == len(set(names)), f"'synthetic_scenarios.scenarios' names must be unique, got {names}")
    for i, sc in enumerate(sweep.scenarios):
        where = f"synthetic_scenarios.scenarios[{i}] ({sc.name})"
        _check(sc.K >= 2, f"'{where}.K' must be ≥ 2, got {sc.K}")
        _check(
            sc.nonlinear is None
            or (
                0 <= sc.nonlinear <= 1
                and not any(sc.drift_along if isinstance(sc.drift_along, tuple) else (sc.drift_along,))
            ),
            f"'{where}.nonlinear' must be a share in [0, 1] (or null: the linear eq. 4 benchmark), and a latent "
            f"scenario's drifts have no direction along r* (drift_along 0), got {sc.nonlinear}, {sc.drift_along}",
        )
        for key, (lo, hi) in _SCENARIO_BOUNDS.items():
            value = getattr(sc, key)
            values = value if isinstance(value, tuple) else (value,) * sc.K
            _check(len(values) == sc.K, f"'{where}.{key}' must be one number or K={sc.K} numbers, got {list(values)}")
            _check(
                all(lo <= v <= hi for v in values),
                f"'{where}.{key}' values must be in [{lo:g}, {hi:g}], got {list(values)}",
            )
