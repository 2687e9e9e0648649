"""Notebook 05 runs under papermill on the tiny profile into a temporary run folder (fitting its own heads, since the
folder has none from notebook 02) and writes Table 2 beside the paper's, judge reliability and W/T/L with sane values.
Its thinness is checked with the other notebooks' in tests/test_notebooks.py; a rerun against the finished run writes
only under its interactive-* folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
papermill = pytest.importorskip("papermill")
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_alignment.ipynb"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("nb05")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        overrides = json.dumps({"output_root": str(tmp_path / "outputs")})
        papermill.execute_notebook(
            str(NOTEBOOK),
            str(tmp_path / "out.ipynb"),
            cwd=str(REPO / "notebooks"),
            parameters={"profile": "tiny", "run_dir": str(tmp_path / "run"), "overrides": overrides},
            progress_bar=False,
        )
    return tmp_path / "run"


def test_notebook05_runs_on_tiny(run_dir):
    out = run_dir / "05_alignment"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"rm", "perplexity", "pick_agreement", "judge_reliability", "win_tie_lose", "finding"}
    assert 0.0 <= metrics["pick_agreement"] <= 1.0
    for rel in metrics["judge_reliability"].values():
        assert rel["win"] + rel["tie"] + rel["lose"] == rel["n"] > 0
    for wtl in metrics["win_tie_lose"].values():
        assert wtl["win"] + wtl["tie"] + wtl["lose"] == wtl["n"] == 3
        assert wtl["net_lo"] <= wtl["net"] <= wtl["net_hi"]
    assert "chance" in metrics["finding"] or "agreed" in metrics["finding"]
    side = pd.read_csv(out / "tables" / "table2_vs_paper.csv")
    assert set(side["who"]) == {"paper (Alpaca-7B policy)", "ours"}
    ours = side[side["who"] == "ours"]
    assert len(ours) == 3 and (ours[["ppl_helpful", "ppl_harmless"]] > 1).all().all()
    assert (run_dir / "heads").is_dir() and any((run_dir / "heads").rglob("*.pt"))
    assert not list((out / "policies").glob("*/*.safetensors")), "rjs.keep_policies is false: policies are deleted"
    assert (out / "figures" / "win_tie_lose.html").exists()
    bon = pd.read_csv(out / "tables" / "best_of_n.csv")
    assert set(bon["selector"]) == {"multitask", "more", "single:helpful", "single:harmless", "random"}
    assert set(bon["n"]) == {1, 2} and (bon["prompts"] == 2).all()
    assert (bon[bon["n"] == 1]["win"] == 0.5).all()  # n = 1 is sample 0 for every selector: all ties
    assert ((bon["win_lo"] <= bon["win"]) & (bon["win"] <= bon["win_hi"])).all()
    assert (out / "figures" / "best_of_n.html").exists() and "Best of 2" in metrics["finding"]


def test_rerun_of_05_leaves_the_finished_run_untouched(run_dir, rerun_untouched, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = rerun_untouched("05_alignment", run_dir, "default")  # the default stands for the run's own profile
    assert json.loads((folder / "manifest.json").read_text())["profile"] == "tiny"
    assert not list((folder.parent / "heads").rglob("*.pt")), "the run's RMs are reused, none refitted"
