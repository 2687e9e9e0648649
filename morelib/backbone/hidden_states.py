"""Cached hidden states: the frozen backbone's hidden states entering block L−k, for every token of every text.

The blocks tier (`morelib.train.blocks`, issue 23) trains the top k of the backbone's L decoder blocks, its final norm
and its score layer; everything below block L−k is frozen, so its output — `output_hidden_states` index L−k (0 = the
embeddings) — is computed once per text and cached here. Text = prompt + response as one string, tokenised as the
feature tier does (`model.max_length` tokens, cut on `model.truncation_side`). A text's cache key is sha256(space,
text) (`features.text_key`); the space is sha256 of what fixes the forward pass (`features.forward_parts`: model name,
model identity, dtype, max_length, truncation side), "states@L-k" and the stored dtype (`blocks.cache_dtype`).
A shard holds up to SHARD_TEXTS texts as one safetensors file: `states` [Σ T_i, h] (each text's real tokens,
concatenated) and `offsets` [n + 1], with the text keys and a sha256 of both tensors in its metadata; an unreadable
shard or one whose checksum mismatches is deleted with a warning, and `extract` computes its texts again. Each folder
has a `manifest.json` naming the model, its identity, the layer and the dtypes: a folder whose manifest names another
backbone raises DataError (it is not a cache miss), and `load` of a text never extracted raises DataError.
Checked in tests/test_blocks.py: a warm run extracts nothing, a cache hit equals a fresh run, a corrupt shard is
recomputed, and the top blocks run on these states equal the full model's forward (1e-4, fp32 states).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

from morelib.backbone.features import backbone, drop_shard, forward_parts, read_shard_index, text_key
from morelib.backbone.model import collate, encode, hidden_states
from morelib.core import status
from morelib.core.errors import ConfigError, DataError
from morelib.core.hardware import dtype_name

log = logging.getLogger(__name__)

SHARD_TEXTS = 256  # texts per shard (~15–40 MB in fp16 at 128 tokens of SmolLM2): an interrupted run keeps each one
MANIFEST = "manifest.json"
STORE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def n_blocks(model: Any) -> int:
    """L: the transformer blocks of a model."""
    return model.config.get_text_config().num_hidden_layers


def check_k(model: Any, k: Any, name: str) -> int:
    """k as an int, or ConfigError when it is not an int in [1, L] for this model of L blocks."""
    L = n_blocks(model)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"'blocks.k' must be an int ≥ 1 (the top k of {name}'s {L} blocks are trained), got {k!r}")
    if k > L:
        raise ConfigError(f"'blocks.k' = {k} is larger than the {L} transformer blocks of {name}")
    return k


def _checksum(states: Tensor, offsets: Tensor) -> str:
    """sha256 of a shard's tensors' bytes."""
    digest = hashlib.sha256(states.contiguous().view(torch.uint8).numpy().tobytes())
    digest.update(offsets.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _read_shard(path: Path) -> tuple[Tensor, Tensor] | None:
    """(states [Σ T, h], offsets [n + 1]) of one shard, or None after deleting it when unreadable or corrupt."""
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            expected = handle.metadata()["checksum"]
        states, offsets = tensors["states"], tensors["offsets"]
    except (SafetensorError, OSError, KeyError, ValueError):
        drop_shard(path, "unreadable")
        return None
    if _checksum(states, offsets) != expected:
        drop_shard(path, "corrupted (checksum mismatch)")
        return None
    return states, offsets


class StateCache:
    """The cached hidden states entering block L−k of one backbone (`model_cfg`): `extract(texts)`, `load(texts)`.

    store: on-disk dtype (fp16 | bf16 | fp32); batch_size: texts per forward of `extract` (length-sorted).
    """

    def __init__(self, model_cfg: Any, k: int, cache_dir: str | Path, store: str = "fp16", batch_size: int = 8) -> None:
        if store not in STORE_DTYPES:
            raise ConfigError(f"'blocks.cache_dtype' must be one of {', '.join(STORE_DTYPES)}, got {store!r}")
        self.model, self.tokenizer, identity = backbone(model_cfg.name, model_cfg.dtype, model_cfg.padding_side)
        self.model_cfg, self.store, self.batch_size = model_cfg, store, batch_size
        self.k = check_k(self.model, k, model_cfg.name)
        self.layer = n_blocks(self.model) - self.k
        dtype = next(self.model.parameters()).dtype
        parts = [*forward_parts(model_cfg, identity, dtype), f"states@L-{self.k}", store]
        self.key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
        self.folder = Path(cache_dir) / "states" / self.key[:24]
        self.manifest = {
            "model": model_cfg.name,
            "identity": identity,
            "dtype": dtype_name(dtype),
            "max_length": model_cfg.max_length,
            "truncation_side": model_cfg.truncation_side,
            "k": self.k,
            "layer": self.layer,
            "store": store,
            "hidden_size": self.model.config.get_text_config().hidden_size,
        }
        self._check_manifest()

    def _check_manifest(self) -> None:
        """Write the folder's manifest, or DataError when an existing one names another backbone or layer."""
        path = self.folder / MANIFEST
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.manifest, indent=1) + "\n")
            return
        found = json.loads(path.read_text())
        wrong = [
            f"{key} {found.get(key)!r} (this run: {v!r})" for key, v in self.manifest.items() if found.get(key) != v
        ]
        if wrong:
            raise DataError(
                f"the cached hidden states in {self.folder} are from another backbone or layer: {'; '.join(wrong)}. "
                "Point the run at its own cache folder (or delete that folder to extract them again)"
            )

    def keys(self, texts: Sequence[str]) -> list[str]:
        """Cache keys of texts."""
        return [text_key(self.key, t) for t in texts]

    def _index(self) -> dict[str, tuple[Path, int]]:
        """Text key → (shard, row) over every readable shard header (unreadable ones are deleted)."""
        return read_shard_index(self.folder)

    def _found(self, keys: Sequence[str]) -> dict[str, Tensor]:
        """Stored states [T, h] of the requested keys found in intact shards."""
        wanted, by_shard = set(keys), {}
        for key, (path, row) in self._index().items():
            if key in wanted:
                by_shard.setdefault(path, []).append((key, row))
        found: dict[str, Tensor] = {}
        for path, entries in by_shard.items():
            shard = _read_shard(path)
            if shard is not None:
                states, offsets = shard[0], shard[1].tolist()
                # clone: safetensors maps the file, and a view would change if the shard were rewritten
                found.update({key: states[offsets[row] : offsets[row + 1]].clone() for key, row in entries})
        return found

    def compute(self, texts: Sequence[str]) -> list[Tensor]:
        """Hidden states entering block L−k of each text's real tokens, [T_i, h] in the stored dtype (no cache)."""
        ids = encode(self.tokenizer, texts, self.model_cfg.max_length, self.model_cfg.truncation_side)
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: an OOM shows up at once
        device = next(self.model.parameters()).device
        out: list[Tensor] = [torch.empty(0)] * len(ids)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                input_ids, mask = collate(self.tokenizer, [ids[i] for i in chunk], device)
                states = hidden_states(self.model, input_ids, mask)[self.layer]
                self._check_range(states)
                for row, i in enumerate(chunk):
                    out[i] = states[row][mask[row].bool()].to("cpu", STORE_DTYPES[self.store]).clone()
        return out

    def _check_range(self, states: Tensor) -> None:
        """ConfigError when states exceed the stored dtype's range (fp16: 65504; LMs have a few huge activations)."""
        top = float(states.abs().max())
        if top > torch.finfo(STORE_DTYPES[self.store]).max:
            raise ConfigError(
                f"hidden states entering block {self.layer} of {self.model_cfg.name} reach {top:.4g}, beyond "
                f"{self.store}'s range: set blocks.cache_dtype to bf16 or fp32"
            )

    def _write(self, keys: list[str], rows: list[Tensor]) -> None:
        """Write one shard atomically (tmp file + rename), named by its keys."""
        states = torch.cat(rows).contiguous()
        offsets = torch.tensor([0, *torch.tensor([len(r) for r in rows]).cumsum(0).tolist()], dtype=torch.long)
        name = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
        tmp = self.folder / f".tmp-{name}-{os.getpid()}"
        meta = {"keys": json.dumps(keys), "checksum": _checksum(states, offsets)}
        save_file({"states": states, "offsets": offsets}, str(tmp), metadata=meta)
        os.replace(tmp, self.folder / f"shard-{name}.safetensors")

    def extract(self, texts: Sequence[str], progress: bool = False) -> int:
        """Compute and store the states of the texts missing from the cache; returns how many were computed."""
        index = self._index()
        text_of = dict(zip(self.keys(texts), texts))
        missing = [key for key in text_of if key not in index]
        with tqdm(total=len(missing), disable=not progress or not missing, unit="text", desc="hidden states") as bar:
            for start in range(0, len(missing), SHARD_TEXTS):
                block = missing[start : start + SHARD_TEXTS]
                self._write(block, self.compute([text_of[key] for key in block]))
                bar.update(len(block))
                if not bar.disable:
                    status.progress(bar.desc, bar.n, bar.total, step=len(block))
        return len(missing)

    def load(self, texts: Sequence[str]) -> list[Tensor]:
        """Stored states [T_i, h] of each text; DataError naming how many (and the first) are not cached."""
        keys = self.keys(texts)
        found = self._found(keys)
        missing = [t for t, key in zip(texts, keys) if key not in found]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(texts)} texts have no cached hidden states entering block {self.layer} of "
                f"{self.model_cfg.name} in {self.folder} (first: {missing[0][:60]!r}): extract them first "
                "(StateCache.extract; morelib.train.blocks.fit does it for its training and calibration pairs)"
            )
        return [found[key] for key in keys]
