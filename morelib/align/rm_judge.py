"""The reward-model judge `minilm-rm` (issue 26): a Bradley–Terry head on a backbone the selecting RMs do not use
(`judge.rm.model`, all-MiniLM-L6-v2 by default), trained on H&H training pairs that no selecting RM can touch.

Which training pairs the study's RMs can touch: `splits.load_source_splits` caps each source's training side at
`train_pairs` (drawn with the first seed), every seed's resample (`train.seed_resample`, bootstrap by default) draws
from that capped set only, and the calibration and test sides hold other groups. The judge trains on the rest of the
training side: the pairs whose group (HH: the prompt) lies in none of the study's sides of that source
(`disjoint_pairs`, checked by `check_disjoint`), at most `judge.rm.train_pairs` of them per source. Linear heads
fitted by `reward_head.train_head` on the judge backbone's cached features (`features.extract_texts`, pooling
`judge.rm.pooling`) score text = prompt + " " + stripped response (the same text the selecting RMs score in
`alignment.scorer`). The judge is a `judge.GoldRMJudge` with one head per aspect (helpful, harmless): measured on this
CPU, one MultiTask head for both was at chance on both test sets (helpful 0.477, harmless 0.525 at 600 pairs each),
each aspect's own head was not (README, "Differences").
Checked in tests/test_judge.py: disjointness from every pair a selecting RM trains on, score() = the head applied to
independently extracted features, agreement = a direct count, and the error for a backbone that cannot be loaded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from morelib.align.judge import GoldRMJudge, aspect_of
from morelib.backbone import features
from morelib.backbone.features import PairFeatures
from morelib.core.config import Config, ModelConfig
from morelib.core.errors import DataError, ModelError
from morelib.data import sources, splits
from morelib.data.sources import Pair
from morelib.study.pipeline import StudyData
from morelib.train import reward_head

KIND = "minilm-rm"


def rm_text(prompt: str, response: str) -> str:
    """The text a reward model scores for (prompt, response): prompt + " " + the stripped response."""
    return prompt + " " + response.strip()


def model_config(cfg: Config) -> ModelConfig:
    """The judge backbone's feature settings (`judge.rm`; dtype as the study's backbone, left truncation)."""
    rm = cfg.judge.rm
    return dataclasses.replace(
        cfg.model,
        name=rm.model,
        max_length=rm.max_length,
        batch_size=rm.batch_size,
        pooling=rm.pooling,
        layer=None,
        padding_side="right",
        truncation_side="left",
    )


def check_disjoint(judge_pairs: Sequence[Pair], study_pairs: Sequence[Pair], source: str) -> None:
    """DataError when a judge training pair shares a group or its (prompt, chosen, rejected) with a study pair."""
    groups = {p.group for p in study_pairs}
    texts = {(p.prompt, p.chosen, p.rejected) for p in study_pairs}
    shared = [p for p in judge_pairs if p.group in groups or (p.prompt, p.chosen, p.rejected) in texts]
    if shared:
        raise DataError(
            f"judge {KIND}: {len(shared)} of its {source} training pairs are also pairs (or groups) of the study's "
            f"RMs, e.g. {shared[0].prompt[-80:]!r}"
        )


def disjoint_pairs(cfg: Config, data: StudyData) -> dict[str, list[Pair]]:
    """Per prompt source (`rjs.prompt_sources`): up to `judge.rm.train_pairs` training-side pairs (seeded by the first
    seed) whose groups are on none of the study's sides of that source; DataError when none are left."""
    specs = {s.name: s for s in cfg.data.sources}
    out = {}
    for src in cfg.rjs.prompt_sources:
        if src not in data.pairs:
            raise DataError(f"judge {KIND} trains on {src}, which is not loaded (missing: {data.missing})")
        whole = dataclasses.replace(specs[src], train_pairs=None)  # the training side before the study's cap
        train = splits.load_source_splits(whole, cfg.data, cfg.seeds[0])["train"]
        study = [p for side in data.pairs[src].values() for p in side]
        used = {p.group for p in study}
        rest = [p for p in train if p.group not in used]
        if not rest:
            raise DataError(
                f"judge {KIND}: the study's RMs use every training pair of {src} ({len(train)}); lower "
                f"data.sources[{src}].train_pairs or leave {KIND} out of judge.kinds"
            )
        n = cfg.judge.rm.train_pairs
        out[src] = sources.sample(rest, len(rest) if n is None else n, cfg.seeds[0])
        check_disjoint(out[src], study, src)
    return out


def judge_features(
    cfg: Config, prompts: Sequence[str], responses: Sequence[str], cache_dir: Path, progress: bool = False
) -> torch.Tensor:
    """The judge backbone's pooled features of rm_text(prompt, response), Tensor[N, h] (cached by content)."""
    mcfg = model_config(cfg)
    try:
        _, tok, _ = features.backbone(mcfg.name, mcfg.dtype, mcfg.padding_side)
    except (ModelError, OSError) as err:
        raise ModelError(f"judge {KIND} could not load its backbone judge.rm.model = '{mcfg.name}': {err}") from err
    texts = [rm_text(p, r) for p, r in zip(prompts, responses)]
    counts = features.response_lengths(tok, [" " + r.strip() for r in responses]).tolist()
    return features.extract_texts(texts, mcfg, cache_dir, progress, n_pool=counts)


def pair_features(cfg: Config, pairs: Sequence[Pair], source: str, cache_dir: Path) -> PairFeatures:
    """PairFeatures [N, h] of pairs of one source under the judge backbone."""
    prompts = [p.prompt for p in pairs]
    both = judge_features(cfg, prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], cache_dir, True)
    return PairFeatures(both[: len(pairs)], both[len(pairs) :], source)


def fit_heads(cfg: Config, train: dict[str, list[Pair]], cache_dir: Path) -> dict[str, reward_head.HeadModel]:
    """One linear head per aspect ({aspect: head}, `judge.aspect_of`) on the judge backbone's features of its sources'
    pairs (`single`, or `multitask` over several sources of one aspect). One head for helpful and harmless together
    is at chance on both (their preferences conflict, paper §3), so each aspect gets its own."""
    feats = {src: pair_features(cfg, pairs, src, cache_dir) for src, pairs in train.items()}
    out = {}
    for aspect in dict.fromkeys(aspect_of(src) for src in train):
        mine = {src: f for src, f in feats.items() if aspect_of(src) == aspect}
        out[aspect] = reward_head.train_head(
            mine, "single" if len(mine) == 1 else "multitask", cfg.train, cfg.head, cfg.seeds[0]
        )
    return out


def rm_judge(
    cfg: Config, heads: dict[str, reward_head.HeadModel], sizes: dict[str, int], cache_dir: Path
) -> GoldRMJudge:
    """The `minilm-rm` judge: each aspect's head (from `fit_heads` on `disjoint_pairs`, `sizes` pairs per source)
    scoring through the judge backbone."""

    def scorer(head: reward_head.HeadModel) -> Callable[[Sequence[str], Sequence[str]], torch.Tensor]:
        return lambda prompts, responses: head.reward(judge_features(cfg, prompts, responses, cache_dir))

    counts = " + ".join(f"{n} {src}" for src, n in sizes.items())
    name = f"{cfg.judge.rm.model} RM judge, a head per aspect ({counts} pairs disjoint from selection)"
    return GoldRMJudge({aspect: scorer(head) for aspect, head in heads.items()}, name)
