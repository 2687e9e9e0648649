"""The paper's reported numbers (Zeng et al. 2023, Tables 1/2/3/4/5/6), read from the transcribed CSVs for
side-by-side tables.

The CSVs live in `$MORE_PAPER_DIR`, else `../shared/paper` beside the repository (see its README). Nothing here types
a number in: every paper value comes from those files, so a notebook's "paper vs ours" table cannot drift from them.
Checked by reading each file and its columns in tests/test_study.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from morelib.core.config import PARAMS_DIR
from morelib.core.errors import DataError

FILES = {
    "table3": "table3_rm_accuracy_ece.csv",
    "outliers": "table_outliers_hh.csv",
    "table4": "table4_datasets.csv",
    "table2": "table2_rjs_alignment.csv",
}
SCHEME_NAMES = {"Raw": "raw", "Top": "top", "Single": "top", "MultiTask": "multitask", "MORE": "more"}


def paper_dir() -> Path:
    """Folder of the paper CSVs: $MORE_PAPER_DIR, else ../shared/paper beside the repository."""
    env = os.environ.get("MORE_PAPER_DIR")
    return Path(env) if env else PARAMS_DIR.parents[1] / "shared" / "paper"


def read(table: str) -> pd.DataFrame:
    """One paper table by key (table2, table3, table4, outliers) as a DataFrame."""
    if table not in FILES:
        raise DataError(f"unknown paper table '{table}' (valid: {', '.join(FILES)})")
    path = paper_dir() / FILES[table]
    if not path.exists():
        raise DataError(f"paper table {path} not found; set MORE_PAPER_DIR to the folder holding {FILES[table]}")
    return pd.read_csv(path)


def _rows(table: str, base_model: str) -> pd.DataFrame:
    """The rows of paper table `table` for one base model, schemes renamed to ours; DataError when there are none."""
    df = read(table)
    df = df[df["base_model"] == base_model].copy()
    if df.empty:
        raise DataError(f"no {table} rows for base model '{base_model}'")
    df["scheme"] = df["scheme"].map(SCHEME_NAMES)
    return df


def table3(base_model: str = "Pythia-1.4B") -> pd.DataFrame:
    """Paper Table 3 for one base model: accuracy (fraction, not %) per test source and ECE, one row per scheme."""
    df = _rows("table3", base_model)
    acc_cols = [c for c in df.columns if c not in ("base_model", "train_data", "scheme", "ece")]
    df[acc_cols] = df[acc_cols] / 100.0
    return df.set_index("scheme")[acc_cols + ["ece"]]


def outliers(base_model: str = "Pythia-1.4B") -> pd.DataFrame:
    """Paper Tables 1/5/6 for one base model: ECE and outlier counts/means per preference (Helpful/Harmless) and
    scheme."""
    df = _rows("outliers", base_model)
    df["test_source"] = df["preference"].str.lower()
    return df.drop(columns=["base_model", "preference"]).set_index(["test_source", "scheme"])


def table4() -> pd.DataFrame:
    """Paper Table 4 (App. A): train/test pairs per dataset, indexed by the workbook's source name — the dataset
    name's last word, lower-cased ("Anthropic Helpful" → helpful, "OpenAssistant Oasst1" → oasst1): the one rule that
    matches a source to the paper."""
    df = read("table4")
    missing = {"dataset", "train_pairs", "test_pairs"} - set(df.columns)
    if missing:
        raise DataError(f"{paper_dir() / FILES['table4']}: missing columns {sorted(missing)}")
    df["source"] = df["dataset"].str.split().str[-1].str.lower()
    return df.set_index("source")[["dataset", "train_pairs", "test_pairs"]]


def side_by_side(
    ours: pd.DataFrame,
    theirs: pd.DataFrame,
    suffixes: tuple[str, str] = ("ours", "paper"),
    ours_only: Sequence[str] = (),
) -> pd.DataFrame:
    """Columns shared by both frames, interleaved as (column, ours)/(column, paper), on the union of their indexes;
    then the `ours_only` columns of `ours` (e.g. an ECE's noise floor, which the paper does not report) as (column,
    ours)."""
    cols = [c for c in ours.columns if c in theirs.columns]
    if not cols:
        raise DataError(f"no shared columns between ours {list(ours.columns)} and paper {list(theirs.columns)}")
    extra = [c for c in ours_only if c in ours.columns]
    joined = pd.concat({suffixes[0]: ours[cols + extra], suffixes[1]: theirs[cols]}, axis=1)
    return joined.swaplevel(0, 1, axis=1)[[(c, s) for c in cols for s in suffixes] + [(c, suffixes[0]) for c in extra]]


def ece_effect(base_model: str = "Pythia-1.4B") -> dict[str, float]:
    """The paper's MORE calibration gain for one base model (Table 3): ECE of MultiTask, of MORE, and effect = their
    gap."""
    t3 = table3(base_model)
    return {
        "multitask": float(t3.loc["multitask", "ece"]),
        "more": float(t3.loc["more", "ece"]),
        "effect": float(t3.loc["multitask", "ece"] - t3.loc["more", "ece"]),
    }


PAPER_ECE = "ece_10"  # the paper's ECE is read as our ECE-10 (as `tables.paper_power` does)


def deltas(a: str, b: str, base_model: str = "Pythia-1.4B", table: str = "table3") -> pd.DataFrame:
    """The paper's scheme `a` − scheme `b` for one base model, tidy (metric, test_source, paper; test_source `pooled`
    = over all sources): `table3` gives accuracy per source, its average (pooled) and the ECE (pooled); `outliers`
    (Tables 1/5/6) the ECE per H&H source and their mean (pooled)."""
    if table == "table3":
        t3 = table3(base_model)
        gap = t3.loc[a] - t3.loc[b]
        rows = [("accuracy", src, gap[src]) for src in t3.columns if src not in ("avg", "ece")]
        rows += [("accuracy", "pooled", gap["avg"]), (PAPER_ECE, "pooled", gap["ece"])]
    elif table == "outliers":
        ece = outliers(base_model)["ece"].unstack("scheme")
        gap = ece[a] - ece[b]
        rows = [(PAPER_ECE, src, v) for src, v in gap.items()] + [(PAPER_ECE, "pooled", gap.mean())]
    else:
        raise DataError(f"paper deltas come from 'table3' or 'outliers', got '{table}'")
    return pd.DataFrame(rows, columns=["metric", "test_source", "paper"]).astype({"paper": float})
