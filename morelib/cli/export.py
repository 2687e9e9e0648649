"""Export: a feature-tier reward head (or a blocks-tier RM) as an ordinary Hugging Face reward model.

A head scores r(z) = w·(z − mean)/scale + b on the backbone's last-token features z (reward_head.HeadModel). Folding the
standardisation into the backbone's own score layer gives weight w/scale and constant c = b − w·mean/scale, so the
folder loads with `AutoModelForSequenceClassification` (TRL, RewardBench, a `transformers` pipeline) and scores like
the head. Where the HF class's score layer has a bias (encoders), c goes into it; decoder classes (Llama, GPT-2, …)
have a bias-free score layer, so c is written to `config.json` as `reward_offset` and the logits are the head's
rewards minus c — Bradley–Terry rewards are defined up to a constant, so every reward difference, accuracy and
calibration figure is the head's exactly. The tokenizer is saved with the feature tier's truncation (left side,
`model_max_length` = max_length) and right padding, so `tok(texts, truncation=True, padding=True)` reproduces it.
Only RMs the run's finished notebooks evaluated (their manifests' `head_files`) are offered, and a non-empty destination
is refused unless `--force`.
A blocks-tier RM (`morelib.train.blocks`) exports as the backbone with its retrained top blocks, final norm and score
layer written in (`export_blocks`); its logits are its rewards, with no offset.
Checked against the head's rewards on tiny-random and SmolLM2 (tests/test_export.py) and against the blocks RM's
rewards on tiny-random (tests/test_blocks.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import torch
from transformers import PreTrainedModel

from morelib.backbone.model import load_reward_model, save_reward_model, score_layer
from morelib.core import runs
from morelib.core.config import load_config
from morelib.core.errors import ModelError, MoreError, RunError
from morelib.study import pipeline
from morelib.train.blocks import BlocksRM, merge_into
from morelib.train.reward_head import HeadModel
from morelib.train.reward_models import HeadRM, RMKey

META_FILE = "morelib_export.json"
MANIFEST = "manifest.json"


def folded_score(head: HeadModel) -> tuple[torch.Tensor, float]:
    """(weight [h], constant) of r(z) = weight·z + constant, equal to the head's standardised reward."""
    weight = head.w.double() / head.scale.double()
    return weight.float(), float(head.b - (weight * head.mean.double()).sum())


def fold_into(model: PreTrainedModel, head: HeadModel) -> float:
    """Write the head into the model's score layer; return the constant left out (0 when the layer has a bias)."""
    layer = score_layer(model)
    weight, constant = folded_score(head)
    if layer.weight.shape != (1, weight.numel()):
        raise ModelError(
            f"head width {weight.numel()} does not match the score layer {tuple(layer.weight.shape)} "
            f"of {model.config.name_or_path!r}: was the head trained on this backbone's features?"
        )
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight)[None])
        if layer.bias is not None:
            layer.bias.fill_(constant)
            return 0.0
    return constant


def _pin_tokenizer_sides(folder: Path, truncation_side: str) -> None:
    """Write truncation and padding sides into tokenizer_config.json (transformers 5 does not save them itself)."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(truncation_side=truncation_side, padding_side="right")
    path.write_text(json.dumps(config, indent=2) + "\n")


def model_card(meta: dict[str, Any]) -> str:
    """README.md text of an exported reward model from its metadata."""
    head, cfg = meta.get("head", {}), meta["model"]
    lines = [
        f"# Reward model `{meta.get('key', head.get('scheme', 'head'))}` (exported by the MORE workbook)",
        "",
        f"Backbone `{cfg['name']}` (frozen) with a linear reward head trained by the workbook's feature tier "
        f"(scheme `{head.get('scheme')}`, seed {head.get('seed')}); an ordinary "
        "`AutoModelForSequenceClassification` with one logit = the reward r(prompt + response).",
        "",
        "## How to score (reproduces the workbook)",
        "",
        f"- text = prompt + response as one string; at most {cfg['max_length']} tokens, truncated on the "
        f"**{cfg['truncation_side']}** (saved in the tokenizer: `truncation_side`, `model_max_length`; call the "
        "tokenizer with `truncation=True`).",
        "- pad on the right (saved as the tokenizer's `padding_side`); the reward is read at the last real token.",
        f"- reward = logit + `reward_offset` ({meta['reward_offset']:.6g}, in config.json); the offset cancels in "
        "every reward difference, so pairwise use needs nothing.",
        "",
        "## Training",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in head.items() if k not in ("scheme", "seed")]
    lines += [f"- sources (λ order): {', '.join(meta.get('sources', [])) or 'unknown'}"]
    if meta.get("final_lam") is not None:
        lines += [f"- final λ: {', '.join(f'{x:.4f}' for x in meta['final_lam'])}"]
    for title, field in (("Data counts", "data_counts"), ("Test metrics", "metrics")):
        if meta.get(field):
            lines += ["", f"## {title}", "", "```", json.dumps(meta[field], indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def _model_meta(model_cfg: Any) -> dict[str, Any]:
    """The exported folder's tokenizer settings: backbone name, max length, truncation side, right padding."""
    return {
        "name": model_cfg.name,
        "max_length": model_cfg.max_length,
        "truncation_side": model_cfg.truncation_side,
        "padding_side": "right",
    }


