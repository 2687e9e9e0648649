"""Prompt sharing: one preference pair as ONE row [prompt | chosen | rejected] that a causal decoder reads once.

The shared prompt is the longest common token prefix of the two tokenised texts (prompt + chosen, prompt + rejected),
so the tokens are exactly those of the unshared texts, whatever the tokenizer does at the prompt/response boundary.
Positions restart after the prompt (the rejected continuation takes the positions the chosen one took), and a block
mask lets a token see the prompt and the earlier tokens of its own continuation only: every real token then sees
exactly what it sees in its own unshared sequence, so hidden states, rewards and gradients are those of the unshared
forward (tests/test_pairpack.py: 1e-4 in fp32 on the tiny model and SmolLM2). Truncation: the prompt is cut on the
left so that prompt + the longer continuation fits `max_length`; a pair whose continuation alone exceeds it is
packed unshared (empty prompt, each text left-truncated as the unshared path does), so each response stays whole
wherever the unshared path keeps it whole. Padding rows attend only to themselves (no fully masked row).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from morelib.errors import ConfigError
from morelib.model import encode, is_encoder


@dataclass(frozen=True)
class PackedPair:
    """Token ids of one pair: the shared prompt and the two continuations (each ≥ 1 token)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.chosen) + len(self.rejected)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists, leaving each at least one token of its own."""
    limit, n = min(len(a), len(b)) - 1, 0
    while n < limit and a[n] == b[n]:
        n += 1
    return max(n, 0)


def split_pair(chosen: list[int], rejected: list[int], max_length: int) -> PackedPair | None:
    """Untruncated ids of prompt + chosen and prompt + rejected → PackedPair with the prompt left-truncated so that
    prompt + the longer continuation has ≤ max_length tokens; None when a continuation alone exceeds max_length."""
    p = common_prefix(chosen, rejected)
    c, r = chosen[p:], rejected[p:]
    room = max_length - max(len(c), len(r))
    if room < 0:
        return None
    return PackedPair(chosen[max(0, p - room):p], c, r)


def unshareable(model: Any, tokenizer: Any) -> str | None:
    """Why this model/tokenizer cannot share the prompt (None if it can): an encoder (bidirectional attention), an
    attention without 4D masks, or a tokenizer that adds special tokens (a BOS would be lost when the prompt is cut)."""
    if is_encoder(model):
        return f"{model.config.model_type} is an encoder"
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl not in ("sdpa", "eager"):
        return f"attention {impl!r} takes no 4D block mask"
    added = tokenizer("")["input_ids"]
    return f"the tokenizer adds special tokens {added}" if added else None


def pack_pairs(tokenizer: Any, chosen: Sequence[str], rejected: Sequence[str], max_length: int) -> list[PackedPair]:
    """One PackedPair per (chosen text, rejected text); unshared fallback (empty prompt) where a response is too long."""
    full = tokenizer(list(chosen) + list(rejected), truncation=False)["input_ids"]
    n = len(chosen)
    out = []
    for i in range(n):
        packed = split_pair(full[i], full[n + i], max_length)
        if packed is None:  # the unshared path's own truncation: each text left-truncated on its own
            c, r = encode(tokenizer, [chosen[i], rejected[i]], max_length, "left")
            packed = PackedPair([], c, r)
        out.append(packed)
    return out


def block_mask(packed: PackedPair, T: int) -> torch.Tensor:
    """BoolTensor[T, T], True = query row may attend to key column (prompt causal; each continuation sees the
    prompt and itself causally, never the other; padding sees only itself)."""
    p, c, r = len(packed.prompt), len(packed.chosen), len(packed.rejected)
    seg = torch.full((T,), 3)
    seg[:p], seg[p:p + c], seg[p + c:p + c + r] = 0, 1, 2
    idx = torch.arange(T)
    causal = idx[None, :] <= idx[:, None]
    allowed = causal & ((seg[None, :] == 0) | (seg[None, :] == seg[:, None])) & (seg[:, None] != 3)
    return allowed | torch.eye(T, dtype=torch.bool)


def collate_packed(packed: Sequence[PackedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids/position_ids [N, T], attention_mask Bool[N, 1, T, T] and score_at [2N]: the column of
    the last chosen token of each row, then of the last rejected token ([chosen; rejected] order, as unshared)."""
    T = max(len(x) for x in packed)
    ids = torch.full((len(packed), T), pad_id, dtype=torch.long)
    pos = torch.zeros((len(packed), T), dtype=torch.long)
    for i, x in enumerate(packed):
        p, c, r = len(x.prompt), len(x.chosen), len(x.rejected)
        ids[i, :len(x)] = torch.tensor(x.prompt + x.chosen + x.rejected)
        pos[i, :len(x)] = torch.cat([torch.arange(p + c), torch.arange(p, p + r)])
    ends = [(len(x.prompt) + len(x.chosen) - 1, len(x) - 1) for x in packed]
    mask = torch.stack([block_mask(x, T) for x in packed])[:, None]
    return {"input_ids": ids, "position_ids": pos, "attention_mask": mask,
            "score_at": torch.tensor([e[0] for e in ends] + [e[1] for e in ends])}


def model_mask(model: Any, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4D mask in the form the model's attention takes: bool for sdpa, additive float (0 / min) for eager."""
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl == "sdpa":
        return mask
    if impl == "eager":
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    raise ConfigError(f"train.share_prompt needs sdpa or eager attention (a 4D block mask); model uses {impl!r}")
