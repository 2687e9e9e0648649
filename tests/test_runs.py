"""Run folders: fresh never-overwritten folders, atomic writes that leave no partial file, complete manifests."""

import errno
import json
import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest

from morelib.align import alignment
from morelib.backbone import features
from morelib.core import reruns, runs, status
from morelib.core.config import load_config
from morelib.core.errors import ConfigError, DataError, RunError
from morelib.data.formats import Pair


@pytest.fixture
def cfg(tmp_path):
    return load_config("tiny", {"output_root": str(tmp_path / "outputs")})


def test_new_run_folder_is_named_and_never_reused(cfg, monkeypatch):
    monkeypatch.setattr(runs, "new_run_id", lambda c: "tiny-20240101-000000-abc1234")
    first = runs.open_run(cfg, "", "01_diversity")
    second = runs.open_run(cfg, None, "01_diversity")
    assert first.root.name == "tiny-20240101-000000-abc1234"
    assert second.root != first.root and second.root.name.startswith(first.root.name)
    assert (first.root / "config.yaml").exists() and first.dir.is_dir()


def test_reopening_a_run_keeps_its_config_and_shares_heads(cfg, tmp_path):
    first = runs.open_run(cfg, "", "01_diversity")
    again = runs.open_run(cfg, str(first.root), "02_more_training")
    assert again.root == first.root and again.heads_dir == first.heads_dir
    for run in (first, again):
        (run.dir / reruns.DONE_MARKER).touch()
    latest = runs.open_run(cfg, "latest", "03_hh_analysis")
    assert latest.root == first.root


def test_save_json_table_figure(cfg):
    run = runs.open_run(cfg, "", "nb")
    run.save_json("metrics", {"acc": 0.5, "nan": float("nan"), "t": (1, 2)})
    assert json.loads((run.dir / "metrics.json").read_text()) == {"acc": 0.5, "nan": None, "t": [1, 2]}
    run.save_table("t", pd.DataFrame({"a": [1, 2]}))
    assert pd.read_csv(run.dir / "tables" / "t.csv")["a"].tolist() == [1, 2]
    run.save_figure("f", go.Figure(go.Scatter(x=[0, 1], y=[1, 0])))
    html = (run.dir / "figures" / "f.html").read_text()
    assert 'src="plotly.min.js"' in html and (run.dir / "figures" / "plotly.min.js").stat().st_size > 100_000


def test_save_metrics_writes_what_the_notebooks_built_inline(cfg):
    run = runs.open_run(cfg, "", "nb")
    records = pd.DataFrame({"scheme": ["more", "top"], "ece": [0.1, float("nan")]})
    indexed = records.set_index("scheme")
    multi = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "v": [0.5, 0.25]}).set_index(["a", "b"])
    run.save_metrics(records=records, indexed=indexed, multi=multi, wide_t=indexed, text="t", n=3, wide=["wide_t"])
    inline = {
        "records": records.to_dict("records"),
        "indexed": indexed.reset_index().to_dict("records"),
        "multi": multi.reset_index().to_dict("records"),
        "wide_t": indexed.to_dict(),
        "text": "t",
        "n": 3,
    }
    run.save_json("inline", inline)
    assert (run.dir / "metrics.json").read_text() == (run.dir / "inline.json").read_text()
    run.save_metrics(file="other", x=records)
    assert json.loads((run.dir / "other.json").read_text()) == {
        "x": [{"scheme": "more", "ece": 0.1}, {"scheme": "top", "ece": None}]
    }
    with pytest.raises(RunError, match="wide=\\['nope'\\]"):
        run.save_metrics(x=records, wide=["nope"])


def test_disk_full_leaves_no_partial_file(cfg, monkeypatch):
    run = runs.open_run(cfg, "", "nb")
    run.save_json("metrics", {"old": 1})
    real_fsync = os.fsync

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(RunError, match="metrics.json.*No space"):
        run.save_json("metrics", {"new": 2})
    with pytest.raises(RunError, match="t.csv"):
        run.save_table("t", pd.DataFrame({"a": [1]}))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads((run.dir / "metrics.json").read_text()) == {"old": 1}
    assert not (run.dir / "tables" / "t.csv").exists()
    assert not [p for p in run.dir.rglob("*.tmp")], "temporary files must be removed"


