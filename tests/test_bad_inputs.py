"""Bad-input catalogue (project issue 9): every malformed input ends in ONE clear error naming the problem,
or in a counted and logged drop where the data docs say so, and never in a partial or overwritten output.

Each `Case` is one row of docs/bad_inputs.md: what is wrong, the exception type (None = handled: a counted drop or a
documented fallback), and a regex the message must match. Running this file as a script prints the table with the
real messages, so the doc is regenerated from the code, not typed by hand:

    .venv/bin/python tests/test_bad_inputs.py > docs/bad_inputs.md          (add --notebook for the papermill row)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morelib.backbone import features, hidden_states  # noqa: E402
from morelib.backbone.features import PairFeatures, extract  # noqa: E402
from morelib.backbone.model import byte_tokenizer, encode, load_reward_model  # noqa: E402
from morelib.cli import export, run_notebook  # noqa: E402
from morelib.core import config, reruns, runs, status  # noqa: E402
from morelib.core.errors import (  # noqa: E402
    ConfigError,
    DataError,
    MissingDataError,
    ModelError,
    RunError,
    TrainingError,
)
from morelib.data import datacard, pairs_files
from morelib.data.formats import Pair  # noqa: E402
from morelib.data.sources import DropLog, load_preferences  # noqa: E402
from morelib.evaluation import diagnostics, length, metrics
from morelib.study import pipeline
from morelib.train import blocks, reward_head
from morelib.train.reward_models import RMKey
from morelib.weighting import more, solver

REPO = Path(__file__).resolve().parents[1]
ROW = {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " hello", "rejected": " go away"}


@dataclass(frozen=True)
class Case:
    """One bad input: its id, what is wrong, the exception expected (None = handled) and a message regex."""

    id: str
    area: str
    input: str
    expect: type[BaseException] | None
    match: str
    run: Callable[[Path], str | None]
    slow: bool = False


def _jsonl(tmp: Path, lines: list[str | bytes | dict], name: str = "p.jsonl") -> str:
    """Write JSON lines (dicts are dumped, bytes written raw) to tmp/name; returns the path as a string."""
    raw = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x.encode() if isinstance(x, str) else x) + b"\n"
        for x in lines
    )
    path = tmp / name
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
    return str(path)


def _load(path: str) -> str:
    """Load a local preference file; returns the DropLog summary (for handled cases)."""
    report = DropLog()
    pairs = load_preferences(path, "train", report=report)
    return f"{len(pairs)} pairs kept; DropLog: {report.summary(Path(path).name)}"


def _cfg(tmp: Path, **overrides) -> config.Config:
    """The tiny profile writing under tmp, with dotted overrides."""
    return config.load_config("tiny", {"output_root": str(tmp / "outputs"), **overrides})


def _feats(n: int = 32, h: int = 6, seed: int = 0, source: str = "a") -> PairFeatures:
    """Random PairFeatures whose chosen side is shifted along a fixed direction (learnable)."""
    g = torch.Generator().manual_seed(seed)
    rejected = torch.randn(n, h, generator=g)
    return PairFeatures(rejected + 0.5 + torch.randn(n, h, generator=g) * 0.1, rejected, source)


def _tiny(**overrides) -> tuple[config.TrainConfig, config.HeadConfig]:
    """The tiny profile's train and head sections with B = 8, 2 head epochs and the dotted `overrides`."""
    cfg = config.load_config("tiny", {"train.batch_per_source": 8, "head.epochs": 2, **overrides})
    return cfg.train, cfg.head


# ---------------------------------------------------------------- data files


def _malformed_json(tmp: Path) -> None:
    _load(_jsonl(tmp, [ROW, '{"prompt": "q", "chosen": " a"']))


def _not_an_object(tmp: Path) -> None:
    _load(_jsonl(tmp, [ROW, "[1, 2]"]))


def _truncated_gzip(tmp: Path) -> None:
    path = Path(_jsonl(tmp, [ROW] * 200, "p.jsonl.gz"))
    path.write_bytes(path.read_bytes()[:-30])
    _load(str(path))


def _missing_field(tmp: Path) -> None:
    _load(_jsonl(tmp, [{"prompt": "q", "chosen": " a"}]))


def _pairs_file_missing_field(tmp: Path) -> None:
    judge = {"input": "q", "output_1": "a", "output_2": "b", "label": 1}
    pairs_files.read_pairs(_jsonl(tmp, [judge, {k: v for k, v in judge.items() if k != "output_2"}], "llmbar.jsonl"))


def _pairs_file_unknown_layout(tmp: Path) -> None:
    pairs_files.read_pairs(_jsonl(tmp, [{"question": "q", "answer": "a"}], "qa.jsonl"))


def _pairs_file_bad_label(tmp: Path) -> None:
    pairs_files.read_pairs(_jsonl(tmp, [{"input": "q", "output_1": "a", "output_2": "b", "label": 0}], "j.jsonl"))


def _length_fit_constant(tmp: Path) -> None:
    length.fit([1.0, 2.0], [0.0, 1.0], [7, 7], [7, 7])


def _wrong_field_type(tmp: Path) -> None:
    _load(_jsonl(tmp, [ROW, {**ROW, "chosen": 3}]))


def _non_utf8(tmp: Path) -> None:
    _load(_jsonl(tmp, [ROW, b'{"prompt": "caf\xe9", "chosen": " a", "rejected": " b"}']))


def _unreadable_parquet(tmp: Path) -> None:
    (tmp / "p.parquet").write_bytes(b"PAR1 not really parquet")
    _load(str(tmp / "p.parquet"))


def _empty_file(tmp: Path) -> None:
    _load(_jsonl(tmp, []))


def _all_rows_dropped(tmp: Path) -> None:
    _load(_jsonl(tmp, [{**ROW, "rejected": ROW["chosen"]}] * 2))


def _chosen_equals_rejected(tmp: Path) -> str:
    return _load(_jsonl(tmp, [ROW, {**ROW, "prompt": "q2"}, {**ROW, "rejected": ROW["chosen"]}]))


def _empty_prompt(tmp: Path) -> str:
    return _load(_jsonl(tmp, [ROW, {**ROW, "prompt": "q2"}, {**ROW, "prompt": "  "}]))


def _no_shared_turn(tmp: Path) -> str:
    root = tmp / "hh-rlhf" / "harmless-base"
    root.mkdir(parents=True)
    good = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: bye"}
    bad = {"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: yo"}
    _jsonl(root, [good, bad], "test.jsonl")
    report = DropLog()
    pairs = load_preferences("hh-harmless", "test", data_dir=tmp, report=report)
    return f"{len(pairs)} pairs kept; DropLog: {report.summary('hh-harmless')}"


def _unknown_source(tmp: Path) -> None:
    load_preferences("hh-helpfull", "train", data_dir=tmp)


def _unknown_split(tmp: Path) -> None:
    load_preferences("hh-helpful", "dev", data_dir=tmp)


