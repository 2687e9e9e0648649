"""Tests of morelib.align.judge: the swap-and-tie rule and W/T/L counting (scripted judge), verdict parsing, the
Appendix D prompt against the paper text, the HTTP judge against a fake local server, the local LM judge on
tiny-random; and the findings sentences formatted from a judge's numbers."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.align import judge, rjs  # noqa: E402
from morelib.core.errors import ModelError  # noqa: E402
from morelib.study import findings

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
