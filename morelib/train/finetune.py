"""Reward-model training, full fine-tuning tier: every weight trained with transformers' Trainer (paper §4–5.1).

One optimizer update = one balanced batch: B pairs from each of K sources (`train.batch_per_source`; paper: 5 × 16) from
the seed's plan (`morelib.data.sampling.plan_for`, the feature tier's plan, optionally length-grouped per window of 64
batches), whatever the number of processes W (`accelerate launch --num_processes W`): `morelib.train.updates` gives each
process micro-batches of b pairs per source and a accumulation steps, W·a·b = B (b = B/W, a = 1 when W divides B and the
micro-batch fits `finetune.max_device_pairs`; else the nearest split, which `describe_plan` states). The dataset's item
g is slice g mod (W·a) of plan batch ⌊g / (W·a)⌋ and the sampler is sequential, so max_steps = plan steps, one epoch is
one epoch, and the Trainer's own resume skips exactly the consumed micro-batches. Checkpoints come every
`finetune.save_every` of the updates (or every `finetune.save_steps`). Chosen and rejected texts (prompt + response,
truncated on the left) go through ONE forward pass as [chosen; rejected], or with prompt sharing as one packed row per
pair (`morelib.backbone.prompt_sharing`: same rewards and gradients, the prompt read once). A forward pre-hook on the
score layer captures its input z[2N, h] at the last real token; the per-source BT losses L_i and closed-form head
gradients ∂L_i/∂w (`morelib.weighting.losses.source_head_grads` on z_w − z_l) feed `MoreWeighter`, and the loss is Σ λ_i
L_i
(paper eq. 9; `multitask` λ = 1/K, `fixed` the given λ, `single` one source; `multitask-pooled`, the paper's MultiTask,
trains on random pooled batches of K·B pairs with the plain batch-mean loss and logs each source's share of the batch as
λ).
MORE's λ is solved once per update over the whole global batch: the head gradients [K, h] and losses [K] are averaged
over the update's micro-batches (with a > 1 from one no-grad forward of each, before the first backward, in
`get_batch_samples`) and all-reduced (mean; every process holds b pairs per source, so it is the union's gradient)
before the min-norm solve, so every rank computes the same λ (each rank logs it per update to `lam_rank<r>.jsonl`).
MORE's momentum is saved in every checkpoint (`more_state.pt`) and reloaded on resume; λ and per-source losses go to
the Trainer's log history and `<output_dir>/more_log.jsonl`. A NaN/inf loss raises TrainingError naming the step;
written checkpoints are kept. Weights are fp32 with bf16 autocast where the GPU supports it. Measured speed and
padding: benchmarks/README.md.
Checked in tests/test_finetune.py (tiny random model): losses/λ logged, HF folder reloads, NaN guard, SIGKILL mid-epoch
+ resume = uninterrupted run (bit-identical on CPU), length grouping keeps B per source per step and the pairs'
multiset; tests/test_finetune_multiproc.py (two gloo processes): updates = plan steps, each rank half of every batch,
equal λ on both ranks, resume; tests/test_updates.py: the split, and 2 accumulated micro-batches = one batch (λ and
weights); tests/test_prompt_sharing.py: packed rows give the unshared rewards and gradients.

Multi-GPU: `accelerate launch -m morelib.train.finetune --profile paper --scheme more --output-dir outputs/ft-more`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import PartialState
from torch.utils.data import Dataset
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint
from transformers.training_args import OptimizerNames

from morelib.backbone.features import backbone
from morelib.backbone.model import at_last_token, encode, load_reward_model, save_reward_model, score_layer
from morelib.backbone.prompt_sharing import collate_packed, model_mask, pack_pairs, unshareable
from morelib.core.config import FINETUNE_SCHEMES, Config, load_config, parse_overrides
from morelib.core.errors import ConfigError, TrainingError
from morelib.data.sampling import POOLED, plan_for, plan_steps
from morelib.data.sources import Pair
from morelib.data.splits import load_source_splits
from morelib.train.updates import (
    BatchSplit,
    checkpoint_interval,
    checkpoint_steps,
    device_cap,
    micro_slice,
    split_batch,
)
from morelib.weighting.baselines import fixed_weights
from morelib.weighting.losses import source_head_grads
from morelib.weighting.more import MoreWeighter, more_loss

log = logging.getLogger(__name__)
STATE_FILE = "more_state.pt"
LOG_FILE = "more_log.jsonl"
RANK_LOG = "lam_rank{rank}.jsonl"  # several processes: every rank's λ per step, to check they agree
MODEL_DIR = "model"
THROUGHPUT_FILE = "throughput.json"


class BalancedBatches(Dataset):
    """Item g = the texts of micro-batch g (`updates.micro_slice`: slice g mod W·a of balanced batch ⌊g / W·a⌋):
    {"chosen": [K·b], "rejected": [K·b], "source": [K·b] source indices}; one slice per batch without `split`."""

    def __init__(self, pairs: dict[str, Sequence[Pair]], plan: torch.Tensor, split: BatchSplit | None = None) -> None:
        self.sources = [list(p) for p in pairs.values()]
        self.plan = plan
        self.split = split or BatchSplit(plan.shape[-1], 1, plan.shape[-1], 1)

    def __len__(self) -> int:
        return self.plan.shape[0] * self.split.slices

    def _picks(self, g: int) -> torch.Tensor:
        """The plan entries of micro-batch g: its slice of the last axis of plan batch ⌊g / W·a⌋."""
        batch, part = micro_slice(g, self.split)
        width = self.plan.shape[-1] // self.split.slices
        return self.plan[batch][..., part * width : (part + 1) * width]

    def __getitem__(self, i: int) -> dict[str, list]:
        picked = [(k, self.sources[k][j]) for k, row in enumerate(self._picks(i).tolist()) for j in row]
        return {
            "chosen": [p.prompt + p.chosen for _, p in picked],
            "rejected": [p.prompt + p.rejected for _, p in picked],
            "source": [k for k, _ in picked],
        }


class PooledBatches(BalancedBatches):
    """Item g = the texts of pooled micro-batch g; plan [S, K·B] of codes k·stride + j (see
    `morelib.data.sampling.pooled_plan`), sliced like `BalancedBatches`."""

    def __init__(self, pairs: dict[str, Sequence[Pair]], plan: torch.Tensor, split: BatchSplit | None = None) -> None:
        super().__init__(pairs, plan, split)
        self.stride = max(len(p) for p in self.sources)

    def __getitem__(self, i: int) -> dict[str, list]:
        picked = [(c // self.stride, self.sources[c // self.stride][c % self.stride]) for c in self._picks(i).tolist()]
        return {
            "chosen": [p.prompt + p.chosen for _, p in picked],
            "rejected": [p.prompt + p.rejected for _, p in picked],
            "source": [k for k, _ in picked],
        }


class PairCollator:
    """Tokenise one balanced batch into input_ids/attention_mask [2N, T] ([chosen; rejected]) and source_ids [N]; with
    `share_prompt`, one packed row per pair (`morelib.backbone.prompt_sharing`): input_ids/position_ids [N, T], a 4D
    block attention_mask [N, 1, T, T] and score_at [2N] (the columns of the last chosen / rejected tokens)."""

    def __init__(self, tokenizer: Any, max_length: int, truncation_side: str, share_prompt: bool = False) -> None:
        self.tokenizer, self.max_length, self.truncation_side = tokenizer, max_length, truncation_side
        self.share_prompt = share_prompt
        if share_prompt and truncation_side != "left":
            raise ConfigError(
                f"share_prompt cuts the shared prompt on the left; truncation_side is {truncation_side!r}"
            )
        self.counts = {"pairs": 0, "tokens": 0, "padded_tokens": 0}  # what this process fed the model (throughput)

    def __call__(self, items: list[dict[str, list]]) -> dict[str, torch.Tensor]:
        chosen = [t for it in items for t in it["chosen"]]
        rejected = [t for it in items for t in it["rejected"]]
        source_ids = torch.tensor([k for it in items for k in it["source"]])
        if self.share_prompt:
            packed = pack_pairs(self.tokenizer, chosen, rejected, self.max_length)
            batch = collate_packed(packed, self.tokenizer.pad_token_id)
            self.counts["pairs"] += len(chosen)
            self.counts["tokens"] += sum(len(x) for x in packed)
            self.counts["padded_tokens"] += batch["input_ids"].numel()
            return {**batch, "source_ids": source_ids}
        ids = encode(self.tokenizer, chosen + rejected, self.max_length, self.truncation_side)
        batch = self.tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        self.counts["pairs"] += len(chosen)
        self.counts["tokens"] += int(batch["attention_mask"].sum())
        self.counts["padded_tokens"] += batch["input_ids"].numel()
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "source_ids": source_ids}


class MoreStateCallback(TrainerCallback):
    """Writes the MORE momentum state into every checkpoint folder (main process only)."""

    def __init__(self, weighter: MoreWeighter | None) -> None:
        self.weighter = weighter

    def on_save(self, args, state, control, **kwargs):
        """After Trainer wrote checkpoint-<step>, add more_state.pt beside it."""
        if self.weighter is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            save_state(self.weighter, folder / STATE_FILE)
        return control


def save_state(weighter: MoreWeighter, path: Path) -> None:
    """Atomically write a MoreWeighter state (tmp file + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(weighter.state_dict(), tmp)
    tmp.replace(path)


class MoreTrainer(Trainer):
    """Trainer whose loss is the λ-weighted sum of per-source Bradley–Terry losses of one balanced batch (one update:
    the micro-batches of every process, λ solved once over all of them)."""

    def __init__(
        self,
        *args: Any,
        scheme: str,
        source_names: list[str],
        weighter: MoreWeighter | None,
        lam: torch.Tensor,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scheme, self.source_names, self.weighter, self.lam = scheme, source_names, weighter, lam
        self._sums = torch.zeros(2, len(source_names), dtype=torch.float64)  # Σ λ, Σ L since the last log
        self._counts = torch.zeros(2, len(source_names), dtype=torch.float64)  # steps with a finite λ, L
        self._update_lam: torch.Tensor | None = None  # λ of the current update when it accumulates micro-batches

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The micro-batches of one update (Trainer prefetches them); with MORE and accumulation, λ is solved here,
        once, over all of them."""
        batch_samples, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.weighter is not None and self.args.gradient_accumulation_steps > 1 and batch_samples:
            self._update_lam = self._update_weights(batch_samples)
        return batch_samples, num_items

    def _update_weights(self, batch_samples: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """λ[K] of one update from a no-grad forward of each micro-batch: head gradients and losses averaged over
        them (each holds b pairs per source, so the mean is over their union), then over processes (`_solve`)."""
        grads, losses = [], []
        with torch.no_grad(), self.compute_loss_context_manager():
            for inputs in batch_samples:
                inputs = self._prepare_inputs(inputs)
                packed = {k: inputs[k] for k in ("position_ids", "score_at") if k in inputs}
                z, rewards = self._pooled_forward(self.model, inputs["input_ids"], inputs["attention_mask"], **packed)
                grads.append(self._head_grads(z.float(), inputs["source_ids"]))
                losses.append(self._source_losses(rewards, inputs["source_ids"]).float())
        return self._solve(torch.stack(grads).mean(0), torch.stack(losses).mean(0), self.state.global_step + 1)

    def _source_losses(self, rewards: torch.Tensor, source_ids: torch.Tensor) -> torch.Tensor:
        """Per-source mean BT losses [K] of rewards [2N] = [chosen; rejected] (NaN where a source is absent)."""
        n = source_ids.shape[0]
        delta = rewards[:n] - rewards[n:]
        return torch.stack([F.softplus(-delta[source_ids == k]).mean() for k in range(len(self.source_names))])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Σ_i λ_i L_i over the K sources of this batch (num_items_in_batch unused: every source loss is a mean)."""
        source_ids = inputs["source_ids"]
        packed = {k: inputs[k] for k in ("position_ids", "score_at") if k in inputs}  # finetune.share_prompt
        z, rewards = self._pooled_forward(model, inputs["input_ids"], inputs["attention_mask"], **packed)
        n = source_ids.shape[0]
        delta = rewards[:n] - rewards[n:]
        losses = self._source_losses(rewards, source_ids)
        step = self.state.global_step + 1
        if self.scheme == POOLED:  # a pooled batch may lack a source (NaN mean): its loss is the plain batch mean
            return self._pooled_loss(delta, source_ids, losses, step, rewards, return_outputs)
        if not torch.isfinite(losses).all():
            bad = [self.source_names[k] for k in torch.nonzero(~torch.isfinite(losses.detach()))[:, 0].tolist()]
            raise TrainingError(
                f"non-finite loss at step {step} for source(s) {bad}; "
                f"checkpoints up to the last save in {self.args.output_dir} are kept"
            )
        if self.weighter is None:
            lam = self.lam
        elif self.args.gradient_accumulation_steps > 1:
            lam = self._update_lam
        else:
            lam = self._solve(self._head_grads(z.detach().float(), source_ids), losses.detach().float(), step)
        self._record(lam, losses.detach())
        loss = more_loss(losses, lam.to(losses))
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def _pooled_loss(
        self,
        delta: torch.Tensor,
        source_ids: torch.Tensor,
        losses: torch.Tensor,
        step: int,
        rewards: torch.Tensor,
        return_outputs: bool,
    ) -> Any:
        """Mean BT loss over the pooled batch; logs each source's share of the batch as λ and its loss where present."""
        loss = F.softplus(-delta).mean()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"non-finite loss at step {step} (pooled batch); checkpoints up to the last save in "
                f"{self.args.output_dir} are kept"
            )
        share = torch.bincount(source_ids.cpu(), minlength=len(self.source_names)).double() / source_ids.numel()
        self._record(share, losses.detach())
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def _pooled_forward(
        self,
        model,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        score_at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(score-layer input at the last real token z[2N, h], rewards[2N]) with one forward pass of `model`; with
        `score_at` (packed pairs: 4D `mask`, `position_ids`), z is read at row i mod N, column score_at[i]."""
        inner = self.accelerator.unwrap_model(model)
        layer = score_layer(inner)
        extra = {"use_cache": False} if "use_cache" in inspect.signature(inner.forward).parameters else {}
        if score_at is not None:
            mask = model_mask(inner, mask, next(inner.parameters()).dtype)
            extra["position_ids"] = position_ids
        captured: list[torch.Tensor] = []
        handle = layer.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
        try:
            model(input_ids=input_ids, attention_mask=mask, **extra)
        finally:
            handle.remove()
        hidden = captured[0]
        if score_at is not None:
            rows = torch.arange(score_at.shape[0], device=hidden.device) % hidden.shape[0]
            hidden = hidden[rows, score_at.to(hidden.device)]
        elif hidden.dim() == 3:  # decoders score every position; keep the last real token (right padding)
            hidden = at_last_token(hidden, mask)
        return hidden, layer(hidden).squeeze(-1).float()

    def _head_grads(self, z: torch.Tensor, source_ids: torch.Tensor) -> torch.Tensor:
        """Closed-form per-source head gradients [K, h] of this micro-batch's pooled features z [2N, h]."""
        n = source_ids.shape[0]
        w = score_layer(self.accelerator.unwrap_model(self.model)).weight.detach().float()[0]
        diff = z[:n] - z[n:]
        return source_head_grads(diff, source_ids, w, len(self.source_names))

    def _solve(self, grads: torch.Tensor, losses: torch.Tensor, step: int) -> torch.Tensor:
        """MORE's λ[K] of update `step` from this process's head gradients [K, h] and losses [K], averaged over
        processes first (every rank solves the same problem and keeps the same momentum state)."""
        if self.accelerator.num_processes > 1:
            grads = self.accelerator.reduce(grads, reduction="mean")
            losses = self.accelerator.reduce(losses, reduction="mean")
        try:
            lam = self.weighter.step(grads, losses)
        except TrainingError as err:
            raise TrainingError(f"step {step}: {err} (sources {self.source_names})") from err
        if self.accelerator.num_processes > 1:
            rank = self.accelerator.process_index
            with open(Path(self.args.output_dir) / RANK_LOG.format(rank=rank), "a") as fh:
                fh.write(json.dumps({"step": step, "rank": rank, "lam": lam.tolist()}) + "\n")
        return lam

    def _record(self, lam: torch.Tensor, losses: torch.Tensor) -> None:
        """Accumulate λ and per-source losses for the next log line (a source absent from a pooled batch is skipped)."""
        both = torch.stack([lam.detach().cpu().double(), losses.cpu().double()])
        present = torch.isfinite(both)
        self._sums += torch.where(present, both, torch.zeros_like(both))
        self._counts += present.double()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add mean λ_i and L_i since the last log to training logs, and append them to more_log.jsonl."""
        if "loss" in logs and self._counts[0].max() > 0:
            means = (self._sums / self._counts).tolist()  # NaN where a source never appeared since the last log
            for name, lam, loss in zip(self.source_names, *means):
                logs[f"lam/{name}"], logs[f"loss/{name}"] = lam, loss
            self._sums.zero_()
            self._counts.zero_()
            if self.is_world_process_zero():
                with open(Path(self.args.output_dir) / LOG_FILE, "a") as fh:
                    fh.write(json.dumps({"step": self.state.global_step, **logs}) + "\n")
        super().log(logs, start_time)


def pair_lengths(
    tokenizer: Any, pairs: dict[str, Sequence[Pair]], max_length: int, truncation_side: str, share_prompt: bool = False
) -> list[torch.Tensor]:
    """Per source, LongTensor[N_k] of max(tokens of prompt + chosen, tokens of prompt + rejected) after truncation
    (with `share_prompt`: the tokens of the packed row prompt + chosen + rejected)."""
    out = []
    for source in pairs.values():
        if share_prompt:
            packed = pack_pairs(
                tokenizer, [p.prompt + p.chosen for p in source], [p.prompt + p.rejected for p in source], max_length
            )
            out.append(torch.tensor([len(x) for x in packed]))
            continue
        texts = [p.prompt + p.chosen for p in source] + [p.prompt + p.rejected for p in source]
        n = torch.tensor([len(ids) for ids in encode(tokenizer, texts, max_length, truncation_side)])
        out.append(torch.maximum(n[: len(source)], n[len(source) :]))
    return out


def share_prompt_ok(model: Any, tokenizer: Any) -> bool:
    """True when this model and tokenizer can share the prompt; otherwise log why and train unshared."""
    reason = unshareable(model, tokenizer)
    if reason is not None:
        log.info("finetune.share_prompt: %s, so chosen and rejected are read unshared", reason)
    return reason is None


def optimizer_name() -> str:
    """`adamw_torch_fused` when this transformers and torch support it (AdamW fused=True), else `adamw_torch`."""
    fused_ok = "fused" in inspect.signature(torch.optim.AdamW).parameters
    names = {o.value for o in OptimizerNames}
    return "adamw_torch_fused" if fused_ok and "adamw_torch_fused" in names else "adamw_torch"


def batch_split(cfg: Config, n_sources: int, world_size: int) -> BatchSplit:
    """How `world_size` processes read `train.batch_per_source` pairs of each of `n_sources` sources per update."""
    return split_batch(cfg.train.batch_per_source, world_size, device_cap(cfg.finetune.max_device_pairs, n_sources))


def split_config(cfg: Config, split: BatchSplit) -> Config:
    """`cfg` with the pairs per source per update the split really reads (its plan batches are that wide)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_per_source=split.per_update))