def _missing_split(tmp: Path) -> None:
    root = tmp / "hh-rlhf" / "harmless-base"
    root.mkdir(parents=True)
    _jsonl(
        root, [{"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}], "test.jsonl.gz"
    )
    load_preferences("hh-harmless", "train", data_dir=tmp)


def _missing_source_data(tmp: Path) -> None:
    load_preferences("webgpt", "train", data_dir=tmp)


def _missing_data_dir(tmp: Path) -> None:
    load_preferences("hh-helpful", "train", data_dir=tmp / "nowhere")


def _no_source_loads(tmp: Path) -> None:
    cfg = _cfg(tmp, **{"data.data_dir": str(tmp)})
    pipeline.prepare(cfg)


# ---------------------------------------------------------------- config / notebook parameters


def _unknown_key(tmp: Path) -> None:
    config.load_config("tiny", {"head.lrr": 0.1})


def _renamed_key(tmp: Path) -> None:
    config.load_config("tiny", {"train.head_lr": 0.1})


def _unknown_section(tmp: Path) -> None:
    config.load_config("tiny", {"trian.lr": 0.1})


def _wrong_type(tmp: Path) -> None:
    config.load_config("tiny", {"head.epochs": "many"})


def _wrong_type_float(tmp: Path) -> None:
    runs.start("tiny", str(tmp / "run"), '{"finetune.lr": "fast"}', "nb")


def _wrong_type_list(tmp: Path) -> None:
    config.load_config("tiny", {"seeds": 3})


def _zero_batch(tmp: Path) -> None:
    config.load_config("tiny", {"train.batch_per_source": 0})


def _zero_mlp_width(tmp: Path) -> None:
    config.load_config("tiny", {"head.kind": "mlp", "head.width": 0})


def _negative_max_length(tmp: Path) -> None:
    config.load_config("tiny", {"model.max_length": -1})


def _zero_train_pairs(tmp: Path) -> None:
    src = {"name": "helpful", "label": "H", "loader": "hh-helpful", "train_pairs": 0, "test_pairs": 10}
    config.load_config("tiny", {"data.sources": [src]})


def _zero_synthetic_k(tmp: Path) -> None:
    config.load_config("tiny", {"data.synthetic.K": 0})


def _split_not_summing(tmp: Path) -> None:
    config.load_config("tiny", {"data.split": {"train": 0.8, "calib": 0.1, "test": 0.2}})


def _alpha_out_of_range(tmp: Path) -> None:
    config.load_config("tiny", {"more.alpha": 0.0})


def _unknown_profile(tmp: Path) -> None:
    config.load_config("tinny")


def _overrides_not_mapping(tmp: Path) -> None:
    runs.parse_overrides("[1, 2]")


def _profile_wrong_type(tmp: Path) -> None:
    runs.start(3, str(tmp / "run"), "{}", "nb")  # papermill `-p profile 3` passes an int


def _run_dir_wrong_type(tmp: Path) -> None:
    runs.start("tiny", 5, "{}", "nb")


def _overrides_wrong_type(tmp: Path) -> None:
    runs.start("tiny", str(tmp / "run"), 5, "nb")  # papermill `-p overrides 5` passes an int


def _batch_exceeds_pairs(tmp: Path) -> None:
    reward_head.train_head({"a": _feats(n=10)}, "multitask", *_tiny(**{"train.batch_per_source": 64}), seed=0)


# ---------------------------------------------------------------- models and features


def _unknown_model(tmp: Path) -> None:
    load_reward_model("smollm-9000")


def _folder_no_weights(tmp: Path) -> None:
    (tmp / "rm").mkdir()
    (tmp / "rm" / "config.json").write_text("{}")
    load_reward_model(str(tmp / "rm"))


def _folder_no_tokenizer(tmp: Path) -> None:
    (tmp / "rm").mkdir()
    for name in ("config.json", "model.safetensors"):
        (tmp / "rm" / name).write_text("{}")
    load_reward_model(str(tmp / "rm"))


def _folder_missing_shard(tmp: Path) -> None:
    (tmp / "rm").mkdir()
    (tmp / "rm" / "config.json").write_text("{}")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (tmp / "rm" / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp / "rm" / "model-00001-of-00002.safetensors").write_text("")
    load_reward_model(str(tmp / "rm"))


def _too_long_texts(tmp: Path) -> str:
    tok = byte_tokenizer()
    texts = ["prompt " * 20 + "THE RESPONSE", "short"]
    left, _ = encode(tok, texts, max_length=16, truncation_side="left")
    right, _ = encode(tok, texts, max_length=16, truncation_side="right")
    assert len(left) == len(right) == 16
    assert tok.decode(left).endswith("THE RESPONSE") and tok.decode(right).startswith("prompt prompt")
    pairs = [Pair("p " * 20, " long answer", " x", "s", "0"), Pair("p", " a", " b", "s", "1")]
    share = datacard.length_stats(pairs, lambda s: tok(s)["input_ids"], max_length=16)["truncated_share"]
    assert share == 0.5
    return (
        "cut to max_length on model.truncation_side (left keeps the response end: "
        f"...{tok.decode(left)[-12:]!r}); datacard.length_stats counts truncated_share = {share}"
    )


def _bad_truncation_side(tmp: Path) -> None:
    encode(byte_tokenizer(), ["text"], max_length=8, truncation_side="middle")


def _features_shape_mismatch(tmp: Path) -> None:
    PairFeatures(torch.zeros(4, 3), torch.zeros(5, 3), "a")


def _extract_mixed_sources(tmp: Path) -> None:
    pairs = [Pair("p", " a", " b", "s1", "0"), Pair("p", " a", " b", "s2", "1")]
    extract(pairs, config.ModelConfig(name="tiny-random"), tmp / "cache")


# ---------------------------------------------------------------- training, MORE, solver


def _nan_features(tmp: Path) -> None:
    bad = _feats(source="b", seed=1)
    bad.chosen[3, 2] = float("nan")
    reward_head.train_head({"a": _feats(), "b": bad}, "more", *_tiny(), seed=0)


def _inf_features(tmp: Path) -> None:
    bad = _feats()
    bad.rejected[0, 0] = float("inf")
    reward_head.train_head({"a": bad}, "single", *_tiny(), seed=0)


def _diverging_head(tmp: Path) -> None:
    reward_head.train_head(
        {"a": _feats(), "b": _feats(source="b", seed=1)}, "more", *_tiny(**{"head.lr": 1e30}), seed=0
    )


def _nan_gradient_more(tmp: Path) -> None:
    grads = torch.ones(3, 4)
    grads[1, 2] = float("nan")
    more.MoreWeighter(3).step(grads, torch.ones(3))


def _unknown_scheme(tmp: Path) -> None:
    reward_head.train_head({"a": _feats()}, "top", *_tiny(), seed=0)


def _single_with_two_sources(tmp: Path) -> None:
    reward_head.train_head({"a": _feats(), "b": _feats(source="b")}, "single", *_tiny(), seed=0)


def _fixed_lambda_negative(tmp: Path) -> None:
    reward_head.train_head({"a": _feats(), "b": _feats(source="b")}, "fixed", *_tiny(), seed=0, lam=[1.5, -0.5])


def _fixed_lambda_wrong_length(tmp: Path) -> None:
    reward_head.train_head({"a": _feats(), "b": _feats(source="b")}, "fixed", *_tiny(), seed=0, lam=[0.2, 0.3, 0.5])


def _fixed_lambda_not_summing(tmp: Path) -> str:
    feats = {"a": _feats(), "b": _feats(source="b", seed=1)}
    head = reward_head.train_head(feats, "fixed", *_tiny(), seed=0, lam=[2.0, 6.0])
    lam = head.history["lam"][0].tolist()
    assert lam == pytest.approx([0.25, 0.75])
    return f"train_head scheme 'fixed' rescales λ = [2, 6] to {lam} (the explorer is stricter: see explore-lambda-sum)"


def _bad_normalization(tmp: Path) -> None:
    more.MoreWeighter(3, normalization="l1")


def _more_k1(tmp: Path) -> str:
    def no_solver(*_a, **_k):
        raise AssertionError("the min-norm solver must not be called for K = 1")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(more, "min_norm_gram", no_solver)
        lam = more.MoreWeighter(1).step(torch.randn(1, 5), torch.ones(1))
        head = reward_head.train_head({"a": _feats()}, "more", *_tiny(), seed=0)
    single = reward_head.train_head({"a": _feats()}, "single", *_tiny(), seed=0)
    assert lam.tolist() == [1.0] and bool((head.history["lam"] == 1).all())
    assert torch.equal(head.w, single.w)
    return f"λ = {lam.tolist()} at every step, solver not called; the head equals scheme 'single' exactly"


def _zero_gradient_source(tmp: Path) -> str:
    grads = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 0.5]])
    lam = more.MoreWeighter(3).step(grads, torch.tensor([0.7, 0.69, 0.6]))
    raw = solver.min_norm(grads)
    flat = _feats(source="flat")
    flat = PairFeatures(flat.rejected.clone(), flat.rejected, "flat")  # chosen == rejected features: ∇ = 0
    head = reward_head.train_head({"a": _feats(), "flat": flat}, "more", *_tiny(), seed=0)
    hist = head.history["lam"]
    for weights in (lam, raw, *hist):
        assert (
            torch.isfinite(weights).all()
            and (weights >= 0).all()
            and math.isclose(float(weights.sum()), 1, abs_tol=1e-5)
        )
    assert not diagnostics.check_lambda_pinned(hist.numpy()).ok, "the stalled MORE run must trip the pinned-λ guard"
    return (
        f"finite λ on the simplex: MoreWeighter {[round(x, 3) for x in lam.tolist()]}; in train_head the "
        f"zero-gradient source takes λ = {hist[-1, 1].item():.3f} (min-norm of a hull containing 0), "
        "so training stalls — flagged by diagnostics.check_lambda_pinned"
    )