def test_manifest_and_timings(cfg):
    run = runs.open_run(cfg, "", "nb")
    with run.timer("step"):
        pass
    table = run.finish()
    assert table["step"].tolist() == ["step", "total"]
    manifest = json.loads((run.dir / "manifest.json").read_text())
    for key in ("config", "git_commit", "packages", "seeds", "machine", "timings_s", "run_id"):
        assert key in manifest
    assert manifest["seeds"] == list(cfg.seeds) and manifest["packages"]["torch"] != "absent"


def test_start_validates_overrides(tmp_path):
    run = runs.start("tiny", str(tmp_path / "r"), '{"head.lr": 0.5}', "nb")
    assert run.cfg.head.lr == 0.5
    with pytest.raises(ConfigError, match="head.lrr"):
        runs.start("tiny", str(tmp_path / "r"), '{"head.lrr": 0.5}', "nb")
    with pytest.raises(ConfigError, match="overrides"):
        runs.start("tiny", str(tmp_path / "r"), "[1, 2]", "nb")


def test_run_all_cli_helpers(tmp_path, monkeypatch):
    assert json.loads(runs._main(["overrides", "head.lr=0.5", "seeds=[0, 1]", "data.data_dir=a=b"])) == {
        "head.lr": 0.5,
        "seeds": [0, 1],
        "data.data_dir": str(Path.cwd() / "a=b"),  # a relative folder means the caller's: run_all.sh runs this there
    }
    with pytest.raises(ConfigError, match="must look like key=value"):
        runs._main(["overrides", "head.lr"])
    root = runs._main(["create", "tiny", json.dumps({"output_root": str(tmp_path)})])
    spec = json.loads((Path(root) / "run_all.json").read_text())
    assert spec["profile"] == "tiny" and spec["overrides"] == {"output_root": str(tmp_path)}
    assert runs.resume_dir(root) == Path(root)
    with pytest.raises(RunError, match="no run to resume"):
        runs.resume_dir(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="train.lrr"):
        runs._main(["create", "tiny", '{"train.lrr": 1}'])


def test_rerun_of_a_finished_notebook_writes_into_its_own_subfolder(tmp_path):
    cfg = load_config("tiny", {"output_root": str(tmp_path)})
    first = runs.open_run(cfg, str(tmp_path / "r"), "02_x")
    first.save_json("metrics", {"a": 1})
    (first.dir / reruns.DONE_MARKER).touch()
    again = runs.open_run(cfg, str(tmp_path / "r"), "02_x")
    assert again.sub.startswith(runs.INTERACTIVE_PREFIX) and again.dir.parent.parent == first.root
    assert again.heads_dir == first.heads_dir  # the rerun reuses the run's RMs
    again.save_json("metrics", {"a": 2})
    assert json.loads((first.dir / "metrics.json").read_text()) == {"a": 1}


def test_log_to_file_keeps_info_out_of_the_visible_output(tmp_path, capsys):
    import logging

    run = runs.open_run(load_config("tiny", {"output_root": str(tmp_path)}), str(tmp_path / "r"), "01_x")
    path = runs.log_to_file(run)
    logging.getLogger("morelib.test").info("an info line")
    logging.getLogger("morelib.test").warning("a warning line")
    err = capsys.readouterr().err
    assert "a warning line" in err and "an info line" not in err
    assert "an info line" in path.read_text()
    with run.timer("fit heads"):
        pass
    assert "step: fit heads" in (run.root / runs.STATUS_FILE).read_text()
    logging.getLogger().handlers.clear()
    status.set_target(None, "")


def test_progress_lines_are_throttled(monkeypatch):
    lines = []
    monkeypatch.setattr(status, "report", lines.append)
    clock = iter([0.0, 1.0, 2.0, 31.0, 32.0, 33.0, 40.0, 50.0, 62.0])
    monkeypatch.setattr(status.time, "monotonic", lambda: next(clock))
    for done in (16, 10, 20, 30, 40, 50):
        status.progress("features x", done, 50)
    for done in (16, 32, 48):  # the next split: the 30 s clock runs on across extractions
        status.progress("features x", done, 48)
    assert [line.split(": ")[1].split()[0] for line in lines] == ["16/50", "30/50", "48/48"]


