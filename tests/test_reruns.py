"""Reruns (issue 27 A) and extraction progress (issue 27 D): a rerun runs on the run's own config (a conflicting
profile or override is refused, 'default' stands for the run's profile), `latest` is the newest FINISHED run, RMs a
rerun fits go under interactive-*/heads; progress lines carry the overall count and ETA and reach the terminal, not
the notebook. Every notebook's rerun against a finished tiny run is checked file by file in tests/test_notebooks.py
(01–04, 06, 07) and tests/test_notebook05.py (05), on the runs those modules make anyway."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from morelib.backbone import features
from morelib.core import reruns, runs, status
from morelib.core.config import load_config
from morelib.core.errors import ConfigError, RunError
from morelib.study import pipeline
from morelib.train import reward_head
from morelib.train.reward_models import RMKey

REPO = Path(__file__).resolve().parents[1]


def _run(base: Path, profile: str, stamp: str, finished: bool, only: str | None = None) -> Path:
    """A run folder `<profile>-<stamp>-abc1234` under `base` whose notebook 01 finished (its manifest) or not."""
    root = base / f"{profile}-{stamp}-abc1234"
    cfg = load_config(profile, {"output_root": str(base)})
    runs.atomic_write(root / reruns.CONFIG_FILE, lambda fh: fh.write(runs.config_text(cfg)))
    (root / "01_diversity").mkdir()
    if finished:
        (root / "01_diversity" / reruns.MANIFEST_FILE).write_text("{}")
    if only is not None:
        (root / reruns.RUN_ALL_FILE).write_text(json.dumps({"only": only}))
    return root


def test_latest_is_the_newest_finished_run_and_its_error_points_at_run_all(tmp_path, capsys):
    old = _run(tmp_path, "tiny", "20260101-000000", finished=True)
    newer = _run(tmp_path, "tiny-finetune", "20260102-000000", finished=True)
    _run(tmp_path, "tiny", "20260103-000000", finished=False)  # newest, but stopped before notebook 01 finished
    _run(tmp_path, "tiny", "20260104-000000", finished=True, only="01,02")  # 02 never ran
    assert reruns.latest_run(tmp_path) == newer
    assert reruns.latest_run(tmp_path, "tiny") == old
    run = runs.start("default", "latest", {"output_root": str(tmp_path)}, "01_diversity")
    assert run.root == newer and run.cfg.profile == "tiny-finetune" and run.sub.startswith(runs.INTERACTIVE_PREFIX)
    assert capsys.readouterr().out.strip() == (
        f"run {newer.name} was made with profile 'tiny-finetune': this notebook runs on its {newer / 'config.yaml'}"
    )
    assert runs.start("tiny", "latest", {"output_root": str(tmp_path)}, "02_more_training").root == old
    with pytest.raises(RunError) as err:
        reruns.latest_run(tmp_path, "tiny-capacity")
    assert str(err.value) == (
        f"no finished 'tiny-capacity' run under {tmp_path}; run ./run_all.sh --profile tiny-capacity first, or pass "
        "run_dir='' to start a new run"
    )
    with pytest.raises(RunError) as err:
        runs.start("default", "latest", {"output_root": str(tmp_path / "empty")}, "01_diversity")
    assert str(err.value) == (
        f"no finished run under {tmp_path / 'empty'}; run ./run_all.sh first, or pass run_dir='' to start a new run"
    )


def test_an_unfinished_run_is_named_with_how_to_finish_it(tmp_path):
    stopped = _run(tmp_path, "tiny", "20260103-000000", finished=False, only="01")
    with pytest.raises(RunError, match=f"finish the newest of 1 unfinished: ./run_all.sh --resume {stopped}\\)"):
        reruns.latest_run(tmp_path, "tiny")
    assert reruns.expected_notebooks(stopped) == ["01_diversity"] and not reruns.run_finished(stopped)


def test_a_conflicting_profile_or_override_is_refused_the_runs_own_accepted(tmp_path, capsys):
    root = _run(tmp_path, "tiny", "20260101-000000", finished=True)
    where = {"output_root": str(tmp_path)}
    with pytest.raises(ConfigError) as err:
        runs.start("tiny-finetune", str(root), where, "02_more_training")
    assert str(err.value) == (
        f"profile 'tiny-finetune' conflicts with run {root.name}, made with profile 'tiny': a rerun uses the run's own "
        "config; pass profile='tiny' (or leave profile='default') to rerun it, or run_dir='' to start a new "
        "'tiny-finetune' run"
    )
    with pytest.raises(ConfigError, match=r"overrides change run .* \(profile 'tiny'\): head.epochs: 5 → 9;"):
        runs.start("default", str(root), {**where, "head.epochs": 9}, "02_more_training")
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    for profile in ("tiny", str(root / "config.yaml"), "default"):
        run = runs.start(profile, str(root), where, "01_diversity", focus_source="helpful")
        assert run.cfg == load_config(root / "config.yaml") and run.sub.startswith(runs.INTERACTIVE_PREFIX)
    outside = [p.relative_to(root) for p in root.rglob("*") if not p.relative_to(root).parts[0].startswith("inter")]
    assert sorted(outside) == before
    assert capsys.readouterr().out.count("made with profile 'tiny'") == 1  # only 'default' says it stands for tiny


def test_a_rerun_saves_the_rms_it_fits_under_interactive_and_reads_the_runs_own(tmp_path, monkeypatch):
    cfg = load_config("tiny", {"output_root": str(tmp_path), "data.synthetic.n_train": 120, "n_boot": 20})
    data, _ = pipeline.synthetic_data(cfg)
    first = runs.open_run(cfg, str(tmp_path / "r"), "02_x")
    kept = pipeline.fit(cfg, data, ["multitask"], run=first)
    (first.dir / reruns.DONE_MARKER).touch()
    before = sorted((p.relative_to(first.root), p.read_bytes()) for p in first.heads_dir.rglob("*") if p.is_file())
    again = runs.open_run(cfg, str(tmp_path / "r"), "02_x")
    trained = []
    real = reward_head.train_head
    monkeypatch.setattr(reward_head, "train_head", lambda *a, **k: trained.append(a[1]) or real(*a, **k))
    heads = pipeline.fit(cfg, data, ["multitask", "more"], run=again)
    assert trained == ["more"] * len(cfg.seeds), "the run's own multitask RMs are read, not refitted"
    after = sorted((p.relative_to(first.root), p.read_bytes()) for p in first.heads_dir.rglob("*") if p.is_file())
    assert after == before and len(list((again.root / again.sub / "heads").rglob("*.pt"))) == len(cfg.seeds)
    key = RMKey("multitask", seed=cfg.seeds[0])
    assert np.array_equal(heads[key].head.w.numpy(), kept[key].head.w.numpy())
    assert set(pipeline.load_heads(again)) == set(heads)
    files = again.manifest_extra["head_files"]
    assert sum(f.startswith(again.sub) for f in files) == len(cfg.seeds) and len(files) == 2 * len(cfg.seeds)


def test_progress_line_formats():
    assert (
        status.progress_line("features m", 196, 635, "texts", 21.8)
        == "features m: 196/635 texts, 9.0 texts/s, ETA 49 s"
    )
    assert status.progress_line("features m", 196, 635, "texts", 10.0, ("features", 2140, 8914, 235.2)) == (
        "features m: 196/635 texts; features 2,140/8,914 texts overall, 9.1 texts/s, ETA 12 min"
    )
    assert status.progress_line("hidden states", 0, 8914, "texts", 0.0) == "hidden states: 0/8,914 texts"
    assert [status.duration(s) for s in (0.4, 59, 60, 3599, 3600, 8280)] == [
        "0 s",
        "59 s",
        "1 min",
        "60 min",
        "1.0 h",
        "2.3 h",
    ]


def test_overall_progress_counts_every_extraction(monkeypatch):
    lines: list[str] = []
    monkeypatch.setattr(status, "report", lines.append)
    monkeypatch.setattr(status, "_last", {})
    clock = iter(float(t) for t in range(0, 1000, 40))  # 40 s apart: every call reports
    monkeypatch.setattr(status.time, "monotonic", lambda: next(clock))
    with status.overall("features", 100):
        status.progress("features m", 30, 60, step=30)  # source a: 60 texts
        status.progress("features m", 60, 60, step=30)
        status.progress("features m", 40, 40, step=40)  # source b: 40 texts, a new extraction of the task
    status.progress("features m", 5, 10, step=5)  # outside the block: no overall part
    assert lines == [  # 30, 60, 100 texts after 40, 80, 120 s of the block
        "features m: 30/60 texts; features 30/100 texts overall, 0.8 texts/s, ETA 2 min",
        "features m: 60/60 texts; features 60/100 texts overall, 0.8 texts/s, ETA 53 s",
        "features m: 40/40 texts; features 100/100 texts overall, 0.8 texts/s, ETA 0 s",
        "features m: 5/10 texts",
    ]


def test_uncached_is_what_prepare_extracts(tmp_path, monkeypatch):
    small = {"train_pairs": 6, "calib_pairs": 4, "test_pairs": 4}
    sources = [{"name": n, "label": n, "loader": f"hh-{n}", **small} for n in ("helpful", "harmless")]
    cfg = load_config("tiny", {"output_root": str(tmp_path), "data.sources": sources})
    lines: list[str] = []
    monkeypatch.setattr(status, "report", lines.append)
    monkeypatch.setattr(status, "_last", {})
    clock = iter(float(t) for t in range(0, 100_000, 40))
    monkeypatch.setattr(status.time, "monotonic", lambda: next(clock))
    real = features.uncached
    totals: list[int] = []
    monkeypatch.setattr(features, "uncached", lambda *a: totals.append(real(*a)) or totals[-1])
    data = pipeline.prepare(cfg, runs.open_run(cfg, "", "nb"))
    pairs = [p for s in data.sources for part in data.pairs[s].values() for p in part]
    distinct = {p.prompt + side for p in pairs for side in (p.chosen, p.rejected)}
    assert totals == [len(distinct)] and f"features {len(distinct):,}/{len(distinct):,} texts overall" in lines[-1]
    assert features.uncached([data.pairs[s]["test"] for s in data.sources], cfg.model, tmp_path / "cache") == 0


def test_status_lines_reach_the_terminal_not_the_notebook(tmp_path, capfd):
    pm = pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook()
    code = f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom morelib.core import status\n"
    nb.cells = [nbformat.v4.new_code_cell(code + "status.report('to the terminal')\nprint('to the notebook')")]
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(
        str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), progress_bar=False, kernel_name="python3"
    )
    outputs = nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs
    assert [(o.get("name"), o.get("text")) for o in outputs] == [("stdout", "to the notebook\n")]
    assert "morelib] to the terminal" in capfd.readouterr().err