def _solver_bad_shape(tmp: Path) -> None:
    solver.min_norm(torch.zeros(0, 4))


def _explore_lambda_sum(tmp: Path) -> None:
    from morelib.explore import engine  # imported here: the explorer is optional for every other case

    engine.simplex_weights([0.5, 0.6], ["a", "b"])


def _explore_lambda_zero(tmp: Path) -> None:
    from morelib.explore import engine

    engine.simplex_weights([0.0, 0.0], ["a", "b"], normalise=True)


def _explore_mix_empty(tmp: Path) -> None:
    from morelib.explore import engine

    feats = {"a": _feats(), "b": _feats(source="b", seed=1)}
    engine.Explorer(feats, feats, *_tiny()).set_mix({"a": 0, "b": 0})


# ---------------------------------------------------------------- metrics


def _metrics_nan(tmp: Path) -> None:
    metrics.all_metrics(np.array([0.5, float("nan"), -1.0]))


def _metrics_empty(tmp: Path) -> None:
    metrics.calibration_errors(np.array([]))


def _metrics_2d(tmp: Path) -> None:
    metrics.accuracy(np.zeros((3, 2)))


def _metrics_bins(tmp: Path) -> None:
    metrics.calibration_errors(np.array([0.1, -0.2]), n_bins=0)


# ---------------------------------------------------------------- run folders and outputs


def _disk_full_on_replace(tmp: Path) -> None:
    run = runs.open_run(_cfg(tmp), str(tmp / "run"), "nb")
    run.save_json("metrics", {"old": 1})

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runs.os, "replace", full)
            run.save_json("metrics", {"new": 2})
    finally:
        assert json.loads((run.dir / "metrics.json").read_text()) == {"old": 1}, "earlier file must stay intact"
        assert sorted(p.name for p in run.dir.iterdir()) == ["metrics.json"], "no temporary/partial file left"


def _disk_full_mid_write(tmp: Path) -> None:
    run = runs.open_run(_cfg(tmp), str(tmp / "run"), "nb")
    run.save_table("t", __import__("pandas").DataFrame({"a": [1, 2]}))
    target = run.dir / "tables" / "t.csv"
    before = target.read_bytes()

    def half_then_full(fh) -> None:
        fh.write("a\n9\n")
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        runs.atomic_write(target, half_then_full)
    finally:
        assert target.read_bytes() == before, "earlier file must stay intact"
        assert [p.name for p in target.parent.iterdir()] == ["t.csv"], "no temporary/partial file left"


def _bad_notebook_name(tmp: Path) -> None:
    runs.open_run(_cfg(tmp), str(tmp / "run"), "../escape")


def _rerun_other_profile(tmp: Path) -> None:
    runs.open_run(_cfg(tmp), str(tmp / "outputs" / "tiny-run"), "01_diversity")
    runs.start("tiny-finetune", str(tmp / "outputs" / "tiny-run"), {"output_root": str(tmp / "outputs")}, "02_x")


def _latest_none_finished(tmp: Path) -> None:
    run = runs.open_run(_cfg(tmp), str(tmp / "outputs" / "tiny-run"), "01_diversity")  # started, never finished
    (run.root / reruns.RUN_ALL_FILE).write_text(json.dumps({"only": "01"}))
    runs.start("default", "latest", {"output_root": str(tmp / "outputs")}, "02_more_training")


def _resume_missing_run(tmp: Path) -> None:
    runs.resume_dir("tiny-20990101-000000-abcdef0", root=tmp)


def _study_unknown_source(tmp: Path) -> None:
    data = pipeline.StudyData(features={"a": {"train": _feats()}})
    pipeline.fit(_cfg(tmp), data, ["more"], seeds=[0], sources=["a", "webgpt"])


# ---------------------------------------------------------------- issue 28: faults (sources, resume, export, paths)


