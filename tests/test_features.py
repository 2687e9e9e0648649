"""Tests of morelib.backbone.features: PairFeatures, the content-keyed cache (hits, corruption, keys) and batching
order."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import features as F  # noqa: E402
from morelib.backbone.model import pooled_features  # noqa: E402
from morelib.core.config import ModelConfig  # noqa: E402
from morelib.core.errors import ConfigError, DataError  # noqa: E402
from morelib.data.sources import Pair  # noqa: E402

CFG = ModelConfig(name="tiny-random", max_length=64, dtype="fp32", batch_size=3)
PAIRS = [
    Pair(
        prompt=f"\n\nHuman: question {i}{' padding' * i}\n\nAssistant:",
        chosen=f" good answer {i}",
        rejected=f" bad{'!' * (3 * i)}",
        source="toy",
        group=str(i),
    )
    for i in range(7)
]


@pytest.fixture
def forward_calls():
    """Count forward passes of the cached tiny backbone (its base model: the shared-prefix path calls it directly)."""
    model, _, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    calls = []
    handle = model.base_model.register_forward_hook(lambda *_: calls.append(1))
    yield calls
    handle.remove()


def _oracle(texts: list[str], max_length: int) -> torch.Tensor:
    """Features of each text run alone, unpadded, left-truncated: the independent computation."""
    model, tok, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"][-max_length:]])
            rows.append(pooled_features(model, ids, torch.ones_like(ids))[0])
    return torch.stack(rows)


def test_extract_matches_unpadded_single_runs_in_input_order(tmp_path):
    pf = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert pf.chosen.shape == (7, 32) and pf.chosen.dtype == torch.float32
    torch.testing.assert_close(
        pf.chosen, _oracle([p.prompt + p.chosen for p in PAIRS], CFG.max_length), atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(
        pf.rejected, _oracle([p.prompt + p.rejected for p in PAIRS], CFG.max_length), atol=1e-5, rtol=1e-4
    )
    assert pf.source == "toy"


def test_response_lengths_are_token_counts(tmp_path):
    pf = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert pf.chosen_len.tolist() == [len(p.chosen.encode()) for p in PAIRS]  # byte tokenizer: 1 token per byte
    assert pf.rejected_len.tolist() == [len(p.rejected.encode()) for p in PAIRS]


def test_cache_hit_is_identical_and_runs_no_forward(tmp_path, forward_calls):
    first = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert len(forward_calls) == 5  # 14 texts in batches of 3
    second = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert len(forward_calls) == 5
    assert torch.equal(first.chosen, second.chosen) and torch.equal(first.rejected, second.rejected)
    shared = F.extract(PAIRS, CFG, tmp_path, progress=False, share_prompt=True)  # same keys: all hits
    assert len(forward_calls) == 5 and torch.equal(first.chosen, shared.chosen)
    second = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert len(forward_calls) == 5
    assert torch.equal(first.chosen, second.chosen) and torch.equal(first.rejected, second.rejected)


def test_shared_texts_are_reused(tmp_path, forward_calls):
    F.extract_texts(["alpha", "beta"], CFG, tmp_path, progress=False)
    calls = len(forward_calls)
    out = F.extract_texts(["beta", "alpha", "beta"], CFG, tmp_path, progress=False)
    assert len(forward_calls) == calls
    torch.testing.assert_close(out[0], out[2])


def test_corrupted_shard_is_rebuilt(tmp_path, forward_calls, caplog):
    first = F.extract(PAIRS, CFG, tmp_path, progress=False)
    (shard,) = list(tmp_path.glob("*/shard-*.safetensors"))
    raw = bytearray(shard.read_bytes())
    raw[-8:] = b"\xff" * 8  # flip the last feature values: the header still parses, the checksum does not match
    shard.write_bytes(bytes(raw))
    calls = len(forward_calls)
    with caplog.at_level(logging.WARNING, logger="morelib.backbone.features"):
        again = F.extract(PAIRS, CFG, tmp_path, progress=False)
    assert "checksum" in caplog.text
    assert len(forward_calls) > calls
    assert torch.equal(first.chosen, again.chosen) and torch.equal(first.rejected, again.rejected)


def test_truncated_shard_is_rebuilt(tmp_path, caplog):
    first = F.extract_texts(["one", "two"], CFG, tmp_path, progress=False)
    (shard,) = list(tmp_path.glob("*/shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:20])
    with caplog.at_level(logging.WARNING, logger="morelib.backbone.features"):
        again = F.extract_texts(["one", "two"], CFG, tmp_path, progress=False)
    assert "unreadable" in caplog.text
    assert torch.equal(first, again)


def test_key_changes_with_max_length_and_truncation(tmp_path, forward_calls):
    _, _, identity = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    base = F.model_key(CFG, identity, torch.float32)
    assert F.model_key(replace(CFG, max_length=32), identity, torch.float32) != base
    assert F.model_key(replace(CFG, truncation_side="right"), identity, torch.float32) != base
    assert F.model_key(CFG, identity, torch.bfloat16) != base
    assert F.model_key(replace(CFG, batch_size=99), identity, torch.float32) == base
    F.extract(PAIRS, CFG, tmp_path, progress=False)
    calls = len(forward_calls)
    short = F.extract(PAIRS, replace(CFG, max_length=16), tmp_path, progress=False)
    assert len(forward_calls) > calls
    torch.testing.assert_close(short.chosen, _oracle([p.prompt + p.chosen for p in PAIRS], 16), atol=1e-5, rtol=1e-4)


def _hidden_oracle(pairs: list[Pair], side: str, layer: int, mean: bool) -> torch.Tensor:
    """Per-text unpadded forward with output_hidden_states: the layer's last token, or the mean of its response
    tokens."""
    model, tok, _ = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    rows = []
    with torch.inference_mode():
        for p in pairs:
            response = getattr(p, side)
            ids = torch.tensor([tok(p.prompt + response)["input_ids"][-CFG.max_length :]])
            hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]
            m = min(len(tok(response, add_special_tokens=False)["input_ids"]), ids.shape[1]) if mean else 1
            rows.append(hidden[-m:].mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("pooling,layer", [("mean", None), ("mean", 1), ("last", 0), ("last", -1)])
def test_pooling_and_layer_match_unpadded_hidden_states(tmp_path, pooling, layer):
    cfg = replace(CFG, pooling=pooling, layer=layer)
    pf = F.extract(PAIRS, cfg, tmp_path, progress=False)
    for side in ("chosen", "rejected"):
        expected = _hidden_oracle(PAIRS, side, -1 if layer is None else layer, pooling == "mean")
        torch.testing.assert_close(getattr(pf, side), expected, atol=1e-5, rtol=1e-4)
    if (pooling, layer) == ("last", -1):  # the last hidden state (after the final norm) is the score layer's input
        torch.testing.assert_close(
            pf.chosen, F.extract(PAIRS, CFG, tmp_path, progress=False).chosen, atol=1e-5, rtol=1e-4
        )


def test_default_feature_key_is_unchanged_and_choices_change_it(tmp_path):
    _, _, identity = F.backbone(CFG.name, CFG.dtype, CFG.padding_side)
    before = hashlib.sha256("\0".join([CFG.name, identity, "fp32", str(CFG.max_length), CFG.truncation_side]).encode())
    assert F.model_key(CFG, identity, torch.float32) == before.hexdigest()  # caches written before stay valid
    assert F.text_key("k", "text") == hashlib.sha256(b"k\0text").hexdigest()
    keys = {
        F.model_key(replace(CFG, pooling=p, layer=layer), identity, torch.float32)
        for p, layer in [("last", None), ("mean", None), ("last", -1), ("last", 1), ("mean", 1)]
    }
    assert len(keys) == 5
    with pytest.raises(ConfigError, match="'model.layer' = 3 is out of range"):
        F.extract(PAIRS, replace(CFG, layer=3), tmp_path, progress=False)  # 2 layers → 3 hidden states


def test_extract_rejects_mixed_sources(tmp_path):
    mixed = PAIRS[:2] + [replace(PAIRS[2], source="other")]
    with pytest.raises(DataError, match="one source"):
        F.extract(mixed, CFG, tmp_path, progress=False)


def test_pair_features_helpers():
    chosen, rejected = torch.randn(4, 3), torch.randn(4, 3)
    pf = F.PairFeatures(chosen, rejected, "s", torch.arange(4), torch.arange(4) + 10)
    assert len(pf) == 4 and pf.dim == 3
    torch.testing.assert_close(pf.diff, chosen - rejected)
    sub = pf.subset([3, 1])
    assert torch.equal(sub.chosen, chosen[[3, 1]]) and sub.rejected_len.tolist() == [13, 11]
    both = F.PairFeatures.cat([pf, F.PairFeatures(chosen[:1], rejected[:1], "t")])
    assert len(both) == 5 and both.source == "s+t" and both.chosen_len is None
    assert F.PairFeatures.cat([pf, pf]).source == "s"


def test_pair_features_shape_mismatch_named():
    with pytest.raises(DataError, match="rejected"):
        F.PairFeatures(torch.zeros(3, 2), torch.zeros(2, 2), "s")
    with pytest.raises(DataError, match="chosen_len"):
        F.PairFeatures(torch.zeros(3, 2), torch.zeros(3, 2), "s", chosen_len=torch.zeros(2))
