"""Full fine-tuning throughput: morelib.train.finetune vs TRL's RewardTrainer, same model, pairs, length, batch,
optimizer.

SmolLM2-135M (fp32: this CPU has no fast bf16), real Anthropic Harmless pairs, prompt + response left-truncated to
`max_length` tokens by the same tokenizer call (TRL gets the ids pre-tokenised, so it neither drops long pairs nor
appends EOS), 8 pairs per step, lr 1e-6, no checkpoints inside the timed steps. Contenders, alternated round by round:
  trl        — RewardTrainer defaults (fused AdamW, one concatenated [chosen; rejected] forward, dynamic padding, and
               gradient checkpointing, which RewardConfig turns on by default), fed the same batches in the same
               order as `ours`.
  trl-nockpt — the same with gradient_checkpointing=False (no forward recomputed in the backward pass).
  trl-best   — TRL configured at its best (the honest anchor, issue 20): gradient_checkpointing=False plus
               transformers 5's `train_sampling_strategy="group_by_length"` (TRL 1.16's RewardConfig has no other
               speed lever for reward models: no padding-free mode). Its batches are exactly what that flag's
               LengthGroupedSampler (`get_length_grouped_indices`, called here with the Trainer's batch size and a
               seeded generator) gives over the whole pool, read in that order. A TRL user needs a `length` column
               (max of chosen/rejected tokens: the sampler cannot infer lengths from chosen_ids/rejected_ids) AND
               remove_unused_columns=False (else the Trainer drops that column first and the sampler raises;
               checked with TRL 1.16 / transformers 5.24 on the tiny model).
  ours       — morelib.train.finetune(scheme="single") fed the SAME random batches as `trl` (its shipped optimizer,
               fused AdamW, and finetune.share_prompt as shipped: one packed prompt + chosen + rejected row per pair):
               what the trainer alone gives ("ours, random batches" in the report). Its padded tokens count those rows.
  ours+lev   — morelib.train.finetune as shipped: length-grouped batches (each source's picks sorted by length within a
               window of `--window` batches, then the batches shuffled; `finetune.group_by_length: true`) and fused
               AdamW ("ours as shipped (length-grouped)" in the report).
Step times come from a callback on every Trainer (benchmarks/steptimer.py); the first step of every run is warm-up.
Batches of a run are drawn at random from a `--window`-batch plan of that kind (random or grouped), so a few timed steps
see the steady-state length distribution (trl-best: its epoch plan over the whole pool, as TRL would read it). pairs/s =
8 / median step wall time; pairs/CPU-s uses process CPU time (less sensitive to other jobs on this shared machine).
steady_* = 8 / (median seconds per padded token × the mean padded tokens per step over the whole window), which removes
the luck of which few batches were drawn; the goal is judged on x_trl of the steady figures.

    .venv/bin/pip install -r requirements-bench.txt -c requirements.txt
    .venv/bin/python benchmarks/vs_trl.py --lengths 256 [--steps 3] [--rounds 2]   # then --lengths 512
(results of other lengths already in results/vs_trl.json are kept, so the two lengths may run separately)
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import steptimer
import torch
from common import hh_pairs, load, median, save, table, token_pairs
from transformers.trainer_pt_utils import get_length_grouped_indices

from morelib.backbone.model import load_reward_model
from morelib.backbone.prompt_sharing import pack_pairs
from morelib.core.config import load_config
from morelib.core.hardware import set_threads
from morelib.train import finetune as ft

CONTENDERS = ("trl", "trl-nockpt", "trl-best", "ours", "ours+lev")
BASES = {"x_trl": "trl", "x_trl_nockpt": "trl-nockpt", "x_trl_best": "trl-best"}  # ratio columns → their baseline
GOAL_X_TRL, GOAL_X_TRL_BEST = 1.5, 1.2  # ours as shipped vs TRL defaults / vs TRL best-configured, per pair


def random_plan(n_pairs: int, window: int, B: int, seed: int) -> torch.Tensor:
    """[window, 1, B] pair indices: a random permutation cut into batches (what a shuffled sampler gives)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_pairs, generator=gen)[: window * B].view(window, 1, B)


def length_grouped(plan: torch.Tensor, lengths: torch.Tensor, seed: int) -> torch.Tensor:
    """The same pairs as `plan` [S,K,B], per source sorted by length over all S batches, re-cut, batches shuffled."""
    S, K, B = plan.shape
    out = torch.empty_like(plan)
    for k in range(K):
        picks = plan[:, k].reshape(-1)
        out[:, k] = picks[torch.argsort(lengths[picks], descending=True, stable=True)].view(S, B)
    gen = torch.Generator().manual_seed(seed)
    return out[torch.randperm(S, generator=gen)]