def _hh_root(tmp: Path, n: int = 60, broken: str = "") -> Path:
    """A local data root with helpful-base and harmless-base test files of `n` rows each; `broken` = 'json' breaks
    line 2 of harmless, 'gzip' cuts its .gz short. OASST and Summarize have no files (missing)."""
    root = tmp / "data"
    for subset in ("helpful-base", "harmless-base"):
        rows = [
            {
                "chosen": f"\n\nHuman: q{i} {subset}\n\nAssistant: yes {i}",
                "rejected": f"\n\nHuman: q{i} {subset}\n\nAssistant: no",
            }
            for i in range(n)
        ]
        folder = root / "hh-rlhf" / subset
        folder.mkdir(parents=True)
        if subset == "harmless-base" and broken == "gzip":
            path = Path(_jsonl(folder, rows, "test.jsonl.gz"))
            path.write_bytes(path.read_bytes()[:-40])
            continue
        lines = [json.dumps(r) for r in rows]
        if subset == "harmless-base" and broken == "json":
            lines[1] += "}"
        (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _corrupt_source_file(tmp: Path) -> None:
    pipeline.prepare(_cfg(tmp, **{"data.data_dir": str(_hh_root(tmp, broken="json"))}))


def _truncated_source_gzip(tmp: Path) -> None:
    pipeline.prepare(_cfg(tmp, **{"data.data_dir": str(_hh_root(tmp, broken="gzip"))}))


def _missing_source_reported(tmp: Path) -> str:
    status.set_target(tmp / "status.log", "nb")
    try:
        data = pipeline.prepare(_cfg(tmp, **{"data.data_dir": str(_hh_root(tmp))}))
    finally:
        status.set_target(None, "")
    lines = (tmp / "status.log").read_text().splitlines()
    assert data.sources == ["helpful", "harmless"] and sorted(data.missing) == ["oasst1", "summarize"]
    return f"run goes on with {data.sources}; terminal: {lines[0].split('] ', 1)[1]}"


def _unknown_loader(tmp: Path) -> None:
    src = {"name": "helpful", "label": "H", "loader": "hh-helpfull"}
    config.load_config("tiny", {"data.sources": [src]})


def _repeated_seeds(tmp: Path) -> None:
    config.load_config("tiny", {"seeds": [0, 0]})


def _resume_changed_profile(tmp: Path) -> str:
    profile = tmp / "mytiny.yaml"
    profile.write_text(f"profile: mytiny\noutput_root: {tmp / 'out'}\nhead: {{epochs: 5}}\n")
    run = runs.create(str(profile), {}, "01")
    profile.write_text(f"profile: mytiny\noutput_root: {tmp / 'out'}\nhead: {{epochs: 7}}\n")
    plan = runs.resume_plan(str(run))
    assert config.load_config(plan["profile"]).head.epochs == 5 and plan["overrides"] == "{}"
    return plan["note"].replace(run.name, "<run>")


def _exported_run(tmp: Path) -> Path:
    """A run folder whose notebook 02 evaluated more/seed0, with single:helpful/seed0 left by a killed attempt."""
    cfg = _cfg(tmp)
    run = runs.open_run(cfg, str(tmp / "run"), "02_more_training")
    folder = run.heads_dir / pipeline.fingerprint(cfg)
    for key in (RMKey("more", seed=0), RMKey("single", source="helpful", seed=0)):
        reward_head.train_head({"a": _feats(h=32)}, "single", *_tiny(), seed=0).save(
            pipeline.saved_head(folder, key, cfg)
        )
    pipeline.record_head_files(run, [pipeline.saved_head(folder, RMKey("more", seed=0), cfg)])
    run.save_manifest()
    return run.root


def _export_unevaluated_head(tmp: Path) -> str:
    _, heads = export.run_heads(_exported_run(tmp))
    assert list(map(str, heads)) == ["more/seed0"]
    return "offered: more/seed0 only; single:helpful/seed0 (a head file no finished notebook evaluated) is not listed"


def _export_nonempty_destination(tmp: Path) -> None:
    run = _exported_run(tmp)
    (tmp / "dest").mkdir()
    (tmp / "dest" / "README.md").write_text("my project")
    try:
        export.check_destination(tmp / "dest", force=False)
    finally:
        assert (tmp / "dest" / "README.md").read_text() == "my project"
        assert export.main([str(run), "more/seed0", str(tmp / "dest")]) == 1


def _cached_backbone(tmp: Path, cut: bool) -> None:
    folder = tmp / "models" / "smollm2-135m"
    folder.mkdir(parents=True)
    model, tok = load_reward_model("tiny-random", dtype="fp32", device="cpu")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    weights = folder / "model.safetensors"
    if cut:
        weights.write_bytes(weights.read_bytes()[:-1000])
    else:
        weights.unlink()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MORE_CACHE_DIR", str(tmp))
        load_reward_model("smollm2-135m")


def _cached_backbone_truncated(tmp: Path) -> None:
    _cached_backbone(tmp, cut=True)


def _cached_backbone_deleted(tmp: Path) -> None:
    _cached_backbone(tmp, cut=False)


def _feature_cache_full(tmp: Path) -> None:
    def full(*_a, **_k):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    pairs = [Pair("p", " a", " b", "s", "0")]
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(features, "save_file", full)
            extract(pairs, config.ModelConfig(name="tiny-random"), tmp / "cache")
    finally:
        assert not [p for p in (tmp / "cache").rglob("*") if p.is_file()], "no partial shard left"


def _notebook_cut_off(tmp: Path) -> str:
    out = tmp / "run" / "01_diversity" / "01_diversity.ipynb"
    out.parent.mkdir(parents=True)

    def full_disk(_nb, path, **_k):
        Path(path).write_text('{"cells": [{"cell_type": "code", "sou')
        raise OSError(errno.ENOSPC, "No space left on device")

    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err):
        mp.setattr(run_notebook.pm, "execute_notebook", full_disk)
        code = run_notebook.run(REPO / "notebooks" / "01_diversity.ipynb", out, "tiny", str(out.parent.parent), "{}")
    assert code == run_notebook.NOT_WRITTEN
    return f"exit {code}: " + re.sub(r"\(\d+ MB free", "(N MB free", err.getvalue().strip())


