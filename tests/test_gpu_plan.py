"""The study's fine-tuning plan before a GPU is rented (morelib.study.gpu_plan): which fine-tunes notebooks 01–04 run
on the paper profile, the printed plan, and the GPU-hours arithmetic against a hand computation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from morelib.core.config import load_config
from morelib.core.errors import ConfigError
from morelib.study import gpu_plan


@pytest.fixture(scope="module")
def paper():
    return load_config("paper")


def test_paper_study_fine_tunes(paper):
    jobs = [job for job, _ in gpu_plan.study_finetunes(paper)]
    assert len(jobs) == 17 * 3 and len(set(jobs)) == len(jobs)  # per seed: 5 singles, 2 on all, 3×2 + 4 ladders
    per_notebook = Counter(job.notebook for job in jobs if job.seed == 0)
    assert per_notebook == {"01": 5, "02": 2, "04": 10}
    ladder = [job.sources for job in jobs if job.seed == 0 and job.variant]
    assert [len(s) for s in ladder] == [2, 3, 4, 5] and ladder[0] == ("helpful", "harmless")


def test_report_prints_every_fine_tune_and_says_when_hours_are_unknown(paper, tmp_path):
    text = gpu_plan.report(paper, 8, throughput=tmp_path / "none.json")
    assert "fine-tunes in the study: 51 (17 per seed × 3 seeds)" in text
    assert "estimated GPU-hours: n/a (no throughput yet" in text
    assert "| 01 | single | helpful | 0,1,2 | 500 | 80 | 10 × 1 | 100, 200, 300, 400, 500 |" in text
    assert "| 02 | more | helpful+harmless+oasst1+webgpt+summarize | 0,1,2 | 2500 | 80 | 10 × 1 |" in text


def test_gpu_hours_by_hand(paper, tmp_path):
    stats = {"params": 1e8, "tokens": 1e6, "seconds": 100.0, "pairs": 2000, "world_size": 1}
    rows = [{"optimizer_steps": 10, "pairs_per_update": 80}]
    # 6e8·1e6/100 = 6e12 FLOP/s per GPU; 500 tokens per pair; 800 pairs of a 1e9 model: 6e9·500·800 / 6e12 = 400 s
    assert gpu_plan.gpu_hours(rows, stats, 10**9) == pytest.approx(400 / 3600)
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(stats))
    line = gpu_plan.report(paper, 1, throughput=path, params=10**9).splitlines()[-1]
    assert line.startswith("estimated GPU-hours: ") and "scaled to 1.00B params" in line


def test_feature_tier_has_no_plan():
    with pytest.raises(ConfigError, match="no plan"):
        gpu_plan.main(["--profile", "tiny"])
