"""Reward-model training, full fine-tuning tier: every weight trained with transformers' Trainer (paper §4–5.1).

One Trainer step = one balanced batch: B pairs from each of K sources (paper: 5 × 16) from the seed's plan
(`morelib.data.sampling.plan_for`, the feature tier's plan, optionally length-grouped per window of 64 batches). The
dataset's item i IS batch i and the sampler is sequential, so the Trainer's own resume skips exactly the consumed
batches. Chosen and rejected texts (prompt + response, truncated on the left) go through ONE forward pass as [chosen;
rejected], or with prompt sharing as one packed row per pair (`morelib.backbone.prompt_sharing`: same rewards and
gradients, the prompt read once). A forward pre-hook on the score layer captures its input z[2N, h] at the last real
token; the per-source BT losses L_i and closed-form head gradients ∂L_i/∂w (`morelib.train.losses.head_grad` on z_w −
z_l) feed `MoreWeighter`, and the loss is Σ λ_i L_i (paper eq. 9; `multitask` λ = 1/K, `fixed` the given λ, `single` one
source; `multitask-pooled`, the paper's MultiTask, trains on random pooled batches of K·B pairs with the plain
batch-mean loss and logs each source's share of the batch as λ).
Several processes (`accelerate launch --num_processes W`): the Trainer deals the plan's batches round-robin, so one
optimizer update consumes W·grad_accum batches and max_steps = ⌈plan steps / (grad_accum·W)⌉ (`optimizer_steps`): one
epoch stays one epoch. MORE's per-source head gradients [K, h] and losses [K] are all-reduced (mean) before the min-norm
solve, so every rank computes the same λ (each rank logs it to `lam_rank<r>.jsonl`). MORE's momentum is saved in every
checkpoint (`more_state.pt`) and reloaded on resume; λ and per-source losses go to the Trainer's log history and
`<output_dir>/more_log.jsonl`. A NaN/inf loss raises TrainingError naming the step; written checkpoints are kept.
Weights are fp32 with bf16 autocast where the GPU supports it. Measured speed and padding: benchmarks/README.md.
Checked in tests/test_finetune.py (tiny random model): losses/λ logged, HF folder reloads, NaN guard, SIGKILL mid-epoch
+ resume = uninterrupted run (bit-identical on CPU), length grouping keeps B per source per step and the pairs'
multiset; tests/test_finetune_multiproc.py (two gloo processes): steps per process = plan / 2, equal λ on both ranks,
resume; tests/test_prompt_sharing.py: packed rows give the unshared rewards and gradients.

Multi-GPU: `accelerate launch -m morelib.train.finetune --profile paper --scheme more --output-dir outputs/ft-more`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
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

from morelib.backbone.model import at_last_token, encode, load_reward_model, save_reward_model, score_layer
from morelib.backbone.prompt_sharing import collate_packed, model_mask, pack_pairs, unshareable
from morelib.core.config import FINETUNE_SCHEMES, Config, load_config, parse_overrides
from morelib.core.errors import ConfigError, TrainingError
from morelib.data.sampling import POOLED, plan_for, plan_steps
from morelib.data.sources import Pair
from morelib.data.splits import load_source_splits
from morelib.train.baselines import fixed_weights
from morelib.train.losses import head_grad
from morelib.train.more import MoreWeighter, more_loss

log = logging.getLogger(__name__)
STATE_FILE = "more_state.pt"
LOG_FILE = "more_log.jsonl"
RANK_LOG = "lam_rank{rank}.jsonl"  # several processes: every rank's λ per step, to check they agree
MODEL_DIR = "model"
THROUGHPUT_FILE = "throughput.json"


class BalancedBatches(Dataset):
    """Item i = the texts of balanced batch i: {"chosen": [K·B], "rejected": [K·B], "source": [K·B] source indices}."""

    def __init__(self, pairs: dict[str, Sequence[Pair]], plan: torch.Tensor) -> None:
        self.sources = [list(p) for p in pairs.values()]
        self.plan = plan

    def __len__(self) -> int:
        return self.plan.shape[0]

    def __getitem__(self, i: int) -> dict[str, list]:
        picked = [(k, self.sources[k][j]) for k, row in enumerate(self.plan[i].tolist()) for j in row]
        return {
            "chosen": [p.prompt + p.chosen for _, p in picked],
            "rejected": [p.prompt + p.rejected for _, p in picked],
            "source": [k for k, _ in picked],
        }


class PooledBatches(BalancedBatches):
    """Item i = the texts of pooled batch i; plan [S, K·B] of codes k·stride + j (see
    `morelib.data.sampling.pooled_plan`)."""

    def __init__(self, pairs: dict[str, Sequence[Pair]], plan: torch.Tensor) -> None:
        super().__init__(pairs, plan)
        self.stride = max(len(p) for p in self.sources)

    def __getitem__(self, i: int) -> dict[str, list]:
        picked = [(c // self.stride, self.sources[c // self.stride][c % self.stride]) for c in self.plan[i].tolist()]
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
    """Trainer whose loss is the λ-weighted sum of per-source Bradley–Terry losses of one balanced batch."""

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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Σ_i λ_i L_i over the K sources of this batch (num_items_in_batch unused: every source loss is a mean)."""
        source_ids = inputs["source_ids"]
        packed = {k: inputs[k] for k in ("position_ids", "score_at") if k in inputs}  # finetune.share_prompt
        z, rewards = self._pooled_forward(model, inputs["input_ids"], inputs["attention_mask"], **packed)
        n = source_ids.shape[0]
        delta = rewards[:n] - rewards[n:]
        K = len(self.source_names)
        losses = torch.stack([F.softplus(-delta[source_ids == k]).mean() for k in range(K)])
        step = self.state.global_step + 1
        if self.scheme == POOLED:  # a pooled batch may lack a source (NaN mean): its loss is the plain batch mean
            return self._pooled_loss(delta, source_ids, losses, step, rewards, return_outputs)
        if not torch.isfinite(losses).all():
            bad = [self.source_names[k] for k in torch.nonzero(~torch.isfinite(losses.detach()))[:, 0].tolist()]
            raise TrainingError(
                f"non-finite loss at step {step} for source(s) {bad}; "
                f"checkpoints up to the last save in {self.args.output_dir} are kept"
            )
        lam = self._weights(z.detach().float(), source_ids, losses.detach().float(), step)
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

    def _weights(self, z: torch.Tensor, source_ids: torch.Tensor, losses: torch.Tensor, step: int) -> torch.Tensor:
        """λ[K] for this step: fixed for multitask/fixed/single, MoreWeighter on head gradients for more."""
        if self.weighter is None:
            return self.lam
        n = source_ids.shape[0]
        w = score_layer(self.accelerator.unwrap_model(self.model)).weight.detach().float()[0]
        diff = z[:n] - z[n:]
        grads = torch.stack([head_grad(diff[source_ids == k], w) for k in range(len(self.source_names))])
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


