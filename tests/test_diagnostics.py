"""Length-bias report and training guards: known answers and tripping behaviour."""

import logging
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from morelib.evaluation import diagnostics


def test_length_only_reward_reproduces_longer_baseline():
    rng = np.random.default_rng(0)
    lc, lr = rng.integers(1, 30, size=200), rng.integers(1, 30, size=200)
    out = diagnostics.length_bias(lc.astype(float), lr.astype(float), lc, lr)
    assert out["rm_accuracy"] == out["longer_baseline_accuracy"] == np.mean(lc > lr)
    assert out["rm_accuracy_longer_won"] == 1.0 and out["rm_accuracy_shorter_won"] == 0.0
    assert out["rm_prefers_longer"] == 1.0
    assert out["pearson"] == pytest.approx(1.0) and out["spearman"] == pytest.approx(1.0)
    assert out["n_longer_won"] + out["n_shorter_won"] + out["n_equal_length"] == 200


def test_length_bias_hand_case():
    rc = np.array([2.0, 0.0, 1.0, 5.0])
    rr = np.array([1.0, 1.0, 1.0, 0.0])
    lc = torch.tensor([10, 3, 4, 8])
    lr = torch.tensor([5, 6, 4, 9])
    out = diagnostics.length_bias(rc, rr, lc, lr)
    assert out["longer_baseline_accuracy"] == 0.25  # only pair 0 has the longer response chosen; pair 2 ties
    assert out["rm_accuracy"] == 0.5  # pairs 0 and 3
    assert (out["rm_accuracy_longer_won"], out["n_longer_won"]) == (1.0, 1)
    assert (out["rm_accuracy_shorter_won"], out["n_shorter_won"]) == (0.5, 2)
    assert out["n_equal_length"] == 1
    assert out["rm_prefers_longer"] == pytest.approx(2 / 3)  # pair 0: yes, pair 1: yes (1 > 0), pair 3: no
    rewards, lengths = np.concatenate([rc, rr]), np.concatenate([lc.numpy(), lr.numpy()])
    assert out["pearson"] == pytest.approx(sps.pearsonr(rewards, lengths)[0])
    assert out["spearman"] == pytest.approx(sps.spearmanr(rewards, lengths)[0])


def test_constant_reward_gives_nan_correlation():
    out = diagnostics.length_bias([1.0, 1.0], [1.0, 1.0], [3, 4], [5, 2])
    assert math.isnan(out["pearson"]) and math.isnan(out["spearman"]) and out["rm_accuracy"] == 0.0


def test_length_bias_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="N entries"):
        diagnostics.length_bias([1.0, 2.0], [1.0], [1, 2], [1, 2])


def test_chance_accuracy_guard(caplog):
    with caplog.at_level(logging.WARNING, logger="morelib"):
        bad = diagnostics.check_chance_accuracy([0.9, 0.5, 0.5, 0.5], after_steps=1)
    assert bad == diagnostics.GuardResult("chance_accuracy", False, bad.message)
    assert "chance" in bad.message and "chance_accuracy" in caplog.text
    assert diagnostics.check_chance_accuracy([0.5, 0.7, 0.72], after_steps=1).ok
    assert diagnostics.check_chance_accuracy([0.5], after_steps=5).ok


def test_reward_collapse_guard(caplog):
    with caplog.at_level(logging.WARNING, logger="morelib"):
        res = diagnostics.check_reward_collapse(torch.full((50,), 0.3))
    assert not res.ok and "collapsed" in res.message and "reward_collapse" in caplog.text
    assert not diagnostics.check_reward_collapse([1.0, float("nan")]).ok
    assert diagnostics.check_reward_collapse(np.linspace(-1, 1, 10)).ok


def test_lambda_pinned_guard(caplog):
    one_hot = np.tile([0.0, 1.0, 0.0], (20, 1))
    with caplog.at_level(logging.WARNING, logger="morelib"):
        res = diagnostics.check_lambda_pinned(one_hot)
    assert not res.ok and "source 1" in res.message and "lambda_pinned" in caplog.text
    assert diagnostics.check_lambda_pinned(np.full((20, 3), 1 / 3)).ok
    assert diagnostics.check_lambda_pinned(np.ones((5, 1))).ok


def test_healthy_guards_log_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="morelib"):
        diagnostics.check_chance_accuracy([0.8, 0.82])
        diagnostics.check_reward_collapse([0.0, 1.0])
        diagnostics.check_lambda_pinned([[0.4, 0.6], [0.5, 0.5]])
    assert caplog.text == ""
