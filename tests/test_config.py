"""Config: every profile loads; unknown keys, wrong types and impossible values fail with one clear ConfigError."""
import pytest

from morelib.config import PARAMS_DIR, load_config
from morelib.errors import ConfigError


@pytest.mark.parametrize("profile", sorted(p.stem for p in PARAMS_DIR.glob("*.yaml")))
def test_every_profile_loads(profile):
    cfg = load_config(profile)
    assert cfg.profile == profile
    assert cfg.data.sources, "every profile names its sources"


def test_override_applies_and_is_typed():
    cfg = load_config("tiny", {"train.head_lr": 1, "seeds": [7]})
    assert cfg.train.head_lr == 1.0 and isinstance(cfg.train.head_lr, float)
    assert cfg.seeds == (7,)


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"unknown parameter 'train.lrr'.*did you mean 'lr'"):
        load_config("tiny", {"train.lrr": 1e-3})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"'model.max_length' must be int"):
        load_config("tiny", {"model.max_length": "long"})


@pytest.mark.parametrize("key,value,pattern", [
    ("model.max_length", 0, "must be positive"),
    ("train.batch_per_source", -1, "must be positive"),
    ("train.normalization", "l3", "normalization"),
    ("train.schemes", ["moer"], "unknown scheme 'moer'.*more"),
    ("data.split", {"train": 0.9, "calib": 0.2, "test": 0.2}, "sum to 1"),
    ("seeds", [], "at least one seed"),
    ("model.pooling", "max", "'model.pooling' must be one of last, mean"),
    ("model.layer", "20", "'model.layer' must be int"),
])
def test_impossible_values(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config("tiny", {key: value})


def test_pair_caps_null_means_all_and_zero_fails():
    cfg = load_config("default")
    assert all(s.test_pairs is None and s.calib_pairs == 200 and s.train_pairs == 400 for s in cfg.data.sources)
    assert len(cfg.seeds) == 5
    src = {"name": "h", "label": "H", "loader": "hh-helpful", "train_pairs": 5, "calib_pairs": None, "test_pairs": None}
    assert load_config("tiny", {"data.sources": [src]}).data.sources[0].calib_pairs is None
    with pytest.raises(ConfigError, match=r"'data.sources\[0\].test_pairs' must be positive, got 0"):
        load_config("tiny", {"data.sources": [{**src, "test_pairs": 0}]})


def test_feature_choices_need_the_feature_tier():
    cfg = load_config("tiny", {"model.pooling": "mean", "model.layer": -2})
    assert (cfg.model.pooling, cfg.model.layer) == ("mean", -2)
    assert (load_config("default").model.pooling, load_config("default").model.layer) == ("last", None)
    with pytest.raises(ConfigError, match="need train.tier 'features'"):
        load_config("tiny", {"model.layer": 3, "train.tier": "finetune"})


def test_unknown_profile_suggests():
    with pytest.raises(ConfigError, match="unknown profile 'tinny'.*tiny"):
        load_config("tinny")


def test_to_dict_roundtrip():
    cfg = load_config("default")
    again = load_config("default", {k: v for k, v in cfg.to_dict().items() if k != "profile"})
    assert again == cfg
