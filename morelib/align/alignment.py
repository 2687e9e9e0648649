"""Notebook 05's study (paper §5.4, Table 2): RJS alignment with the MultiTask and MORE reward models of this run.

Steps: H&H training-side prompts → n samples each from the base policy → best-of-n by each RM (cached-feature RMs
score new responses through the same frozen backbone: `HeadModel.reward(features.extract_texts(...))`) → SFT of
the policy on each RM's picks → perplexity of base and aligned policies on H&H test chosen responses → answers of
the aligned policies on held-out H&H test prompts judged MORE vs MultiTask (swap rule), each judge's reliability
measured on held-out human-labelled pairs → our Table 2 beside the paper's (its sentences: `findings.alignment`).
The RMs are notebook 02's heads when this run has them (`pipeline.fit` reloads saved heads), else fitted here.
The gold-RM judge is a MultiTask head fitted on the *calibration* split with another seed, so it took no part in
selection (it shares the frozen backbone with the selection RMs, so it is not independent of them); the `minilm-rm`
judge (`rm_judge`) has its own backbone and training pairs no selecting RM can touch.
Checked by tests/test_notebook05.py (papermill on the tiny profile) and the unit tests of rjs/judge.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from morelib.align import best_of_n, judge, rjs, rm_judge, sampler
from morelib.backbone import features
from morelib.core.config import Config
from morelib.core.errors import DataError, ModelError
from morelib.core.runs import Run
from morelib.data import paper
from morelib.study import pipeline
from morelib.train import reward_head
from morelib.train.reward_models import RewardModel, RMKey


def _sample_prompts(
    data: pipeline.StudyData, sources: Sequence[str], split: str, n: int, seed: int
) -> list[tuple[str, str]]:
    """n distinct prompts (prompt, source) of `split`, split evenly over `sources` (seeded, remainder to the first)."""
    absent = [s for s in sources if s not in data.pairs]
    if absent:
        raise DataError(
            f"alignment prompt sources {absent} are not loaded (have {list(data.pairs)}; missing: {data.missing})"
        )
    rng = np.random.default_rng(seed)
    out = []
    for k, src in enumerate(sources):
        want = n // len(sources) + (1 if k < n % len(sources) else 0)
        unique = list(dict.fromkeys(p.prompt for p in data.pairs[src][split]))
        out += [(unique[i], src) for i in rng.permutation(len(unique))[:want]]
    return out


def rjs_prompts(data: pipeline.StudyData, cfg: Config) -> list[tuple[str, str]]:
    """cfg.rjs.n_prompts training-side prompts (prompt, source) from cfg.rjs.prompt_sources (paper: H&H train)."""
    return _sample_prompts(data, cfg.rjs.prompt_sources, "train", cfg.rjs.n_prompts, cfg.seeds[0])


def eval_prompts(data: pipeline.StudyData, cfg: Config) -> list[tuple[str, str]]:
    """cfg.rjs.n_eval_prompts held-out test prompts (prompt, aspect) for the judge."""
    picked = _sample_prompts(data, cfg.rjs.prompt_sources, "test", cfg.rjs.n_eval_prompts, cfg.seeds[0] + 1)
    return [(p, judge.aspect_of(src)) for p, src in picked]


def held_out_pairs(data: pipeline.StudyData, cfg: Config, n: int, seed: int) -> dict[str, list]:
    """Up to n test pairs per prompt source (seeded): the human-labelled pairs for perplexity and judge reliability."""
    rng = np.random.default_rng(seed)
    out = {}
    for src in cfg.rjs.prompt_sources:
        pairs = data.pairs[src]["test"]
        out[src] = [pairs[i] for i in sorted(rng.permutation(len(pairs))[:n])]
    return out


def selection_heads(cfg: Config, data: pipeline.StudyData, run: Run | None) -> dict[str, RewardModel]:
    """The RMs that select responses, one per cfg.rjs.schemes (first seed): this run's saved heads, else fitted now."""
    heads = pipeline.fit(cfg, data, cfg.rjs.schemes, seeds=[cfg.seeds[0]], run=run)
    return {k.scheme: h for k, h in heads.items()}


def bon_heads(
    cfg: Config, data: pipeline.StudyData, run: Run | None, heads: dict[str, RewardModel]
) -> dict[str, RewardModel]:
    """The best-of-n selectors: `heads` (selection_heads) plus a single-source RM per prompt source, named
    `single:<source>` (first seed; this run's saved heads, else fitted now)."""
    singles = pipeline.fit(cfg, data, ["single"], seeds=[cfg.seeds[0]], run=run)
    return {**heads, **{k.name: h for k, h in singles.items() if k.source in cfg.rjs.prompt_sources}}


