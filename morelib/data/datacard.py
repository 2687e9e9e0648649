"""Data card: pairs per source and split beside the paper's Table 4 (App. A), drops, and token lengths vs max length.

The paper's sizes come from `paper.table4()` (the transcribed `table4_datasets.csv`, one source-matching rule); nothing
here types a paper number in. `tables.data_card` binds these rows to a run (tokenizer, missing sources). Token lengths
use any tokenizer callable (text → sequence of tokens), e.g. `lambda s: tok(s)["input_ids"]`; tests use `str.split`.
Checked by tests against counts computed by hand on small inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from morelib.core.errors import DataError
from morelib.data import paper
from morelib.data.sources import Pair

QUANTILES = (0.5, 0.9, 0.99)


def token_lengths(pairs: Sequence[Pair], tokenizer: Callable[[str], Sequence[Any]]) -> np.ndarray:
    """Token counts [2N] of every prompt+chosen and prompt+rejected sequence."""
    return np.array([len(tokenizer(p.prompt + r)) for p in pairs for r in (p.chosen, p.rejected)], dtype=np.int64)


def length_stats(pairs: Sequence[Pair], tokenizer: Callable[[str], Sequence[Any]], max_length: int) -> dict[str, float]:
    """Share of pairs with a sequence over `max_length` tokens (would be truncated) and length quantiles."""
    if not pairs:
        raise DataError("length_stats needs at least one pair")
    lengths = token_lengths(pairs, tokenizer).reshape(-1, 2)
    stats = {"truncated_share": float((lengths.max(axis=1) > max_length).mean())}
    stats.update({f"len_p{round(q * 100)}": float(np.quantile(lengths, q)) for q in QUANTILES})
    stats["len_max"] = float(lengths.max())
    return stats


def source_rows(
    splits: Mapping[str, Mapping[str, Sequence[Pair]]],
    labels: Mapping[str, str] | None = None,
    table4: pd.DataFrame | None = None,
    tokenizer: Callable[[str], Sequence[Any]] | None = None,
    max_length: int | None = None,
    reports: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """The data card's rows, one per source: pairs per split, the paper's Table 4 sizes, drops, and (with a tokenizer)
    length stats.

    `splits` is {source: {"train"|"calib"|"test": pairs}}; `labels` {source: display label}; `table4` a frame shaped
    like `paper.table4()` (default: read it); `reports` {source: SplitReport} adds the pairs each side held before
    caps ("train/calib/test") and the loaded/dropped summary.
    """
    ref_table = paper.table4() if table4 is None else table4
    rows = []
    for name, sides in splits.items():
        label = (labels or {}).get(name, name)
        row: dict[str, Any] = {"source": name, "label": label, **{s: len(p) for s, p in sides.items()}}
        ref = ref_table.loc[name] if name in ref_table.index else None
        row["paper_dataset"] = None if ref is None else ref["dataset"]
        row["paper_train"] = None if ref is None else int(ref["train_pairs"])
        row["paper_test"] = None if ref is None else int(ref["test_pairs"])
        if reports and name in reports:
            row["available"] = _available(reports[name])
            row["drops"] = _drop_summary(reports[name])
        if tokenizer is not None and max_length is not None:
            row.update(length_stats([p for ps in sides.values() for p in ps], tokenizer, max_length))
        rows.append(row)
    return pd.DataFrame(rows)


def _available(report: Any) -> str:
    """'train/calib/test' pairs a side held before the configured caps ('' when the report has none)."""
    sides = getattr(report, "available", None) or {}
    return "/".join(str(sides[s]) for s in ("train", "calib", "test") if s in sides)


def _drop_summary(report: Any) -> str:
    """'file: reason k, ...' from a SplitReport's drops ('none' when nothing was dropped)."""
    parts = [f"{src}: {reason} {k}" for src, d in report.drops.items() for reason, k in d["dropped"].items()]
    return "; ".join(parts) or "none"
