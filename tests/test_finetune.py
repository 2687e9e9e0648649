"""Full fine-tuning tier on the tiny random model: Trainer loop, λ/loss logs, HF folder, MORE state in checkpoints,
NaN guard keeping the last good checkpoint, and SIGKILL mid-epoch + resume = uninterrupted run (bit-identical, CPU)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from morelib.core.config import load_config
from morelib.core.errors import ConfigError, TrainingError
from morelib.data import sampling
from morelib.data.sources import Pair
from morelib.train import finetune as ft

os.environ.setdefault("HF_HUB_OFFLINE", "1")
OVERRIDES = {
    "train.batch_per_source": 2,
    "finetune.steps": 4,
    "finetune.save_steps": 2,
    "finetune.logging_steps": 1,
    "finetune.lr": 1e-3,
    "model.max_length": 48,
}


def _pairs(n: int = 6) -> dict[str, list[Pair]]:
    words = ["kind", "rude", "safe", "risky", "short", "long", "clear", "vague"]
    out = {}
    for k, src in enumerate(["helpful", "harmless", "oasst1"]):
        out[src] = [
            Pair(
                f"Q{k}.{i}: say something? ",
                f"A {words[i % 4]} answer {i}.",
                f"meh {words[4 + i % 4]}",
                src,
                f"g{k}{i}",
            )
            for i in range(n)
        ]
    return out


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny", OVERRIDES)


@pytest.fixture(scope="module")
def more_run(cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "more"
    return out, ft.finetune(cfg, _pairs(), "more", out, seed=0)


def _weights(folder):
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_more_run_saves_hf_folder_logs_and_state(more_run):
    out, final = more_run
    trained = _weights(final)
    from morelib.backbone.model import load_reward_model

    start = load_reward_model("tiny-random", dtype="fp32", device="cpu")[0].state_dict()
    changed = [k for k in start if not torch.equal(start[k], trained[k])]
    assert "score.weight" in changed and len(changed) > len(start) // 2
    lines = [json.loads(x) for x in (out / ft.LOG_FILE).read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    lam = torch.tensor([[x[f"lam/{s}"] for s in ("helpful", "harmless", "oasst1")] for x in lines])
    assert torch.allclose(lam.sum(1), torch.ones(4), atol=1e-6) and (lam >= 0).all()
    assert all(x["loss/helpful"] > 0 for x in lines)
    state = torch.load(out / "checkpoint-2" / ft.STATE_FILE, weights_only=True)
    assert state["steps"] == 2 and state["momentum"].shape == (3, 32)
    assert torch.load(final / ft.STATE_FILE, weights_only=True)["steps"] == 4


def test_plan_is_balanced_and_seeded(cfg):
    pairs = _pairs()
    plan = ft.plan_for(pairs, cfg, seed=0)
    assert plan.shape == (4, 3, 2) and torch.equal(plan, ft.plan_for(pairs, cfg, seed=0))
    item = ft.BalancedBatches(pairs, plan)[0]
    assert item["source"] == [0, 0, 1, 1, 2, 2] and len(item["chosen"]) == 6


def test_collator_concatenates_chosen_then_rejected_right_padded(cfg):
    from morelib.backbone.model import load_reward_model

    _, tok = load_reward_model("tiny-random", device="cpu")
    item = ft.BalancedBatches(_pairs(), ft.plan_for(_pairs(), cfg, 0))[0]
    batch = ft.PairCollator(tok, 16, "left")([item])
    assert batch["input_ids"].shape[0] == 12 and batch["input_ids"].shape[1] <= 16
    assert (batch["attention_mask"][:, 0] == 1).all()  # right padding: every row starts with a real token
    first = tok.decode(batch["input_ids"][0][batch["attention_mask"][0] == 1])
    assert first.endswith(item["chosen"][0][-5:])  # left truncation keeps the end of the text


def test_nan_loss_stops_naming_step_and_keeps_checkpoint(cfg, tmp_path, monkeypatch):
    real = ft.MoreTrainer._pooled_forward

    def poisoned(self, model, input_ids, mask, **packed):  # packed: finetune.share_prompt's position_ids, score_at
        z, r = real(self, model, input_ids, mask, **packed)
        return z, r * float("nan") if self.state.global_step == 2 else r

    monkeypatch.setattr(ft.MoreTrainer, "_pooled_forward", poisoned)
    with pytest.raises(TrainingError, match="step 3"):
        ft.finetune(cfg, _pairs(), "multitask", tmp_path, seed=0)
    assert (tmp_path / "checkpoint-2" / "model.safetensors").exists()
    assert not (tmp_path / "checkpoint-3").exists()
    AutoModelForSequenceClassification.from_pretrained(tmp_path / "checkpoint-2")


def test_bad_inputs_fail_clearly(cfg, tmp_path):
    with pytest.raises(ConfigError, match="exactly one source"):
        ft.finetune(cfg, _pairs(), "single", tmp_path)
    with pytest.raises(ConfigError, match="unknown fine-tuning scheme"):
        ft.finetune(cfg, _pairs(), "raw", tmp_path)
    (tmp_path / "checkpoint-2").mkdir()
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        ft.finetune(cfg, _pairs(), "more", tmp_path)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    sys.path.insert(0, {tests!r})
    from test_finetune import OVERRIDES, _pairs
    from morelib.train import finetune as ft
    from morelib.core.config import load_config

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:  # checkpoint-2 is on disk, step 3 done but not saved: die mid-epoch
                os.kill(os.getpid(), signal.SIGKILL)

    ft.finetune(load_config("tiny", OVERRIDES), _pairs(), "more", {out!r}, seed=0, callbacks=[Kill()])
""")


