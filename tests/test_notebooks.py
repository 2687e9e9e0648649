"""Notebooks 01–04, 06 and 07 run top to bottom under papermill on the tiny profile into one temporary run folder, write
their metrics/tables/figures and reuse earlier RMs (05 runs in tests/test_notebook05.py); all seven (01–07) stay thin
(stored without outputs, parameters cell first, no def/class/loops) and each .ipynb is in sync with its jupytext
percent-format .py twin, also after a save through JupyterLab's contents manager."""

import ast
import importlib.util
import json
import shutil
from pathlib import Path

import jupytext
import nbformat
import numpy as np
import pandas as pd
import pytest

papermill = pytest.importorskip("papermill")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = [
    "01_diversity",
    "02_more_training",
    "03_hh_analysis",
    "04_k_ablation",
    "06_when_more_helps",
    "07_capacity",
]
SYNTHETIC_ONLY = "06_when_more_helps"  # reads no real data
ALL_NOTEBOOKS = sorted([*NOTEBOOKS, "05_alignment"])  # every notebook the builder writes


def test_every_notebook_is_a_pair():
    assert sorted(p.stem for p in NB_DIR.glob("0[0-9]_*.ipynb")) == ALL_NOTEBOOKS
    assert sorted(p.stem for p in NB_DIR.glob("0[0-9]_*.py")) == ALL_NOTEBOOKS
    assert not list(NB_DIR.glob("build_*.py")), "notebooks are edited as text pairs, not generated"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_stored_without_outputs_and_thin(name):
    nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert ["parameters" in c.metadata.get("tags", []) for c in code] == [True] + [False] * (len(code) - 1)
    for cell in code:
        assert not cell.outputs and cell.execution_count is None, "notebooks are stored without outputs"
        tree = ast.parse(cell.source)
        banned = [
            type(n).__name__
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While))
        ]
        assert not banned, f"{name}: logic belongs in morelib, found {banned} in:\n{cell.source}"
        assert 'save_json("metrics"' not in cell.source, f"{name}: write metrics.json with run.save_metrics"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    run = root / "tiny-test-run"
    overrides = json.dumps({"output_root": str(root)})
    heads = {}
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for name in NOTEBOOKS:
            (run / name).mkdir(parents=True)
            papermill.execute_notebook(
                str(NB_DIR / f"{name}.ipynb"),
                str(run / name / f"{name}.ipynb"),
                cwd=str(NB_DIR),
                progress_bar=False,
                kernel_name="python3",
                parameters={"profile": "tiny", "run_dir": str(run), "overrides": overrides},
            )
            heads[name] = sorted(p.name for p in (run / "heads").rglob("*.pt"))
    return run, heads


def _metrics(run: Path, name: str) -> dict:
    return json.loads((run / name / "metrics.json").read_text())


def test_every_notebook_wrote_its_outputs(run_dir):
    run, _ = run_dir
    for name in NOTEBOOKS:
        folder = run / name
        for needed in ("metrics.json", "manifest.json", f"{name}.ipynb", "tables/timings.csv"):
            assert (folder / needed).exists(), f"{name} did not write {needed}"
        assert list((folder / "figures").glob("*.html")) and (folder / "figures" / "plotly.min.js").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["profile"] == "tiny" and (name == SYNTHETIC_ONLY or manifest["data"]["counts"])


def test_every_html_figure_has_png_and_svg_beside_it(run_dir):
    if importlib.util.find_spec("kaleido") is None:
        pytest.skip("kaleido (plotly's static renderer) is not installed: pip install kaleido")
    if not any(shutil.which(b) for b in ("chromium", "google-chrome", "chrome")):
        pytest.skip("no Chrome/Chromium on PATH for kaleido (Debian: apt-get install chromium)")
    run, _ = run_dir
    html = sorted(run.glob("*/figures/*.html"))
    missing = [str(h.relative_to(run)) for h in html for fmt in (".png", ".svg") if not h.with_suffix(fmt).exists()]
    assert html and not missing, f"no static twin for {missing}"
    assert all(h.with_suffix(".png").read_bytes()[:4] == b"\x89PNG" for h in html)