def gold_head(cfg: Config, data: pipeline.StudyData, cache_dir: Path | None = None) -> reward_head.HeadModel:
    """A MultiTask head on every source's calibration split, seed max(seeds)+1: it took no part in selection.

    Its input is the frozen base backbone's features (`cfg.model`); on the fine-tuning tier they are extracted here.
    """
    cache = cache_dir if cache_dir is not None else Path(cfg.output_root) / "cache"
    calib = {
        s: data.features[s]["calib"]
        if data.features
        else features.extract(data.pairs[s]["calib"], cfg.model, cache, False, share_prompt=cfg.head.share_prompt)
        for s in data.sources
    }
    return reward_head.train_head(calib, "multitask", cfg.train, cfg.head, max(cfg.seeds) + 1)


def rm_table(heads: dict[str, RewardModel], data: pipeline.StudyData, cfg: Config) -> pd.DataFrame:
    """Per scheme: ECE (10 bins) and accuracy on each prompt source's test set and their mean (Table 2's RM ECE)."""
    keyed = {RMKey(s, seed=cfg.seeds[0]): h for s, h in heads.items()}
    diffs = pipeline.reward_diffs(keyed, data, "test", sources=cfg.rjs.prompt_sources)
    table = pipeline.metric_table(keyed, data, cfg, diffs=diffs)
    wide = table.pivot_table(index="scheme", columns="test_source", values=["ece_10", "accuracy"])
    wide.columns = [f"{m}_{s}" for m, s in wide.columns]
    wide["rm_ece"] = table.groupby("scheme")["ece_10"].mean()
    return wide


