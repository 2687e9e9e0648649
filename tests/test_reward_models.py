"""RM identity and protocol: RMKey prints today's key strings and parses them back; bad keys fail clearly; a head and
a fine-tuned RM answer the same `reward_diff` / `rewards` calls."""

import dataclasses

import numpy as np
import pytest
import torch

from morelib.backbone import features
from morelib.core.errors import RunError
from morelib.train import reward_head, reward_models
from morelib.train.reward_models import RMKey

CASES = [
    (RMKey("more", seed=0), "more/seed0"),
    (RMKey("single", source="helpful", seed=0), "single:helpful/seed0"),
    (RMKey("more", subset=["helpful", "harmless"], seed=1), "more@helpful+harmless/seed1"),
    (RMKey("more+T", seed=12), "more+T/seed12"),
    (RMKey("single+T", source="oasst1", seed=2), "single+T:oasst1/seed2"),
]


@pytest.mark.parametrize(("key", "text"), CASES)
def test_string_form_and_round_trip(key, text):
    assert str(key) == text and RMKey.parse(text) == key and hash(RMKey.parse(text)) == hash(key)


def test_fields_name_and_scheme_relabel():
    key = RMKey.parse("more@a+b/seed3")
    assert (key.scheme, key.source, key.subset, key.seed) == ("more", None, ("a", "b"), 3)
    assert key.name == "more@a+b" and str(key.with_scheme("more+T")) == "more+T@a+b/seed3"
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.seed = 4


@pytest.mark.parametrize("text", ["more", "more/seedx", "/seed0", "more/seed0/extra", "a:b:c/seed1", 3])
def test_bad_key_strings_fail_naming_the_shape(text):
    with pytest.raises(RunError, match="expected <scheme>"):
        RMKey.parse(text)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scheme": "", "seed": 0},
        {"scheme": "a/b", "seed": 0},
        {"scheme": "more", "seed": True},
        {"scheme": "more", "seed": "0"},
    ],
)
def test_bad_fields_fail(kwargs):
    with pytest.raises(RunError):
        RMKey(**kwargs)


def test_head_rm_scores_like_its_head():
    gen = torch.Generator().manual_seed(0)
    pf = features.PairFeatures(torch.randn(20, 5, generator=gen), torch.randn(20, 5, generator=gen), "a")
    head = reward_head.HeadModel(torch.randn(5, generator=gen), 0.2, torch.zeros(5), torch.full((5,), 2.0))
    rm = reward_models.HeadRM(head)
    d = rm.reward_diff(None, pf)
    assert d.dtype == np.float64 and np.array_equal(d, head.reward_diff(pf).numpy().astype(np.float64))
    assert torch.equal(rm.rewards([], [], pf.chosen), head.reward(pf.chosen)) and rm.uses_features
    with pytest.raises(RunError, match="features"):
        rm.reward_diff([], None)


def test_finetuned_rm_needs_pairs():
    rm = reward_models.FinetunedRM("nowhere", model_cfg=None)
    assert not rm.uses_features and rm.history == {} and rm.meta == {}
    with pytest.raises(RunError, match="pairs"):
        rm.reward_diff(None, None)


def test_keys_sort_as_their_strings():
    keys = [RMKey("single", source="helpful", seed=1), RMKey("more", seed=0), RMKey("more", subset=["a", "b"], seed=0)]
    assert [str(k) for k in sorted(keys)] == sorted(str(k) for k in keys)
