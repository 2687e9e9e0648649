"""Rejection-sampling (RJS) alignment, paper §5.4: sample n responses per prompt, keep the best by a reward model,
fine-tune the policy on the kept responses (the RJS loss: −log π(y_best | x), response tokens only), and measure
the perplexity of a policy on the chosen responses of the Helpful and Harmless test sets (Table 2).

The policy is an ordinary `AutoModelForCausalLM`: `smollm2-135m` is the dequantised SmolLM2 folder that
`morelib.backbone.model` builds once (its causal-LM weights; the reward head is ignored), `tiny-random` a seeded 2-layer
Llama (`model.tiny_random`) with the byte tokenizer (tests only), anything else a local folder or hub id. HH prompts
("\\n\\nHuman:…\\n\\nAssistant:") are turned into chat messages and rendered with the policy's chat template when it has
one; sampling, SFT and perplexity all tokenise prompt and response the same way (`encode_example`), so the SFT label
mask and the perplexity both cover exactly the response tokens (+ the end-of-turn token).
Checked in tests/test_rjs.py: perplexity against a per-example manual cross-entropy, SFT changes parameters,
generation is seeded and returns n strings per prompt. The sampling backends (CTranslate2, vLLM) and the choice
between them live in `morelib.align.sampler`.
# NOTE(paper): the paper aligns Alpaca-7B on H&H training prompts; the CPU default is SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from morelib.backbone import model as rm_model
from morelib.core.config import RJSConfig
from morelib.core.errors import ModelError
from morelib.core.hardware import (
    PROBE_BATCH,
    PROBE_TOKENS,
    default_device,
    dtype_forward,
    dtype_probe,
    resolve_dtype,
)

IGNORE = -100  # label of tokens that take no part in the loss (prompt and padding)
TURN = re.compile(r"\n\n(Human|Assistant):")
HH_STOP = "\n\nHuman:"  # a policy without a chat template may start the next human turn; cut there


def policy_folder(name: str) -> Path:
    """The dequantised SmolLM2 folder morelib.backbone.model caches (built on first use)."""
    if name != "smollm2-135m":
        raise ModelError(f"policy_folder knows only 'smollm2-135m', got {name!r}")
    folder = rm_model.cache_root() / "models" / "smollm2-135m"
    if not (folder / "config.json").is_file():
        rm_model.load_reward_model("smollm2-135m", dtype="fp32", device="cpu")
    return folder


def load_causal_lm(
    name: str | Path, dtype: str = "auto", device: torch.device | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(policy, tokenizer): an AutoModelForCausalLM in eval mode with a pad token; registry name, folder or hub id."""
    device = torch.device(device) if device is not None else default_device()
    name = str(name)
    if name == "tiny-random":
        policy, tok = rm_model.tiny_random(LlamaForCausalLM)
    else:
        source = policy_folder(name) if name == "smollm2-135m" else Path(name).expanduser()
        if source.is_dir():
            rm_model.check_folder(source)
        elif "/" not in name or source.is_absolute() or name.startswith("."):
            raise ModelError(f"unknown policy '{name}': not smollm2-135m, tiny-random, a folder or a hub id")
        try:
            policy = AutoModelForCausalLM.from_pretrained(source if source.is_dir() else name)
            tok = AutoTokenizer.from_pretrained(source if source.is_dir() else name)
        except OSError as err:
            raise ModelError(f"policy '{name}' could not be loaded as a causal LM: {err}") from err
    rm_model.set_pad_token(policy, tok)
    policy.generation_config.pad_token_id = tok.pad_token_id
    return policy.to(device=device, dtype=policy_dtype(policy, dtype, device)).eval(), tok


def policy_dtype(policy: PreTrainedModel, dtype: str, device: torch.device) -> torch.dtype:
    """The dtype `dtype` ("auto" | "bf16" | "fp32") resolves to for this policy on `device`; on a CPU, auto asks this
    machine's measured bf16-vs-fp32 probe of the policy's architecture and size (one probe for a policy and its
    fine-tunes, cached)."""
    name = f"causal-lm:{policy.config.model_type}:{policy.num_parameters()}"
    return resolve_dtype(dtype, device, probe=functools.partial(dtype_probe, name, _probe_forward(policy)))


def _probe_forward(policy: PreTrainedModel) -> Callable[[torch.dtype], None]:
    """forward(dtype): one inference-mode forward of PROBE_BATCH rows × PROBE_TOKENS tokens (last position's logits)
    with the policy in `dtype` (a copy where it is in another dtype) — the probe's workload."""
    ids = torch.arange(PROBE_BATCH * PROBE_TOKENS).reshape(PROBE_BATCH, PROBE_TOKENS) % policy.config.vocab_size
    return dtype_forward(policy, lambda m: m(input_ids=ids.to(policy.device), logits_to_keep=1))