def test_metric_keys_and_ranges(run_dir):
    run, _ = run_dir
    m1 = _metrics(run, "01_diversity")
    acc = pd.DataFrame(m1["accuracy_matrix"])
    assert acc.shape[1] == 4 and ((acc >= 0) & (acc <= 1)).all().all() and m1["finding"]
    m2 = _metrics(run, "02_more_training")
    summary = pd.DataFrame(m2["summary"])
    assert {"raw", "top", "multitask", "more", "more+T"} <= set(summary["scheme"])
    for col in ("accuracy", "ece_5", "ece_10", "ece_20", "ace_10", "mce_10"):
        assert summary[col].between(0, 1).all(), col
    assert {"diff", "lo", "hi"} <= set(pd.DataFrame(m2["more_vs_multitask"]).columns)
    for col in ("ece_10_floor", "ece_10_floor_p95", "ece_10_excess", "ece_10_debiased", "ece_5_floor", "ece_20_excess"):
        assert summary[col].notna().all(), col
    assert (summary["ece_10_floor"] < summary["ece_10_floor_p95"]).all()
    pooled = pd.DataFrame(m2["pooled_more_vs_multitask"]).set_index("metric")
    assert pooled.loc["ece_10", "lo"] <= pooled.loc["ece_10", "diff"] <= pooled.loc["ece_10", "hi"]
    assert pooled.loc["ece_10", "mde"] > 0 and "0.0177" in m2["power"] and "Pythia-2.8B" in m2["power"]
    power = pd.DataFrame(m2["power_vs_paper_gaps"])
    assert len(power) == 3 and power["power"].between(0, 1).all() and np.isfinite(power["attenuation"]).all()
    assert pd.DataFrame(m2["synthetic"])["cosine_to_r_star"].between(-1, 1).all()
    assert len(m2["findings"]) == 3 and all(m2["findings"])
    assert {"multitask+L", "more+L"} <= set(m2["table3_length_calibrated"]["avg"])
    length_vs = pd.DataFrame(m2["length_calibration"])
    assert (
        set(length_vs["metric"]) == {"accuracy", "ece_10", "rm_prefers_longer"}
        and length_vs["after_floor"].notna().any()
    )
    split = pd.DataFrame(m2["length_split"])
    assert (split["vs_longer_lo"] <= split["vs_longer_hi"]).all() and len(m2["length_findings"]) == 6
    m3 = _metrics(run, "03_hh_analysis")
    outliers = pd.DataFrame(m3["outliers"])
    assert set(outliers["test_source"]) == {"helpful", "harmless"} and (outliers["pos_outlier_count"] >= 0).all()
    counts = pd.DataFrame(m3["outlier_counts"])
    assert (counts["pos_outlier_count"] == counts["pos_outlier_count"].round()).all() and "seeds" in m3["findings"][0]
    m4 = _metrics(run, "04_k_ablation")
    ks = pd.DataFrame(m4["k_ablation"])
    assert sorted(ks["K"].unique()) == [2, 3, 4] and any("webgpt" in s for s in m4["skipped"])
    trend = pd.DataFrame(m4["k_trend"])
    assert list(trend["contrast"]) == ["K trend", "K trend", "vs Single-Top"] and (trend["lo"] <= trend["hi"]).all()
    assert "ece_10_floor" in ks.columns


def test_baselines_k2_degeneracy_and_when_more_helps(run_dir):
    run, _ = run_dir
    m2 = _metrics(run, "02_more_training")
    assert {"sizeprop", "tuned", "famo"} <= set(m2["table3"]["avg"]) and len(m2["baseline_findings"]) == 3
    lambdas = pd.DataFrame(m2["baseline_lambdas"])
    assert np.allclose(lambdas.groupby("rm")["lambda"].sum(), 1.0)
    k2 = json.loads((run / "04_k_ablation" / "k2_degeneracy.json").read_text())
    assert k2["lambda_l2"] and max(r["max_dev_uniform"] for r in k2["lambda_l2"]) < 1e-5
    assert {r["scheme"] for r in k2["k_ablation_l2_vs_lossplus"]} == {"multitask", "more", "more[loss+]"}
    assert "(½, ½)" in k2["finding"]
    m6 = _metrics(run, "06_when_more_helps")
    diffs = pd.DataFrame(m6["vs_multitask"])
    assert diffs["scenario"].nunique() >= 4 and (diffs["lo"] <= diffs["diff"] + 1e-12).all()
    assert (diffs["diff"] <= diffs["hi"] + 1e-12).all() and {"more", "sizeprop", "tuned", "famo"} <= set(
        diffs["scheme"]
    )
    assert "MORE − MultiTask over" in m6["finding"]


def test_capacity_curve_names_both_tiers_and_batch_sizes(run_dir):
    run, _ = run_dir
    m7 = _metrics(run, "07_capacity")
    pooled = pd.DataFrame(m7["pooled"])
    assert set(pooled["tier"]) == {"linear", "mlp"} and set(pooled["B"]) == {4, 8}
    assert set(pooled["scheme"]) == {"more", "tuned"} and set(pooled["metric"]) == {"ece_10", "accuracy"}
    assert ((pooled["lo"] <= pooled["diff"] + 1e-12) & (pooled["diff"] <= pooled["hi"] + 1e-12)).all()
    params = pooled.groupby("tier")["params"].first()
    assert params["mlp"] > params["linear"] > 0 and (pooled["mde"] >= 0).all() and (pooled["mde"] > 0).any()
    assert pooled.loc[pooled["metric"] == "ece_10", "floor"].between(0, 1).all()
    per_source = pd.DataFrame(m7["per_source"])
    assert (per_source["p_holm"] >= per_source["p_value"] - 1e-12).all() and per_source["test_source"].nunique() == 4
    tilt = pd.DataFrame(m7["lambda_tilt"])
    assert set(tilt["tier"]) == {"linear", "mlp"} and tilt["same_sign"].isin([-1, 0, 1]).all()
    lambdas = pd.DataFrame(m7["lambdas"])
    assert np.allclose(lambdas.groupby(["tier", "B", "seed"])["lambda_mean"].sum(), 1.0)
    assert m7["finding"].startswith(("MORE's calibration advantage appears", "At no rung measured here"))
    assert (run / "07_capacity" / "figures" / "capacity_curve.html").exists()


