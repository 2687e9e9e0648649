"""The GPU batch path in CI: `./run_all.sh --profile tiny-finetune` runs every notebook on the fine-tuning tier (tiny
random model, a few Trainer steps) into a temporary folder, every finding comes from fully fine-tuned RMs and 07's
capacity curve has full fine-tuning as its top rung; and
`scripts/gpu_smoke.sh --cpu-tiny` (the GPU smoke script at tiny size on CPU) prints its throughput figures."""

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("0[0-9]_*.ipynb"))  # every notebook, 06 and 07 too


@pytest.fixture(scope="module")
def run(tmp_path_factory, run_all_profile):
    return run_all_profile(tmp_path_factory.mktemp("ft-outputs"), "tiny-finetune", 600)


def test_every_notebook_finished_on_the_finetune_tier(run):
    assert len(NOTEBOOKS) == 7
    for name in NOTEBOOKS:
        assert (run / name / ".done").exists() and (run / name / "metrics.json").exists(), name
        assert json.loads((run / name / "manifest.json").read_text())["profile"] == "tiny-finetune"
    assert (
        "tier: finetune" in (run / "config.yaml").read_text()
        or "tier: finetune" in (run / "01_diversity" / "config.yaml").read_text()
    )


def test_rms_are_fine_tuned_models_not_heads(run):
    # notebook 04 also fits MORE with loss+ normalisation, into its own fingerprint folder
    (folder,) = [p for p in (run / "heads").iterdir() if (p / "single%3Ahelpful%2Fseed0").exists()]
    assert not list(folder.glob("*.pt")), "feature-tier heads (<key>.pt) in a finetune run"
    for key in ("more%2Fseed0", "multitask%2Fseed0", "single%3Ahelpful%2Fseed0", "more@helpful+harmless%2Fseed0"):
        assert (folder / key / "model" / "config.json").exists(), key
    logged = [json.loads(x) for x in (folder / "more%2Fseed0" / "more_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2]


def test_findings_come_from_the_fine_tuned_rms(run):
    tidy = pd.read_csv(run / "02_more_training" / "tables" / "metrics_tidy.csv")
    assert {"raw", "top", "multitask", "more"} <= set(tidy["scheme"])
    means = tidy.groupby("scheme")["ece_10"].mean()
    assert means["more"] != means["raw"] and means["multitask"] != means["raw"]
    findings = json.loads((run / "02_more_training" / "metrics.json").read_text())["findings"]
    assert len(findings) == 3 and all(findings)
    assert (run / "02_more_training" / "figures" / "explore_lambda.html").exists()
    ks = pd.read_csv(run / "04_k_ablation" / "tables" / "k_ablation_tidy.csv")
    assert sorted(ks["K"].unique()) == [2, 3]
    assert (run / "04_k_ablation" / "figures" / "explore_mix.html").exists()
    rm = json.loads((run / "05_alignment" / "metrics.json").read_text())["rm"]
    assert {r["scheme"] for r in rm} == {"multitask", "more"}


def test_capacity_curve_has_the_finetune_rung(run):
    pooled = pd.read_csv(run / "07_capacity" / "tables" / "pooled.csv")
    assert sorted(pooled["tier"].unique()) == ["finetune", "linear", "mlp"]
    top = pooled[pooled["tier"] == "finetune"]
    assert set(top["scheme"]) == {"more"} and set(top["B"]) == {4}, "no tuned on the finetune rung; B = train's"
    params = pooled.groupby("tier")["params"].first()
    assert params["linear"] < params["mlp"] < params["finetune"]
    ft_heads = [p for p in (run / "heads").rglob("multitask%2Fseed0") if (p / "model" / "config.json").exists()]
    assert len(ft_heads) == 1, "07's finetune rung reuses notebook 02's fine-tuned MultiTask (one folder, not two)"


def test_gpu_smoke_script_at_tiny_size_on_cpu(tmp_path, script_env):
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu_smoke.sh"), "--cpu-tiny"],
        env={**script_env, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    assert "pairs/s" in out and "peak GPU memory: n/a (CPU)" in out and "MFU" in out
    assert "[run_all] done" in out