def training_args(cfg: Config, output_dir: Path, seed: int, updates: int, split: BatchSplit) -> TrainingArguments:
    """TrainingArguments of this run: one micro-batch per device step, `split.grad_accum` of them per update,
    `updates` updates (one plan batch each), AdamW, checkpoints by progress, sequential batches."""
    t = cfg.finetune
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=split.grad_accum,
        max_steps=updates,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="linear",
        optim=optimizer_name(),
        bf16=bf16,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=checkpoint_interval(updates, t.save_every, t.save_steps),
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        report_to=[],
        activation_checkpointing=t.gradient_checkpointing,
        dataloader_num_workers=0,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def describe_plan(
    cfg: Config, sizes: dict[str, int], scheme: str, seed: int = 0, world_size: int = 1
) -> dict[str, Any]:
    """What one fine-tuning run of `scheme` on sources of `sizes` pairs does on `world_size` processes, without a
    model: updates (= optimizer steps = plan steps), epochs, pairs per update (global), the per-process micro-batch
    (pairs per source) and accumulation, and the checkpoints (optimizer steps); checked for the paper profile."""
    split = batch_split(cfg, len(sizes), world_size)
    used_cfg = split_config(cfg, split)
    plan = plan_for({name: [None] * n for name, n in sizes.items()}, used_cfg, seed, None, scheme)
    _, per_epoch = plan_steps(sizes, used_cfg)
    updates = int(plan.shape[0])
    return {
        "scheme": scheme,
        "sources": list(sizes),
        "world_size": world_size,
        "plan_steps": updates,
        "steps_per_epoch": per_epoch,
        "epochs": updates / per_epoch,
        "pairs_per_update": int(plan[0].numel()),
        "per_device_batch_per_source": split.per_device,
        "grad_accum": split.grad_accum,
        "split": split.describe(),
        "pairs_per_source": cfg.train.resample_pairs or max(sizes.values()),
        "optimizer_steps": updates,
        "checkpoints": checkpoint_steps(updates, cfg.finetune.save_every, cfg.finetune.save_steps),
    }


