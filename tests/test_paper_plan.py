"""The paper profile checked without a GPU: every notebook's fine-tuning plan (sources, schemes, seeds, steps per epoch,
checkpoints, judge) built from params/paper.yaml with stub data of the configured sizes (no model is loaded), against
the paper's setting (§5.1, App. A): one epoch, 5 × 16 pairs per update, 40k resampled pairs per source, batch 80 —
on 1, 2, 4 and 8 processes alike (issue 31), with checkpoints that exist whatever the process count."""

import pytest

from morelib.core import config
from morelib.core.config import TRAINED_SCHEMES, load_config
from morelib.study import pipeline
from morelib.train import finetune

PAPER_SOURCES = ["helpful", "harmless", "oasst1", "webgpt", "summarize"]
K_ORDER = PAPER_SOURCES  # notebook 04's k_order
NOTEBOOK_SCHEMES = {
    "01_diversity": ["single"],
    "02_more_training": ["multitask", "more"],
    "03_hh_analysis": ["multitask", "more"],
}


@pytest.fixture(scope="module")
def cfg():
    return load_config("paper")


def _sizes(cfg, names):
    return {s.name: s.train_pairs for s in cfg.data.sources if s.name in names}


def test_profile_sources_seeds_tier(cfg):
    assert cfg.source_names() == PAPER_SOURCES and cfg.train.tier == "finetune"
    assert len(cfg.seeds) >= 3 and cfg.data.data_dir == "hub" and cfg.model.max_length == 512
    assert all(s.train_pairs == 40_000 for s in cfg.data.sources) and cfg.train.resample_pairs == 40_000
    assert cfg.finetune.lr == 1e-6 and cfg.finetune.epochs == 1.0


@pytest.mark.parametrize("notebook", NOTEBOOK_SCHEMES)
def test_notebook_plans(cfg, notebook):
    for scheme in NOTEBOOK_SCHEMES[notebook]:
        if scheme == "single":
            one = pipeline.single_config(cfg, len(PAPER_SOURCES))
            plans = [finetune.describe_plan(one, _sizes(cfg, [s]), "single") for s in PAPER_SOURCES]
        else:
            plans = [finetune.describe_plan(cfg, _sizes(cfg, PAPER_SOURCES), scheme)]
        for plan in plans:
            assert plan["epochs"] == 1.0 and plan["pairs_per_update"] == 80 and plan["pairs_per_source"] == 40_000
            assert plan["plan_steps"] * plan["pairs_per_update"] == 40_000 * len(plan["sources"])
            assert plan["optimizer_steps"] == plan["plan_steps"]
            every = plan["plan_steps"] // 5  # finetune.save_every 0.2: 500 for 2,500 updates, 100 for a single's 500
            assert plan["checkpoints"] == list(range(every, plan["plan_steps"] + 1, every))
    assert len(cfg.seeds) * len(plans) >= 3


def test_balanced_and_pooled_multitask_take_the_same_pairs_per_update(cfg):
    balanced = finetune.describe_plan(cfg, _sizes(cfg, PAPER_SOURCES), "multitask")
    pooled = finetune.describe_plan(cfg, _sizes(cfg, PAPER_SOURCES), "multitask-pooled")
    assert balanced["plan_steps"] == pooled["plan_steps"] == 2_500
    assert balanced["pairs_per_update"] == pooled["pairs_per_update"] == 5 * 16


def test_k_ablation_ladder(cfg):
    for k in range(2, len(K_ORDER) + 1):
        plan = finetune.describe_plan(cfg, _sizes(cfg, K_ORDER[:k]), "more")
        assert plan["pairs_per_update"] == 16 * k and plan["epochs"] == 1.0 and plan["plan_steps"] == 2_500


@pytest.mark.parametrize("world", [1, 2, 4, 8])
@pytest.mark.parametrize("scheme", ["single", "multitask", "multitask-pooled", "more"])
def test_any_process_count_keeps_the_paper_update_and_its_checkpoints(cfg, world, scheme):
    names = PAPER_SOURCES[:1] if scheme == "single" else PAPER_SOURCES
    run_cfg = pipeline.single_config(cfg, len(PAPER_SOURCES)) if scheme == "single" else cfg
    plan = finetune.describe_plan(run_cfg, _sizes(cfg, names), scheme, world_size=world)
    assert plan["pairs_per_update"] == 80 and plan["epochs"] == 1.0
    assert plan["optimizer_steps"] == 40_000 * len(names) // 80  # 2,500 updates; a single source's 500
    per_source = 80 // len(names)
    assert plan["per_device_batch_per_source"] * world * plan["grad_accum"] == per_source
    assert (plan["per_device_batch_per_source"], plan["grad_accum"]) == (per_source // world, 1)
    assert len([c for c in plan["checkpoints"] if c < plan["optimizer_steps"]]) >= 4
    assert plan["checkpoints"][-1] == plan["optimizer_steps"]


def test_memory_cap_accumulates_to_the_same_update(cfg):
    capped = config.with_overrides(cfg, {"finetune.max_device_pairs": 10})  # 2 pairs per source per forward
    plan = finetune.describe_plan(capped, _sizes(cfg, PAPER_SOURCES), "more", world_size=2)
    assert (plan["per_device_batch_per_source"], plan["grad_accum"], plan["pairs_per_update"]) == (2, 4, 80)
    odd = finetune.describe_plan(cfg, _sizes(cfg, PAPER_SOURCES), "more", world_size=3)
    assert odd["pairs_per_update"] == 75 and "nearest split to the requested 16" in odd["split"]


def test_alignment_and_judge(cfg):
    assert set(cfg.rjs.schemes) <= set(TRAINED_SCHEMES) and cfg.rjs.n_samples == 4
    assert cfg.judge.kinds == ("local", "gold-rm") and cfg.rjs.prompt_sources == ("helpful", "harmless")
    assert cfg.judge.reliability_pairs == 500
