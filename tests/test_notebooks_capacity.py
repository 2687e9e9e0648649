"""The capacity ladder in CI (issue 23): `./run_all.sh --profile tiny-capacity` runs every notebook (01–07) on the tiny
random model into a temporary folder, and notebook 07's tables name the linear, mlp and blocks tiers with numbers
that hold together (finite CIs over 3 seeds, the floor beside every ECE row, trainable parameters growing up the
ladder)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("0[0-9]_*.ipynb"))
TIERS = ["linear", "mlp", "blocks"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_all_profile):
    return run_all_profile(tmp_path_factory.mktemp("capacity-outputs"), "tiny-capacity", 900)


def test_every_notebook_finished_on_tiny_capacity(run):
    assert len(NOTEBOOKS) == 7
    for name in NOTEBOOKS:
        assert (run / name / ".done").exists() and (run / name / "metrics.json").exists(), name
        assert json.loads((run / name / "manifest.json").read_text())["profile"] == "tiny-capacity"
    assert "blocks" in (ROOT / "params" / "tiny-capacity.yaml").read_text()


def test_capacity_tables_name_every_tier(run):
    pooled = pd.read_csv(run / "07_capacity" / "tables" / "pooled.csv")
    assert sorted(pooled["tier"].unique()) == sorted(TIERS)
    assert set(pooled.loc[pooled["tier"] == "blocks", "B"]) == {4}
    assert set(pooled.loc[pooled["tier"] != "blocks", "B"]) == {4, 8}
    seconds = pd.read_csv(run / "07_capacity" / "tables" / "fit_seconds.csv")
    assert sorted(seconds["tier"].unique()) == sorted(TIERS)
    saved = sorted(p.relative_to(run).as_posix() for p in run.glob("heads/blocks-*/*.pt"))
    assert len(saved) == 3 * 3, "the blocks rung's RMs (multitask, more, tuned × 3 seeds) are saved in the run"
    listed = json.loads((run / "07_capacity" / "manifest.json").read_text())["head_files"]
    assert set(saved) <= set(listed), "07's manifest lists the blocks RMs it evaluated"
    metrics = json.loads((run / "07_capacity" / "metrics.json").read_text())
    assert {r["tier"] for r in metrics["pooled"]} == set(TIERS)
    assert metrics["finding"]


def test_capacity_numbers_are_consistent(run):
    pooled = pd.read_csv(run / "07_capacity" / "tables" / "pooled.csv")
    params = pooled.groupby("tier")["params"].first()
    assert params["linear"] < params["mlp"] < params["blocks"]
    assert set(pooled["scheme"]) == {"more", "tuned"} and set(pooled["n_seeds"]) == {3}
    assert np.all(np.isfinite(pooled[["diff", "lo", "hi", "se", "mde"]].to_numpy()))
    assert np.all(pooled["lo"] <= pooled["hi"]) and np.all(pooled["mde"] > 0)
    ece = pooled[pooled["metric"].str.startswith("ece")]
    assert len(ece) and np.all(ece["floor"] > 0)
