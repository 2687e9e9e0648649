"""Tests of morelib.study.length_tables on the tiny profile: fits use only calibration pairs, `+L` differences and the
tables equal direct calls to evaluation.length, findings are computed from the CIs."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.core.config import load_config  # noqa: E402
from morelib.core.errors import RunError  # noqa: E402
from morelib.evaluation import length  # noqa: E402
from morelib.study import length_tables as L
from morelib.study import pipeline
from morelib.train.reward_models import RMKey  # noqa: E402


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Tiny data, multitask and MORE heads for seeds 0 and 1, their test differences and length fits."""
    cfg = load_config("tiny", {"output_root": str(tmp_path_factory.mktemp("length"))})
    data = pipeline.prepare(cfg)
    heads = pipeline.fit(cfg, data, ["multitask", "more"], seeds=[0, 1])
    diffs = pipeline.scheme_diffs(heads, data)
    fits = L.length_fits(heads, data, ["multitask", "more"], cfg, method="linear")
    return cfg, data, heads, diffs, fits


def test_fit_uses_the_calibration_pairs_of_all_trained_sources(study):
    cfg, data, heads, _, fits = study
    key = RMKey("more", seed=1)
    rc, rr, lc, lr = [], [], [], []
    for src in data.sources:
        pf = data.features[src]["calib"]
        rc.append(heads[key].rewards([], [], pf.chosen).double().numpy())
        rr.append(heads[key].rewards([], [], pf.rejected).double().numpy())
        lc.append(pf.chosen_len.numpy())
        lr.append(pf.rejected_len.numpy())
    direct = length.fit(*map(np.concatenate, (rc, rr, lc, lr)), method="linear", n_boot=cfg.n_boot, seed=cfg.seeds[0])
    assert fits[key].n_pairs == sum(len(data.pairs[s]["calib"]) for s in data.sources)
    assert fits[key].slope == pytest.approx(direct.slope) and fits[key].slope_lo == pytest.approx(direct.slope_lo)
    table = L.fit_table(fits)
    assert len(table) == 4 and (table["slope_lo"] <= table["slope_hi"]).all()


def test_calibrated_diffs_and_tables_equal_direct_calls(study):
    cfg, data, _, diffs, fits = study
    cal = L.calibrated_diffs(diffs, data, fits)
    assert set(cal) == {RMKey(s, seed=k) for s in ("multitask+L", "more+L") for k in (0, 1)}
    src = data.sources[0]
    pf = data.features[src]["test"]
    lc, lr = pf.chosen_len.numpy(), pf.rejected_len.numpy()
    key = RMKey("more", seed=0)
    np.testing.assert_allclose(cal[key.with_scheme("more+L")][src], fits[key].apply_diff(diffs[key][src], lc, lr))
    both = {**diffs, **cal}
    table = L.before_after(both, ["more"], data, cfg)
    assert set(table["test_source"]) == set(data.sources) and set(table["length_unit"]) == {"tokens"}
    before = np.stack([diffs[RMKey("more", seed=k)][src] for k in (0, 1)], axis=1)
    after = np.stack([cal[RMKey("more+L", seed=k)][src] for k in (0, 1)], axis=1)
    direct = {r["metric"]: r for r in length.before_after(before, after, lc, lr, n_boot=cfg.n_boot, seed=cfg.seeds[0])}
    for row in table[table["test_source"] == src].itertuples():
        assert (row.before, row.after, row.lo, row.hi) == pytest.approx(
            (
                direct[row.metric]["before"],
                direct[row.metric]["after"],
                direct[row.metric]["lo"],
                direct[row.metric]["hi"],
            ),
            nan_ok=True,
        )
    split = L.length_split(both, ["more", "more+L"], data, cfg)
    assert len(split) == 2 * len(data.sources)
    row = split[(split.scheme == "more") & (split.test_source == src)].iloc[0]
    assert row["accuracy"] == pytest.approx(np.mean(before > 0))
    assert row["longer_baseline_accuracy"] == pytest.approx(np.mean(lc > lr))


def test_findings_follow_the_cis(study):
    cfg, data, _, diffs, fits = study
    both = {**diffs, **L.calibrated_diffs(diffs, data, fits)}
    split = L.length_split(both, ["multitask", "more"], data, cfg)
    (text_mt, text_more) = L.finding_length_alone(split)
    assert text_mt.startswith("**multitask**") and text_more.startswith("**more**")
    forced = split.assign(vs_longer_lo=0.01, vs_longer_hi=0.2)
    assert "above it on " + ", ".join(data.sources) in L.finding_length_alone(forced)[0]
    assert "consistent with length alone" not in L.finding_length_alone(forced)[0]
    (cal_text,) = L.finding_calibration(L.before_after(both, ["more"], data, cfg))
    assert cal_text.startswith("**more+L** − **more**") and "source(s)" in cal_text


def test_no_rm_to_calibrate(study):
    cfg, data, heads, _, _ = study
    with pytest.raises(RunError, match="no RM of schemes"):
        L.length_fits(heads, data, ["tuned"], cfg)
