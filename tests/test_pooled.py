"""The paper's MultiTask (`multitask-pooled`): random K·B batches from the pooled resampled sources, both tiers; and
`train.single_batch`."""

import dataclasses
import os

import torch

from morelib.core.config import load_config
from morelib.data import sampling
from morelib.data.sources import Pair
from morelib.synthetic import synthetic
from morelib.train import finetune as ft
from morelib.train import reward_head

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_pooled_plan_resamples_every_source_to_the_common_size():
    sizes = {"a": 10, "b": 25, "c": 40}
    codes = sampling.pooled_plan(sizes, 4, 1, None, seed=3)
    assert codes.shape == (40 // 4, 3 * 4)  # same steps per epoch as the balanced plan, K·B pairs per step
    source = codes // 40
    assert torch.bincount(source.flatten(), minlength=3).tolist() == [40, 40, 40]
    assert ((codes % 40) < torch.tensor([10, 25, 40])[source]).all()
    assert torch.equal(codes, sampling.pooled_plan(sizes, 4, 1, None, seed=3))
    assert (torch.bincount(source[0], minlength=3) != 4).any() or (torch.bincount(source[1], minlength=3) != 4).any()


def test_pooled_head_reaches_the_equal_weight_optimum_after_pooled_adam_steps(monkeypatch):
    bench = synthetic.from_spec(load_config("tiny").data.synthetic, seed=5)
    tr = bench.split("train")
    cfg = load_config("tiny")
    head = reward_head.train_head(tr, "multitask-pooled", cfg.train, cfg.head, seed=0)
    assert head.history["lam"].shape[1] == 1 and head.meta["scheme"] == "multitask-pooled"
    assert head.history["source_names"] == ["multitask-pooled"]
    # Adam runs on the pooled batches, then the head is polished to the optimum of its full-batch objective: with every
    # source resampled to one size the pool weighs sources equally, so that optimum is balanced MultiTask's (λ = 1/K)
    assert torch.allclose(head.history["lam_final"], torch.full((len(tr),), 1 / len(tr)))
    balanced = reward_head.train_head(tr, "multitask", cfg.train, cfg.head, seed=0)
    assert torch.allclose(head.w, balanced.w, atol=1e-4) and head.history["grad_norm"] < 1e-4
    # one step by hand: Adam's first step moves w by -lr·sign(g) for the batch-mean BT gradient g (+ L2 at w = 0);
    # the full-batch polish that follows training is switched off so the step itself is what gets compared
    monkeypatch.setattr(reward_head, "polish", lambda diffs, w, lam, l2: w)
    one = reward_head.train_head(
        tr,
        "multitask-pooled",
        cfg.train,
        dataclasses.replace(cfg.head, epochs=1),
        seed=0,
        callback=lambda step, lam, loss: False,
    )
    mean, scale = reward_head.standardizer(tr)
    sizes = {n: len(pf) for n, pf in tr.items()}
    codes = sampling.pooled_plan(sizes, cfg.train.batch_per_source, 1, cfg.train.resample_pairs, seed=0)[0]
    stride, names = max(sizes.values()), list(tr)
    X = torch.stack([tr[names[c // stride]].diff[c % stride] / scale for c in codes.tolist()])
    g = -(torch.sigmoid(torch.zeros(len(X))) @ X) / len(X)
    assert torch.allclose(one.w, -cfg.head.lr * torch.sign(g) * (g.abs() > 0), atol=1e-5)
    test = bench.split("test")
    acc = torch.cat([(head.reward_diff(pf) > 0).float() for pf in test.values()]).mean()
    assert acc > 0.6


def test_single_batch_default_and_override():
    paper = load_config("paper").train
    assert reward_head.single_batch(paper, 5) == 80
    assert reward_head.single_batch(load_config("default").train, 5) == 16  # feature tier keeps its CV'd B
    assert reward_head.single_batch(load_config("default", {"train.single_batch": 64}).train, 5) == 64


def test_finetune_pooled_runs_and_logs_batch_shares(tmp_path):
    cfg = load_config(
        "tiny",
        {
            "train.batch_per_source": 2,
            "finetune.steps": 2,
            "finetune.logging_steps": 1,
            "finetune.save_steps": 2,
            "model.max_length": 32,
        },
    )
    pairs = {
        s: [Pair(f"Q{i} {s}? ", f"good {i}", f"bad {i}", s, f"{s}{i}") for i in range(4 + 2 * k)]
        for k, s in enumerate(["helpful", "harmless"])
    }
    ft.finetune(cfg, pairs, "multitask-pooled", tmp_path / "pooled", seed=0)
    import json

    rows = [json.loads(x) for x in (tmp_path / "pooled" / ft.LOG_FILE).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert abs(r["lam/helpful"] + r["lam/harmless"] - 1) < 1e-9