def _check_inputs(train_pairs: dict[str, Sequence[Pair]], scheme: str, lam: Sequence[float] | None) -> None:
    """ConfigError for an unknown scheme, a wrong source count, or λ given to a scheme without λ."""
    if scheme not in FINETUNE_SCHEMES:
        raise ConfigError(
            f"unknown fine-tuning scheme '{scheme}'; valid: {', '.join(FINETUNE_SCHEMES)} ('raw' is the "
            "untrained model, 'top' a 'single' run on the best source)"
        )
    if not train_pairs or any(len(p) == 0 for p in train_pairs.values()):
        raise ConfigError(
            f"finetune needs at least one non-empty source, got sizes { {k: len(v) for k, v in train_pairs.items()} }"
        )
    if scheme == "single" and len(train_pairs) != 1:
        raise ConfigError(f"scheme 'single' needs exactly one source, got {len(train_pairs)}: {list(train_pairs)}")
    if (lam is not None) != (scheme == "fixed"):
        raise ConfigError(f"λ must be given for scheme 'fixed' and only for it (scheme '{scheme}')")


def _resume_state(output_dir: Path, weighter: MoreWeighter | None) -> str | None:
    """The last checkpoint in output_dir (None if none), with MORE state reloaded and later log lines dropped."""
    last = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if last is None:
        return None
    if weighter is not None:
        state_path = Path(last) / STATE_FILE
        if not state_path.exists():
            raise TrainingError(
                f"cannot resume MORE from {last}: {STATE_FILE} is missing (killed while saving?); "
                f"delete that checkpoint folder to resume from the one before"
            )
        weighter.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    step = int(Path(last).name.split("-")[-1])
    log_path = output_dir / LOG_FILE
    if log_path.exists() and PartialState().is_main_process:
        kept = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= step]
        log_path.write_text("".join(line + "\n" for line in kept))
    return last


