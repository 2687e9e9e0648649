"""The study's own results beside the explorer's refits: ghost markers (seed means of MultiTask, MORE and tuned λ per
test source, from notebook 02's `summary` table) and the `tuned` / `famo` presets (the λ the run's heads trained with).

Everything is read from what the run computed — the `summary` table and heads in memory (notebook 02), else
`<run>/02_more_training/metrics.json` (its `summary` and `baseline_lambdas` parts) — never typed in. What a run does
not have is named in `StudyRefs.missing`, so the UI can say why a preset or marker is absent.
Checked in tests/test_explore.py (marks equal the summary's rows; presets equal the heads' λ; a run folder's
metrics.json gives the same marks).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morelib.core.errors import ConfigError

GHOST_SCHEMES = ("multitask", "more", "tuned")  # the study's results shown as ghost markers, when the run has them
STUDY_PRESETS = ("tuned", "famo")  # presets whose λ comes from the run's heads or metrics
STUDY_NOTEBOOK = "02_more_training"  # the notebook whose metrics.json holds the study's summary


@dataclass(frozen=True)
class StudyRefs:
    """marks[scheme][test_source] = {"accuracy", "ece_<B>" (when the study has it), "seeds"}: the study's seed means;
    presets[name] = λ [K] in the explorer's source order; missing[name] = why a preset or marker is absent."""

    marks: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    presets: dict[str, np.ndarray] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def no_study() -> StudyRefs:
    """The references of an explorer given no study results: every marker and study preset named as missing."""
    why = "no study results given to this explorer (Explorer.from_study reads them from the run)"
    return StudyRefs(missing={name: why for name in (*GHOST_SCHEMES, *STUDY_PRESETS)})


def summary_from_run(root: str | Path) -> pd.DataFrame | None:
    """Notebook 02's summary table of a run folder (`<root>/02_more_training/metrics.json`), None when absent."""
    path = Path(root) / STUDY_NOTEBOOK / "metrics.json"
    if not path.exists():
        return None
    parts = json.loads(path.read_text())
    return pd.DataFrame(parts["summary"]) if "summary" in parts else None


def lambdas_from_run(root: str | Path) -> pd.DataFrame | None:
    """Notebook 02's baseline λ table (rm, scheme, seed, source, lambda) of a run folder, None when absent."""
    path = Path(root) / STUDY_NOTEBOOK / "metrics.json"
    parts = json.loads(path.read_text()) if path.exists() else {}
    return pd.DataFrame(parts["baseline_lambdas"]) if parts.get("baseline_lambdas") else None


def marks_from_summary(summary: pd.DataFrame | None, ece_key: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(marks, missing): the seed means of GHOST_SCHEMES per test source from a `tables.summary` table."""
    if summary is None or summary.empty:
        return {}, {s: "no study results in this run (notebook 02 has not run)" for s in GHOST_SCHEMES}
    marks, missing = {}, {}
    for scheme in GHOST_SCHEMES:
        rows = summary[summary["scheme"] == scheme]
        if rows.empty:
            missing[scheme] = f"the study has no '{scheme}' rows"
            continue
        keys = ["accuracy", *([ece_key] if ece_key in rows else [])]
        marks[scheme] = {
            str(r["test_source"]): {**{k: float(r[k]) for k in keys}, "seeds": float(r.get("seeds", np.nan))}
            for _, r in rows.iterrows()
        }
    return marks, missing


def _ordered(lam: Mapping[str, float], names: Sequence[str], what: str) -> np.ndarray:
    """λ [K] in `names` order, renormalised; ConfigError when the sources differ."""
    if sorted(lam) != sorted(names):
        raise ConfigError(f"the study's {what} λ names sources {sorted(lam)}, the explorer has {sorted(names)}")
    v = np.array([float(lam[n]) for n in names])
    return v / v.sum()


def presets_from_heads(heads: Mapping[Any, Any] | None, names: Sequence[str], seed: int) -> dict[str, np.ndarray]:
    """tuned (its grid λ, `meta["lam"]`) and famo (its last-epoch λ, `history["lam_final"]`) of the heads of `seed`."""
    out = {}
    for key, head in (heads or {}).items():
        if key.seed != seed or key.scheme not in STUDY_PRESETS:
            continue
        lam = head.meta.get("lam") if key.scheme == "tuned" else head.history.get("lam_final")
        if lam is not None:
            values = np.asarray(lam.detach() if hasattr(lam, "detach") else lam, dtype=np.float64)
            out[key.scheme] = _ordered(dict(zip(head.history["source_names"], values)), names, key.scheme)
    return out


def presets_from_lambdas(table: pd.DataFrame | None, names: Sequence[str], seed: int) -> dict[str, np.ndarray]:
    """tuned λ of `seed` from a `tables.chosen_lambdas` table (famo's λ is not in it)."""
    if table is None or table.empty:
        return {}
    rows = table[(table["scheme"] == "tuned") & (table["seed"] == seed)]
    return {"tuned": _ordered(dict(zip(rows["source"], rows["lambda"])), names, "tuned")} if len(rows) else {}


def study_refs(
    names: Sequence[str],
    ece_key: str,
    seed: int,
    summary: pd.DataFrame | None = None,
    heads: Mapping[Any, Any] | None = None,
    root: str | Path | None = None,
) -> StudyRefs:
    """The study's marks and presets: from `summary` / `heads` when given, else from the run folder `root`."""
    if summary is None and root is not None:
        summary = summary_from_run(root)
    marks, missing = marks_from_summary(summary, ece_key)
    presets = presets_from_heads(heads, names, seed)
    if "tuned" not in presets and root is not None:
        presets |= presets_from_lambdas(lambdas_from_run(root), names, seed)
    for name in STUDY_PRESETS:
        if name not in presets:
            missing[name] = f"this run has no {name} head of seed {seed} (notebook 02 fits it on the feature tier)"
    return StudyRefs(marks, presets, missing)
