"""Sampling speed of RJS's generation paths, end to end: HF generate per batch size (every sample reads its prompt),
RJS's own HF path (`rjs.generate`: each prompt read once, its KV cache shared by its samples) per batch size, HF with a
static KV cache, CTranslate2 fp32 and int8 per batch size, each CTranslate2 conversion timed; llama.cpp is reported
when importable.

Usage: nice -n 10 python benchmarks/sampling_backends.py [--policy smollm2-135m] [--prompts 16] [--samples 2]
       [--new-tokens 48] [--rounds 1] [--threads 2] [--dtype auto] [--hf-batches 8 16 32] [--ct2-batches 16 32 64]
The same --prompts real HH-helpful test prompts (policy's chat template), each sampled --samples times (T 0.8, top-p
0.95), forced to exactly --new-tokens new tokens (min_new_tokens / min_length) so every path does the same work;
prompt prefill included, as in RJS. Paths are timed interleaved (benchmarks/common.py) after a short warm-up of each,
median over rounds. Prints a markdown table (texts/s, new tokens/s and per CPU-s, speed-up over the first HF row)
and writes benchmarks/results/sampling_backends.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import ctranslate2
import torch
from common import DATA_DIR, interleave, machine, median, save, timed_cpu
from generation import make_call

from morelib.align import rjs, sampler
from morelib.core.hardware import set_threads
from morelib.data.sources import load_preferences


def shared_call(policy, tok, prompts: list[str], n: int, batch: int, new_tokens: int):
    """A zero-argument `rjs.generate` of the same work (forced length): each prompt read once, batch rows decoded
    together."""

    def call() -> None:
        rjs.generate(
            policy, tok, prompts, n, new_tokens, 0.8, 0.95, batch, 0, progress=False, min_new_tokens=new_tokens
        )

    return call


def ct2_call(folder: Path, tok, prompts: list[str], n: int, batch: int, new_tokens: int, compute: str, threads: int):
    """A zero-argument CTranslate2 generation of the same work (forced length), as sampler.generate_ct2 samples."""

    def call() -> None:
        sampler.generate_ct2_ids(
            folder, tok, prompts, n, new_tokens, 0.8, 0.95, batch, 0, compute, threads, min_new_tokens=new_tokens
        )

    return call


def main() -> None:
    """Measure and print texts/s and new tokens/s of every sampling path, and the conversion times."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--hf-batches", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--ct2-batches", nargs="+", type=int, default=[16, 32, 64])
    parser.add_argument("--dtype", default="fp32", help="HF paths' dtype: fp32 | bf16 | auto (RJS's rjs.dtype)")
    parser.add_argument("--data-dir", default=os.environ.get("MORE_DATA_DIR", DATA_DIR))
    args = parser.parse_args()
    threads = set_threads(args.threads)
    torch.manual_seed(0)
    policy, tok = rjs.load_causal_lm(args.policy, args.dtype, device="cpu")
    prompts = [
        p.prompt for p in load_preferences("hh-helpful", "test", data_dir=args.data_dir, limit=args.prompts, seed=0)
    ]
    work = (prompts, args.samples)
    conversion = {}
    folders = {}
    for compute in ("float32", "int8"):  # converted once into the cache (outside the repo); timed when it converts
        wall, cpu = timed_cpu(
            lambda compute=compute: folders.__setitem__(compute, sampler.ct2_folder(args.policy, compute))
        )
        conversion[compute] = {"wall_s": wall, "cpu_s": cpu}
    calls = {f"hf b{b}": make_call(policy, tok, prompts, b, args.new_tokens, args.samples) for b in args.hf_batches}
    calls |= {
        f"rjs.generate (prompt read once) b{b}": shared_call(policy, tok, *work, b, args.new_tokens)
        for b in args.hf_batches
    }
    calls[f"hf static-cache b{args.hf_batches[0]}"] = make_call(
        policy, tok, prompts, args.hf_batches[0], args.new_tokens, args.samples, "static"
    )
    for compute in ("float32", "int8"):
        for b in args.ct2_batches:
            calls[f"ct2 {compute} b{b}"] = ct2_call(folders[compute], tok, *work, b, args.new_tokens, compute, threads)
    for cache in (None, "static"):  # cheap warm-up: first-call allocations, kernel selection
        make_call(policy, tok, prompts[:2], 2, 4, 1, cache)()
    cpu: dict[str, list[float]] = {}
    times = interleave(calls, rounds=args.rounds, warmup=0, cpu=cpu)
    texts = len(prompts) * args.samples
    rows = [
        {
            "path": name,
            "seconds": median(t),
            "texts_per_s": texts / median(t),
            "new_tokens_per_s": texts * args.new_tokens / median(t),
            "new_tokens_per_cpu_s": texts * args.new_tokens / median(cpu[name]),
        }
        for name, t in times.items()
    ]
    base = rows[0]
    llama = importlib.util.find_spec("llama_cpp") is not None
    print(
        f"policy {args.policy}, {texts} texts ({len(prompts)} prompts × {args.samples}), {args.new_tokens} new tokens "
        f"forced, HF in {policy.dtype}, threads {threads}, median of {args.rounds} interleaved round(s), "
        f"load {machine()['load_avg_1m']:.1f}, ctranslate2 {ctranslate2.__version__}"
    )
    print(
        "| path | seconds | texts/s | new tokens/s | new tokens per CPU-s | speed-up over the first row (wall / CPU) |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['path']} | {r['seconds']:.1f} | {r['texts_per_s']:.2f} | {r['new_tokens_per_s']:.1f} | "
            f"{r['new_tokens_per_cpu_s']:.1f} | {base['seconds'] / r['seconds']:.2f}× / "
            f"{r['new_tokens_per_cpu_s'] / base['new_tokens_per_cpu_s']:.2f}× |"
        )
    for compute, c in conversion.items():
        print(
            f"CTranslate2 folder ({compute}): {c['wall_s']:.1f} s wall, {c['cpu_s']:.1f} CPU-s "
            "(a conversion when not cached yet; once per policy folder, CTranslate2 version and compute type)"
        )
    print(
        f"llama-cpp-python importable: {llama} (no prebuilt wheel on the package index: the sdist compiles llama.cpp)"
    )
    save(
        "sampling_backends",
        {
            "policy": args.policy,
            "threads": threads,
            "texts": texts,
            "new_tokens": args.new_tokens,
            "rows": rows,
            "conversion_s": conversion,
            "raw_seconds": times,
            "llama_cpp": llama,
        },
    )


if __name__ == "__main__":
    main()
