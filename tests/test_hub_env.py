"""run_all.sh decides hub access per profile: a hub profile (paper: data_dir hub, hub model ids) runs online unless
MORE_OFFLINE=1; a local profile runs offline. Checked on the environment run_all.sh exports to its notebooks."""

import os
import subprocess
from pathlib import Path

import pytest

from morelib.core import runs
from morelib.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _hub_line(tmp_path: Path, profile: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MORE_OFFLINE")}
    done = subprocess.run(
        [str(ROOT / "run_all.sh"), "--profile", profile, "--dry-run", "-p", "output_root", str(tmp_path)],
        env={**clean, "MORE_NO_APT": "1", "MORE_DATA_DIR": str(tmp_path), **env},  # the dry run checks the folder
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return next(line for line in done.stdout.splitlines() if line.startswith("[setup] HF_HUB_OFFLINE="))


def test_hub_needs_of_profiles():
    assert runs.hub_needs(load_config("paper")) == ["data", "EleutherAI/pythia-1.4b", "chavinlo/alpaca-native"]
    assert runs.hub_needs(load_config("default")) == [] and runs.hub_needs(load_config("tiny-finetune")) == []


@pytest.mark.parametrize(
    "profile, env, offline",
    [
        ("paper", {}, "0"),
        ("default", {}, "1"),
        ("paper", {"MORE_OFFLINE": "1"}, "1"),
        ("default", {"HF_HUB_OFFLINE": "0"}, "0"),
    ],
)
def test_notebook_environment(tmp_path, profile, env, offline):
    assert _hub_line(tmp_path, profile, **env).startswith(f"[setup] HF_HUB_OFFLINE={offline} ")


def test_offline_error_says_how_to_go_online(monkeypatch):
    from morelib.core.errors import offline_hint

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "MORE_OFFLINE" in offline_hint() and "HF_HUB_OFFLINE=0" in offline_hint()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert offline_hint() == ""
