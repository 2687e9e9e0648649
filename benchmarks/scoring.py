"""Scoring / feature extraction: length-sorted batching vs naive padding on the real Harmless length distribution.

The same texts (prompt + chosen and prompt + rejected of a seeded sample of real Harmless pairs, left-truncated to
`max_length`) are embedded by SmolLM2-135M three ways, alternated and repeated:
  sorted     — morelib.backbone.features.embed_texts as shipped: length-sorted batches, each padded to its longest row;
  dynamic    — input order, each batch padded to its longest row (a plain DataLoader + DataCollatorWithPadding);
  max_length — input order, every batch padded to `max_length` (tokenizer padding="max_length").
Speed-ups are ratios of medians in the same run; padded-token counts show where they come from.

    .venv/bin/python benchmarks/scoring.py [--texts 64] [--rounds 2] [--max-length 256]
"""

from __future__ import annotations

import argparse
import sys

import common  # noqa: F401  (first: sets the OpenMP wait policy before torch loads)
import torch
from common import hh_pairs, interleave, median, save, table

from morelib.backbone.features import embed_texts
from morelib.backbone.model import encode, load_reward_model, pooled_features
from morelib.core.hardware import set_threads


def unsorted_embed(model, tok, ids: list[list[int]], batch: int, pad_to: int | None) -> torch.Tensor:
    """Pooled features in input order; batches padded to their longest row, or to `pad_to` tokens when given."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch):
            chunk = {"input_ids": ids[start : start + batch]}
            kw = {"padding": "max_length", "max_length": pad_to} if pad_to else {"padding": True}
            enc = tok.pad(chunk, return_tensors="pt", **kw)
            out.append(pooled_features(model, enc["input_ids"], enc["attention_mask"]).float())
    return torch.cat(out)


def padded_counts(ids: list[list[int]], batch: int, max_length: int) -> dict[str, int]:
    """Tokens each scheme feeds the model (rows × padded width, summed over batches)."""
    lens = [len(x) for x in ids]
    srt = sorted(lens, reverse=True)
    chunks = lambda xs: [xs[i : i + batch] for i in range(0, len(xs), batch)]  # noqa: E731
    return {
        "sorted": sum(len(c) * max(c) for c in chunks(srt)),
        "dynamic": sum(len(c) * max(c) for c in chunks(lens)),
        "max_length": len(lens) * max_length,
        "real": sum(lens),
    }


def main(argv: list[str] | None = None) -> dict:
    """Time the three batchings; print the table, save benchmarks/results/scoring.json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=64, help="texts embedded per call (half chosen, half rejected)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    set_threads(args.threads)
    model, tok = load_reward_model("smollm2-135m", dtype="auto")
    model.eval()
    pairs = hh_pairs(args.texts // 2, seed=3)
    texts = [p.prompt + p.chosen for p in pairs] + [p.prompt + p.rejected for p in pairs]
    ids = encode(tok, texts, args.max_length, "left")
    calls = {
        "sorted": lambda: embed_texts(model, tok, texts, args.max_length, "left", args.batch),
        "dynamic": lambda: unsorted_embed(model, tok, ids, args.batch, None),
        "max_length": lambda: unsorted_embed(model, tok, ids, args.batch, args.max_length),
    }
    same = torch.allclose(calls["sorted"](), calls["max_length"](), atol=1e-3, rtol=1e-3)
    cpu: dict[str, list[float]] = {}
    times = interleave(calls, rounds=args.rounds, warmup=0, cpu=cpu)
    tokens = padded_counts(ids, args.batch, args.max_length)
    rows = [
        {
            "batching": name,
            "texts/s": len(texts) / median(times[name]),
            "texts/cpu_s": len(texts) / median(cpu[name]),
            "padded_tokens": tokens[name],
            "speedup_sorted": median(times[name]) / median(times["sorted"]),
            "speedup_sorted_cpu": median(cpu[name]) / median(cpu["sorted"]),
        }
        for name in calls
    ]
    print(
        table(
            rows,
            f"feature extraction, SmolLM2-135M {model.dtype}, {len(texts)} real Harmless texts "
            f"(real tokens {tokens['real']}), batch {args.batch}, max {args.max_length}, "
            f"{args.threads} threads; features equal across batchings: {same}",
        )
    )
    result = {"args": vars(args), "rows": rows, "tokens": tokens, "features_equal": same, "times": times, "cpu": cpu}
    save("scoring", result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