def trl_grouped_plan(lengths: torch.Tensor, B: int, seed: int) -> torch.Tensor:
    """[S, 1, B] batches in the order `train_sampling_strategy="group_by_length"` reads the whole pool (same seed)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.tensor(get_length_grouped_indices(lengths.tolist(), B, generator=gen))
    S = len(order) // B
    return order[: S * B].view(S, 1, B)


def draw(plan: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """`steps` batches of `plan` chosen at random (same seed → same batches)."""
    gen = torch.Generator().manual_seed(seed + 7919)
    return plan[torch.randperm(plan.shape[0], generator=gen)[:steps]]


def padded_tokens(batch_plan: torch.Tensor, lengths: torch.Tensor, rows: int = 2) -> list[int]:
    """Tokens per step after dynamic padding: rows·B rows × the longest row, for each batch of [S,1,B] (rows = 2:
    [chosen; rejected]; rows = 1: one packed prompt + chosen + rejected row per pair, finetune.share_prompt)."""
    return [int(rows * b.numel() * lengths[b.reshape(-1)].max()) for b in batch_plan]


def run_ours(cfg, pairs: list, plan: torch.Tensor, out: Path) -> None:
    """morelib.train.finetune as shipped (its own optimizer: fused AdamW), on exactly these batches."""
    ft.plan_for = lambda *_a, **_k: plan
    try:
        ft.finetune(cfg, {"harmless": pairs}, "single", out)
    finally:
        ft.plan_for = _PLAN_FOR


def run_trl(
    ids: list[tuple[list[int], list[int]]], plan: torch.Tensor, max_length: int, out: Path, checkpointing: bool = True
) -> None:
    """TRL RewardTrainer for plan.shape[0] steps of batch B, reading pairs in the plan's order.

    `checkpointing=True` keeps RewardConfig's default gradient checkpointing (TRL turns it on for reward models).
    """
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    order = plan.reshape(-1).tolist()
    ds = Dataset.from_dict({"chosen_ids": [ids[i][0] for i in order], "rejected_ids": [ids[i][1] for i in order]})
    args = RewardConfig(
        output_dir=str(out),
        per_device_train_batch_size=plan.shape[2],
        max_steps=plan.shape[0],
        learning_rate=1e-6,
        lr_scheduler_type="linear",
        max_length=max_length,
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        logging_steps=10**6,
        disable_tqdm=True,
        dataloader_num_workers=0,
        train_sampling_strategy="sequential",
        seed=0,
        gradient_checkpointing=checkpointing,
    )
    model, tok = load_reward_model("smollm2-135m", dtype="fp32")
    RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok).train()


_PLAN_FOR = ft.plan_for


def window_plans(
    n_pairs: int, lengths: torch.Tensor, ours_lengths: torch.Tensor, args, r: int
) -> dict[str, torch.Tensor]:
    """Round r's plans: random `--window` batches (trl, trl-nockpt, ours), length-grouped (ours+lev), and TRL's own
    group_by_length epoch over the whole pool (trl-best); ours+lev groups by the row lengths our trainer feeds."""
    rand = random_plan(n_pairs, args.window, args.batch, seed=r)
    return {
        "trl": rand,
        "trl-nockpt": rand,
        "trl-best": trl_grouped_plan(lengths, args.batch, seed=r),
        "ours": rand,
        "ours+lev": length_grouped(rand, ours_lengths, r),
    }


def steady_state(row: dict, expected_padded: float, batch: int) -> dict:
    """Pairs/s at the window's mean padded tokens per step: B / (median seconds per padded token × that mean).

    A few timed steps see batches of varying length; seconds per padded token is stable across them (step cost is
    ~linear in padded tokens at these lengths), so this removes the luck of the draw from the comparison.
    """
    wall = median([w / p for w, p in zip(row["wall"], row["padded_steps"])])
    cpu = median([c / p for c, p in zip(row["cpu"], row["padded_steps"])])
    return {
        "exp_padded_tok/step": expected_padded,
        "steady_pairs/s": batch / (wall * expected_padded),
        "steady_pairs/cpu_s": batch / (cpu * expected_padded),
    }


def bench_length(L: int, args, timer: steptimer.StepTimer, pairs: list, tok) -> list[dict]:
    """Alternate the contenders for `args.rounds` rounds at max length L; one result row per contender."""
    ids = token_pairs(tok, pairs, L)
    lengths = torch.tensor([max(len(c), len(r)) for c, r in ids])
    real = torch.tensor([len(c) + len(r) for c, r in ids])
    cfg = load_config(
        "default",
        {
            "model.max_length": L,
            "train.batch_per_source": args.batch,
            "finetune.lr": 1e-6,
            "finetune.steps": args.steps,
            "finetune.save_steps": 10**6,
            "finetune.logging_steps": 10**6,
            "train.tier": "finetune",
        },
    )
    ours_rows, ours_lengths, ours_real = 2, lengths, real  # what our collator feeds: [chosen; rejected] rows ...
    if cfg.finetune.share_prompt:  # ... or one packed prompt + chosen + rejected row per pair (as shipped)
        packed = pack_pairs(tok, [p.prompt + p.chosen for p in pairs], [p.prompt + p.rejected for p in pairs], L)
        ours_rows, ours_lengths = 1, torch.tensor([len(x) for x in packed])
        ours_real = ours_lengths
    tokens: dict[str, list[int]] = {c: [] for c in CONTENDERS}
    real_tokens: dict[str, list[int]] = {c: [] for c in CONTENDERS}
    expected: dict[str, list[float]] = {c: [] for c in CONTENDERS}
    for r in range(args.rounds):
        full = window_plans(len(pairs), lengths, ours_lengths, args, r)
        order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
        for name in order:
            plan = draw(full[name], args.steps, seed=r)
            n_rows, row_len, real_len = (
                (2, lengths, real) if name.startswith("trl") else (ours_rows, ours_lengths, ours_real)
            )
            expected[name].append(sum(padded_tokens(full[name], row_len, n_rows)) / full[name].shape[0])
            tokens[name] += padded_tokens(plan, row_len, n_rows)[1:]
            real_tokens[name] += [int(real_len[b.reshape(-1)].sum()) for b in plan][1:]
            timer.label = f"{name}@{L}"
            with tempfile.TemporaryDirectory() as out:
                if name.startswith("trl"):
                    run_trl(ids, plan, L, Path(out), checkpointing=name == "trl")  # trl-best: grouped plan
                else:
                    run_ours(cfg, pairs, plan, Path(out))
            gc.collect()
    rows = []
    for name in CONTENDERS:
        wall, cpu = timer.timed_steps(f"{name}@{L}", skip=1)
        row = {
            "max_len": L,
            "trainer": name,
            "steps": len(wall),
            "step_s": median(wall),
            "pairs/s": args.batch / median(wall),
            "pairs/cpu_s": args.batch / median(cpu),
            "padded_tok/step": median(tokens[name]),
            "real_tok/step": median(real_tokens[name]),
            "wall": wall,
            "cpu": cpu,
            "padded_steps": tokens[name],
            "real_steps": real_tokens[name],
        }
        rows.append(row | steady_state(row, sum(expected[name]) / len(expected[name]), args.batch))
    by_name = {row["trainer"]: row for row in rows}
    for row in rows:
        for key in ("pairs/s", "pairs/cpu_s", "steady_pairs/s", "steady_pairs/cpu_s"):
            for column, base in BASES.items():
                row[f"{column}[{key}]"] = row[key] / by_name[base][key]
    return rows


def main(argv: list[str] | None = None) -> dict:
    """Run every max length, print the table, save benchmarks/results/vs_trl.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--steps", type=int, default=3, help="steps per run; the first is warm-up")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="pairs per step")
    ap.add_argument("--window", type=int, default=64, help="batches per length-grouping window")
    ap.add_argument("--pairs", type=int, default=2312, help="real pairs in the pool")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="vs_trl", help="results file benchmarks/results/<name>.json")
    args = ap.parse_args(argv)
    set_threads(args.threads)
    timer = steptimer.install()
    pairs = hh_pairs(args.pairs)
    _, tok = load_reward_model("smollm2-135m", dtype="fp32")
    t0 = time.perf_counter()
    rows = [row for L in args.lengths for row in bench_length(L, args, timer, pairs, tok)]
    hidden = ("wall", "cpu", "padded_steps", "real_steps", "step_s", "x_trl[pairs/cpu_s]", "real_tok/step")
    show = [{k: v for k, v in row.items() if k not in hidden} for row in rows]
    print(
        table(
            show,
            f"full fine-tuning, SmolLM2-135M fp32, real Harmless pairs, batch {args.batch}, "
            f"{args.threads} threads; goals: ours >= {GOAL_X_TRL}x TRL defaults, "
            f">= {GOAL_X_TRL_BEST}x TRL best-configured",
        )
    )
    earlier = [row for row in (load(args.name) or {}).get("rows", []) if row["max_len"] not in args.lengths]
    result = {
        "args": vars(args),
        "rows": earlier + rows,
        "elapsed_s": time.perf_counter() - t0,
        "goal_x_trl": GOAL_X_TRL,
        "goal_x_trl_best": GOAL_X_TRL_BEST,
    }
    save(args.name, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