def hh_messages(prompt: str) -> list[dict[str, str]]:
    """Chat messages of an HH dialogue prompt ("\\n\\nHuman: …\\n\\nAssistant:"); a plain prompt is one user turn."""
    parts = TURN.split(prompt)
    if len(parts) < 3:
        return [{"role": "user", "content": prompt.strip()}]
    messages = []
    for speaker, text in zip(parts[1::2], parts[2::2]):
        if text.strip():
            messages.append({"role": "user" if speaker == "Human" else "assistant", "content": text.strip()})
    return messages


def format_prompt(tok: PreTrainedTokenizerBase, prompt: str) -> str:
    """The text a policy continues: its chat template with a generation prompt, else the raw HH prompt."""
    if getattr(tok, "chat_template", None):
        return tok.apply_chat_template(hh_messages(prompt), tokenize=False, add_generation_prompt=True)
    return prompt


def response_text(tok: PreTrainedTokenizerBase, response: str) -> str:
    """The response as the policy writes it: stripped (a leading space without a chat template) + end of turn."""
    lead = "" if getattr(tok, "chat_template", None) else " "
    return lead + response.strip() + (tok.eos_token or "")


def clean_response(text: str) -> str:
    """A decoded continuation cut before any next human turn, stripped."""
    return text.split(HH_STOP)[0].strip()