def test_sigkill_and_resume_equals_uninterrupted_run(cfg, more_run, tmp_path):
    out = tmp_path / "killed"
    script = KILLED_RUN.format(tests=os.path.dirname(__file__), out=str(out))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / "checkpoint-2" / ft.STATE_FILE).exists() and not (out / ft.MODEL_DIR).exists()
    final = ft.finetune(cfg, _pairs(), "more", out, resume=True, seed=0)
    reference, resumed = _weights(more_run[1]), _weights(final)
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
    ref_state = torch.load(more_run[1] / ft.STATE_FILE, weights_only=True)
    new_state = torch.load(final / ft.STATE_FILE, weights_only=True)
    assert torch.equal(ref_state["momentum"], new_state["momentum"]) and new_state["steps"] == 4
    steps = [json.loads(x)["step"] for x in (out / ft.LOG_FILE).read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_more_with_one_source_equals_single(cfg, tmp_path):
    one = {"harmless": _pairs()["harmless"]}
    short = load_config("tiny", {**OVERRIDES, "finetune.steps": 2})
    single = ft.finetune(short, one, "single", tmp_path / "single", seed=0)
    more = ft.finetune(short, one, "more", tmp_path / "more", seed=0)
    a, b = _weights(single), _weights(more)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_plan_for_groups_only_when_configured(cfg):
    pairs = _pairs()
    lengths = [torch.arange(len(p)) for p in pairs.values()]
    plain = ft.plan_for(pairs, cfg, seed=0)
    grouped = ft.plan_for(pairs, cfg, seed=0, lengths=lengths)
    assert cfg.finetune.group_by_length and grouped.shape == plain.shape
    assert torch.equal(grouped, sampling.length_grouped(plain, lengths, 0))
    off = load_config("tiny", {**OVERRIDES, "finetune.group_by_length": False})
    assert torch.equal(ft.plan_for(pairs, off, seed=0, lengths=lengths), plain)
    with pytest.raises(ConfigError, match="lengths of 2 sources"):
        sampling.length_grouped(plain, lengths[:2], 0)


def test_pair_lengths_take_the_longer_side_after_truncation():
    from morelib.backbone.model import encode, load_reward_model

    _, tok = load_reward_model("tiny-random", device="cpu")
    pairs = {"a": [Pair("Q? ", " yes", " no, and a much longer rejected answer", "a", "g")]}
    (n,) = ft.pair_lengths(tok, pairs, 16, "left")
    longer = len(encode(tok, ["Q?  no, and a much longer rejected answer"], 16, "left")[0])
    assert n.tolist() == [longer] and longer == 16


def test_fused_adamw_is_used_when_available(cfg, tmp_path):
    args = ft.training_args(cfg, tmp_path, seed=0, updates=2, split=ft.batch_split(cfg, 3, 1))
    assert ft.optimizer_name() == "adamw_torch_fused" and args.optim.value == "adamw_torch_fused"