def optimizer_steps(plan_steps: int, grad_accum: int, world_size: int) -> int:
    """Optimizer updates for a plan of `plan_steps` batches: each update takes grad_accum batches on each of
    world_size processes (the Trainer shards the batches across processes), so one epoch stays one epoch."""
    return max(1, math.ceil(plan_steps / (grad_accum * world_size)))


def training_args(
    cfg: Config, output_dir: Path, seed: int, steps: int, world_size: int | None = None
) -> TrainingArguments:
    """TrainingArguments of this run: one batch per device step, AdamW, checkpoints, sequential batches.

    max_steps = `optimizer_steps` with world_size = the processes of `accelerate launch` (default: the arguments' own).
    """
    t = cfg.finetune
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=t.grad_accum,
        max_steps=steps,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type="linear",
        optim=optimizer_name(),
        bf16=bf16,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
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
    args.max_steps = optimizer_steps(steps, t.grad_accum, args.world_size if world_size is None else world_size)
    return args


def describe_plan(
    cfg: Config, sizes: dict[str, int], scheme: str, seed: int = 0, world_size: int = 1
) -> dict[str, Any]:
    """What one fine-tuning run of `scheme` on sources of `sizes` pairs will do, without a model: plan steps, epochs,
    pairs per step and per source, optimizer steps per process and checkpoint steps (checked for the paper profile)."""
    plan = plan_for({name: [None] * n for name, n in sizes.items()}, cfg, seed, None, scheme)
    steps, per_epoch = plan_steps(sizes, cfg)
    updates = optimizer_steps(plan.shape[0], cfg.finetune.grad_accum, world_size)
    used = plan.reshape(plan.shape[0], -1) if scheme == POOLED else plan
    return {
        "scheme": scheme,
        "sources": list(sizes),
        "plan_steps": int(plan.shape[0]),
        "steps_per_epoch": per_epoch,
        "epochs": plan.shape[0] / per_epoch,
        "pairs_per_step": int(used[0].numel()),
        "pairs_per_source": cfg.train.resample_pairs or max(sizes.values()),
        "optimizer_steps": updates,
        "checkpoints": list(range(cfg.finetune.save_steps, updates + 1, cfg.finetune.save_steps)),
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
    plan = plan_for(train_pairs, cfg, seed, lengths, scheme)
    trainer = MoreTrainer(
        model=model,
        args=training_args(cfg, output_dir, seed, plan.shape[0]),
        train_dataset=(PooledBatches if scheme == POOLED else BalancedBatches)(train_pairs, plan),
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
