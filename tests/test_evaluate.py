"""Tests of morelib.cli.evaluate: an exported tiny head scores exactly as the workbook evaluates it (floors included);
bad models; user pairs files, a run's heads without export, length calibration, the worst-source row."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import model as M  # noqa: E402
from morelib.cli import evaluate as E
from morelib.cli import export
from morelib.core import runs
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import ModelError  # noqa: E402
from morelib.study import pipeline, tables
from morelib.train.reward_models import RMKey  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny profile data, two multitask heads (seeds 0, 1) exported as HF folders, and the workbook's tables."""
    tmp = tmp_path_factory.mktemp("evaluate")
    cfg = load_config("tiny", {"output_root": str(tmp)})
    run = runs.open_run(cfg, tmp / "run", "02_more_training")
    data = pipeline.prepare(cfg, run)
    heads = pipeline.fit(cfg, data, ["multitask"], seeds=[0, 1], run=run)
    folders = {k: export.export_head(h.head, cfg.model, tmp / str(k).replace("/", "-")) for k, h in heads.items()}
    return cfg, data, heads, folders, tmp


def test_numbers_equal_the_workbook(exported):
    cfg, data, heads, folders, _ = exported
    key = RMKey("multitask", seed=0)
    pairs, _ = E.test_pairs(cfg)
    assert {s: len(p) for s, p in pairs.items()} == {s: len(data.pairs[s]["test"]) for s in data.sources}
    report, diffs = E.model_report(str(folders[key]), cfg, pairs)
    worst = report.loc["worst"]
    assert worst["accuracy"] == report["accuracy"].min() and worst["worst_source"] in data.sources
    report = report.drop(index="worst")
    ours = pipeline.metric_table({key: heads[key]}, data, cfg).set_index("test_source")
    cols = ("accuracy", "ece_10", "ace_10", "mce_10", "brier", "log_loss", "ece_10_floor", "ece_10_excess")
    for col in (*cols, "ece_10_debiased"):
        np.testing.assert_allclose(report[col], ours.loc[report.index, col], atol=1e-4, err_msg=col)
    bias = tables.length_bias({key: heads[key]}, data, ["multitask"]).set_index("test_source")
    for col in ("longer_baseline_accuracy", "rm_prefers_longer", "spearman"):
        np.testing.assert_allclose(report[col], bias.loc[report.index, col], atol=1e-4, err_msg=col)
    assert (report["accuracy_lo"] <= report["accuracy"]).all() and (report["accuracy"] <= report["accuracy_hi"]).all()


def test_cli_two_models_writes_paired_report(exported, capsys):
    cfg, _, _, folders, tmp = exported
    a, b = (str(folders[RMKey("multitask", seed=k)]) for k in (0, 1))
    out = tmp / "report"
    assert E.main(["--model", a, "--model2", b, "--profile", "tiny", "--out", str(out)]) == 0
    report = pd.read_csv(out / "report.csv")
    assert set(report["model"]) == {a, b} and {"ece_10_floor", "longer_baseline_accuracy"} <= set(report.columns)
    paired = pd.read_csv(out / "paired.csv")
    row = paired[(paired.test_source == "all") & (paired.metric == "accuracy")].iloc[0]
    assert (report.test_source == "worst").sum() == 2  # one worst-source row per model
    report = report[report.test_source != "worst"]
    acc = report.groupby("model")["accuracy"].mean()  # the stratified estimator: every source weighs the same
    assert row["diff"] == pytest.approx(acc[a] - acc[b], abs=1e-9) and row["lo"] <= row["diff"] <= row["hi"]
    assert row["n_sources"] == report["test_source"].nunique() and row["n_seeds"] == 1
    assert (out / "reliability_model1.html").exists() and (out / "reliability_model2.html").exists()