def _run_all(tmp: Path, *args: str, cwd: Path | None = None, **env: str) -> tuple[int, str]:
    """(exit code, stderr + stdout without [setup] lines) of ./run_all.sh with `args`, run from `cwd`."""
    clean = {k: v for k, v in os.environ.items() if k not in ("MORE_DATA_DIR",)}
    done = subprocess.run(
        [str(REPO / "run_all.sh"), *args],
        cwd=cwd or tmp,
        env={**clean, "MORE_NO_APT": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = "\n".join(line for line in (done.stderr + done.stdout).splitlines() if not line.startswith("[setup]"))
    assert "Traceback" not in text, text
    return done.returncode, text


def _dry_run_invalid(tmp: Path) -> str:
    code, text = _run_all(tmp, "--profile", "tiny", "--dry-run", "-p", "head.lr", "0")
    assert code == 2, text
    return f"exit {code}: {text}"


def _relative_paths(tmp: Path) -> str:
    (tmp / "mytiny.yaml").write_text("profile: mytiny\nseeds: [0]\n")
    data = os.path.relpath(REPO.parent / "shared" / "data", tmp)
    code, text = _run_all(tmp, "--profile", "mytiny.yaml", "--dry-run", "-p", "output_root", "out", MORE_DATA_DIR=data)
    assert code == 0 and str(tmp / "out") in text and not (tmp / "out").exists(), text
    return f"exit {code}: {text}".replace(str(REPO.parent.resolve()), "<repo>/..")


def _missing_data_dir_early(tmp: Path) -> str:
    code, text = _run_all(tmp, "--profile", "tiny", "-p", "output_root", "out", MORE_DATA_DIR="nowhere")
    assert code == 2 and not (tmp / "out").exists(), text
    return f"exit {code}: {text}"


def _resume_unknown(tmp: Path) -> str:
    code, text = _run_all(tmp, "--resume", "nope")
    assert code == 2, text
    return f"exit {code}: {text}".replace(str(REPO), "<repo>")


def _resume_elsewhere(tmp: Path) -> str:
    run = runs.create("tiny", {"output_root": str(tmp / "out")}, "01")
    code, text = _run_all(tmp, "--resume", run.name)
    assert code == 2, text
    (run / "01_diversity").mkdir()
    (run / "01_diversity" / reruns.DONE_MARKER).touch()
    again, done = _run_all(tmp, "--resume", f"out/{run.name}")
    assert again == 0 and "01_diversity already complete" in done, done
    message = f"by id: exit {code}: {text}; by path out/<id>: exit 0, the run continues"
    return message.replace(str(REPO), "<repo>").replace(run.name, "<id>")


def _two_resumes(tmp: Path) -> str:
    run = runs.create("tiny", {"output_root": str(tmp / "out")}, "01")
    with open(run / runs.LOCK_FILE, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code, text = _run_all(tmp, "--resume", str(run))
    assert code == 2, text
    return f"exit {code}: {text}".replace(run.name, "<id>")


# ---------------------------------------------------------------- blocks tier


def _blocks_pairs() -> dict[str, list[Pair]]:
    """Two sources of two pairs each."""
    return {s: [Pair(f"q{i} ", f" good {i}", f" bad {i}", s, f"{s}{i}") for i in range(2)] for s in ("a", "b")}


def _blocks_k_too_large(tmp: Path) -> None:
    blocks.fit(_cfg(tmp, **{"blocks.k": 3}), _blocks_pairs(), _blocks_pairs(), "more", 0, 2, tmp / "cache")


def _blocks_k_zero(tmp: Path) -> None:
    _cfg(tmp, **{"blocks.k": 0})


def _blocks_states_missing(tmp: Path) -> None:
    blocks.BlocksRM.load(_blocks_rm(tmp), _cfg(tmp), tmp / "empty-cache").cache.load(["\n\nHuman: hi"])


def _blocks_rm(tmp: Path) -> Path:
    """A blocks-tier RM fitted on the tiny model (states cached under tmp/cache), saved to tmp/rm.pt."""
    cfg = _cfg(tmp, **{"blocks.epochs": 1})
    return blocks.fit(cfg, _blocks_pairs(), _blocks_pairs(), "multitask", 0, 2, tmp / "cache").save(tmp / "rm.pt")


def _blocks_states_other_model(tmp: Path) -> None:
    cfg = _cfg(tmp)
    folder = hidden_states.StateCache(cfg.model, 1, tmp / "cache").folder
    manifest = json.loads((folder / hidden_states.MANIFEST).read_text())
    (folder / hidden_states.MANIFEST).write_text(json.dumps({**manifest, "model": "smollm2-135m", "identity": "x"}))
    blocks.fit(cfg, _blocks_pairs(), _blocks_pairs(), "more", 0, 2, tmp / "cache")


# ---------------------------------------------------------------- notebooks (papermill)


def _papermill_wrong_type(tmp: Path) -> None:
    import papermill as pm

    pm.execute_notebook(
        str(REPO / "notebooks" / "01_diversity.ipynb"),
        str(tmp / "out.ipynb"),
        parameters={"profile": "tiny", "run_dir": str(tmp / "run"), "overrides": '{"head.epochs": "many"}'},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(REPO),
    )


CASES = [
    Case(
        "malformed-json",
        "data",
        "a JSON line that does not parse",
        DataError,
        r"p\.jsonl:2: malformed JSON",
        _malformed_json,
    ),
    Case(
        "json-not-object",
        "data",
        "a JSON line that is not an object",
        DataError,
        r"p\.jsonl:2: expected a JSON object, got list",
        _not_an_object,
    ),
    Case(
        "gzip-truncated",
        "data",
        "a .jsonl.gz cut short",
        DataError,
        r"p\.jsonl\.gz: truncated or corrupt gzip",
        _truncated_gzip,
    ),
    Case(
        "missing-field",
        "data",
        "a row without `rejected`",
        DataError,
        r"p\.jsonl:1: missing field 'rejected'",
        _missing_field,
    ),
    Case(
        "pairs-file-missing-field",
        "data",
        "`--pairs` file: row 2 lacks `output_2` (judge layout)",
        DataError,
        r"llmbar\.jsonl: row 2: missing field 'output_2'",
        _pairs_file_missing_field,
    ),
    Case(
        "pairs-file-unknown-layout",
        "data",
        "`--pairs` file whose rows match no layout",
        DataError,
        r"qa\.jsonl: row 1: fields \['answer', 'question'\] match no pairs layout",
        _pairs_file_unknown_layout,
    ),
    Case(
        "pairs-file-bad-label",
        "data",
        "`--pairs` judge row with label 0",
        DataError,
        r"j\.jsonl: row 1: field 'label' must be 1 or 2",
        _pairs_file_bad_label,
    ),
    Case(
        "length-fit-constant",
        "metrics",
        "length calibration where every response has one length",
        DataError,
        r"all 4 calibration responses have length 7",
        _length_fit_constant,
    ),
    Case(
        "wrong-field-type",
        "data",
        "`chosen` is a number",
        DataError,
        r"p\.jsonl:2: field 'chosen' must be str, got int",
        _wrong_field_type,
    ),
    Case("non-utf8", "data", "a line with Latin-1 bytes", DataError, r"p\.jsonl:2: text is not valid UTF-8", _non_utf8),
    Case(
        "parquet-unreadable",
        "data",
        "a .parquet file that is not parquet",
        DataError,
        r"p\.parquet: unreadable parquet file",
        _unreadable_parquet,
    ),
    Case("empty-source", "data", "an empty file", DataError, r"yielded no pairs", _empty_file),
    Case(
        "all-rows-dropped",
        "data",
        "every row has chosen == rejected",
        DataError,
        r"yielded no pairs \(0 loaded, 2 dropped \(chosen == rejected: 2\)\)",
        _all_rows_dropped,
    ),
    Case(
        "chosen-equals-rejected",
        "data",
        "one row with chosen == rejected",
        None,
        r"2 loaded, 1 dropped \(chosen == rejected: 1\)",
        _chosen_equals_rejected,
    ),
    Case(
        "empty-prompt",
        "data",
        "one row with a blank prompt",
        None,
        r"2 loaded, 1 dropped \(empty prompt: 1\)",
        _empty_prompt,
    ),
    Case(
        "hh-no-shared-turn",
        "data",
        "an HH row whose transcripts share no Assistant turn",
        None,
        r"1 loaded, 1 dropped \(no shared Assistant turn: 1\)",
        _no_shared_turn,
    ),
    Case(
        "unknown-source",
        "data",
        "source name `hh-helpfull`",
        DataError,
        r"unknown preference source 'hh-helpfull'; valid: hh-helpful",
        _unknown_source,
    ),
    Case("unknown-split", "data", "split `dev`", DataError, r"unknown split 'dev'.*valid: train, test", _unknown_split),
    Case(
        "missing-split",
        "data",
        "local HH copy with only the test split, train asked",
        MissingDataError,
        r"no local 'train' split for 'hh-harmless'.*available: test",
        _missing_split,
    ),
    Case(
        "missing-source-data",
        "data",
        "WebGPT asked, no local copy",
        MissingDataError,
        r"no local data for webgpt under",
        _missing_source_data,
    ),
    Case(
        "missing-data-dir",
        "data",
        "data_dir that does not exist",
        DataError,
        r"data directory not found",
        _missing_data_dir,
    ),
    Case(
        "no-source-loads",
        "data",
        "pipeline.prepare where no configured source has data",
        DataError,
        r"no configured source could be loaded",
        _no_source_loads,
    ),
    Case(
        "unknown-param",
        "config",
        "override `head.lrr`",
        ConfigError,
        r"unknown parameter 'head.lrr' \(did you mean 'lr'\?\)",
        _unknown_key,
    ),
    Case(
        "renamed-param",
        "config",
        "override `train.head_lr` (a key from before the train/head/finetune split)",
        ConfigError,
        r"override: 'train.head_lr' was renamed to 'head.lr'",
        _renamed_key,
    ),
    Case(
        "unknown-section",
        "config",
        "override `trian.lr`",
        ConfigError,
        r"unknown parameter 'trian' \(did you mean 'train'\?\)",
        _unknown_section,
    ),
    Case(
        "wrong-param-type",
        "config",
        "`head.epochs: many`",
        ConfigError,
        r"'head.epochs' must be int, got str: 'many'",
        _wrong_type,
    ),
    Case(
        "wrong-param-type-float",
        "config",
        'notebook overrides `{"finetune.lr": "fast"}`',
        ConfigError,
        r"'finetune.lr' must be float, got str: 'fast'",
        _wrong_type_float,
    ),
    Case(
        "wrong-param-type-list",
        "config",
        "`seeds: 3`",
        ConfigError,
        r"'seeds' must be a list, got int",
        _wrong_type_list,
    ),
    Case(
        "zero-batch",
        "config",
        "`train.batch_per_source: 0`",
        ConfigError,
        r"'train.batch_per_source' must be positive, got 0",
        _zero_batch,
    ),
    Case(
        "zero-mlp-width",
        "config",
        "`head.width: 0` (mlp tier)",
        ConfigError,
        r"'head.width' must be a positive number of hidden units, got 0",
        _zero_mlp_width,
    ),
    Case(
        "negative-max-length",
        "config",
        "`model.max_length: -1`",
        ConfigError,
        r"'model.max_length' must be positive, got -1",
        _negative_max_length,
    ),
    Case(
        "zero-train-pairs",
        "config",
        "a source with `train_pairs: 0`",
        ConfigError,
        r"'data.sources\[0\].train_pairs' must be positive, got 0",
        _zero_train_pairs,
    ),
    Case(
        "zero-synthetic-k",
        "config",
        "`data.synthetic.K: 0`",
        ConfigError,
        r"'data.synthetic.K' must be positive, got 0",
        _zero_synthetic_k,
    ),
    Case(
        "split-not-summing",
        "config",
        "split fractions 0.8/0.1/0.2",
        ConfigError,
        r"'data.split' fractions must sum to 1",
        _split_not_summing,
    ),
    Case(
        "alpha-out-of-range",
        "config",
        "`more.alpha: 0`",
        ConfigError,
        r"'more.alpha' must be in \(0, 1\]",
        _alpha_out_of_range,
    ),
    Case(
        "unknown-profile",
        "config",
        "profile `tinny`",
        ConfigError,
        r"unknown profile 'tinny' \(did you mean 'tiny'\?\)",
        _unknown_profile,
    ),
    Case(
        "overrides-not-mapping",
        "config",
        "notebook overrides `[1, 2]`",
        ConfigError,
        r"'overrides' must be a mapping",
        _overrides_not_mapping,
    ),
    Case(
        "profile-wrong-type",
        "config",
        "notebook parameter `profile = 3` (papermill `-p profile 3`)",
        ConfigError,
        r"notebook parameter 'profile' must be a string, got int: 3",
        _profile_wrong_type,
    ),
    Case(
        "run-dir-wrong-type",
        "config",
        "notebook parameter `run_dir = 5`",
        ConfigError,
        r"notebook parameter 'run_dir' must be a string, got int: 5",
        _run_dir_wrong_type,
    ),
    Case(
        "overrides-wrong-type",
        "config",
        "notebook parameter `overrides = 5`",
        ConfigError,
        r"'overrides' must be a YAML/JSON mapping string or a dict, got int: 5",
        _overrides_wrong_type,
    ),
    Case(
        "batch-exceeds-pairs",
        "train",
        "batch_per_source 64 on a 10-pair source",
        ConfigError,
        r"'train.batch_per_source' = 64 exceeds the 10 pairs",
        _batch_exceeds_pairs,
    ),
    Case(
        "unknown-model",
        "model",
        "model name `smollm-9000`",
        ModelError,
        r"unknown model 'smollm-9000': not a registry name \(smollm2-135m, minilm-l6, tiny-random\)",
        _unknown_model,
    ),
    Case(
        "model-folder-no-weights",
        "model",
        "model folder with config.json only",
        ModelError,
        r"is missing model\.safetensors",
        _folder_no_weights,
    ),
    Case(
        "model-folder-no-tokenizer",
        "model",
        "model folder without tokenizer files",
        ModelError,
        r"is missing tokenizer\.json",
        _folder_no_tokenizer,
    ),
    Case(
        "model-folder-missing-shard",
        "model",
        "sharded weights with one shard gone",
        ModelError,
        r"is missing model-00002-of-00002\.safetensors \(listed in model\.safetensors\.index\.json\)",
        _folder_missing_shard,
    ),
    Case(
        "too-long-texts",
        "model",
        "texts longer than model.max_length",
        None,
        r"truncated_share = 0\.5",
        _too_long_texts,
    ),
    Case(
        "bad-truncation-side",
        "model",
        "truncation_side `middle`",
        ConfigError,
        r"truncation_side must be 'left' or 'right'; got 'middle'",
        _bad_truncation_side,
    ),
    Case(
        "features-shape-mismatch",
        "model",
        "chosen [4,3] vs rejected [5,3] features",
        DataError,
        r"PairFeatures 'a': chosen \(4, 3\) and rejected \(5, 3\) must both be \[N, h\]",
        _features_shape_mismatch,
    ),
    Case(
        "extract-mixed-sources",
        "model",
        "features.extract on pairs of two sources",
        DataError,
        r"extract needs pairs of exactly one source",
        _extract_mixed_sources,
    ),
    Case(
        "nan-features",
        "train",
        "a NaN in one source's features (MORE)",
        DataError,
        r"source 'b' has 1 feature row\(s\) with NaN/inf",
        _nan_features,
    ),
    Case(
        "inf-features",
        "train",
        "an inf in the features (single)",
        DataError,
        r"source 'a' has 1 feature row\(s\) with NaN/inf",
        _inf_features,
    ),
    Case(
        "nan-loss",
        "train",
        "a diverging head (head.lr = 1e30) makes the BT loss inf/NaN",
        TrainingError,
        r"non-finite BT loss at step \d+ for source '(a|b)'",
        _diverging_head,
    ),
    Case(
        "nan-gradient",
        "train",
        "a NaN in source 1's gradient given to MoreWeighter",
        TrainingError,
        r"non-finite \(NaN/inf\) value in gradient of source 1",
        _nan_gradient_more,
    ),
    Case(
        "unknown-scheme",
        "train",
        "train_head scheme `top`",
        ConfigError,
        r"unknown head scheme 'top' \('top' is 'single' on the best source",
        _unknown_scheme,
    ),
    Case(
        "single-two-sources",
        "train",
        "scheme `single` with two sources",
        ConfigError,
        r"scheme 'single' needs exactly one source, got 2",
        _single_with_two_sources,
    ),
    Case(
        "fixed-lambda-negative",
        "train",
        "fixed λ = [1.5, −0.5]",
        ConfigError,
        r"fixed λ must be finite and ≥ 0",
        _fixed_lambda_negative,
    ),
    Case(
        "fixed-lambda-length",
        "train",
        "fixed λ with 3 weights for 2 sources",
        ConfigError,
        r"fixed λ has 3 weights for 2 sources",
        _fixed_lambda_wrong_length,
    ),
    Case(
        "fixed-lambda-sum",
        "train",
        "fixed λ = [2, 6] (does not sum to 1)",
        None,
        r"\[0\.25, 0\.75\]",
        _fixed_lambda_not_summing,
    ),
    Case(
        "bad-normalization",
        "train",
        "MORE normalization `l1`",
        ConfigError,
        r"unknown MORE normalization 'l1'; valid: l2, loss, loss\+, none",
        _bad_normalization,
    ),
    Case("more-k1", "train", "MORE with K = 1", None, r"solver not called", _more_k1),
    Case(
        "zero-gradient-source",
        "train",
        "a source whose gradient is exactly 0",
        None,
        r"finite λ on the simplex",
        _zero_gradient_source,
    ),
    Case(
        "explore-lambda-sum",
        "explore",
        "explorer λ = [0.5, 0.6] (sums to 1.1)",
        ConfigError,
        r"λ must sum to 1 \(got 1\.1 for \['a', 'b'\]\); pass normalise=True",
        _explore_lambda_sum,
    ),
    Case(
        "explore-lambda-zero",
        "explore",
        "explorer λ all zero (normalise=True)",
        ConfigError,
        r"λ is all zero for sources \['a', 'b'\]",
        _explore_lambda_zero,
    ),
    Case(
        "explore-mix-empty",
        "explore",
        "explorer mix with 0 pairs of every source",
        ConfigError,
        r"the mix is empty",
        _explore_mix_empty,
    ),
    Case(
        "solver-empty",
        "train",
        "min_norm on a [0, h] gradient matrix",
        ValueError,
        r"grads must have shape \[K, h\] with K >= 1",
        _solver_bad_shape,
    ),
    Case(
        "metrics-nan",
        "metrics",
        "Δ with a NaN",
        ValueError,
        r"reward_diff has 1 non-finite \(NaN/inf\) value\(s\), first at index 1",
        _metrics_nan,
    ),
    Case("metrics-empty", "metrics", "empty Δ", ValueError, r"reward_diff is empty", _metrics_empty),
    Case("metrics-2d", "metrics", "Δ of shape [3, 2]", ValueError, r"reward_diff must have shape \[N\]", _metrics_2d),
    Case("metrics-bins", "metrics", "n_bins = 0", ValueError, r"n_bins must be a positive int, got 0", _metrics_bins),
    Case(
        "disk-full-replace",
        "runs",
        "disk full when the finished file is moved into place",
        RunError,
        r"could not write .*metrics\.json: \[Errno 28\] No space left on device",
        _disk_full_on_replace,
    ),
    Case(
        "disk-full-write",
        "runs",
        "disk full half-way through writing a table",
        RunError,
        r"could not write .*t\.csv: \[Errno 28\] No space left on device",
        _disk_full_mid_write,
    ),
    Case(
        "bad-notebook-name",
        "runs",
        "notebook name `../escape`",
        RunError,
        r"notebook name must be a plain folder name",
        _bad_notebook_name,
    ),
    Case(
        "rerun-other-profile",
        "runs",
        "profile `tiny-finetune` with run_dir a tiny run",
        ConfigError,
        r"profile 'tiny-finetune' conflicts with run .*, made with profile 'tiny'.* pass profile='tiny'",
        _rerun_other_profile,
    ),
    Case(
        "latest-none-finished",
        "runs",
        "run_dir `latest` where no run finished",
        RunError,
        r"no finished run under .*; run ./run_all.sh \(or finish the newest of 1 unfinished: .*--resume .*tiny-run\)",
        _latest_none_finished,
    ),
    Case(
        "resume-missing-run",
        "runs",
        "resume a run id that does not exist",
        RunError,
        r"no run to resume at .*run_all\.json",
        _resume_missing_run,
    ),
    Case(
        "study-unknown-source",
        "runs",
        "pipeline.fit on a source that is not loaded",
        DataError,
        r"sources \['webgpt'\] are not available",
        _study_unknown_source,
    ),
    Case(
        "corrupt-source-file",
        "data",
        "pipeline.prepare: line 2 of a configured source's file (harmless) is broken",
        DataError,
        r"harmless-base/test\.jsonl:2: malformed JSON \(Extra data",
        _corrupt_source_file,
    ),
    Case(
        "truncated-source-gzip",
        "data",
        "pipeline.prepare: a configured source's .jsonl.gz is cut short",
        DataError,
        r"harmless-base/test\.jsonl\.gz: truncated or corrupt gzip",
        _truncated_source_gzip,
    ),
    Case(
        "missing-source-reported",
        "data",
        "pipeline.prepare: two configured sources have no files under the data root",
        None,
        r"source oasst1 missing, left out of this run: no local data for oasst1",
        _missing_source_reported,
    ),
    Case(
        "unknown-loader",
        "config",
        "`data.sources[0].loader: hh-helpfull`",
        DataError,
        r"'data.sources\[0\].loader' must be one of hh-helpful, .*got 'hh-helpfull' \(did you mean 'hh-helpful'\?\)",
        _unknown_loader,
    ),
    Case("repeated-seeds", "config", "`seeds: [0, 0]`", ConfigError, r"'seeds' repeats \[0\]", _repeated_seeds),
    Case(
        "resume-changed-profile",
        "runs",
        "the profile file's head.epochs edited 5 → 7 before a resume",
        None,
        r"head.epochs: 5 → 7.*keeps the run's saved",
        _resume_changed_profile,
    ),
    Case(
        "export-unevaluated-head",
        "runs",
        "export of a run holding a head no finished notebook evaluated (a killed attempt's)",
        None,
        r"offered: more/seed0 only",
        _export_unevaluated_head,
    ),
    Case(
        "export-nonempty-destination",
        "runs",
        "export into a folder holding README.md (e.g. `.` in the repo)",
        RunError,
        r"destination .*dest is not empty \(1 entries: README\.md\).*pass --force",
        _export_nonempty_destination,
    ),
    Case(
        "cached-backbone-truncated",
        "model",
        "the dequantised backbone's model.safetensors in the model cache is cut short",
        ModelError,
        r"cached backbone in .*smollm2-135m is incomplete or damaged .*delete that folder",
        _cached_backbone_truncated,
    ),
    Case(
        "cached-backbone-deleted",
        "model",
        "the dequantised backbone's weights deleted, config.json left",
        ModelError,
        r"cached backbone in .*smollm2-135m is incomplete .*missing model\.safetensors.*delete that folder",
        _cached_backbone_deleted,
    ),
    Case(
        "feature-cache-full",
        "model",
        "the feature cache's disk is full (safetensors' own error)",
        RunError,
        r"could not write a feature cache shard into .*No space left on device",
        _feature_cache_full,
    ),
    Case(
        "notebook-cut-off",
        "runs",
        "papermill cannot finish the executed notebook (disk full)",
        None,
        r"exit 3: .*papermill left a cut-off file \(\d+ bytes, not a readable notebook\)",
        _notebook_cut_off,
    ),
    Case(
        "dry-run-invalid",
        "run_all",
        "`./run_all.sh --profile tiny --dry-run -p head.lr 0`",
        None,
        r"exit 2: ConfigError: 'head.lr' must be positive, got 0",
        _dry_run_invalid,
        slow=True,
    ),
    Case(
        "relative-paths",
        "run_all",
        "`MORE_DATA_DIR=<relative> ./run_all.sh --profile mytiny.yaml -p output_root out --dry-run` elsewhere",
        None,
        r"exit 0: .*profile mytiny, .*data \S*shared/data;.*\"output_root\": \"\S*/out\"",
        _relative_paths,
        slow=True,
    ),
    Case(
        "missing-data-dir-early",
        "run_all",
        "`MORE_DATA_DIR=nowhere ./run_all.sh --profile tiny -p output_root out`",
        None,
        r"exit 2: DataError: data directory not found: .*nowhere \(from MORE_DATA_DIR\); nothing was created",
        _missing_data_dir_early,
        slow=True,
    ),
    Case(
        "resume-unknown",
        "run_all",
        "`./run_all.sh --resume nope`",
        None,
        r"exit 2: RunError: no run to resume at .*nope",
        _resume_unknown,
        slow=True,
    ),
    Case(
        "resume-elsewhere",
        "run_all",
        "`./run_all.sh --resume <id>` of a run made with `-p output_root out`",
        None,
        r"pass its path.*by path out/<id>: exit 0",
        _resume_elsewhere,
        slow=True,
    ),
    Case(
        "two-resumes",
        "run_all",
        "`./run_all.sh --resume <run>` while another run_all.sh holds the run",
        None,
        r"exit 2: .*another run_all.sh is working on",
        _two_resumes,
        slow=True,
    ),
    Case(
        "blocks-k-too-large",
        "train",
        "`blocks.k: 3` on the 2-block tiny model",
        ConfigError,
        r"'blocks.k' = 3 is larger than the 2 transformer blocks of tiny-random",
        _blocks_k_too_large,
    ),
    Case(
        "blocks-k-zero",
        "config",
        "`blocks.k: 0`",
        ConfigError,
        r"'blocks.k' must be ≥ 1 \(the top k transformer blocks are trained\), got 0",
        _blocks_k_zero,
    ),
    Case(
        "blocks-states-missing",
        "train",
        "a saved blocks-tier RM read with an empty hidden-state cache, a text never extracted",
        DataError,
        r"1 of 1 texts have no cached hidden states entering block 1 of tiny-random",
        _blocks_states_missing,
    ),
    Case(
        "blocks-states-other-model",
        "train",
        "a hidden-state cache folder whose manifest names another backbone",
        DataError,
        r"the cached hidden states in .* are from another backbone or layer: model 'smollm2-135m'",
        _blocks_states_other_model,
    ),
    Case(
        "papermill-wrong-type",
        "notebooks",
        'notebook 01 run by papermill with overrides `{"head.epochs": "many"}`',
        None,
        r"ConfigError.*'head.epochs' must be int, got str",
        _papermill_wrong_type,
        slow=True,
    ),
]


def _message(case: Case, tmp: Path) -> tuple[str, str]:
    """(exception type name, message) a case produces, with the tmp folder shown as <tmp>."""
    try:
        out = case.run(tmp)
        name, text = "handled", str(out)
    except Exception as err:  # the catalogue records whatever comes out, expected or not
        name, text = type(err).__name__, str(err)
        if hasattr(err, "ename"):  # PapermillExecutionError: the notebook's own exception
            text = f"{err.ename}: {err.evalue}"
    for root in (str(tmp.resolve()), str(tmp)):
        text = text.replace(root, "<tmp>")
    return name, re.sub(r"\s+", " ", text).strip()


FAST = [pytest.param(c, id=c.id) for c in CASES if not c.slow]


@pytest.mark.parametrize("case", FAST)
def test_case(case: Case, tmp_path: Path) -> None:
    if case.expect is None:
        assert re.search(case.match, str(case.run(tmp_path))), case.input
        return
    with pytest.raises(case.expect, match=case.match) as info:
        case.run(tmp_path)
    assert info.type is case.expect, f"{case.id}: got {info.type.__name__}, expected exactly {case.expect.__name__}"


def test_nan_loss_leaves_no_saved_head(tmp_path: Path) -> None:
    data = pipeline.StudyData(features={"a": {"train": _feats()}, "b": {"train": _feats(source="b", seed=1)}})
    run = runs.open_run(_cfg(tmp_path, **{"head.lr": 1e30, "train.batch_per_source": 8}), str(tmp_path / "run"), "nb")
    with pytest.raises(TrainingError, match="non-finite BT loss"):
        pipeline.fit(run.cfg, data, ["more"], seeds=[0], run=run)
    assert not list(run.heads_dir.rglob("*.pt")), "a failed fit must not save a head"


@pytest.mark.slow
@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.area == "run_all"])
def test_run_all_case(case: Case, tmp_path: Path) -> None:
    assert re.search(case.match, str(case.run(tmp_path.resolve()))), case.input


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "notebooks" / "01_diversity.ipynb").exists(), reason="notebooks not built")
def test_papermill_wrong_type(tmp_path: Path) -> None:
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as info:
        _papermill_wrong_type(tmp_path)
    assert info.value.ename == "ConfigError"
    assert "'head.epochs' must be int, got str: 'many'" in str(info.value)
    assert not list((tmp_path / "run").rglob("metrics.json")), "no metrics from a run that failed validation"


