"""Prompt sharing: a pair's chosen and rejected texts share their prompt, so read the prompt once.

Both tiers use the same shared part, the longest common prefix of the two texts' token ids (`common_prefix`), so
the tokens are exactly those of the unshared texts, whatever the tokenizer does at the prompt/response boundary.

- Fine-tuning (`pack_pairs`, `collate_packed`): one row [prompt | chosen | rejected]; positions restart after the
  prompt and a block mask lets a token see the prompt and the earlier tokens of its own continuation only. The prompt
  is cut on the left so that prompt + the longer continuation fits `max_length`; a pair whose continuation alone
  exceeds it is packed unshared. Padding rows attend only to themselves.
- Feature extraction (`pair_states`): the prefixes run once, the KV cache is repeated per pair and each continuation
  runs on its rows with position ids P_i + j. Decoders only: an encoder's prefix sees its suffix.

Causal attention makes every state equal to the unshared forward's up to float rounding. Checked against the
unshared forward on the tiny random Llama and SmolLM2 (tests/test_prompt_sharing.py,
tests/test_prompt_sharing_cache.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel

from morelib.backbone.model import encode, is_encoder
from morelib.core.errors import ConfigError


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-padded (input_ids, attention_mask) LongTensor[B,T] of token-id lists."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids.to(device), mask.to(device)


def _states(
    model: PreTrainedModel, ids: Tensor, mask: Tensor, positions: Tensor, cache: DynamicCache, layer: int | None
) -> Tensor:
    """One backbone forward that fills `cache`: the states Tensor[B,T,h] at `layer` (None: the last, normed)."""
    out = model.base_model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        output_hidden_states=layer is not None,
    )
    return out.last_hidden_state if layer is None else out.hidden_states[layer]


def _rows_of(model: PreTrainedModel, cache: DynamicCache, rows: Tensor) -> DynamicCache:
    """A new cache holding the given batch rows of `cache` (a row may repeat)."""
    return DynamicCache(
        ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers], config=model.config
    )


def pair_states(
    model: PreTrainedModel,
    prefixes: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    pad_id: int,
    layer: int | None = None,
    chunk: int | None = None,
) -> tuple[Tensor, Tensor]:
    """States of 2B texts = prefixes[i // 2] + continuations[i], each prefix encoded once: (Tensor[2B,T,h], mask[2B,T]).

    Row 2i and 2i+1 continue prefix i; T = longest prefix + longest continuation; the mask marks real tokens (the
    prefix's, then a gap of padding, then the continuation's), in the order the unshared forward reads them. The
    continuations run longest first in batches of `chunk` texts (None: all at once), each on its own rows of the prefix
    cache, so a short continuation is not padded to its partner's length.
    """
    if len(continuations) != 2 * len(prefixes) or not all(prefixes) or not all(continuations):
        raise ValueError(
            f"pair_states needs B non-empty prefixes and 2B non-empty continuations; got "
            f"{len(prefixes)} and {len(continuations)}"
        )
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    p_ids, p_mask = right_pad(prefixes, pad_id, device)
    width = p_ids.shape[1]
    p_states = _states(model, p_ids, p_mask, torch.arange(width, device=device).expand_as(p_ids), cache, layer)
    states = p_states.new_zeros(len(continuations), width + max(map(len, continuations)), p_states.shape[-1])
    mask = p_mask.new_zeros(states.shape[:2])
    order = sorted(range(len(continuations)), key=lambda i: -len(continuations[i]))
    for start in range(0, len(order), chunk or len(order)):
        rows = torch.tensor(order[start : start + (chunk or len(order))], device=device)
        own = rows // 2
        c_ids, c_mask = right_pad([continuations[i] for i in rows.tolist()], pad_id, device)
        full = torch.cat([p_mask[own], c_mask], dim=1)
        c_pos = p_mask[own].sum(1, keepdim=True) + torch.arange(c_ids.shape[1], device=device)
        c_states = _states(model, c_ids, full, c_pos, _rows_of(model, cache, own), layer)
        states[rows, : width + c_ids.shape[1]] = torch.cat([p_states[own], c_states], dim=1)
        mask[rows, : full.shape[1]] = full
    return states, mask


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
    return PackedPair(chosen[max(0, p - room) : p], c, r)


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
    """One PackedPair per (chosen text, rejected text); unshared fallback (empty prompt) where a response is too
    long."""
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
    seg[:p], seg[p : p + c], seg[p + c : p + c + r] = 0, 1, 2
    idx = torch.arange(T)
    causal = idx[None, :] <= idx[:, None]
    allowed = causal & ((seg[None, :] == 0) | (seg[None, :] == seg[:, None])) & (seg[:, None] != 3)
    return allowed | torch.eye(T, dtype=torch.bool)


def collate_packed(packed: Sequence[PackedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded input_ids/position_ids [N, T], attention_mask Bool[N, 1, T, T] and score_at [2N]: the column of
    the last chosen token of each row, then of the last rejected token ([chosen; rejected] order, as unshared)."""
    ids, _ = right_pad([x.prompt + x.chosen + x.rejected for x in packed], pad_id, torch.device("cpu"))
    T = ids.shape[1]
    pos = torch.zeros((len(packed), T), dtype=torch.long)
    for i, x in enumerate(packed):
        p, c, r = len(x.prompt), len(x.chosen), len(x.rejected)
        pos[i, : len(x)] = torch.cat([torch.arange(p + c), torch.arange(p, p + r)])
    ends = [(len(x.prompt) + len(x.chosen) - 1, len(x) - 1) for x in packed]
    mask = torch.stack([block_mask(x, T) for x in packed])[:, None]
    return {
        "input_ids": ids,
        "position_ids": pos,
        "attention_mask": mask,
        "score_at": torch.tensor([e[0] for e in ends] + [e[1] for e in ends]),
    }


def model_mask(model: Any, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 4D mask in the form the model's attention takes: bool for sdpa, additive float (0 / min) for eager."""
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl == "sdpa":
        return mask
    if impl == "eager":
        return torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
    raise ConfigError(
        f"prompt sharing (share_prompt) needs sdpa or eager attention (a 4D block mask); model uses {impl!r}"
    )