def test_create_stores_only(tmp_path):
    out = runs._main(["create", "tiny", json.dumps({"output_root": str(tmp_path)}), "01,02"])
    assert json.loads((Path(out) / "run_all.json").read_text())["only"] == "01,02"


def test_drop_policies_keeps_them_only_when_asked(tmp_path):
    folders = {"more": tmp_path / "more"}
    folders["more"].mkdir()
    assert "kept" in alignment.drop_policies(load_config("tiny", {"rjs.keep_policies": True}), folders)
    assert folders["more"].exists()
    assert "deleted" in alignment.drop_policies(load_config("tiny"), folders) and not folders["more"].exists()


def test_written_files_are_readable_by_others(cfg, tmp_path):
    old = os.umask(0o022)
    try:
        run = runs.open_run(cfg, str(tmp_path / "r"), "nb")
        run.save_json("metrics", {"a": 1})
        run.finish()
        shard_dir = tmp_path / "cache"
        features.extract([Pair("p", " a", " b", "s", "0")], cfg.model, shard_dir, progress=False)
    finally:
        os.umask(old)
    files = [run.root / "config.yaml", run.dir / "metrics.json", run.dir / "manifest.json"]
    files += list(shard_dir.rglob("shard-*.safetensors"))
    assert len(files) == 4 and {oct(p.stat().st_mode & 0o777) for p in files} == {"0o644"}


def test_resolve_paths_uses_the_callers_directory(tmp_path):
    out = runs.resolve_paths({"output_root": "out", "data.data_dir": "hub", "head.lr": 0.1}, tmp_path)
    assert out == {"output_root": str(tmp_path / "out"), "data.data_dir": "hub", "head.lr": 0.1}
    assert runs.resolve_paths({"data.data_dir": "../d"}, tmp_path)["data.data_dir"] == str(tmp_path.parent / "d")


def test_create_writes_the_config_every_notebook_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MORE_DATA_DIR", str(tmp_path))
    run = runs.create("tiny", {"output_root": str(tmp_path / "o"), "head.epochs": 3}, "01")
    spec = json.loads((run / "run_all.json").read_text())
    assert spec["data_root"] == str(tmp_path) and spec["only"] == "01"
    saved = load_config(run / runs.CONFIG_FILE)
    assert saved.head.epochs == 3 and saved.profile == "tiny"
    reopened = runs.open_run(saved, str(run), "01_diversity")
    assert not (reopened.dir / runs.CONFIG_FILE).exists()  # the notebook's config is the run's: no copy beside it
    plan = runs.resume_plan(str(run))
    assert (plan["profile"], plan["overrides"], plan["only"], plan["note"]) == (
        str(run / "config.yaml"),
        "{}",
        "01",
        "",
    )


def test_resume_keeps_the_saved_config_and_names_the_change(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text(f"profile: p\noutput_root: {tmp_path / 'o'}\nhead: {{epochs: 5}}\n")
    run = runs.create(str(profile), {"seeds": [0]}, "")
    profile.write_text(f"profile: p\noutput_root: {tmp_path / 'o'}\nhead: {{epochs: 7}}\n")
    plan = runs.resume_plan(str(run))
    assert load_config(plan["profile"]).head.epochs == 5 and load_config(plan["profile"]).seeds == (0,)
    assert "head.epochs: 5 → 7" in plan["note"]
    profile.unlink()
    assert "no longer loads" in runs.resume_plan(str(run))["note"]


def test_preflight_names_a_missing_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MORE_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=r"data directory not found: .*nowhere \(from MORE_DATA_DIR\)"):
        runs.create("tiny", {"output_root": str(tmp_path / "o")})
    assert not (tmp_path / "o").exists()
    runs.preflight(load_config("tiny", {"data.data_dir": "hub"}))  # the hub needs no local folder