def scorer(
    head: reward_head.HeadModel, cfg: Config, cache_dir: Path
) -> Callable[[Sequence[str], Sequence[str]], torch.Tensor]:
    """r(prompt, response) → Tensor[N] through the frozen backbone (text = prompt + " " + stripped response)."""

    def score(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        texts = [rm_judge.rm_text(p, r) for p, r in zip(prompts, responses)]
        with torch.no_grad():
            return head.reward(features.extract_texts(texts, cfg.model, cache_dir, progress=False))

    return score


def score_candidates(
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    heads: dict[str, RewardModel],
    cfg: Config,
    cache_dir: Path,
) -> dict[str, torch.Tensor]:
    """Rewards [P, n] of every candidate under every RM (backbone features extracted once, shared by the heads)."""
    n = len(candidates[0])
    texts = [p + " " + c.strip() for p, cands in zip(prompts, candidates) for c in cands]
    needed = any(h.uses_features for h in heads.values())
    feats = features.extract_texts(texts, cfg.model, cache_dir, progress=True) if needed else None
    ask = [p for p, cands in zip(prompts, candidates) for _ in cands]
    answers = [" " + c.strip() for cands in candidates for c in cands]  # prompt + answer = the texts above
    return {s: h.rewards(ask, answers, feats).reshape(len(prompts), n) for s, h in heads.items()}


def candidate_frame(candidates: Sequence[Sequence[str]], scores: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Tidy candidates: prompt index, sample index, each RM's reward and whether it picked the sample."""
    rows = []
    for i, cands in enumerate(candidates):
        for j, text in enumerate(cands):
            row = {"prompt": i, "sample": j, "response": text, "length_chars": len(text)}
            for s, sc in scores.items():
                row[f"reward_{s}"] = float(sc[i, j])
                row[f"picked_{s}"] = bool(int(sc[i].argmax()) == j)
            rows.append(row)
    return pd.DataFrame(rows)


def reward_judges(judges: dict[str, judge.Judge], prompts: Sequence[tuple[str, str]]) -> dict[str, best_of_n.Score]:
    """The judges that give a reward (a `score` method), each bound to the aspect of every prompt's source (a judge
    with a head per aspect scores a response under its prompt's aspect): they can measure best-of-n curves."""
    aspect = {p: judge.aspect_of(src) for p, src in prompts}

    def bound(j: Any) -> best_of_n.Score:
        return lambda ps, rs: j.score(ps, rs, [aspect[p] for p in ps])

    return {name: bound(j) for name, j in judges.items() if callable(getattr(j, "score", None))}


def bon_selections(scores: dict[str, torch.Tensor], cfg: Config) -> dict[str, dict[int, np.ndarray]]:
    """{selector: {n: picked sample [P]}} at the sizes cfg.rjs.bon_n for every RM's rewards [P, N] and a random pick."""
    drawn = next(iter(scores.values())).shape[1]
    return best_of_n.selections({k: v.numpy() for k, v in scores.items()}, cfg.rjs.bon_n, drawn, cfg.seeds[0])


def bon_curves(
    judges: dict[str, best_of_n.Score],
    prompts: Sequence[str],
    candidates: Sequence[Sequence[str]],
    chosen: dict[str, dict[int, np.ndarray]],
    cfg: Config,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """(tidy best-of-n table with a `judge` column, each judge's rewards [P, N]) of the selections `chosen`."""
    if not judges:
        raise DataError("best-of-n curves need a reward judge: add minilm-rm or gold-rm to judge.kinds")
    rewards = {name: best_of_n.reward_matrix(score, prompts, candidates) for name, score in judges.items()}
    tables = [best_of_n.curve(r, chosen, cfg.n_boot, cfg.seeds[0]).assign(judge=name) for name, r in rewards.items()]
    return pd.concat(tables, ignore_index=True), rewards


def bon_gaps(
    rewards: dict[str, np.ndarray], chosen: dict[str, dict[int, np.ndarray]], cfg: Config, pairs: Sequence[tuple]
) -> list[dict]:
    """Paired judge-reward gaps of selector pairs (a, b) at the largest n, per judge (bootstrap over prompts)."""
    n = cfg.rjs.bon_n[-1]
    return [
        {"judge": name, **best_of_n.selector_gap(r, chosen, a, b, n, cfg.n_boot, cfg.seeds[0])}
        for name, r in rewards.items()
        for a, b in pairs
        if a in chosen and b in chosen
    ]


def pick_agreement(scores: dict[str, torch.Tensor], a: str = "more", b: str = "multitask") -> float:
    """Share of prompts where RMs a and b pick the same candidate."""
    return float((scores[a].argmax(dim=1) == scores[b].argmax(dim=1)).double().mean())


def align_policies(cfg: Config, run: Run, prompts: Sequence[str], selected: dict[str, list[str]]) -> dict[str, Path]:
    """SFT the base policy on each RM's picks; {scheme: folder of the aligned policy} under <run>/05…/policies/."""
    return {
        s: rjs.sft(cfg.rjs.policy, prompts, picks, run.dir / "policies" / s, cfg.rjs, cfg.seeds[0])
        for s, picks in selected.items()
    }


def drop_policies(cfg: Config, aligned: dict[str, Path]) -> str:
    """Delete the fine-tuned policy folders unless `rjs.keep_policies`; a sentence saying what happened."""
    if cfg.rjs.keep_policies:
        return f"Fine-tuned policies kept (rjs.keep_policies): {', '.join(str(p) for p in aligned.values())}."
    for folder in aligned.values():
        shutil.rmtree(folder, ignore_errors=True)
    return (
        "Fine-tuned policy folders deleted after use to keep the run small; set `rjs.keep_policies: true` to keep them."
    )


def perplexity_table(cfg: Config, pairs: dict[str, list], policies: dict[str, str | Path]) -> pd.DataFrame:
    """Perplexity of each policy (rows) on each source's test chosen responses (columns ppl_<source>)."""
    rows = []
    for name, where in policies.items():
        policy, tok = rjs.load_causal_lm(where, cfg.rjs.dtype)
        row = {"policy": name}
        for src, ps in pairs.items():
            row[f"ppl_{src}"] = rjs.perplexity(
                policy, tok, [p.prompt for p in ps], [p.chosen for p in ps], cfg.rjs.max_length, cfg.rjs.gen_batch_size
            )
        rows.append(row)
        del policy
    return pd.DataFrame(rows).set_index("policy")


def answers(cfg: Config, policies: dict[str, str | Path], prompts: Sequence[str]) -> dict[str, list[str]]:
    """One sampled answer per prompt from each policy (same seed for all, so differences come from the weights)."""
    return {
        name: [c[0] for c in sampler.sample(where, prompts, cfg.rjs, cfg.seeds[0] + 1, n=1)]
        for name, where in policies.items()
    }


def make_judges(cfg: Config, data: pipeline.StudyData, cache_dir: Path) -> dict[str, judge.Judge]:
    """The judges of `judge.kinds`, in that order (the first gives Table 2's W/T/L), keyed by kind."""
    j = cfg.judge  # each kind is one of config.JUDGE_KINDS (config.validate)
    out: dict[str, judge.Judge] = {}
    for kind in j.kinds:
        if kind == "openai":
            out[kind] = judge.openai_judge(j.model, j.base_url, j.api_key_env, j.timeout_s, j.max_query_chars)
        elif kind == "local":
            try:
                model, tok = rjs.load_causal_lm(j.model, cfg.rjs.dtype)
            except (ModelError, OSError) as err:
                raise ModelError(f"judge 'local' could not load judge.model = '{j.model}': {err}") from err
            out[kind] = judge.LocalLMJudge(model, tok, f"local:{j.model}", j.max_query_chars)
        elif kind == "gold-rm":
            out[kind] = judge.GoldRMJudge(
                scorer(gold_head(cfg, data, cache_dir), cfg, cache_dir), "gold-rm (calib-split head)"
            )
        else:
            train = rm_judge.disjoint_pairs(cfg, data)
            heads = rm_judge.fit_heads(cfg, train, cache_dir)
            out[kind] = rm_judge.rm_judge(cfg, heads, {s: len(p) for s, p in train.items()}, cache_dir)
    return out


def judge_reliability(judges: dict[str, judge.Judge], pairs: dict[str, list], cfg: Config) -> dict[str, dict]:
    """Each judge's agreement with human labels (pooled and `by_source`, bootstrap CIs over pairs) and position-bias
    rate on the held-out test pairs {source: pairs}."""
    flat = [(p, src) for src, ps in pairs.items() for p in ps]
    return {
        name: judge.reliability(
            j,
            [p.prompt for p, _ in flat],
            [p.chosen for p, _ in flat],
            [p.rejected for p, _ in flat],
            [judge.aspect_of(src) for _, src in flat],
            cfg.n_boot,
            cfg.seeds[0],
            sources=[src for _, src in flat],
        )
        for name, j in judges.items()
    }


def reliability_frame(reliabilities: dict[str, dict]) -> pd.DataFrame:
    """One row per judge and source (and `all`): pairs, agreement with its 95% CI, ties, position-bias rate and
    whether the judge's net agreement CI holds chance there (such a judge gives no verdict)."""
    rows = []
    for name, rel in reliabilities.items():
        for src, r in {**rel.get("by_source", {}), "all": rel}.items():
            rows.append(
                {
                    "judge": r["judge"],
                    "kind": name,
                    "source": src,
                    "pairs": r["n"],
                    "agreement": r["agreement"],
                    "agreement_lo": r["agreement_lo"],
                    "agreement_hi": r["agreement_hi"],
                    "ties": r["tie"],
                    "position_bias_rate": r["position_bias_rate"],
                    "near_chance": r["net_lo"] <= 0.0 <= r["net_hi"],
                }
            )
    return pd.DataFrame(rows)


def judge_wtl(
    judges: dict[str, judge.Judge],
    items: Sequence[tuple[str, str]],
    said: dict[str, list[str]],
    cfg: Config,
    a: str = "more",
    b: str = "multitask",
) -> dict[str, dict]:
    """W/T/L of policy a's answers against policy b's, per judge (swap rule, bootstrap CIs over prompts)."""
    prompts, aspects = [p for p, _ in items], [s for _, s in items]
    return {
        name: judge.win_tie_lose(j, prompts, said[a], said[b], aspects, cfg.n_boot, cfg.seeds[0])
        for name, j in judges.items()
    }


def outcome_frame(results: dict[str, dict]) -> pd.DataFrame:
    """Tidy win/tie/lose shares with CIs per judge (for bar plots)."""
    return pd.DataFrame(
        [
            {
                "judge": name,
                "outcome": o,
                "share": r[f"{o}_share"],
                "share_lo": r[f"{o}_lo"],
                "share_hi": r[f"{o}_hi"],
                "count": r[o],
            }
            for name, r in results.items()
            for o in ("win", "tie", "lose")
        ]
    )


def table2(rms: pd.DataFrame, ppl: pd.DataFrame, wtl: dict | None, label: str) -> pd.DataFrame:
    """Our Table 2 rows (base, MultiTask, MORE): RM ECE, PPL helpful/harmless, W/T/L % on the MORE row."""
    rows = []
    for name in ppl.index:
        row = {
            "rm_base_model": label,
            "scheme": {"base": "-", "multitask": "MultiTask", "more": "MORE"}.get(name, name),
            "rm_ece": float(rms.loc[name, "rm_ece"]) if name in rms.index else np.nan,
            "ppl_helpful": ppl.loc[name].get("ppl_helpful", np.nan),
            "ppl_harmless": ppl.loc[name].get("ppl_harmless", np.nan),
        }
        for o in ("win", "tie", "lose"):
            row[f"gpt4_{o}"] = 100 * wtl[f"{o}_share"] if (wtl is not None and name == "more") else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def table2_side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 2 (read from its CSV at run time) stacked above our rows, with a `who` column."""
    theirs = paper.read("table2").assign(who="paper (Alpaca-7B policy)")
    return pd.concat([theirs, ours.assign(who="ours")], ignore_index=True)[["who", *theirs.columns.drop("who")]]


def single_pairs(cfg: Config) -> list[tuple[str, str]]:
    """Consecutive pairs of the single-source selectors (`single:<source>` per prompt source), e.g. helpful vs
    harmless: the paper's conflict between sources, measured on generations."""
    names = [f"single:{s}" for s in cfg.rjs.prompt_sources]
    return list(zip(names, names[1:]))
