"""Print pairs/s, tokens/s, peak GPU memory and MFU (6·params·tokens / seconds / peak FLOP/s) of a fine-tune's
throughput.json (written by morelib.train.finetune). Usage: python scripts/throughput.py FILE [--peak-tflops X]."""

import argparse
import json

import torch

PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "L4": 121.0,
    "4090": 165.0,
}  # dense bf16 tensor-core peaks from the vendors' data sheets


def peak_tflops() -> float | None:
    """The visible GPU's dense bf16 peak (TFLOP/s) by name, or None (CPU or unknown GPU)."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def main() -> None:
    """Read the stats, print one line per figure."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("stats")
    ap.add_argument("--peak-tflops", type=float)
    args = ap.parse_args()
    s = json.load(open(args.stats))
    world, secs = s["world_size"], s["seconds"]
    pairs, tokens = s["pairs"] * world, s["tokens"] * world
    print(
        f"[throughput] {pairs} pairs in {secs:.1f} s: {pairs / secs:.1f} pairs/s, {tokens / secs:.0f} tokens/s "
        f"({s['padded_tokens'] / max(s['tokens'], 1):.2f}x padded), {s['params'] / 1e6:.1f}M params, "
        f"{world} process(es)"
    )
    mem = s["peak_gpu_bytes"]
    print(f"[throughput] peak GPU memory: {mem / 2**30:.2f} GiB" if mem else "[throughput] peak GPU memory: n/a (CPU)")
    peak = args.peak_tflops or peak_tflops()
    flops = 6 * s["params"] * tokens / secs
    print(
        f"[throughput] model FLOP/s (6·params·tokens): {flops / 1e12:.3f} TFLOP/s; MFU: "
        + (
            f"{flops / (peak * 1e12 * world):.1%} of {peak:g} TFLOP/s per device"
            if peak
            else "n/a (no known peak; pass --peak-tflops)"
        )
    )


if __name__ == "__main__":
    main()
