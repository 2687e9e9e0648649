"""One fine-tuning step (forward + backward of the BT loss) with and without finetune.share_prompt, same pairs.

SmolLM2-135M fp32, `--pairs` real Anthropic Harmless test pairs at `--max-length` tokens, the trainer's own collator
and forward (`PairCollator`, `MoreTrainer._pooled_forward`); the two modes alternate (A B B A ...) after one warm-up
step each. Reports real and padded tokens per step and the median wall and process-CPU seconds.

    .venv/bin/python benchmarks/share_prompt.py --pairs 8 --max-length 256 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch.nn.functional as F
from common import hh_pairs, median, save, table

from morelib.backbone.model import load_reward_model
from morelib.core.hardware import set_threads
from morelib.train import finetune as ft

TRAINER = SimpleNamespace(accelerator=SimpleNamespace(unwrap_model=lambda m: m))


def step(model, batch: dict) -> tuple[float, float]:
    """(wall s, CPU s) of one forward + backward of the mean BT loss on a collated batch."""
    model.zero_grad(set_to_none=True)
    w0, c0 = time.perf_counter(), time.process_time()
    extra = {k: batch[k] for k in ("position_ids", "score_at") if k in batch}
    _, rewards = ft.MoreTrainer._pooled_forward(TRAINER, model, batch["input_ids"], batch["attention_mask"], **extra)
    n = rewards.shape[0] // 2
    F.softplus(-(rewards[:n] - rewards[n:])).mean().backward()
    return time.perf_counter() - w0, time.process_time() - c0


def main(argv: list[str] | None = None) -> dict:
    """Time both modes, print the table, save benchmarks/results/share_prompt.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    pairs = hh_pairs(args.pairs)
    model, tok = load_reward_model("smollm2-135m", dtype="fp32", device="cpu")
    model.train()
    item = {
        "chosen": [p.prompt + p.chosen for p in pairs],
        "rejected": [p.prompt + p.rejected for p in pairs],
        "source": [0] * len(pairs),
    }
    batches, counts = {}, {}
    for mode in ("unshared", "shared"):
        collator = ft.PairCollator(tok, args.max_length, "left", share_prompt=mode == "shared")
        batches[mode] = collator([item])
        counts[mode] = collator.counts
        step(model, batches[mode])  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"unshared": [], "shared": []}
    for r in range(args.rounds):
        for mode in ("unshared", "shared") if r % 2 == 0 else ("shared", "unshared"):
            times[mode].append(step(model, batches[mode]))
    rows = [
        {
            "mode": m,
            "real_tokens": counts[m]["tokens"],
            "padded_tokens": counts[m]["padded_tokens"],
            "wall_s": median([t[0] for t in times[m]]),
            "cpu_s": median([t[1] for t in times[m]]),
            "wall_each": [t[0] for t in times[m]],
            "cpu_each": [t[1] for t in times[m]],
        }
        for m in times
    ]
    for row in rows:
        row["x_unshared_wall"] = rows[0]["wall_s"] / row["wall_s"]
        row["x_unshared_cpu"] = rows[0]["cpu_s"] / row["cpu_s"]
    print(
        table(
            [{k: v for k, v in r.items() if not k.endswith("_each")} for r in rows],
            f"one step, SmolLM2 fp32, {args.pairs} Harmless pairs, {args.max_length} tokens",
        )
    )
    result = {"args": vars(args), "rows": rows}
    save("share_prompt", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
