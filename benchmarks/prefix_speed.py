"""Feature extraction with and without prefix sharing (`head.share_prompt`): texts per CPU-second on real HH pairs.

Usage: python benchmarks/prefix_speed.py [--pairs 60] [--lengths 128 512] [--batch 4] [--rounds 3] [--threads 2]
Both paths compute every text (no cache) of the same Anthropic Harmless test pairs with SmolLM2-135M in fp32, in ONE
process, called alternately round by round; CPU time (`time.process_time`, all threads) counts this process's work
only, so it moves less than wall time when other jobs share the cores. Also reports the tokens each path feeds the
model and the largest |shared − unshared| feature gap. Writes benchmarks/results/prefix_speed.json.
"""

from __future__ import annotations

import argparse
import os

import torch
from common import hh_pairs, interleave, median, save, table, token_pairs

from morelib.backbone.features import MIN_SHARED, embed_pairs, embed_texts
from morelib.backbone.model import load_reward_model
from morelib.backbone.prompt_sharing import common_prefix
from morelib.core.hardware import set_threads


def tokens_fed(ids: list[tuple[list[int], list[int]]]) -> tuple[int, int]:
    """(unshared, shared) token counts the two paths feed the model (pairs below MIN_SHARED run unshared)."""
    full = sum(len(a) + len(b) for a, b in ids)
    saved = sum(p for p in (common_prefix(a, b) for a, b in ids) if p >= MIN_SHARED)
    return full, full - saved


def measure(model, tok, pairs, max_length: int, batch: int, rounds: int) -> dict:
    """Both paths alternated `rounds` times at `max_length`: texts/CPU-s, texts/s, tokens, speed-ups, feature gap."""
    chosen, rejected = [p.prompt + p.chosen for p in pairs], [p.prompt + p.rejected for p in pairs]
    out: dict[str, torch.Tensor] = {}
    run = {
        "unshared": lambda: out.__setitem__(
            "unshared", embed_texts(model, tok, chosen + rejected, max_length, batch_size=batch)
        ),
        "shared": lambda: out.__setitem__(
            "shared", torch.cat(embed_pairs(model, tok, chosen, rejected, max_length, batch_size=batch))
        ),
    }
    cpu: dict[str, list[float]] = {}
    wall = interleave(run, rounds, warmup=1, cpu=cpu)
    full, fed = tokens_fed(token_pairs(tok, pairs, max_length))
    n_texts = 2 * len(pairs)
    rows = [
        {
            "max_length": max_length,
            "path": name,
            "texts/cpu_s": n_texts / median(cpu[name]),
            "texts/s": n_texts / median(wall[name]),
            "tokens": fed if name == "shared" else full,
        }
        for name in run
    ]
    return {
        "max_length": max_length,
        "rows": rows,
        "tokens_saved": 1 - fed / full,
        "speedup_cpu": median(cpu["unshared"]) / median(cpu["shared"]),
        "speedup_wall": median(wall["unshared"]) / median(wall["shared"]),
        "max_abs_gap": (out["shared"] - out["unshared"]).abs().max().item(),
        "cpu_s": cpu,
        "wall_s": wall,
    }


def main() -> None:
    """Both paths per length, alternated: texts/CPU-s and texts/s medians; saves
    benchmarks/results/prefix_speed.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 512])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    pairs = hh_pairs(args.pairs, seed=0)
    model, tok = load_reward_model(args.model, dtype="fp32", device="cpu")
    model.requires_grad_(False)
    results = []
    for max_length in args.lengths:
        res = measure(model, tok, pairs, max_length, args.batch, args.rounds)
        results.append(res)
        print(
            table(
                res["rows"],
                f"{len(pairs)} hh-harmless pairs, batch {args.batch}, {threads} threads, load {os.getloadavg()[0]:.1f}",
            )
        )
        print(
            f"shared/unshared speed-up: CPU {res['speedup_cpu']:.2f}x, wall {res['speedup_wall']:.2f}x; tokens saved "
            f"{res['tokens_saved']:.1%}; max |feature gap| {res['max_abs_gap']:.2g}",
            flush=True,
        )
    save("prefix_speed", {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
