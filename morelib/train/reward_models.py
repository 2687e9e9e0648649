"""The study's reward models: an RM's identity (`RMKey`) and the one protocol every RM meets (`RewardModel`).

A key names one fitted RM by scheme, training source (single-source RMs), source subset (RMs fitted on fewer than
all available sources) and seed; its string form `<scheme>[:<source>][@<a+b>]/seed<k>` is what tables, files and
metrics.json show, and `RMKey.parse` reads it back. Feature-tier heads (`HeadRM`, a wrapper of `reward_head.HeadModel`)
and fully fine-tuned models (`FinetunedRM`) score pairs through the same `reward_diff(pairs, features)` and texts
through the same `rewards(prompts, responses, features)`, so the study never asks which kind it holds.
Checked in tests/test_reward_models.py (string round trip, bad keys) and tests/test_study.py (both tiers through one
path).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from morelib.backbone import model as model_lib
from morelib.backbone.features import PairFeatures
from morelib.core.errors import RunError
from morelib.data.sources import Pair
from morelib.train.mlp_head import MlpHead
from morelib.train.reward_head import HeadModel

KEY_PATTERN = re.compile(r"(?P<scheme>[^:@/]+)(?::(?P<source>[^:@/]+))?(?:@(?P<subset>[^/]+))?/seed(?P<seed>\d+)")


@dataclass(frozen=True)
class RMKey:
    """Identity of one fitted RM: scheme, training source (single-source RMs), source subset, seed."""

    scheme: str
    _: KW_ONLY
    source: str | None = None
    subset: tuple[str, ...] | None = None
    seed: int

    def __post_init__(self) -> None:
        """Store a subset as a tuple; reject a key that would not print and parse back."""
        if self.subset is not None:
            object.__setattr__(self, "subset", tuple(self.subset))
        if not isinstance(self.scheme, str) or not self.scheme or "/" in self.scheme:
            raise RunError(f"RM scheme must be a non-empty name without '/', got {self.scheme!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise RunError(f"RM seed must be an int, got {self.seed!r}")

    @property
    def name(self) -> str:
        """`<scheme>[:<source>][@<a+b>]`: the RM without its seed (what tables compare over seeds)."""
        return (
            self.scheme
            + (f":{self.source}" if self.source else "")
            + (f"@{'+'.join(self.subset)}" if self.subset else "")
        )

    def __str__(self) -> str:
        """`<scheme>[:<source>][@<a+b>]/seed<k>`, e.g. `single:helpful/seed0`, `more@helpful+harmless/seed1`."""
        return f"{self.name}/seed{self.seed}"

    def __lt__(self, other: RMKey) -> bool:
        """Keys sort as their string forms (so sorted(heads) lists RMs as their files do)."""
        if not isinstance(other, RMKey):
            return NotImplemented
        return str(self) < str(other)

    @classmethod
    def parse(cls, text: str) -> RMKey:
        """The key whose string form is `text`; RunError naming the expected shape otherwise."""
        match = KEY_PATTERN.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise RunError(f"not an RM key: {text!r} (expected <scheme>[:<source>][@<a+b>]/seed<k>, e.g. more/seed0)")
        subset = match["subset"]
        return cls(
            match["scheme"],
            source=match["source"],
            subset=tuple(subset.split("+")) if subset else None,
            seed=int(match["seed"]),
        )

    def with_scheme(self, scheme: str) -> RMKey:
        """The same RM under another scheme label (e.g. `more` → `more+T`, its temperature-scaled version)."""
        return dataclasses.replace(self, scheme=scheme)


def sort_key(item: tuple[RMKey, Any]) -> str:
    """Order of (key, value) items by the key's string form (the order tables stack seeds in)."""
    return str(item[0])


