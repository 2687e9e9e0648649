"""Tests of morelib.cli.evaluate: an exported tiny head scores exactly as the workbook evaluates it (floors included);
bad models."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import model as M  # noqa: E402
from morelib.cli import evaluate as E
from morelib.cli import export
from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import ModelError  # noqa: E402
from morelib.study import pipeline, tables
from morelib.train.reward_models import RMKey  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Tiny profile data, two multitask heads (seeds 0, 1) exported as HF folders, and the workbook's tables."""
    tmp = tmp_path_factory.mktemp("evaluate")
    cfg = load_config("tiny", {"output_root": str(tmp)})
    data = pipeline.prepare(cfg)
    heads = pipeline.fit(cfg, data, ["multitask"], seeds=[0, 1])
    folders = {k: export.export_head(h.head, cfg.model, tmp / str(k).replace("/", "-")) for k, h in heads.items()}
    return cfg, data, heads, folders, tmp


def test_numbers_equal_the_workbook(exported):
    cfg, data, heads, folders, _ = exported
    key = RMKey("multitask", seed=0)
    pairs, _ = E.test_pairs(cfg)
    assert {s: len(p) for s, p in pairs.items()} == {s: len(data.pairs[s]["test"]) for s in data.sources}
    report, diffs = E.model_report(str(folders[key]), cfg, pairs)
    ours = pipeline.metric_table({key: heads[key]}, data, cfg).set_index("test_source")
    for col in ("accuracy", "ece_10", "ace_10", "mce_10", "brier", "log_loss", "ece_10_floor", "ece_10_debiased"):
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
    acc = report.groupby("model").apply(lambda t: (t.accuracy * t.n).sum() / t.n.sum())
    assert row["diff"] == pytest.approx(acc[a] - acc[b], abs=1e-9) and row["lo"] <= row["diff"] <= row["hi"]
    assert (out / "reliability_model1.html").exists() and (out / "reliability_model2.html").exists()


def test_two_logit_classifier_is_refused(tmp_path):
    net, tok = M.load_reward_model("tiny-random", dtype="fp32")
    net.config.num_labels = 2
    M.save_reward_model(net, tok, tmp_path / "two")
    with pytest.raises(ModelError, match="2 output logits"):
        E.check_one_logit(str(tmp_path / "two"))
    assert E.main(["--model", str(tmp_path / "two"), "--profile", "tiny", "--out", str(tmp_path / "o")]) == 1
