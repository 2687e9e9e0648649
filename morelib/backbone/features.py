"""Cached features: the frozen backbone's pooled features of chosen and rejected texts (the reward head's input).

The feature tier of the workbook: with the backbone frozen, a reward model r = w · z + b is a linear head on these
features, so MORE's per-source reward-head gradients (paper §4, eq. 6) are exact on them. Text = prompt + response
as one string (HH prompts end with "\\n\\nAssistant:"). Features are cached per TEXT under a content key =
sha256(model name, model identity (config + weight sample), dtype, max_length, truncation side, text), in sharded
safetensors files whose metadata holds the keys and a sha256 checksum of the rows; an unreadable or mismatching shard
is deleted with a warning and recomputed. Batches are length-sorted (longest first) with dynamic padding and unsorted.
Which features (`model.pooling`, `model.layer`, read from ONE forward pass; the pooling itself is in
`morelib.backbone.model`): `last` = the hidden state of the last real token; `mean` = the mean of the hidden states of
the last m real tokens, m = the response's own token count (tokenised alone, no special tokens), clipped to [1, sequence
length] — the response's tokens, as left truncation keeps the end. `layer` indexes the model's hidden states (0 =
embeddings, −1 = last, after the final norm); null = the score layer's input (the last layer's). The default (last,
null) keeps the cache keys of before these options existed; any other choice adds itself to the feature-space key, and
mean pooling adds m to each text's key.
Prefix sharing (`head.share_prompt`; not part of any key): `extract` runs each pair's longest common token prefix
once and both continuations on its KV cache (`prompt_sharing`), same tokens, so the same features up to float rounding.
Checked against: per-text unpadded `model.pooled_features` / `output_hidden_states` runs, and cache hit == fresh run
(tests/test_features.py); shared == unshared features within 1e-4 (tests/test_prompt_sharing_cache.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from morelib.backbone.model import (
    batch_features,
    collate,
    encode,
    is_encoder,
    load_reward_model,
    model_identity,
    pool_last_tokens,
)
from morelib.backbone.prompt_sharing import common_prefix, pair_states
from morelib.core import runs, status
from morelib.core.errors import ConfigError, DataError, RunError
from morelib.core.hardware import dtype_name

log = logging.getLogger(__name__)

SHARD_ROWS = 1024  # texts per cache shard: an interrupted extraction keeps every finished shard
MIN_SHARED = 8  # prefix sharing: a pair whose texts share fewer leading tokens runs unshared (one forward each);
# below this the saving does not pay for the second forward and the cache copy
# Threads: extraction runs in ONE process with torch's default intra-op threads (every usable core); two 1-thread
# processes measured no faster (README.md, "This machine, honestly").


@dataclass
class PairFeatures:
    """Features of N preference pairs of one source: chosen/rejected float32 [N,h], response token counts [N]."""

    chosen: Tensor
    rejected: Tensor
    source: str
    chosen_len: Tensor | None = None
    rejected_len: Tensor | None = None

    def __post_init__(self) -> None:
        """Check shapes agree and store features as float32."""
        if self.chosen.dim() != 2 or self.chosen.shape != self.rejected.shape:
            raise DataError(
                f"PairFeatures '{self.source}': chosen {tuple(self.chosen.shape)} and rejected "
                f"{tuple(self.rejected.shape)} must both be [N, h]"
            )
        for name in ("chosen_len", "rejected_len"):
            lengths = getattr(self, name)
            if lengths is not None and lengths.shape != (len(self.chosen),):
                raise DataError(
                    f"PairFeatures '{self.source}': {name} has shape {tuple(lengths.shape)}, "
                    f"expected ({len(self.chosen)},)"
                )
        self.chosen, self.rejected = self.chosen.float(), self.rejected.float()

    @property
    def diff(self) -> Tensor:
        """chosen − rejected, Tensor[N,h]."""
        return self.chosen - self.rejected

    @property
    def dim(self) -> int:
        """Feature width h."""
        return self.chosen.shape[1]

    def __len__(self) -> int:
        """Number of pairs N."""
        return self.chosen.shape[0]

    def subset(self, idx: Sequence[int] | Tensor) -> PairFeatures:
        """The pairs at positions `idx` (same source)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda t: None if t is None else t[idx]
        return PairFeatures(
            self.chosen[idx], self.rejected[idx], self.source, pick(self.chosen_len), pick(self.rejected_len)
        )

    @staticmethod
    def cat(parts: Sequence[PairFeatures], source: str | None = None) -> PairFeatures:
        """Concatenate pairs; `source` defaults to the parts' common source (else their names joined by '+')."""
        if not parts:
            raise DataError("PairFeatures.cat needs at least one part")
        names = list(dict.fromkeys(p.source for p in parts))
        lens = lambda attr: (
            None if any(getattr(p, attr) is None for p in parts) else torch.cat([getattr(p, attr) for p in parts])
        )
        return PairFeatures(
            torch.cat([p.chosen for p in parts]),
            torch.cat([p.rejected for p in parts]),
            source or "+".join(names),
            lens("chosen_len"),
            lens("rejected_len"),
        )