class RewardModel(Protocol):
    """What the study needs of any RM: reward differences of pairs, rewards of texts, its training log.

    `features` are the frozen backbone's features of the same pairs/texts (None on the fine-tuning tier): a head
    scores them, a fine-tuned model scores the texts itself. `history`: λ/loss logs; `meta`: fit details (grad_norm, λ).
    """

    history: dict[str, Any]
    meta: dict[str, Any]
    uses_features: bool

    def reward_diff(self, pairs: Sequence[Pair] | None, features: PairFeatures | None) -> np.ndarray:
        """r(chosen) − r(rejected) [N] float64."""

    def rewards(self, prompts: Sequence[str], responses: Sequence[str], features: torch.Tensor | None) -> torch.Tensor:
        """r(prompt + response) [N] float32 on CPU."""


class HeadRM:
    """A feature-tier RM: a linear head (`reward_head.HeadModel`) or a trunk + head (`mlp_head.MlpHead`) on the frozen
    backbone's features."""

    uses_features = True

    def __init__(self, head: HeadModel | MlpHead) -> None:
        self.head = head

    @property
    def history(self) -> dict[str, Any]:
        """The head's training log (λ, per-source loss and accuracy per step, source names)."""
        return self.head.history

    @property
    def meta(self) -> dict[str, Any]:
        """The head's fit details (scheme, seed, grad_norm, fixed λ)."""
        return self.head.meta

    def reward_diff(self, pairs: Sequence[Pair] | None, features: PairFeatures | None) -> np.ndarray:
        """r(chosen) − r(rejected) [N] float64 from the pairs' features."""
        with torch.no_grad():
            return self.head.reward_diff(_needed(features)).detach().cpu().numpy().astype(np.float64)

    def rewards(self, prompts: Sequence[str], responses: Sequence[str], features: torch.Tensor | None) -> torch.Tensor:
        """r [N] of the texts' backbone features [N, h]."""
        with torch.no_grad():
            return self.head.reward(_needed(features))


def _needed(features: Any) -> Any:
    """`features`, or RunError when a head is asked to score without them."""
    if features is None:
        raise RunError("a feature-tier head scores backbone features: pass the pairs' features (StudyData.features)")
    return features


class FinetunedRM:
    """A fully fine-tuned reward-model folder (finetune tier), scoring texts with the model itself.

    `history` holds the trainer's λ/loss log (`lam`, `loss` [logs, K], `source_names`), empty for the untrained (`raw`)
    model; `path` is the model folder (or hub name), loaded on first use.
    """

    uses_features = False

    def __init__(self, path: str | Path, model_cfg: Any, history: dict[str, Any] | None = None) -> None:
        self.path, self.model_cfg, self._model = path, model_cfg, None
        self._diffs: dict[tuple, np.ndarray] = {}
        self.history = history or {}
        self.meta: dict[str, Any] = {}

    def loaded(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded on first use."""
        if self._model is None:
            self._model = model_lib.load_reward_model(self.path, self.model_cfg.dtype, self.model_cfg.padding_side)
        return self._model

    def reward_diff(self, pairs: Sequence[Pair] | None, features: PairFeatures | None = None) -> np.ndarray:
        """r(prompt + chosen) − r(prompt + rejected) [N] float64 of `pairs` (memoised: splits are scored again)."""
        if pairs is None:
            raise RunError(f"the fine-tuned RM {self.path} scores texts: pass the pairs (StudyData.pairs)")
        key = tuple((p.prompt, p.chosen, p.rejected) for p in pairs)
        if key not in self._diffs:
            prompts = [p.prompt for p in pairs]
            chosen = self.rewards(prompts, [p.chosen for p in pairs])
            rejected = self.rewards(prompts, [p.rejected for p in pairs])
            self._diffs[key] = (chosen - rejected).double().numpy()
        return self._diffs[key].copy()

    def rewards(
        self, prompts: Sequence[str], responses: Sequence[str], features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """r(prompt + response) [N] float32 on CPU."""
        net, tok = self.loaded()
        return model_lib.score(
            net,
            tok,
            list(prompts),
            list(responses),
            max_length=self.model_cfg.max_length,
            truncation_side=self.model_cfg.truncation_side,
            batch_size=self.model_cfg.batch_size,
        )