def test_doc_lists_every_case() -> None:
    doc = (REPO / "docs" / "bad_inputs.md").read_text()
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc]
    assert not missing, f"docs/bad_inputs.md lacks {missing}: regenerate it with `python tests/test_bad_inputs.py`"


def markdown(with_notebook: bool = False) -> str:
    """docs/bad_inputs.md: the catalogue with the messages produced right now."""
    lines = [
        "# Bad inputs: what each one raises",
        "",
        "Generated by `.venv/bin/python tests/test_bad_inputs.py --notebook > docs/bad_inputs.md` from the cases "
        "tested in `tests/test_bad_inputs.py`; messages are the real ones (temporary folders shown as `<tmp>`).",
        "Every error is a `morelib.core.errors` class (`MoreError` subclasses; `ConfigError`, `DataError` and "
        "`ModelError` "
        "are also `ValueError`s, `TrainingError` a `RuntimeError`) except metric/solver input checks, which raise "
        "plain `ValueError`. *handled* = no exception: a counted drop (logged on logger `morelib.data.sources` and "
        "kept in "
        "the run manifest's data counts) or a documented fallback. No case leaves a partial or overwritten file.",
        "",
        "| case | area | input | raises | message |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        if case.slow and not with_notebook:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            name, text = _message(case, Path(tmp))
        text = text.replace("|", "\\|")
        lines.append(f"| `{case.id}` | {case.area} | {case.input} | {name} | {text} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown("--notebook" in sys.argv))
