"""Roofline: this machine's matmul peak (fp32, bf16) and the model-FLOPs utilisation of reward-model training/scoring.

Peak = median GFLOP/s of large square matmuls (2·n³ FLOPs) at the benchmark thread count. Model FLOPs follow Kaplan et
al.: 6·N·tokens for a training step (forward + backward), 2·N·tokens for scoring, N = non-embedding parameters (the
embedding lookup does no matmul); attention's L-dependent term (~8% at 256 tokens for SmolLM2) is left out, so MFU
is slightly understated. Tokens are real (unpadded) tokens, so padding waste counts against MFU; the padded-token
figure is reported beside it. Steps are SmolLM2-135M on real Harmless pairs at the machine's fast dtype, AdamW.
Matmul, train and score calls are interleaved round by round; MFU = median throughput / median peak of the same run;
MFU_cpu does the same per process-CPU second (robust to other jobs on this shared machine). bf16 matmuls are
emulated on CPUs without AVX512-BF16/AMX, so the MFU is taken over the fastest dtype's peak (fp32 here); the
ratio to the bf16 peak is printed as well.

    .venv/bin/python benchmarks/roofline.py [--rounds 4] [--max-length 256] [--pairs 4]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch
from common import hh_pairs, interleave, median, save, table, token_pairs

from morelib.backbone.model import collate, forward_pooled, load_reward_model
from morelib.core.hardware import resolve_dtype, set_threads
from morelib.weighting.losses import bt_loss

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SIZES = {"fp32": 2048, "bf16": 1024}  # square matmul sizes: ~0.2 s fp32 here; bf16 is emulated (no AVX512-BF16/AMX)


def matmul_call(n: int, dtype: torch.dtype):
    """A zero-argument function doing one n×n @ n×n matmul in `dtype`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return lambda: a @ b


def non_embedding_params(model) -> int:
    """Parameters outside the input embeddings (the ones that do matmuls per token)."""
    emb = {id(p) for p in model.get_input_embeddings().parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def length_grouped_batch(tokenizer, max_length: int, n_pairs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One [2·n_pairs, T] batch of real pairs (chosen rows then rejected rows) of similar, median-ish length."""
    ids = token_pairs(tokenizer, hh_pairs(400, seed=1), max_length)
    ids.sort(key=lambda cr: max(map(len, cr)))
    mid = len(ids) // 2
    chunk = ids[mid : mid + n_pairs]
    return collate(tokenizer, [c for c, _ in chunk] + [r for _, r in chunk], torch.device("cpu"))


def step_calls(model, input_ids: torch.Tensor, mask: torch.Tensor):
    """(train step, score step) zero-argument functions on one batch: BT loss + backward + AdamW; inference forward."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    n = input_ids.shape[0] // 2

    def train() -> None:
        _, r = forward_pooled(model, input_ids, mask)
        bt_loss((r[:n] - r[n:]).float()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def score() -> None:
        with torch.inference_mode():
            forward_pooled(model, input_ids, mask)

    return train, score


def main(argv: list[str] | None = None) -> dict:
    """Measure peaks and MFU, print the table, save benchmarks/results/roofline.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--pairs", type=int, default=4, help="pairs per step (2× sequences)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    sizes = SIZES
    calls = {f"matmul_{name}": matmul_call(sizes[name], dt) for name, dt in DTYPES.items()}
    model, tok = load_reward_model("smollm2-135m", dtype="auto")
    model.train()
    input_ids, mask = length_grouped_batch(tok, args.max_length, args.pairs)
    calls["train"], calls["score"] = step_calls(model, input_ids, mask)
    cpu: dict[str, list[float]] = {}
    times = interleave(calls, rounds=args.rounds, warmup=1, cpu=cpu)
    peak = {name: 2 * sizes[name] ** 3 / median(times[f"matmul_{name}"]) / 1e9 for name in DTYPES}
    best = {name: 2 * sizes[name] ** 3 / min(times[f"matmul_{name}"]) / 1e9 for name in DTYPES}
    per_cpu = {name: 2 * sizes[name] ** 3 / median(cpu[f"matmul_{name}"]) / 1e9 for name in DTYPES}
    fast = max(peak, key=peak.get)
    n_params = non_embedding_params(model)
    real, padded = int(mask.sum()), mask.numel()
    rows = []
    for kind, mult in (("train", 6), ("score", 2)):
        gflops_real = mult * n_params * real / median(times[kind]) / 1e9
        gflops_pad = mult * n_params * padded / median(times[kind]) / 1e9
        gflops_cpu = mult * n_params * real / median(cpu[kind]) / 1e9
        rows.append(
            {
                "workload": kind,
                "step_s": median(times[kind]),
                "cpu_s": median(cpu[kind]),
                "tokens": real,
                "padded_tokens": padded,
                "model_GFLOP/s": gflops_real,
                f"MFU_vs_{fast}": gflops_real / peak[fast],
                f"MFU_padded_vs_{fast}": gflops_pad / peak[fast],
                f"MFU_cpu_vs_{fast}": gflops_cpu / per_cpu[fast],
                "MFU_vs_bf16": gflops_real / peak["bf16"],
            }
        )
    peak_rows = [
        {"dtype": k, "n": sizes[k], "median_GFLOP/s": peak[k], "best_GFLOP/s": best[k], "GFLOP/cpu_s": per_cpu[k]}
        for k in DTYPES
    ]
    print(table(peak_rows, f"matmul peak ({args.threads} threads)"))
    print()
    print(
        table(
            rows,
            f"SmolLM2-135M (N={n_params / 1e6:.1f}M non-embedding, {model.dtype}), "
            f"{args.pairs} real pairs/step, max {args.max_length} tokens; goal: training MFU >= 50%",
        )
    )
    result = {
        "args": vars(args),
        "peaks": peak_rows,
        "fast_dtype": fast,
        "model_dtype": str(model.dtype),
        "auto_dtype": str(resolve_dtype("auto")),
        "non_embedding_params": n_params,
        "workloads": rows,
        "times": times,
        "cpu": cpu,
        "goal_train_mfu": 0.5,
    }
    save("roofline", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