def _write_folder(model: Any, tok: Any, folder: Path, model_cfg: Any, meta: dict[str, Any], card: str) -> Path:
    """Save model + tokenizer (the profile's truncation, right padding), `morelib_export.json` and the model card."""
    tok.truncation_side, tok.model_max_length, tok.padding_side = (
        model_cfg.truncation_side,
        model_cfg.max_length,
        "right",
    )
    save_reward_model(model, tok, folder)
    _pin_tokenizer_sides(folder, model_cfg.truncation_side)
    (folder / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (folder / "README.md").write_text(card)
    return folder


def export_head(head: HeadModel, model_cfg: Any, folder: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Save backbone + folded head as an HF reward-model folder with tokenizer and model card; returns the folder.

    `info` adds to the card and `morelib_export.json`: key, data_counts, metrics (any JSON-able values).
    """
    folder = Path(folder)
    model, tok = load_reward_model(model_cfg.name, dtype="fp32", padding_side="right", device="cpu")
    offset = fold_into(model, head)
    model.config.reward_offset = offset
    lam = head.history.get("lam")
    meta = {
        "model": _model_meta(model_cfg),
        "head": dict(head.meta),
        "sources": list(head.history.get("source_names", [])),
        "final_lam": lam[-1].tolist() if lam is not None and len(lam) else None,
        "reward_offset": offset,
        **(info or {}),
    }
    return _write_folder(model, tok, folder, model_cfg, meta, model_card(meta))


def blocks_card(meta: dict[str, Any]) -> str:
    """README.md text of an exported blocks-tier reward model from its metadata."""
    fit, cfg = meta["fit"], meta["model"]
    lines = [
        f"# Reward model `{meta.get('key', fit.get('scheme'))}` (exported by the MORE workbook, blocks tier)",
        "",
        f"Backbone `{cfg['name']}` with its top {fit['k']} transformer block(s), final norm and score layer retrained "
        f"(scheme `{fit.get('scheme')}`, seed {fit.get('seed')}; every lower weight as in the backbone); an ordinary "
        "`AutoModelForSequenceClassification` with one logit = the reward r(prompt + response).",
        "",
        f"Score prompt + response as one string, at most {cfg['max_length']} tokens cut on the "
        f"**{cfg['truncation_side']}**, padded on the right (both saved in the tokenizer; call it with "
        "`truncation=True`).",
        "",
        "## Training",
        "",
        *[f"- {k}: {v}" for k, v in fit.items() if k not in ("scheme", "seed")],
        f"- sources (λ order): {', '.join(meta.get('sources', [])) or 'unknown'}",
    ]
    return "\n".join(lines) + "\n"


def export_blocks(rm: BlocksRM, model_cfg: Any, folder: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Save the backbone with the RM's retrained top blocks, norm and score layer as an HF reward-model folder."""
    folder = Path(folder)
    model, tok = load_reward_model(model_cfg.name, dtype="fp32", padding_side="right", device="cpu")
    merge_into(rm.top, model)
    meta = {
        "model": _model_meta(model_cfg),
        "fit": dict(rm.meta),
        "sources": list(rm.history.get("source_names", [])),
        "final_lam": rm.history["lam_final"].tolist() if "lam_final" in rm.history else None,
        **(info or {}),
    }
    return _write_folder(model, tok, folder, model_cfg, meta, blocks_card(meta))


def evaluated_files(run_dir: Path) -> set[str] | None:
    """Head files (paths under the run) the run's own notebooks used, from their manifests' `head_files`; None when no
    manifest lists any (a run made before manifests did)."""
    files: set[str] = set()
    listed = False
    for manifest in sorted(run_dir.glob(f"*/{MANIFEST}")):  # <run>/<notebook>/: not interactive-*/ reruns
        data = json.loads(manifest.read_text())
        listed |= "head_files" in data
        files |= set(data.get("head_files", []))
    return files if listed else None


def run_heads(run_dir: Path) -> tuple[Any, dict[RMKey, Path]]:
    """(config, {key: head file}) of the RMs a run's notebooks fitted and evaluated under its config.yaml.

    A head file a notebook's manifest does not list (left by an attempt that was killed, or by a rerun with other
    settings) is not offered."""
    if not (run_dir / runs.CONFIG_FILE).is_file():
        raise RunError(f"{run_dir} is not a run folder (no {runs.CONFIG_FILE})")
    cfg = load_config(run_dir / runs.CONFIG_FILE)
    folder = run_dir / "heads" / pipeline.fingerprint(cfg)
    files = sorted(folder.glob("*.pt")) if folder.is_dir() else []
    used = evaluated_files(run_dir)
    if used is not None:
        files = [p for p in files if str(p.relative_to(run_dir)) in used]
    return cfg, {RMKey.parse(unquote(p.name[:-3])): p for p in files}


def check_destination(out_dir: Path, force: bool) -> None:
    """RunError for a destination that exists and is not an empty folder, unless `force`."""
    if out_dir.exists() and not out_dir.is_dir():
        raise RunError(f"destination {out_dir} is a file, not a folder")
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if entries and not force:
        shown = ", ".join(entries[:5]) + (", …" if len(entries) > 5 else "")
        raise RunError(
            f"destination {out_dir.resolve()} is not empty ({len(entries)} entries: {shown}); the export would "
            "overwrite its README.md, config.json and weights: choose a new or empty folder, or pass --force"
        )


def _data_counts(run_dir: Path) -> dict[str, Any] | None:
    """Data counts recorded by the run's first notebook manifest that has them."""
    for manifest in sorted(run_dir.glob("*/manifest.json")):
        data = json.loads(manifest.read_text()).get("data")
        if data:
            return data
    return None


def test_metrics(cfg: Any, run_dir: Path, key: RMKey, head: HeadModel) -> list[dict[str, Any]]:
    """Accuracy and ECE (10 bins) of the head on each test source of the run's data (features from the cache)."""
    data = pipeline.prepare(cfg, runs.Run(root=run_dir, notebook="export", cfg=cfg))
    table = pipeline.metric_table({key: HeadRM(head)}, data, cfg)
    return table[["test_source", "n", "accuracy", "ece_10", "brier", "log_loss"]].round(4).to_dict("records")


def main(argv: list[str] | None = None) -> int:
    """CLI: python -m morelib.cli.export RUN_DIR KEY OUT_DIR [--force] (lists the run's keys when KEY is missing or
    unknown; a non-empty OUT_DIR is refused without --force)."""
    parser = argparse.ArgumentParser(prog="python -m morelib.cli.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("key", nargs="?", help="RM key as the run names it (reward_models.RMKey), e.g. more/seed0")
    parser.add_argument("out_dir", nargs="?", type=Path)
    parser.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR (files are replaced)")
    args = parser.parse_args(argv)
    try:
        cfg, heads = run_heads(args.run_dir)
        key = next((k for k in heads if str(k) == args.key), None)
        if key is None or args.out_dir is None:
            listed = (
                "\n  ".join(map(str, heads))
                or "(none that a finished notebook of this run evaluated: run notebook 02 first)"
            )
            print(
                f"{'unknown key ' + repr(args.key) if args.key else 'no key given'}; RMs of {args.run_dir}:\n  "
                f"{listed}\nusage: python -m morelib.cli.export RUN_DIR KEY OUT_DIR [--force]",
                file=sys.stderr,
            )
            return 2
        check_destination(args.out_dir, args.force)
        head = HeadModel.load(heads[key])
        out = export_head(
            head,
            cfg.model,
            args.out_dir,
            {
                "key": str(key),
                "run": str(args.run_dir.resolve()),
                "data_counts": _data_counts(args.run_dir),
                "metrics": test_metrics(cfg, args.run_dir, key, head),
            },
        )
    except MoreError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
