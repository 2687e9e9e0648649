"""The fine-tuning study before the GPUs are paid for: every fine-tune notebooks 01–04 run, with its updates, pairs per
update, split over processes and checkpoints, and the GPU-hours they cost at the throughput scripts/gpu_smoke.sh
measured (project issue 31). `python -m morelib.finetune --plan` and `./run_all.sh --dry-run` print it.

Which fine-tunes (one per seed each), as the notebooks call `pipeline.fit` on the finetune tier: 01 one `single` per
source (batch `train.single_batch`, K·B); 02 `multitask` and `more` on all sources (03 and `top` reuse 01–02's);
04 `multitask` and `more` on the first k sources for k = 2 … K−1 (k = K is 02's), and `more` with
`more.normalization: loss+` for k = 2 … K (another config fingerprint, so its own runs). Notebook 05's policy SFT is
not a reward-model fine-tune and is not counted. Source sizes are the profile's `train_pairs` × `seed_subsample`.
GPU-hours scale the smoke run's model FLOP/s per GPU (6·params·tokens / s) to the study's model by parameter count,
at the smoke run's tokens per pair; a bigger model usually reaches a higher MFU, so this errs long.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from morelib.core.config import Config, load_config, parse_overrides, with_overrides
from morelib.core.errors import ConfigError
from morelib.core.runs import REPO_ROOT
from morelib.study.pipeline import single_config
from morelib.train.finetune import describe_plan

THROUGHPUT = REPO_ROOT / "outputs" / "gpu_smoke_throughput.json"  # written by scripts/gpu_smoke.sh
LOSS_PLUS = {"more.normalization": "loss+"}  # notebook 04's second K ladder


@dataclass(frozen=True)
class Finetune:
    """One fine-tune of the study: the notebook that first trains it, scheme, sources, variant and seed."""

    notebook: str
    scheme: str
    sources: tuple[str, ...]
    seed: int
    variant: str = ""  # "" or the overrides of a config variant ("more.normalization=loss+")


def study_finetunes(cfg: Config) -> list[tuple[Finetune, Config]]:
    """Every fine-tune notebooks 01–04 run on `cfg` (sources in configured order), with the config each trains under."""
    names = tuple(cfg.source_names())
    K = len(names)
    loss_plus = with_overrides(cfg, LOSS_PLUS)
    variant = ",".join(f"{k}={v}" for k, v in LOSS_PLUS.items())
    jobs: list[tuple[Finetune, Config]] = []
    for seed in cfg.seeds:
        jobs += [(Finetune("01", "single", (s,), seed), single_config(cfg, K)) for s in names]
        jobs += [(Finetune("02", scheme, names, seed), cfg) for scheme in ("multitask", "more")]
        for k in range(2, K):
            jobs += [(Finetune("04", scheme, names[:k], seed), cfg) for scheme in ("multitask", "more")]
        jobs += [(Finetune("04", "more", names[:k], seed, variant), loss_plus) for k in range(2, K + 1)]
    return jobs


def plan_rows(cfg: Config, world_size: int) -> list[dict[str, Any]]:
    """`describe_plan` of every study fine-tune at `world_size` processes, with its notebook, variant and seed."""
    sizes = {s.name: max(1, round(s.train_pairs * cfg.train.seed_subsample)) for s in cfg.data.sources}
    rows = []
    for job, job_cfg in study_finetunes(cfg):
        plan = describe_plan(job_cfg, {s: sizes[s] for s in job.sources}, job.scheme, job.seed, world_size)
        rows.append({"notebook": job.notebook, "variant": job.variant, "seed": job.seed, **plan})
    return rows


def model_params(name: str) -> int | None:
    """Parameters of model `name` as a one-output reward model, from its config in the local HF cache (no weights,
    no download); None when the config is not there."""
    try:
        config = AutoConfig.from_pretrained(name, local_files_only=True, num_labels=1)
    except (OSError, ValueError):
        return None
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for p in model.parameters())


def gpu_hours(rows: Sequence[dict[str, Any]], stats: dict[str, Any], params: int) -> float:
    """GPU-hours of `rows` at the smoke run's model FLOP/s per GPU (`stats`: a finetune throughput.json), for a model
    of `params` parameters at the smoke run's tokens per pair."""
    per_gpu_flops = 6 * stats["params"] * stats["tokens"] / stats["seconds"]  # the file is one process's share
    tokens_per_pair = stats["tokens"] / stats["pairs"]
    pairs = sum(r["optimizer_steps"] * r["pairs_per_update"] for r in rows)
    return 6 * params * tokens_per_pair * pairs / per_gpu_flops / 3600