@lru_cache(maxsize=2)
def backbone(name: str, dtype: str = "auto", padding_side: str = "right"):
    """The frozen (model, tokenizer, identity) for feature extraction, loaded once per process."""
    model, tokenizer = load_reward_model(name, dtype=dtype, padding_side=padding_side)
    model.requires_grad_(False)
    return model, tokenizer, model_identity(model)


def _choice(model_cfg) -> tuple[str, int | None]:
    """(pooling, layer) of a model config; configs without them mean ("last", None)."""
    return getattr(model_cfg, "pooling", "last"), getattr(model_cfg, "layer", None)


def forward_parts(model_cfg, identity: str, dtype: torch.dtype) -> list[str]:
    """What fixes the backbone's forward pass of a text: model name + identity, dtype, max_length, truncation side."""
    return [model_cfg.name, identity, dtype_name(dtype), str(model_cfg.max_length), model_cfg.truncation_side]


def model_key(model_cfg, identity: str, dtype: torch.dtype) -> str:
    """sha256 naming one feature space: model name + identity, dtype, max_length, truncation side (+ pooling, layer)."""
    parts = forward_parts(model_cfg, identity, dtype)
    pooling, layer = _choice(model_cfg)
    if (pooling, layer) != ("last", None):  # the default keeps the keys of caches written before these options
        parts += [f"pooling={pooling}", f"layer={layer}"]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def text_key(mkey: str, text: str, n_pool: int | None = None) -> str:
    """Cache key of one text in the feature space `mkey` (with its m pooled tokens under mean pooling)."""
    tail = "" if n_pool is None else f"\0{n_pool}"
    return hashlib.sha256(f"{mkey}\0{text}{tail}".encode()).hexdigest()


def _check_layer(model, layer: int | None) -> None:
    """Raise ConfigError when `layer` does not index the model's hidden states."""
    n_states = model.config.get_text_config().num_hidden_layers + 1
    if layer is not None and not -n_states <= layer < n_states:
        raise ConfigError(
            f"'model.layer' = {layer} is out of range: the model has {n_states} hidden states "
            f"(0 = embeddings … {n_states - 1} = last, or negative from the end)"
        )


def _checksum(rows: Tensor) -> str:
    """sha256 of a float32 feature block's bytes."""
    return hashlib.sha256(rows.contiguous().numpy().tobytes()).hexdigest()


def drop_shard(path: Path, why: str) -> None:
    """Delete a bad cache shard (features or hidden states) with a warning so its texts are recomputed."""
    log.warning("cache shard %s is %s; deleting it and recomputing its texts", path, why)
    path.unlink(missing_ok=True)


