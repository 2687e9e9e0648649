"""Feature extraction with and without prefix sharing (`model.share_prompt`): texts per CPU-second on real HH pairs.

Usage: python benchmarks/prefix_speed.py [--pairs 60] [--max-length 128] [--batch 4] [--rounds 3] [--threads 2]
Both paths compute every text (no cache) of the same Anthropic Harmless test pairs with SmolLM2-135M in fp32, in ONE
process, called alternately round by round; CPU time (`time.process_time`, all threads) counts this process's work
only, so it moves less than wall time when other jobs share the cores. Also reports the tokens each path feeds the
model and the largest |shared − unshared| feature gap. Writes benchmarks/results/prefix_speed.json.
"""
from __future__ import annotations

import argparse

import torch

from common import hh_pairs, interleave, median, save, table, token_pairs
from morelib.features import MIN_SHARED, embed_pairs, embed_texts
from morelib.hardware import set_threads
from morelib.model import load_reward_model
from morelib.shared_prefix import common_prefix


def tokens_fed(ids: list[tuple[list[int], list[int]]]) -> tuple[int, int]:
    """(unshared, shared) token counts the two paths feed the model (pairs below MIN_SHARED run unshared)."""
    full = sum(len(a) + len(b) for a, b in ids)
    saved = sum(p for p in (common_prefix(a, b) for a, b in ids) if p >= MIN_SHARED)
    return full, full - saved


def main() -> None:
    """Interleave both paths, print texts/CPU-s and texts/s medians, save benchmarks/results/prefix_speed.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    threads = set_threads(args.threads)
    pairs = hh_pairs(args.pairs, seed=0)
    model, tok = load_reward_model(args.model, dtype="fp32", device="cpu")
    model.requires_grad_(False)
    chosen, rejected = [p.prompt + p.chosen for p in pairs], [p.prompt + p.rejected for p in pairs]
    out: dict[str, torch.Tensor] = {}
    run = {
        "unshared": lambda: out.__setitem__("unshared", embed_texts(model, tok, chosen + rejected, args.max_length,
                                                                    batch_size=args.batch)),
        "shared": lambda: out.__setitem__("shared", torch.cat(embed_pairs(model, tok, chosen, rejected,
                                                                          args.max_length, batch_size=args.batch))),
    }
    cpu: dict[str, list[float]] = {}
    wall = interleave(run, args.rounds, warmup=1, cpu=cpu)
    full, fed = tokens_fed(token_pairs(tok, pairs, args.max_length))
    n_texts = 2 * len(pairs)
    rows = [{"path": name, "texts/cpu_s": n_texts / median(cpu[name]), "texts/s": n_texts / median(wall[name]),
             "tokens": fed if name == "shared" else full} for name in run]
    gap = (out["shared"] - out["unshared"]).abs().max().item()
    speedup = {"cpu": median(cpu["unshared"]) / median(cpu["shared"]),
               "wall": median(wall["unshared"]) / median(wall["shared"])}
    print(table(rows, f"{len(pairs)} hh-harmless pairs, {args.max_length} tokens, batch {args.batch}, {threads} threads"))
    print(f"shared/unshared speed-up: CPU {speedup['cpu']:.2f}x, wall {speedup['wall']:.2f}x; tokens saved "
          f"{1 - fed / full:.1%}; max |feature gap| {gap:.2g}")
    save("prefix_speed", {"args": vars(args), "rows": rows, "speedup": speedup, "tokens_saved": 1 - fed / full,
                          "max_abs_gap": gap, "cpu_s": cpu, "wall_s": wall})


if __name__ == "__main__":
    main()
