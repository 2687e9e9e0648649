"""Best-of-n curves (issue 26; the selection step of paper §5.4 measured on generations): for n in a list of sizes,
every selector (an RM, or a uniform random pick) keeps the best of the FIRST n of the N samples drawn per prompt, and a
judge's reward of the kept response is averaged over prompts, beside its win rate against the n = 1 response (sample 0,
the same for every selector), each with a percentile-bootstrap CI over prompts (`stats.bootstrap_ci`, one seed, so
every row resamples the same prompts).

Win against n = 1: 1 when the judge rewards the kept response above sample 0, ½ on an exact tie (the kept response
IS sample 0, or scores the same), 0 below. Pure functions of score arrays: a judge or RM is any `Score` callable
(prompts, responses) → float64 rewards [M]. Checked in tests/test_best_of_n.py against hand-computed picks, means
and win rates, and the error when n exceeds the samples drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from morelib.core.errors import ConfigError
from morelib.evaluation import stats

Score = Callable[[Sequence[str], Sequence[str]], np.ndarray]  # (prompts [M], responses [M]) → rewards [M] float64
RANDOM = "random"  # the selector that picks uniformly among the first n samples


def check_sizes(ns: Sequence[int], drawn: int) -> None:
    """ConfigError unless ns are increasing sizes from 1 and the largest is at most the `drawn` samples per prompt."""
    ns = list(ns)
    if not ns or ns[0] != 1 or any(a >= b for a, b in zip(ns, ns[1:])):
        raise ConfigError(f"best-of-n sizes must increase from 1 (the baseline), got {ns}")
    if ns[-1] > drawn:
        raise ConfigError(f"best of {ns[-1]} asked, but only {drawn} samples were drawn per prompt")


def reward_matrix(score: Score, prompts: Sequence[str], candidates: Sequence[Sequence[str]]) -> np.ndarray:
    """Rewards [P, N] of every candidate (candidates [P][N], the same N per prompt) under one Score callable."""
    widths = {len(c) for c in candidates}
    if len(candidates) != len(prompts) or len(widths) != 1:
        raise ValueError(f"need N candidates for each of {len(prompts)} prompts, got sizes {sorted(widths)}")
    flat_p = [p for p, cands in zip(prompts, candidates) for _ in cands]
    flat_r = [r for cands in candidates for r in cands]
    rewards = np.asarray(score(flat_p, flat_r), dtype=np.float64)
    if rewards.shape != (len(flat_r),) or not np.isfinite(rewards).all():
        raise ValueError(f"a score callable must return {len(flat_r)} finite rewards, got shape {rewards.shape}")
    return rewards.reshape(len(prompts), -1)


def picks(scores: np.ndarray, n: int) -> np.ndarray:
    """Index [P] of the highest-scoring of the first n samples per prompt (scores [P, N]; first one on ties)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 1 <= n <= scores.shape[1]:
        raise ConfigError(f"best of {n} asked, but only {scores.shape[1]} samples were drawn per prompt")
    return scores[:, :n].argmax(axis=1)


def random_picks(prompts: int, n: int, seed: int) -> np.ndarray:
    """Index [P] drawn uniformly from the first n samples of each prompt (numpy Generator(seed))."""
    return np.random.default_rng(seed).integers(0, n, size=prompts)


def selections(
    scores: Mapping[str, np.ndarray], ns: Sequence[int], drawn: int, seed: int
) -> dict[str, dict[int, np.ndarray]]:
    """{selector: {n: index [P]}} for every RM's scores [P, N] and the random selector (seed + n per size)."""
    check_sizes(ns, drawn)
    prompts = {np.asarray(s).shape[0] for s in scores.values()}
    if len(prompts) != 1:
        raise ValueError(f"every selector must score the same prompts, got prompt counts {sorted(prompts)}")
    size = prompts.pop()
    out = {name: {n: picks(s, n) for n in ns} for name, s in scores.items()}
    out[RANDOM] = {n: random_picks(size, n, seed + n) for n in ns}
    return out


def win_vs_first(judge: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Per prompt: 1 if the judge rewards the chosen sample above sample 0, ½ on a tie, 0 below (judge [P, N])."""
    kept = judge[np.arange(judge.shape[0]), chosen]
    return np.where(kept > judge[:, 0], 1.0, np.where(kept == judge[:, 0], 0.5, 0.0))


def curve(judge: np.ndarray, chosen: Mapping[str, Mapping[int, np.ndarray]], n_boot: int, seed: int) -> pd.DataFrame:
    """Tidy best-of-n table: selector, n, reward (mean judge reward of the picks) and win (vs n = 1), with CIs.

    judge: the judge's rewards [P, N]; chosen: `selections` output. Columns reward_lo/hi, win_lo/hi (95 %
    percentile bootstrap over prompts), gain = reward − the n = 1 reward (sample 0's), paired per prompt, with
    gain_lo/hi (its paired bootstrap: the prompt-to-prompt spread of rewards cancels), share_first = share of prompts
    whose pick is sample 0.
    """
    judge = np.asarray(judge, dtype=np.float64)
    rows = []
    for name, by_n in chosen.items():
        for n, idx in by_n.items():
            kept = judge[np.arange(judge.shape[0]), idx]
            reward = stats.bootstrap_ci(kept, np.mean, n_boot, seed)
            gain = stats.bootstrap_ci(kept - judge[:, 0], np.mean, n_boot, seed)
            win = stats.bootstrap_ci(win_vs_first(judge, idx), np.mean, n_boot, seed)
            rows.append(
                {
                    "selector": name,
                    "n": int(n),
                    "reward": reward[0],
                    "reward_lo": reward[1],
                    "reward_hi": reward[2],
                    "gain": gain[0],
                    "gain_lo": gain[1],
                    "gain_hi": gain[2],
                    "win": win[0],
                    "win_lo": win[1],
                    "win_hi": win[2],
                    "share_first": float(np.mean(idx == 0)),
                    "prompts": int(judge.shape[0]),
                }
            )
    return pd.DataFrame(rows)


def selector_gap(
    judge: np.ndarray, chosen: Mapping[str, Mapping[int, np.ndarray]], a: str, b: str, n: int, n_boot: int, seed: int
) -> dict[str, float]:
    """Mean judge reward of a's picks minus b's at size n, paired over prompts (`stats.paired_bootstrap_diff`)."""
    rows = np.arange(judge.shape[0])
    gap = stats.paired_bootstrap_diff(judge[rows, chosen[a][n]], judge[rows, chosen[b][n]], np.mean, n_boot, seed)
    return {**gap, "a_name": a, "b_name": b, "n": int(n), "same_pick": float(np.mean(chosen[a][n] == chosen[b][n]))}