def read_shard_index(folder: Path) -> dict[str, tuple[Path, int]]:
    """Map text key → (shard, row) from every readable shard header in `folder` (unreadable shards are deleted)."""
    index: dict[str, tuple[Path, int]] = {}
    for path in sorted(folder.glob("shard-*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys = json.loads(handle.metadata()["keys"])
        except (SafetensorError, OSError, KeyError, ValueError, TypeError):
            drop_shard(path, "unreadable")
            continue
        index.update({key: (path, row) for row, key in enumerate(keys)})
    return index


def _load_shard(path: Path) -> Tensor | None:
    """A shard's feature rows [n,h], or None (after deleting it) when unreadable or its checksum mismatches."""
    try:
        rows = load_file(str(path))["features"]
        with safe_open(str(path), framework="pt") as handle:
            expected = handle.metadata()["checksum"]
    except (SafetensorError, OSError, KeyError, ValueError):
        drop_shard(path, "unreadable")
        return None
    if _checksum(rows) != expected:
        drop_shard(path, "corrupted (checksum mismatch)")
        return None
    return rows


def _write_shard(folder: Path, keys: list[str], rows: Tensor) -> None:
    """Write one shard atomically (tmp file + rename), named by its content."""
    rows = rows.float().contiguous()
    name = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    try:
        save_file({"features": rows}, str(tmp), metadata={"keys": json.dumps(keys), "checksum": _checksum(rows)})
        os.replace(runs.share(tmp), folder / f"shard-{name}.safetensors")
    except (OSError, SafetensorError) as err:  # a full or read-only cache: safetensors raises its own error type
        tmp.unlink(missing_ok=True)
        raise RunError(
            f"could not write a feature cache shard into {folder}: {err} — the cache (<output_root>/cache) needs "
            "free space and write permission; the shards written so far are kept"
        ) from err


def _cached(folder: Path, keys: list[str]) -> dict[str, Tensor]:
    """Rows of the requested keys found (intact) in the cache."""
    wanted = set(keys)
    by_shard: dict[Path, list[tuple[str, int]]] = {}
    for key, (path, row) in read_shard_index(folder).items():
        if key in wanted:
            by_shard.setdefault(path, []).append((key, row))
    found: dict[str, Tensor] = {}
    for path, entries in by_shard.items():
        rows = _load_shard(path)
        if rows is not None:
            found.update({key: rows[row] for key, row in entries})
    return found


def embed_texts(
    model,
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    truncation_side: str = "left",
    batch_size: int = 16,
    bar: tqdm | None = None,
    layer: int | None = None,
    n_pool: Sequence[int] | None = None,
) -> Tensor:
    """Pooled features of texts, Tensor[N,h] float32 on CPU; length-sorted batches, returned in input order.

    `layer` indexes the hidden states (None: the score layer's input); `n_pool[N]` averages each text's last n_pool
    tokens (None: the last token only).
    """
    _check_layer(model, layer)
    ids = encode(tokenizer, texts, max_length, truncation_side)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: an OOM shows up at once
    device = next(model.parameters()).device
    out: list[Tensor | None] = [None] * len(ids)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            input_ids, mask = collate(tokenizer, [ids[i] for i in chunk], device)
            n = None if n_pool is None else torch.tensor([n_pool[i] for i in chunk], dtype=torch.long)
            feats = batch_features(model, input_ids, mask, layer, n).float().cpu()
            for row, i in enumerate(chunk):
                out[i] = feats[row]
            if bar is not None and not bar.disable:
                bar.update(len(chunk))
                status.progress(bar.desc, bar.n, bar.total, step=len(chunk))
    return torch.stack(out) if out else torch.zeros(0, model.config.get_text_config().hidden_size)


def _shared_rows(
    model,
    pad_id: int,
    ids_a: list[list[int]],
    ids_b: list[list[int]],
    layer: int | None,
    n_a: Sequence[int] | None,
    n_b: Sequence[int] | None,
    chunk: int,
) -> tuple[Tensor, Tensor]:
    """Pooled features of one batch of pairs through their shared prefixes: (Tensor[B,h], Tensor[B,h]) float32."""
    cut = [common_prefix(a, b) for a, b in zip(ids_a, ids_b)]
    conts = [part for a, b, p in zip(ids_a, ids_b, cut) for part in (a[p:], b[p:])]
    states, mask = pair_states(model, [a[:p] for a, p in zip(ids_a, cut)], conts, pad_id, layer, chunk)
    n = (
        torch.ones(len(conts), dtype=torch.long)
        if n_a is None
        else torch.tensor([k for pair in zip(n_a, n_b) for k in pair], dtype=torch.long)
    )
    feats = pool_last_tokens(states, mask, n).float().cpu()
    return feats[0::2], feats[1::2]


def embed_pairs(
    model,
    tokenizer,
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    max_length: int,
    truncation_side: str = "left",
    batch_size: int = 16,
    bar: tqdm | None = None,
    layer: int | None = None,
    n_a: Sequence[int] | None = None,
    n_b: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Pooled features of paired texts (same prompt), each pair's common token prefix encoded once: 2 × Tensor[N,h].

    Equal to `embed_texts` of each side (same truncation, same tokens); a pair sharing fewer than MIN_SHARED tokens
    (e.g. when truncation cut its texts at different offsets) runs unshared. A prefix batch holds batch_size pairs
    (sorted by shared length); their 2 × batch_size continuations run longest first in batches of batch_size texts.
    """
    _check_layer(model, layer)
    if is_encoder(model):
        raise ConfigError(f"prefix sharing needs a decoder; {model.config.model_type} attends to later tokens")
    ids_a = encode(tokenizer, texts_a, max_length, truncation_side)
    ids_b = encode(tokenizer, texts_b, max_length, truncation_side)
    shared = [i for i in range(len(ids_a)) if common_prefix(ids_a[i], ids_b[i]) >= MIN_SHARED]
    alone = sorted(set(range(len(ids_a))) - set(shared))
    out_a = torch.zeros(len(ids_a), model.config.get_text_config().hidden_size)
    out_b = out_a.clone()
    if alone:
        pick = lambda seq: None if seq is None else [seq[i] for i in alone]
        both = embed_texts(
            model,
            tokenizer,
            [texts_a[i] for i in alone] + [texts_b[i] for i in alone],
            max_length,
            truncation_side,
            batch_size,
            bar,
            layer,
            None if n_a is None else pick(n_a) + pick(n_b),
        )
        out_a[alone], out_b[alone] = both[: len(alone)], both[len(alone) :]
    shared.sort(key=lambda i: -common_prefix(ids_a[i], ids_b[i]))
    with torch.inference_mode():
        for start in range(0, len(shared), batch_size):
            chunk = shared[start : start + batch_size]
            pick = lambda seq, rows=chunk: None if seq is None else [seq[i] for i in rows]
            out_a[chunk], out_b[chunk] = _shared_rows(
                model,
                tokenizer.pad_token_id,
                [ids_a[i] for i in chunk],
                [ids_b[i] for i in chunk],
                layer,
                pick(n_a),
                pick(n_b),
                batch_size,
            )
            if bar is not None and not bar.disable:
                bar.update(2 * len(chunk))
                status.progress(bar.desc, bar.n, bar.total, step=2 * len(chunk))
    return out_a, out_b


def _pairs_of(keys: list[str], pairs: Sequence[tuple[int, int]], missing: set[str]) -> list[tuple[str, str]]:
    """Key pairs (a, b) to compute together: both missing, distinct, each key in one pair at most (first wins)."""
    taken: set[str] = set()
    out = []
    for i, j in pairs:
        a, b = keys[i], keys[j]
        if a != b and {a, b} <= missing and not {a, b} & taken:
            taken |= {a, b}
            out.append((a, b))
    return out


def _text_keys(
    texts: Sequence[str], model_cfg, cache_dir: str | Path, n_pool: Sequence[int] | None
) -> tuple[Path, list[str], list[int | None]]:
    """The cache folder of `model_cfg`'s feature space (created), each text's cache key, and each text's pooled token
    count (None under last-token pooling)."""
    model, _, identity = backbone(model_cfg.name, model_cfg.dtype, model_cfg.padding_side)
    if _choice(model_cfg)[0] == "mean" and (n_pool is None or len(n_pool) != len(texts)):
        raise DataError(f"mean pooling needs one response token count per text ({len(texts)} texts)")
    counts = list(map(int, n_pool)) if _choice(model_cfg)[0] == "mean" else [None] * len(texts)
    mkey = model_key(model_cfg, identity, next(model.parameters()).dtype)
    folder = Path(cache_dir) / mkey[:24]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the feature cache folder {folder}: {err}") from err
    return folder, [text_key(mkey, t, n) for t, n in zip(texts, counts)], counts


def extract_texts(
    texts: Sequence[str],
    model_cfg,
    cache_dir: str | Path,
    progress: bool = True,
    n_pool: Sequence[int] | None = None,
    pairs: Sequence[tuple[int, int]] = (),
    share_prompt: bool = False,
) -> Tensor:
    """Pooled features of texts, Tensor[N,h] float32, computed only for texts missing from the cache.

    Mean pooling needs `n_pool[N]`: how many final tokens of each text (its response) to average. `pairs` lists
    (i, j) index pairs of texts sharing a prompt: with `share_prompt` (`head.share_prompt`), a pair whose texts are
    both missing is computed through its shared token prefix (`embed_pairs`); the features and cache keys are the same.
    """
    model, tokenizer, _ = backbone(model_cfg.name, model_cfg.dtype, model_cfg.padding_side)
    pooling, layer = _choice(model_cfg)
    folder, keys, n_pool = _text_keys(texts, model_cfg, cache_dir, n_pool)
    found = _cached(folder, keys)
    missing = list(dict.fromkeys(k for k in keys if k not in found))
    share = share_prompt and not is_encoder(model)
    duo = _pairs_of(keys, pairs, set(missing)) if share else []
    in_duo = {k for pair in duo for k in pair}
    missing = [k for k in missing if k not in in_duo]
    text_of, n_of = dict(zip(keys, texts)), dict(zip(keys, n_pool))
    counts = lambda block: None if pooling == "last" else [n_of[k] for k in block]
    with tqdm(
        total=len(missing) + len(in_duo),
        disable=not progress or not (missing or duo),
        unit="text",
        desc=f"features {model_cfg.name}",
    ) as bar:
        for start in range(0, len(duo), SHARD_ROWS // 2):
            block_a, block_b = zip(*duo[start : start + SHARD_ROWS // 2])
            rows_a, rows_b = embed_pairs(
                model,
                tokenizer,
                [text_of[k] for k in block_a],
                [text_of[k] for k in block_b],
                model_cfg.max_length,
                model_cfg.truncation_side,
                model_cfg.batch_size,
                bar,
                layer,
                counts(block_a),
                counts(block_b),
            )
            block, rows = list(block_a + block_b), torch.cat([rows_a, rows_b])
            _write_shard(folder, block, rows)
            found.update(zip(block, rows))
        for start in range(0, len(missing), SHARD_ROWS):
            block = missing[start : start + SHARD_ROWS]
            rows = embed_texts(
                model,
                tokenizer,
                [text_of[k] for k in block],
                model_cfg.max_length,
                model_cfg.truncation_side,
                model_cfg.batch_size,
                bar,
                layer,
                counts(block),
            )
            _write_shard(folder, block, rows)
            found.update(zip(block, rows))
    if not keys:
        return torch.zeros(0, model.config.get_text_config().hidden_size)
    return torch.stack([found[k] for k in keys])


def response_lengths(tokenizer, responses: Sequence[str]) -> Tensor:
    """Token counts of responses on their own (no special tokens, no truncation), LongTensor[N]."""
    ids = tokenizer(list(responses), add_special_tokens=False)["input_ids"]
    return torch.tensor([len(x) for x in ids], dtype=torch.long)


def _pair_texts(pairs: Sequence, model_cfg) -> tuple[list[str], Tensor]:
    """prompt + chosen of every pair, then prompt + rejected, and their responses' token counts LongTensor[2N]."""
    _, tokenizer, _ = backbone(model_cfg.name, model_cfg.dtype, model_cfg.padding_side)
    texts = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    return texts, response_lengths(tokenizer, [p.chosen for p in pairs] + [p.rejected for p in pairs])


def uncached(pair_lists: Sequence[Sequence], model_cfg, cache_dir: str | Path) -> int:
    """How many distinct texts of these lists of pairs the feature cache lacks: what `extract` of each will compute
    (the total of a study's overall extraction progress, `status.overall`)."""
    keys: set[str] = set()
    folder = None
    for pairs in pair_lists:
        texts, lengths = _pair_texts(pairs, model_cfg)
        folder, found, _ = _text_keys(texts, model_cfg, cache_dir, lengths.tolist())
        keys.update(found)
    return len(keys - set(read_shard_index(folder))) if folder is not None else 0


def extract(
    pairs: Sequence, model_cfg, cache_dir: str | Path, progress: bool = True, share_prompt: bool = False
) -> PairFeatures:
    """PairFeatures of pairs of ONE source: features of prompt + chosen and prompt + rejected, cached; `share_prompt`
    (`head.share_prompt`) reads each pair's common token prefix once (same features)."""
    sources = sorted({p.source for p in pairs})
    if len(sources) != 1:
        raise DataError(f"extract needs pairs of exactly one source; got {len(pairs)} pairs from {sources or 'none'}")
    texts, lengths = _pair_texts(pairs, model_cfg)
    n = len(pairs)
    feats = extract_texts(
        texts, model_cfg, cache_dir, progress, lengths.tolist(), [(i, n + i) for i in range(n)], share_prompt
    )
    return PairFeatures(feats[:n], feats[n:], sources[0], lengths[:n], lengths[n:])