def _groups(rows: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], list[int]]]:
    """Rows that differ only in seed, merged: (first row, seeds)."""
    merged: dict[tuple, tuple[dict[str, Any], list[int]]] = {}
    for r in rows:
        key = (r["notebook"], r["scheme"], tuple(r["sources"]), r["variant"])
        merged.setdefault(key, (r, []))[1].append(r["seed"])
    return list(merged.values())


def report(cfg: Config, world_size: int, throughput: Path = THROUGHPUT, params: int | None = None) -> str:
    """The plan as text: one table row per fine-tune (seeds merged), the study's totals and its GPU-hours."""
    rows = plan_rows(cfg, world_size)
    lines = [
        f"fine-tuning plan: profile {cfg.profile}, model {cfg.model.name}, {len(cfg.source_names())} sources, "
        f"seeds {list(cfg.seeds)}, {world_size} process(es)",
        "| notebook | scheme | sources | seeds | updates | pairs/update | per process: pairs × micro-batches | "
        "checkpoints (updates) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, seeds in _groups(rows):
        scheme = r["scheme"] + (f" [{r['variant']}]" if r["variant"] else "")
        per_process = f"{r['per_device_batch_per_source'] * len(r['sources'])} × {r['grad_accum']}"
        checkpoints = ", ".join(map(str, r["checkpoints"]))
        lines.append(
            f"| {r['notebook']} | {scheme} | {'+'.join(r['sources'])} | {','.join(map(str, seeds))} | "
            f"{r['optimizer_steps']} | {r['pairs_per_update']} | {per_process} | {checkpoints} |"
        )
    notes = sorted({r["split"] for r in rows})
    pairs = sum(r["optimizer_steps"] * r["pairs_per_update"] for r in rows)
    lines += [f"split: {note}" for note in notes]
    lines.append(
        f"fine-tunes in the study: {len(rows)} ({len(rows) // len(cfg.seeds)} per seed × {len(cfg.seeds)} seeds), "
        f"{pairs:,} pairs in all (notebook 05's policy SFT not counted)"
    )
    lines.append(_hours_line(rows, cfg, throughput, params))
    return "\n".join(lines)


def _hours_line(rows: Sequence[dict[str, Any]], cfg: Config, throughput: Path, params: int | None) -> str:
    """'estimated GPU-hours: …' from the smoke run's throughput, or why there is no estimate."""
    if not throughput.is_file():
        shown = throughput.relative_to(REPO_ROOT) if throughput.is_relative_to(REPO_ROOT) else throughput
        return f"estimated GPU-hours: n/a (no throughput yet: scripts/gpu_smoke.sh on a GPU writes {shown})"
    stats = json.loads(throughput.read_text())
    shown = throughput.relative_to(REPO_ROOT) if throughput.is_relative_to(REPO_ROOT) else throughput
    params = params or model_params(cfg.model.name)
    if params is None:
        return f"estimated GPU-hours: n/a ({cfg.model.name}'s config is not in the local HF cache: pass --params N)"
    hours = gpu_hours(rows, stats, params)
    return (
        f"estimated GPU-hours: {hours:,.1f} ({hours / len(rows):.2f} per fine-tune) at {shown}'s "
        f"{6 * stats['params'] * stats['tokens'] / stats['seconds'] / 1e12:.1f} model TFLOP/s per GPU "
        f"({stats['params'] / 1e6:.0f}M params), scaled to {params / 1e9:.2f}B params"
    )


def main(argv: Sequence[str] | None = None) -> str:
    """CLI: print the study's fine-tuning plan for a profile and a number of processes."""
    ap = argparse.ArgumentParser(prog="python -m morelib.finetune --plan", description=main.__doc__)
    ap.add_argument("--profile", default="paper", help="params profile name or YAML path")
    ap.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", "1")), help="processes")
    ap.add_argument("--throughput", type=Path, default=THROUGHPUT, help="a finetune throughput.json")
    ap.add_argument("--params", type=float, help="the model's parameter count (default: from its cached config)")
    ap.add_argument("--overrides", default="{}", help="dotted overrides as one JSON/YAML mapping (run_all.sh)")
    ap.add_argument("-o", "--override", action="append", default=[], help="dotted key=value, e.g. seeds=[0]")
    args = ap.parse_args(argv)
    cfg = load_config(args.profile, {**parse_overrides(args.overrides), **parse_overrides(args.override)})
    if cfg.train.tier != "finetune":
        raise ConfigError(f"profile {cfg.profile} trains heads on features (train.tier: {cfg.train.tier}); no plan")
    text = report(cfg, args.world_size, args.throughput, int(args.params) if args.params else None)
    print(text)
    return text
