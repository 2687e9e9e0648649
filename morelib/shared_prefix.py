"""Shared prefix: encode two texts' common token prefix once and continue each text from its KV cache.

Chosen and rejected texts share the prompt, which on Anthropic HH is most of the text. The shared part of a pair is
the longest common prefix of the two texts' TOKEN IDS as the unshared path feeds them (after its truncation), less at
least one token so each continuation is non-empty: the shared forward sees exactly the unshared forward's tokens, so
equality holds by construction (tokenising prompt and response apart could split the boundary differently). The
prefixes [B,P] run once; the cache is repeated per pair (rows 2i, 2i+1 continue prefix i) and the continuations
[2B,C] run on top of it with position ids P_i + j and the attention mask [prefix mask ⊕ continuation mask] (the mask
is built from cache offsets, not position ids, so right-padded prefixes leave masked gaps). Causal attention makes
every state equal to the full forward's up to float rounding. Decoders only: an encoder's prefix sees its suffix.
Checked against: the unshared padded forward, last and mean pooling, several layers, on the tiny random Llama and
SmolLM2 (tests/test_shared_prefix.py).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel


def right_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-padded (input_ids, attention_mask) LongTensor[B,T] of token-id lists."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids.to(device), mask.to(device)


def _states(model: PreTrainedModel, ids: Tensor, mask: Tensor, positions: Tensor, cache: DynamicCache,
            layer: int | None) -> Tensor:
    """One backbone forward that fills `cache`: the states Tensor[B,T,h] at `layer` (None: the last, normed)."""
    out = model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                           output_hidden_states=layer is not None)
    return out.last_hidden_state if layer is None else out.hidden_states[layer]


def _rows_of(model: PreTrainedModel, cache: DynamicCache, rows: Tensor) -> DynamicCache:
    """A new cache holding the given batch rows of `cache` (a row may repeat)."""
    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in cache.layers],
                        config=model.config)


def pair_states(model: PreTrainedModel, prefixes: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]],
                pad_id: int, layer: int | None = None, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """States of 2B texts = prefixes[i // 2] + continuations[i], each prefix encoded once: (Tensor[2B,T,h], mask[2B,T]).

    Row 2i and 2i+1 continue prefix i; T = longest prefix + longest continuation; the mask marks real tokens (the
    prefix's, then a gap of padding, then the continuation's), in the order the unshared forward reads them. The
    continuations run longest first in batches of `chunk` texts (None: all at once), each on its own rows of the prefix
    cache, so a short continuation is not padded to its partner's length.
    """
    if len(continuations) != 2 * len(prefixes) or not all(prefixes) or not all(continuations):
        raise ValueError(f"pair_states needs B non-empty prefixes and 2B non-empty continuations; got "
                         f"{len(prefixes)} and {len(continuations)}")
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    p_ids, p_mask = right_pad(prefixes, pad_id, device)
    width = p_ids.shape[1]
    p_states = _states(model, p_ids, p_mask, torch.arange(width, device=device).expand_as(p_ids), cache, layer)
    states = p_states.new_zeros(len(continuations), width + max(map(len, continuations)), p_states.shape[-1])
    mask = p_mask.new_zeros(states.shape[:2])
    order = sorted(range(len(continuations)), key=lambda i: -len(continuations[i]))
    for start in range(0, len(order), chunk or len(order)):
        rows = torch.tensor(order[start:start + (chunk or len(order))], device=device)
        own = rows // 2
        c_ids, c_mask = right_pad([continuations[i] for i in rows.tolist()], pad_id, device)
        full = torch.cat([p_mask[own], c_mask], dim=1)
        c_pos = p_mask[own].sum(1, keepdim=True) + torch.arange(c_ids.shape[1], device=device)
        c_states = _states(model, c_ids, full, c_pos, _rows_of(model, cache, own), layer)
        states[rows, :width + c_ids.shape[1]] = torch.cat([p_states[own], c_states], dim=1)
        mask[rows, :full.shape[1]] = full
    return states, mask