def encode_example(tok: PreTrainedTokenizerBase, prompt: str, response: str, max_length: int) -> dict[str, list[int]]:
    """input_ids and labels (IGNORE on prompt tokens) of prompt ⊕ response; prompt cut on the left to fit max_length."""
    p_ids = tok(format_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
    r_ids = tok(response_text(tok, response), add_special_tokens=False)["input_ids"][: max_length - 1]
    p_ids = p_ids[-(max_length - len(r_ids)) :]
    return {"input_ids": p_ids + r_ids, "labels": [IGNORE] * len(p_ids) + r_ids}


def prompt_ids(tok: PreTrainedTokenizerBase, prompts: Sequence[str], max_prompt_tokens: int | None) -> list[list[int]]:
    """Token ids of each prompt in the policy's template, cut on the left to its last max_prompt_tokens (None: all)."""
    ids = tok([format_prompt(tok, p) for p in prompts], add_special_tokens=False)["input_ids"]
    return [row[-max_prompt_tokens:] for row in ids] if max_prompt_tokens else ids


def prompt_cache(policy: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> DynamicCache:
    """The KV cache of every left-padded row's tokens but its last (positions skip the padding, as `generate`'s)."""
    cache = DynamicCache(config=policy.config)
    positions = (attention_mask.cumsum(dim=1) - 1).masked_fill(attention_mask == 0, 1)
    policy(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, :-1],
        cache=cache,
        logits_to_keep=1,
    )
    return cache


def generate(
    policy: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    n: int = 4,
    max_new_tokens: int = 48,
    temperature: float = 0.8,
    top_p: float = 0.95,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = True,
    max_prompt_tokens: int | None = None,
    min_new_tokens: int = 0,
) -> list[list[str]]:
    """n sampled responses per prompt, list[P][n] of str; each prompt is read once and its KV cache repeated n times.

    batch_size counts the responses decoded together (batch_size // n prompts per batch, at least one); batches are
    length-sorted and left-padded, batch b seeded seed+b; prompts keep their last max_prompt_tokens tokens (None: all);
    min_new_tokens > 0 forces that many new tokens (benchmarks). temperature 0 means greedy decoding (then the n
    responses are equal).
    """
    if n < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(f"generate needs n, batch_size, max_new_tokens ≥ 1; got {n}, {batch_size}, {max_new_tokens}")
    ids = prompt_ids(tok, prompts, max_prompt_tokens)
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
    per_batch = max(1, batch_size // n)
    out = [[""] * n for _ in prompts]
    device = next(policy.parameters()).device
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {"do_sample": False}
    )
    with (
        rm_model.tokenizer_side(tok, "padding_side", "left"),
        torch.inference_mode(),
        tqdm(total=len(prompts) * n, disable=not progress, unit="response", desc="sampling") as bar,
    ):
        for b, start in enumerate(range(0, len(order), per_batch)):
            chunk = order[start : start + per_batch]
            batch = tok.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt").to(device)
            width = batch["input_ids"].shape[1]
            with rm_model._seeded(seed + b, device):
                cache = prompt_cache(policy, batch["input_ids"], batch["attention_mask"]) if width > 1 else None
                if cache is not None:
                    cache.batch_repeat_interleave(n)
                seqs = policy.generate(
                    input_ids=batch["input_ids"].repeat_interleave(n, dim=0),
                    attention_mask=batch["attention_mask"].repeat_interleave(n, dim=0),
                    cache=cache,
                    max_new_tokens=max_new_tokens,
                    min_new_tokens=min_new_tokens,
                    pad_token_id=tok.pad_token_id,
                    eos_token_id=tok.eos_token_id,
                    **sampling,
                )
            new = tok.batch_decode(seqs[:, width:], skip_special_tokens=True)
            for k, text in enumerate(new):
                out[chunk[k // n]][k % n] = clean_response(text)
            bar.update(len(new))
    return out


def best_of_n(candidates: Sequence[Sequence[str]], scores: torch.Tensor | Sequence[Sequence[float]]) -> list[str]:
    """The highest-scoring candidate per prompt (first one on ties); candidates [P][n], scores [P, n]."""
    s = torch.as_tensor(scores, dtype=torch.float64)
    if s.dim() != 2 or s.shape[0] != len(candidates) or any(len(c) != s.shape[1] for c in candidates):
        raise ValueError(
            f"best_of_n needs scores [P, n] matching candidates; got {tuple(s.shape)} for "
            f"{len(candidates)} prompts of sizes {sorted({len(c) for c in candidates})}"
        )
    if not torch.isfinite(s).all():
        raise ValueError("best_of_n got non-finite scores")
    return [cands[int(k)] for cands, k in zip(candidates, s.argmax(dim=1))]


def _collate(
    tok: PreTrainedTokenizerBase, examples: Sequence[dict[str, list[int]]], side: str = "right"
) -> dict[str, torch.Tensor]:
    """Pad examples on `side` into input_ids, attention_mask and labels (IGNORE on padding) [B, T]."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), tok.pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        k = len(e["input_ids"])
        cols = slice(0, k) if side == "right" else slice(width - k, width)
        ids[row, cols], labels[row, cols], mask[row, cols] = torch.tensor(e["input_ids"]), torch.tensor(e["labels"]), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def response_batch(tok: PreTrainedTokenizerBase, examples: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
    """Left-padded examples (every response ends its row) for a loss on the responses only: input_ids,
    attention_mask and position_ids (skipping the padding) [B, T], labels [B, k] of the last k = longest response + 1
    positions, and logits_to_keep = k — the vocabulary projection is skipped over the prompts."""
    batch = _collate(tok, examples, "left")
    width = batch["input_ids"].shape[1]
    keep = min(int((batch["labels"] != IGNORE).sum(dim=1).max()) + 1, width)
    positions = (batch["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
    return {**batch, "position_ids": positions, "labels": batch["labels"][:, -keep:], "logits_to_keep": keep}


def sft(
    policy_name: str | Path,
    prompts: Sequence[str],
    responses: Sequence[str],
    out_dir: str | Path,
    cfg: RJSConfig,
    seed: int = 0,
) -> Path:
    """Fine-tune the policy on (prompt, response) pairs with transformers' Trainer, loss on response tokens only.

    Weights stay fp32 (bf16 weights would round away lr·grad updates); where cfg.dtype resolves to bf16 the forward
    and backward run under bf16 autocast (mixed precision). Logits are computed over the responses only
    (`response_batch`). Writes an ordinary HF causal-LM folder and `sft_log.json` (Trainer's log history) to out_dir,
    and returns out_dir.
    """
    from datasets import Dataset

    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"sft needs as many responses as prompts (> 0); got {len(prompts)} and {len(responses)}")
    out_dir = Path(out_dir)
    policy, tok = load_causal_lm(policy_name, dtype="fp32")
    mixed = policy_dtype(policy, cfg.dtype, policy.device) == torch.bfloat16
    examples = Dataset.from_list([encode_example(tok, p, r, cfg.max_length) for p, r in zip(prompts, responses)])
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"),
        num_train_epochs=cfg.sft_epochs,
        learning_rate=cfg.sft_lr,
        per_device_train_batch_size=cfg.sft_batch_size,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=mixed,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=policy.train(), args=args, train_dataset=examples, data_collator=lambda batch: response_batch(tok, batch)
    )
    trainer.train()
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)  # save_strategy "no": only Trainer's empty folder is there
    policy.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    (out_dir / "sft_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    return out_dir


def response_nll(
    policy: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int = 512,
    batch_size: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood (nats) and token count of each response given its prompt, Tensors [N].

    Rows are left-padded (position ids skip the padding), so every response ends the row and only the last
    (longest response + 1) positions need logits: the vocabulary projection is skipped over the prompts.
    """
    if len(prompts) != len(responses) or not prompts:
        raise ValueError(f"need as many responses as prompts (> 0); got {len(prompts)} and {len(responses)}")
    examples = [encode_example(tok, p, r, max_length) for p, r in zip(prompts, responses)]
    device = next(policy.parameters()).device
    nll, count = [], []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            batch = response_batch(tok, examples[start : start + batch_size])
            target = batch.pop("labels")[:, 1:].to(device)
            logits = policy(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}).logits.float()
            loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
            nll.append(loss.sum(dim=1).cpu())
            count.append((target != IGNORE).sum(dim=1).cpu())
    return torch.cat(nll).double(), torch.cat(count)


def perplexity(
    policy: PreTrainedModel,
    tok: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str],
    max_length: int = 512,
    batch_size: int = 8,
) -> float:
    """Token-level perplexity exp(Σ NLL / Σ tokens) of the responses given their prompts (response tokens only)."""
    nll, count = response_nll(policy, tok, prompts, responses, max_length, batch_size)
    return math.exp(float(nll.sum()) / max(int(count.sum()), 1))