def test_later_notebooks_reuse_earlier_heads(run_dir):
    _, heads = run_dir
    assert set(heads["01_diversity"]) <= set(heads["02_more_training"])
    assert heads["03_hh_analysis"] == heads["02_more_training"], "03 must reuse 02's RMs, not train new ones"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_ipynb_and_py_twins_are_in_sync(name):
    text = jupytext.read(NB_DIR / f"{name}.py")
    stored = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in text.cells] == [(c.cell_type, c.source) for c in stored.cells], (
        f"{name}.py and {name}.ipynb differ: run `jupytext --sync notebooks/{name}.py`"
    )
    assert "parameters" in text.cells[[c.cell_type for c in text.cells].index("code")].metadata.get("tags", [])


def test_a_jupyterlab_save_updates_both_twins(tmp_path):
    """JupyterLab saves through jupytext's contents manager: an edited cell lands in the .ipynb AND the .py twin."""
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from jupytext.sync_contentsmanager import build_sync_jupytext_contents_manager_class

    for suffix in (".ipynb", ".py"):
        (tmp_path / f"02_more_training{suffix}").write_bytes((NB_DIR / f"02_more_training{suffix}").read_bytes())
    (tmp_path / "jupytext.toml").write_bytes((NB_DIR.parent / "jupytext.toml").read_bytes())
    manager = build_sync_jupytext_contents_manager_class(FileContentsManager)(root_dir=str(tmp_path))
    model = manager.get("02_more_training.ipynb")
    model["content"].cells[-1].source += "\n# edited in JupyterLab"
    manager.save(model, "02_more_training.ipynb")
    assert "# edited in JupyterLab" in (tmp_path / "02_more_training.py").read_text()
    assert (
        nbformat.read(tmp_path / "02_more_training.ipynb", as_version=4)
        .cells[-1]
        .source.endswith("# edited in JupyterLab")
    )
    (tmp_path / "02_more_training.py").write_text(
        (tmp_path / "02_more_training.py").read_text().replace("# edited in JupyterLab", "# edited as text")
    )
    reread = manager.get("02_more_training.ipynb")["content"]
    assert reread.cells[-1].source.endswith("# edited as text"), "the newer .py twin wins when JupyterLab opens it"


def test_executed_notebooks_show_no_info_log_lines(run_dir):
    run, _ = run_dir
    for name in NOTEBOOKS:
        nb = nbformat.read(run / name / f"{name}.ipynb", as_version=4)
        streams = [
            o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
        ]
        assert not [s for s in streams if "INFO " in s], f"{name} shows INFO log lines"
        assert (run / name / "log.txt").exists()


# how each rerun names its profile: left at the default (stands for the run's own), the run's name, run_all.sh's path
RERUN_PROFILE = {
    "01_diversity": "default",
    "02_more_training": "tiny",
    "03_hh_analysis": "config.yaml",
    "04_k_ablation": "default",
    "06_when_more_helps": "tiny",
    "07_capacity": "default",
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_rerun_against_a_finished_run_leaves_its_files_untouched(run_dir, name, rerun_untouched):
    run, _ = run_dir
    profile = str(run / "config.yaml") if RERUN_PROFILE[name] == "config.yaml" else RERUN_PROFILE[name]
    folder = rerun_untouched(name, run, profile, {"output_root": str(run.parent)} if profile == "tiny" else {})
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (
        manifest["profile"] == "tiny"
        and manifest["config"] == json.loads((run / name / "manifest.json").read_text())["config"]
    )
    if name == "02_more_training":  # same RMs, same numbers
        assert json.loads((folder / "metrics.json").read_text())["summary"] == _metrics(run, name)["summary"]


def test_parameters_cells_default_to_the_default_profile():
    for name in ALL_NOTEBOOKS:
        params = papermill.inspect_notebook(str(NB_DIR / f"{name}.ipynb"))
        assert params["profile"]["default"] == '"default"' and params["run_dir"]["default"] == '""', name
        assert "run's own" in params["profile"]["help"] and "finished" in params["run_dir"]["help"], name