def test_two_logit_classifier_is_refused(tmp_path):
    net, tok = M.load_reward_model("tiny-random", dtype="fp32")
    net.config.num_labels = 2
    M.save_reward_model(net, tok, tmp_path / "two")
    with pytest.raises(ModelError, match="2 output logits"):
        E.check_one_logit(str(tmp_path / "two"))
    assert E.main(["--model", str(tmp_path / "two"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 1


def write_pairs_files(tmp, data):
    """Two user pairs files from the tiny test pairs: TRL rows (JSONL) and pairwise-judge rows (JSON array)."""
    pairs = data.pairs["helpful"]["test"] + data.pairs["oasst1"]["test"]
    trl = tmp / "trl_pairs.jsonl"
    trl.write_text("".join(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                           for p in pairs[:25]))  # fmt: skip
    judge = [
        {"input": f"Question {i}?", "output_1": p.rejected, "output_2": p.chosen, "label": 2}
        for i, p in enumerate(pairs[25:50])
    ]
    (tmp / "judge.json").write_text(json.dumps(judge))
    return trl, tmp / "judge.json"


def test_cli_pairs_files_length_calibration_and_worst_row(exported, capsys):
    cfg, data, heads, folders, tmp = exported
    model = str(folders[RMKey("multitask", seed=0)])
    trl, judge = write_pairs_files(tmp, data)
    out = tmp / "pairs_report"
    argv = ["--model", model, "--profile", "tiny", "--pairs", str(trl), "--pairs", str(judge), "--out", str(out)]
    assert E.main([*argv, "--length-calibrate", "linear"]) == 0
    report = pd.read_csv(out / "report.csv").set_index("test_source")
    assert list(report.index) == ["trl_pairs", "judge", "worst"] and list(report["n"]) == [25, 25, 25]
    worst = report.loc["worst"]
    assert worst["accuracy"] == report["accuracy"].iloc[:2].min() and worst["worst_source"] in ("trl_pairs", "judge")
    for col in ("accuracy_longer_won_lo", "accuracy_shorter_won_hi", "vs_longer_diff", "vs_longer_lo"):
        assert col in report.columns
    calib = pd.read_csv(out / "length_calibration.csv")
    assert set(calib["metric"]) == {"accuracy", "ece_10", "rm_prefers_longer"}
    assert set(calib["test_source"]) == {"trl_pairs", "judge"} and (calib["lo"] <= calib["hi"]).all()
    fit = json.loads((out / "length_fits.json").read_text())[model]
    assert fit["method"] == "linear" and fit["n_pairs"] == 80  # 4 sources × 20 calibration pairs, never the test files
    assert fit["slope_lo"] <= fit["slope_per_token"] <= fit["slope_hi"]
    assert "length calibration (linear" in capsys.readouterr().out


def test_cli_run_heads_score_like_their_export(exported):
    cfg, data, heads, folders, tmp = exported
    trl, _ = write_pairs_files(tmp, data)
    a, b = tmp / "via_run", tmp / "via_export"
    assert E.main(["--run", str(tmp / "run"), "--key", "multitask/seed0", "--pairs", str(trl), "--out", str(a)]) == 0
    model = str(folders[RMKey("multitask", seed=0)])
    assert E.main(["--model", model, "--profile", "tiny", "--pairs", str(trl), "--out", str(b)]) == 0
    ra, rb = (pd.read_csv(x / "report.csv").set_index("test_source") for x in (a, b))
    for col in ("accuracy", "ece_10", "log_loss", "longer_baseline_accuracy"):
        np.testing.assert_allclose(ra[col], rb[col], atol=1e-4, err_msg=col)


def test_cli_bad_pairs_file_and_bad_arguments(exported, capsys, tmp_path):
    _, _, _, folders, _ = exported
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps({"prompt": "p"}))
    model = str(folders[RMKey("multitask", seed=0)])
    assert E.main(["--model", model, "--profile", "tiny", "--pairs", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "bad.jsonl: row 2: missing field 'chosen'" in capsys.readouterr().err
    assert E.main(["--run", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "--run RUN --key KEY" in capsys.readouterr().err