def finetune(
    cfg: Config,
    train_pairs: dict[str, Sequence[Pair]],
    scheme: str,
    output_dir: str | Path,
    resume: bool = False,
    seed: int | None = None,
    lam: Sequence[float] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> Path:
    """Fine-tune cfg.model.name as a reward model on per-source pairs; returns the saved HF model folder."""
    _check_inputs(train_pairs, scheme, lam)
    seed = cfg.seeds[0] if seed is None else seed
    output_dir = Path(output_dir)
    names, t = list(train_pairs), cfg.finetune
    weighter = MoreWeighter(len(names), cfg.more.alpha, cfg.more.normalization) if scheme == "more" else None
    weights = fixed_weights(lam, names) if scheme == "fixed" else torch.full((len(names),), 1.0 / len(names))
    existing = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if existing and not resume:
        raise ConfigError(f"{output_dir} already holds checkpoints: pass resume=True (--resume) or a new folder")
    checkpoint = _resume_state(output_dir, weighter) if resume else None
    model, tokenizer = load_reward_model(
        cfg.model.name, dtype="fp32", padding_side=cfg.model.padding_side, device="cpu"
    )
    share = t.share_prompt and share_prompt_ok(model, tokenizer)
    lengths = (
        pair_lengths(tokenizer, train_pairs, cfg.model.max_length, cfg.model.truncation_side, share)
        if t.group_by_length
        else None
    )
    split = batch_split(cfg, len(names), TrainingArguments(output_dir=str(output_dir), report_to=[]).world_size)
    plan = plan_for(train_pairs, split_config(cfg, split), seed, lengths, scheme)
    log.info("%s: %d updates; %s", scheme, plan.shape[0], split.describe())
    trainer = MoreTrainer(
        model=model,
        args=training_args(cfg, output_dir, seed, plan.shape[0], split),
        train_dataset=(PooledBatches if scheme == POOLED else BalancedBatches)(train_pairs, plan, split),
        data_collator=PairCollator(tokenizer, cfg.model.max_length, cfg.model.truncation_side, share),
        callbacks=[MoreStateCallback(weighter), *callbacks],
        scheme=scheme,
        source_names=names,
        weighter=weighter,
        lam=weights,
    )
    model.train()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    final = output_dir / MODEL_DIR
    if trainer.is_world_process_zero():
        write_throughput(output_dir, trainer, result.metrics["train_runtime"])
        save_reward_model(trainer.accelerator.unwrap_model(trainer.model), tokenizer, final)
        if weighter is not None:
            save_state(weighter, final / STATE_FILE)
    trainer.accelerator.wait_for_everyone()
    return final


def trainable_parameters(cfg: Config) -> int:
    """Parameters full fine-tuning trains on cfg's backbone: every parameter of the reward model (score layer too)."""
    return sum(p.numel() for p in backbone(cfg.model.name, cfg.model.dtype, cfg.model.padding_side)[0].parameters())


def write_throughput(output_dir: Path, trainer: MoreTrainer, seconds: float) -> None:
    """`<output_dir>/throughput.json`: pairs, real and padded tokens fed by this process in this session, its train
    seconds, the model's parameter count, world size and peak GPU memory (bytes; null on CPU), for pairs/s and MFU."""
    stats = {
        **trainer.data_collator.counts,
        "seconds": seconds,
        "world_size": trainer.accelerator.num_processes,
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "peak_gpu_bytes": torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    }
    (output_dir / THROUGHPUT_FILE).write_text(json.dumps(stats, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> Path:
    """CLI: load the profile's sources (train split) and fine-tune one scheme into --output-dir."""
    ap = argparse.ArgumentParser(prog="python -m morelib.train.finetune", description=main.__doc__)
    ap.add_argument("--profile", default="paper", help="params profile name or YAML path")
    ap.add_argument("--scheme", default="more", choices=FINETUNE_SCHEMES)
    ap.add_argument("--source", help="the one source of scheme 'single'")
    ap.add_argument("--lam", type=float, nargs="+", help="source weights of scheme 'fixed' (normalised)")
    ap.add_argument("--output-dir", required=True, type=Path)
    ap.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    ap.add_argument("--seed", type=int, help="default: the profile's first seed")
    ap.add_argument("-o", "--override", action="append", default=[], help="dotted key=value, e.g. finetune.lr=1e-5")
    args = ap.parse_args(argv)
    cfg = load_config(args.profile, parse_overrides(args.override))
    seed = cfg.seeds[0] if args.seed is None else args.seed
    specs = [s for s in cfg.data.sources if args.scheme != "single" or s.name == args.source]
    if not specs:
        raise ConfigError(f"--source '{args.source}' is not a source of profile {cfg.profile}: {cfg.source_names()}")
    pairs = {s.name: load_source_splits(s, cfg.data, seed)["train"] for s in specs}
    return finetune(cfg, pairs, args.scheme, args.output_dir, resume=args.resume, seed=seed, lam=args.lam)


if __name__ == "__main__":
    main()
