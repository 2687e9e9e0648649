"""Tokens saved by prefix sharing, per source and context length: the scaling story of `head.share_prompt`.

Usage: python benchmarks/prefix_tokens.py [--lengths 128 256 512 1024] [--pairs 1000]
Tokenizer only (no model runs). Per source (the local test files: Anthropic Helpful and Harmless dialogues, OpenAI
Summarize posts, OASST1, the UltraFeedback stand-in), each pair's prompt + chosen and prompt + rejected are tokenised
and left-truncated exactly as feature extraction does; prefix sharing feeds the longest common token prefix once
(pairs sharing fewer than MIN_SHARED tokens run unshared, as in `features.embed_pairs`). Reported: the share of tokens
saved (1 − shared/unshared tokens), the share of pairs that fall back, and the mean tokens per pair. The paper profile
(params/paper.yaml: equal pairs per source after resampling, 512 tokens) is projected as the token-weighted saving
over its sources found here — WebGPT has no local file, and Pythia-1.4B's tokenizer is not available offline, so
SmolLM2-135M's tokenizer stands in (both byte-level BPE; counts differ somewhat, shares less).
Writes benchmarks/results/prefix_tokens.json.
"""

from __future__ import annotations

import argparse
import os

from common import DATA_DIR, save, table

from morelib.backbone.features import MIN_SHARED, backbone
from morelib.backbone.model import encode
from morelib.backbone.prompt_sharing import common_prefix
from morelib.core.config import load_config
from morelib.data.sources import load_preferences

SOURCES = ("hh-helpful", "hh-harmless", "summarize", "oasst1", "ultrafeedback")


def counts(tokenizer, pairs, max_length: int) -> dict[str, float]:
    """Unshared and shared token totals of pairs at `max_length`, their saving, fallbacks and tokens per pair."""
    chosen = encode(tokenizer, [p.prompt + p.chosen for p in pairs], max_length, "left")
    rejected = encode(tokenizer, [p.prompt + p.rejected for p in pairs], max_length, "left")
    prefixes = [common_prefix(a, b) for a, b in zip(chosen, rejected)]
    full = sum(len(a) + len(b) for a, b in zip(chosen, rejected))
    saved = sum(p for p in prefixes if p >= MIN_SHARED)
    return {
        "pairs": len(pairs),
        "tokens_unshared": full,
        "tokens_shared": full - saved,
        "saved": saved / full,
        "fallback_pairs": sum(p < MIN_SHARED for p in prefixes) / len(pairs),
        "tokens_per_pair": full / len(pairs),
    }


def paper_projection(rows: list[dict], loaders: list[str], max_length: int) -> dict[str, float]:
    """Token saving of the paper profile's sources (equal pairs each) at its max_length, from the per-pair means."""
    use = [r for r in rows if r["source"] in loaders and r["max_length"] == max_length]
    full = sum(r["tokens_per_pair"] for r in use)
    shared = sum(r["tokens_shared"] / r["pairs"] for r in use)
    return {
        "max_length": max_length,
        "sources": [r["source"] for r in use],
        "missing": sorted(set(loaders) - {r["source"] for r in use}),
        "saved": 1 - shared / full,
    }


def main() -> None:
    """Count tokens per source and length, print the table and the paper projection, save the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 256, 512, 1024])
    parser.add_argument("--pairs", type=int, default=1000, help="pairs per source (a seeded sample; all if fewer)")
    parser.add_argument("--data-dir", default=os.environ.get("MORE_DATA_DIR", DATA_DIR))
    args = parser.parse_args()
    _, tokenizer, _ = backbone("smollm2-135m", "fp32")
    rows = []
    for source in SOURCES:
        pairs = load_preferences(source, "test", data_dir=args.data_dir, limit=args.pairs, seed=0)
        rows += [{"source": source, "max_length": n, **counts(tokenizer, pairs, n)} for n in args.lengths]
    print(
        table(
            [
                {k: r[k] for k in ("source", "max_length", "pairs", "tokens_per_pair", "saved", "fallback_pairs")}
                for r in rows
            ],
            "tokens saved by prefix sharing (SmolLM2 tokenizer, left truncation)",
        )
    )
    paper = load_config("paper")
    loaders = [s.loader for s in paper.data.sources]
    projection = paper_projection(rows, loaders, paper.model.max_length)
    print(
        f"paper profile ({paper.model.name}, {paper.model.max_length} tokens, equal pairs per source): "
        f"{projection['saved']:.1%} of tokens saved over {', '.join(projection['sources'])} "
        f"(no local data: {', '.join(projection['missing']) or 'none'}; SmolLM2's tokenizer stands in for Pythia's)"
    )
    save(
        "prefix_tokens",
        {
            "args": vars(args),
            "tokenizer": "smollm2-135m (stand-in for the paper's Pythia-1.4B)",
            "min_shared": MIN_SHARED,
            "rows": rows,
            "paper_projection": projection,
        },
    )


if __name__ == "__main__":
    main()
