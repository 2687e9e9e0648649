"""Tests of morelib.align.best_of_n (pure functions on score arrays, stub judges) and the best-of-n figure and finding:
picks, means and win rates against hand-computed values, the random selector's range, and n > samples drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from morelib.align import best_of_n
from morelib.core.errors import ConfigError
from morelib.study import findings, plots

# 3 prompts × 4 samples. RM "a" prefers late samples, "b" early ones; the judge rewards sample index + prompt offset.
RM_A = np.array([[0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 4.0], [0.0, 0.0, 5.0, 1.0]])
RM_B = -RM_A
JUDGE = np.array([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 0.0, 2.0], [2.0, 0.0, 3.0, 1.0]])


def test_picks_take_the_argmax_of_the_first_n():
    assert best_of_n.picks(RM_A, 1).tolist() == [0, 0, 0]
    assert best_of_n.picks(RM_A, 2).tolist() == [1, 0, 0]  # prompt 2: a tie between samples 0 and 1 → the first
    assert best_of_n.picks(RM_A, 4).tolist() == [3, 3, 2]
    assert best_of_n.picks(RM_B, 4).tolist() == [0, 2, 0]


def test_n_larger_than_the_samples_drawn_is_one_clear_error():
    with pytest.raises(ConfigError, match="best of 8 asked, but only 4 samples were drawn per prompt"):
        best_of_n.picks(RM_A, 8)
    with pytest.raises(ConfigError, match="best of 8 asked, but only 4 samples"):
        best_of_n.selections({"a": RM_A}, [1, 2, 8], 4, seed=0)
    with pytest.raises(ConfigError, match="increase from 1"):
        best_of_n.check_sizes([2, 4], 4)


def test_curve_means_and_win_rates_by_hand():
    chosen = best_of_n.selections({"a": RM_A, "b": RM_B}, [1, 2, 4], 4, seed=0)
    table = best_of_n.curve(JUDGE, chosen, n_boot=200, seed=0).set_index(["selector", "n"])
    # n = 1 is sample 0 for every RM: reward = mean of JUDGE[:, 0], win = ½ (all ties)
    assert table.loc[("a", 1), "reward"] == pytest.approx(JUDGE[:, 0].mean())
    assert table.loc[("b", 1), "win"] == 0.5 and table.loc[("a", 1), "share_first"] == 1.0
    # a at n = 4 keeps samples [3, 3, 2]: judge 3, 2, 3 vs sample 0's 0, 1, 2 → wins on all three
    assert table.loc[("a", 4), "reward"] == pytest.approx((3 + 2 + 3) / 3)
    assert table.loc[("a", 4), "win"] == 1.0 and table.loc[("a", 4), "gain"] == pytest.approx(8 / 3 - 1)
    # b at n = 4 keeps [0, 2, 0]: judge 0, 0, 2 vs 0, 1, 2 → tie, loss, tie → (½ + 0 + ½) / 3
    assert table.loc[("b", 4), "win"] == pytest.approx(1 / 3)
    assert (table["reward_lo"] <= table["reward"]).all() and (table["reward"] <= table["reward_hi"]).all()
    assert (table["win_lo"] <= table["win"]).all() and (table["win"] <= table["win_hi"]).all()
    # the gain's CI is paired: at n = 1 every pick is sample 0, so the gain and both bounds are exactly 0
    assert (table.xs(1, level="n")[["gain", "gain_lo", "gain_hi"]] == 0).all().all()
    gains = np.array([3, 2, 3]) - JUDGE[:, 0]  # a at n = 4, per prompt
    assert table.loc[("a", 4), "gain_lo"] >= gains.min() and table.loc[("a", 4), "gain_hi"] <= gains.max()
    rand = table.loc["random"]
    assert set(rand.index) == {1, 2, 4} and rand.loc[1, "share_first"] == 1.0


def test_random_picks_stay_within_the_first_n():
    idx = best_of_n.random_picks(1000, 3, seed=5)
    assert idx.min() == 0 and idx.max() == 2 and abs(np.mean(idx == 1) - 1 / 3) < 0.05


def test_reward_matrix_calls_the_judge_once_on_the_flattened_candidates():
    calls = []

    def stub(prompts, responses):
        calls.append(len(responses))
        return np.array([len(p) + len(r) for p, r in zip(prompts, responses)], dtype=float)

    out = best_of_n.reward_matrix(stub, ["p", "pp"], [["a", "bb"], ["ccc", ""]])
    assert calls == [4] and out.tolist() == [[2.0, 3.0], [5.0, 2.0]]
    with pytest.raises(ValueError, match="finite rewards"):
        best_of_n.reward_matrix(lambda p, r: np.array([np.nan] * len(r)), ["p"], [["a"]])


def test_selector_gap_is_the_paired_mean_difference():
    chosen = best_of_n.selections({"a": RM_A, "b": RM_B}, [1, 4], 4, seed=0)
    gap = best_of_n.selector_gap(JUDGE, chosen, "a", "b", 4, n_boot=200, seed=0)
    assert gap["diff"] == pytest.approx(8 / 3 - 2 / 3) and gap["same_pick"] == 0.0
    assert gap["lo"] <= gap["diff"] <= gap["hi"]


def test_figure_and_finding_show_the_table():
    chosen = best_of_n.selections({"more": RM_A, "single:helpful": RM_B}, [1, 2, 4], 4, seed=0)
    table = best_of_n.curve(JUDGE, chosen, n_boot=100, seed=0).assign(judge="gold-rm")
    fig = plots.best_of_n(table, "t")
    assert len(fig.data) == 2 * 3 and list(fig.data[0].y) == list(table[table["selector"] == "more"]["gain"])
    gaps = [{"judge": "gold-rm", **best_of_n.selector_gap(JUDGE, chosen, "more", "single:helpful", 4, 100, 0)}]
    trusted = {"net": 0.4, "net_lo": 0.2, "net_hi": 0.6}
    text = findings.best_of_n(table, gaps, trusted)
    assert "Best of 4" in text and "MORE 1.00" in text and "single-helpful" in text
    assert "raises the judge's reward" in text  # MORE wins on every prompt: CI [1, 1] excludes ½
    assert text.startswith("Under judge **gold-rm**, picking the best of 4 raises the judge's reward for MORE")
    rand_low = table.copy()
    last = (rand_low["selector"] == "random") & (rand_low["n"] == 4)
    rand_low.loc[last, ["win", "win_lo", "win_hi"]] = [0.3, 0.2, 0.4]
    text_low = findings.best_of_n(rand_low, gaps, trusted)
    assert "random" not in text_low.split(".")[0] and "exchangeable" in text_low  # the verdict names RMs only
    assert "exchangeable" not in text
    untrusted = findings.best_of_n(table, gaps, {"net": 0.0, "net_lo": -0.2, "net_hi": 0.2})
    assert "raises" not in untrusted and "carry no verdict" in untrusted
    with pytest.raises(Exception, match="non-empty"):
        plots.best_of_n(pd.DataFrame(), "t")
