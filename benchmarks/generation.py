"""Generation throughput (new tokens/s) of the RJS policy per batch size, as morelib.align.rjs.generate samples.

Usage: python benchmarks/generation.py [--policy smollm2-135m] [--batch-sizes 1 2 4 8 16 32] [--new-tokens 48]
       [--prompts 16] [--rounds 1] [--warmup 0] [--threads N]
For each batch size B, the same --prompts real HH-helpful test prompts (policy's chat template) are answered in
length-sorted, left-padded batches of B, sampled with temperature 0.8 / top-p 0.95 and forced to exactly --new-tokens
new tokens (min_new_tokens); tokens/s = prompts × new tokens / seconds (prompt prefill included, as in RJS).
Batch sizes are timed interleaved (benchmarks/common.py) after a short warm-up, and the median is reported.
Prints a markdown table and writes benchmarks/results/generation.json.
"""

from __future__ import annotations

import argparse
import os

import torch
from common import DATA_DIR, interleave, machine, median, save

from morelib.align import rjs
from morelib.core.hardware import set_threads
from morelib.data.sources import load_preferences


def make_call(policy, tok, prompts: list[str], batch_size: int, new_tokens: int, n: int = 1, cache: str | None = None):
    """A zero-argument function generating exactly new_tokens for n copies of every prompt (each copy reads its
    prompt), in length-sorted left-padded batches; `cache` is an HF cache_implementation (None: the default)."""
    tok.padding_side = "left"
    texts = sorted(
        (rjs.format_prompt(tok, p) for p in prompts for _ in range(n)), key=lambda t: -len(tok(t)["input_ids"])
    )
    batches = [
        tok(texts[i : i + batch_size], add_special_tokens=False, padding=True, return_tensors="pt")
        for i in range(0, len(texts), batch_size)
    ]
    extra = {"cache_implementation": cache} if cache else {}

    def call() -> None:
        with torch.inference_mode():
            for batch in batches:
                policy.generate(
                    **batch,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=True,
                    temperature=0.8,
                    top_p=0.95,
                    pad_token_id=tok.pad_token_id,
                    **extra,
                )

    return call


def main() -> None:
    """Measure and print new tokens/s for every batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="smollm2-135m")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (1 round ≈ 4 min on 2 idle cores)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed full rounds before the timed ones")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--data-dir", default=os.environ.get("MORE_DATA_DIR", DATA_DIR))
    args = parser.parse_args()
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    policy, tok = rjs.load_causal_lm(args.policy, args.dtype, device="cpu")
    pairs = load_preferences("hh-helpful", "test", data_dir=args.data_dir, limit=args.prompts, seed=0)
    prompts = [p.prompt for p in pairs]
    calls = {b: make_call(policy, tok, prompts, b, args.new_tokens) for b in args.batch_sizes}
    make_call(policy, tok, prompts[:2], 2, 4)()  # cheap warm-up: first-call allocations and kernel selection
    times = interleave({str(b): c for b, c in calls.items()}, rounds=args.rounds, warmup=args.warmup)
    rows = [
        {
            "batch": b,
            "seconds": median(times[str(b)]),
            "tokens_per_s": len(prompts) * args.new_tokens / median(times[str(b)]),
        }
        for b in args.batch_sizes
    ]
    best = max(rows, key=lambda r: r["tokens_per_s"])
    print(
        f"policy {args.policy}, dtype {next(policy.parameters()).dtype}, threads {threads}, "
        f"{args.new_tokens} new tokens, median of {args.rounds} interleaved rounds, load {machine()['load_avg_1m']:.1f}"
    )
    print("| batch | seconds | new tokens/s |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['batch']} | {r['seconds']:.2f} | {r['tokens_per_s']:.1f} |")
    print(f"best batch size: {best['batch']}")
    save(
        "generation",
        {
            "policy": args.policy,
            "threads": threads,
            "new_tokens": args.new_tokens,
            "rows": rows,
            "raw_seconds": times,
            "best_batch": best["batch"],
        },
    )


if __name__ == "__main__":
    main()
