"""Tests of morelib.align.rjs: label mask, perplexity vs a manual cross-entropy, seeded sampling, best-of-n, SFT on
tiny-random."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.align import rjs  # noqa: E402
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import ConfigError, ModelError  # noqa: E402

PROMPTS = [
    "\n\nHuman: hi there\n\nAssistant:",
    "\n\nHuman: What is 2+2?\n\nAssistant: 4\n\nHuman: Are you sure?\n\nAssistant:",
]
RESPONSES = [" Hello! How can I help?", " Yes, two plus two is four."]


@pytest.fixture(scope="module")
def tiny():
    """The tiny-random causal LM and its byte tokenizer."""
    return rjs.load_causal_lm("tiny-random", dtype="fp32", device="cpu")


def test_hh_messages_alternate_roles():
    msgs = rjs.hh_messages(PROMPTS[1])
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert msgs[0]["content"] == "What is 2+2?" and msgs[2]["content"] == "Are you sure?"
    assert rjs.hh_messages("plain question") == [{"role": "user", "content": "plain question"}]


def test_encode_example_masks_prompt_and_keeps_eos(tiny):
    _, tok = tiny
    ex = rjs.encode_example(tok, PROMPTS[0], RESPONSES[0], max_length=512)
    n_prompt = len(tok(PROMPTS[0], add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n_prompt] == [rjs.IGNORE] * n_prompt
    assert ex["labels"][n_prompt:] == ex["input_ids"][n_prompt:]
    assert ex["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(ex["input_ids"][n_prompt:-1]) == RESPONSES[0]
    short = rjs.encode_example(tok, PROMPTS[1], RESPONSES[1], max_length=40)
    assert len(short["input_ids"]) == 40 and short["labels"][-1] == tok.eos_token_id  # prompt cut on the left


def _manual_ppl(policy, tok, prompts, responses) -> float:
    """exp(mean NLL of response tokens), one unpadded sequence at a time, log-softmax indexed by hand."""
    total, count = 0.0, 0
    for p, r in zip(prompts, responses):
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        r_ids = tok(r + tok.eos_token, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([p_ids + r_ids])
        with torch.no_grad():
            logp = torch.log_softmax(policy(input_ids=ids).logits[0].double(), dim=-1)
        for k, token in enumerate(r_ids):
            total -= float(logp[len(p_ids) + k - 1, token])
            count += 1
    return math.exp(total / count)


def test_perplexity_matches_manual_cross_entropy(tiny):
    policy, tok = tiny
    ours = rjs.perplexity(policy, tok, PROMPTS, RESPONSES, max_length=512, batch_size=2)
    assert ours == pytest.approx(_manual_ppl(policy, tok, PROMPTS, RESPONSES), rel=1e-4)
    nll, count = rjs.response_nll(policy, tok, PROMPTS, RESPONSES, batch_size=1)
    assert count.tolist() == [len(tok(r + tok.eos_token, add_special_tokens=False)["input_ids"]) for r in RESPONSES]


def test_generate_is_seeded_and_shaped(tiny):
    policy, tok = tiny
    kw = dict(n=3, max_new_tokens=6, temperature=0.8, top_p=0.95, batch_size=4, progress=False)
    a = rjs.generate(policy, tok, PROMPTS, seed=0, **kw)
    assert len(a) == 2 and all(len(c) == 3 and all(isinstance(s, str) for s in c) for c in a)
    assert a == rjs.generate(policy, tok, PROMPTS, seed=0, **kw)
    assert a != rjs.generate(policy, tok, PROMPTS, seed=1, **kw)
    greedy = rjs.generate(policy, tok, PROMPTS, seed=0, **{**kw, "temperature": 0.0})
    assert all(len(set(c)) == 1 for c in greedy)
    assert tok.padding_side == "right"  # restored after left-padded generation


def test_best_of_n_picks_argmax_first_on_ties():
    cands = [["a", "b", "c"], ["d", "e", "f"]]
    assert rjs.best_of_n(cands, [[0.1, 0.9, 0.3], [2.0, 2.0, 1.0]]) == ["b", "d"]
    with pytest.raises(ValueError, match="scores"):
        rjs.best_of_n(cands, [[0.1, 0.2]])
    with pytest.raises(ValueError, match="non-finite"):
        rjs.best_of_n(cands, [[0.1, float("nan"), 0.3], [1, 2, 3]])


def test_unknown_policy_names_the_problem():
    with pytest.raises(ModelError, match="unknown policy 'no-such-model'"):
        rjs.load_causal_lm("no-such-model")


def test_sft_changes_parameters_and_lowers_loss(tmp_path, tiny):
    cfg = load_config("tiny", {"rjs.sft_lr": 1e-2, "rjs.sft_epochs": 3.0}).rjs
    before, tok = tiny
    out = rjs.sft("tiny-random", PROMPTS, RESPONSES, tmp_path / "policy", cfg, seed=0)
    after, tok2 = rjs.load_causal_lm(out, dtype="fp32", device="cpu")
    changed = [n for n, p in after.state_dict().items() if not torch.equal(p, before.state_dict()[n])]
    assert len(changed) == len(before.state_dict())
    assert rjs.perplexity(after, tok2, PROMPTS, RESPONSES) < rjs.perplexity(before, tok, PROMPTS, RESPONSES)
    assert (out / "sft_log.json").exists()


def _greedy_ids(policy, tok, ids, max_new_tokens):
    """HF greedy new token ids of one unpadded prompt (token ids), EOS removed — the reference of the shared prefill."""
    with torch.inference_mode():
        seq = policy.generate(
            torch.tensor([ids]),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )[0, len(ids) :].tolist()
    return [t for t in seq if t != tok.eos_token_id]


def test_generate_reads_each_prompt_once_and_matches_plain_greedy(tiny):
    policy, tok = tiny
    prompts = [*PROMPTS, "\n\nHuman: Tell me a long story about a cat who learns to fly over the sea\n\nAssistant:"]
    for cut in (None, 12):
        ids = rjs.prompt_ids(tok, prompts, cut)
        assert cut is None or max(len(i) for i in ids) == cut  # the last `cut` tokens of each prompt are kept
        want = [rjs.clean_response(tok.decode(_greedy_ids(policy, tok, i, 10), skip_special_tokens=True)) for i in ids]
        # 2 prompts × 3 copies per batch: padded, the prompt cache repeated 3 times, each copy greedy like the plain run
        got = rjs.generate(
            policy,
            tok,
            prompts,
            n=3,
            max_new_tokens=10,
            temperature=0.0,
            batch_size=6,
            progress=False,
            max_prompt_tokens=cut,
        )
        assert got == [[w] * 3 for w in want]


def test_response_batch_loss_equals_the_full_logits_loss(tiny):
    policy, tok = tiny
    examples = [rjs.encode_example(tok, p, r, 512) for p, r in zip(PROMPTS, RESPONSES)]
    full = rjs._collate(tok, examples)  # right-padded, logits at every position
    batch = rjs.response_batch(tok, examples)
    assert batch["labels"].shape[1] == batch["logits_to_keep"] < batch["input_ids"].shape[1]
    assert int((batch["labels"] != rjs.IGNORE).sum()) == int((full["labels"] != rjs.IGNORE).sum())
    with torch.no_grad():
        assert float(policy(**batch).loss) == pytest.approx(float(policy(**full).loss), rel=1e-5)


def test_prompt_budget_is_checked_at_load():
    with pytest.raises(ConfigError, match="'rjs.max_length' \\(32\\) must exceed 'rjs.max_new_tokens' \\(32\\)"):
        load_config("tiny", {"rjs.max_length": 32, "rjs.max_new_tokens": 32})
    assert load_config("tiny").rjs.prompt_tokens == 128 - 8


def test_generate_samples_as_plain_generate_on_the_repeated_batch(tiny):
    policy, tok = tiny
    # the same seed and the same rows (each prompt repeated n times): reading each prompt once changes no sample
    got = rjs.generate(policy, tok, PROMPTS, n=3, max_new_tokens=8, temperature=1.0, top_p=0.95, batch_size=6, seed=4)
    ids = rjs.prompt_ids(tok, PROMPTS, None)
    order = sorted(range(len(PROMPTS)), key=lambda i: -len(ids[i]))
    tok.padding_side = "left"
    batch = tok.pad({"input_ids": [ids[i] for i in order for _ in range(3)]}, return_tensors="pt")
    tok.padding_side = "right"
    with torch.inference_mode(), rjs.rm_model._seeded(4, torch.device("cpu")):
        seqs = policy.generate(
            **batch, max_new_tokens=8, do_sample=True, temperature=1.0, top_p=0.95, pad_token_id=tok.pad_token_id
        )
    texts = [
        rjs.clean_response(t)
        for t in tok.batch_decode(seqs[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    ]
    want = [[""] * 3 for _ in PROMPTS]
    for k, text in enumerate(texts):
        want[order[k // 3]][k % 3] = text
    assert got == want and len({s for row in got for s in row}) > 2  # sampled, not greedy


@pytest.mark.filterwarnings("ignore:dtype bf16 .* on a CPU where")  # forced bf16 on a CPU whose probe finds it slow
def test_sft_under_bf16_autocast_keeps_fp32_weights_and_learns(tmp_path, tiny):
    cfg = load_config("tiny", {"rjs.sft_lr": 1e-2, "rjs.sft_epochs": 3.0, "rjs.dtype": "bf16"}).rjs
    before, tok = tiny
    out = rjs.sft("tiny-random", PROMPTS, RESPONSES, tmp_path / "policy", cfg, seed=0)
    after, tok2 = rjs.load_causal_lm(out, dtype="fp32", device="cpu")
    assert all(p.dtype == torch.float32 for p in after.parameters())  # mixed precision: the saved weights are fp32
    changed = [n for n, p in after.state_dict().items() if not torch.equal(p, before.state_dict()[n])]
    assert len(changed) == len(before.state_dict())
    assert rjs.perplexity(after, tok2, PROMPTS, RESPONSES) < rjs.perplexity(before, tok, PROMPTS, RESPONSES)
