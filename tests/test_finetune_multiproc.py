"""Two processes through `accelerate launch` on CPU (torchrun + gloo) on the tiny model: one update = one plan batch
split over the two ranks (half of each source's pairs each), so updates = plan steps; the same λ on both ranks (head
gradients all-reduced before the min-norm solve), and a checkpoint resumes to the uninterrupted run.

accelerate 1.15's `--cpu --num_processes 2` starts ONE process (multi-CPU needs mpirun there), so the test launches
`--multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=true: torchrun starts two ranks and Trainer picks gloo on CPU.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from morelib.core.config import data_root, load_config
from morelib.train import finetune as ft

PROFILE = "tiny-finetune"
PLAN_STEPS = 4
ACCELERATE = Path(sys.executable).with_name("accelerate")
pytestmark = pytest.mark.skipif(
    not ACCELERATE.exists() or data_root(load_config(PROFILE)) is None or not data_root(load_config(PROFILE)).is_dir(),
    reason="needs .venv/bin/accelerate and the local data folder",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(out: Path, *extra: str) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        str(ACCELERATE),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "morelib.train.finetune",
        "--profile",
        PROFILE,
        "--scheme",
        "more",
        "--output-dir",
        str(out),
        "-o",
        f"finetune.steps={PLAN_STEPS}",
        "-o",
        "finetune.save_steps=1",
        *extra,
    ]
    done = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[1]
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _rank_lams(out: Path, rank: int) -> list[dict]:
    return [json.loads(x) for x in (out / ft.RANK_LOG.format(rank=rank)).read_text().splitlines()]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("mp") / "more"
    _launch(out)
    return out


def test_one_update_is_one_plan_batch_split_over_the_ranks(two_ranks):
    state = json.loads((two_ranks / f"checkpoint-{PLAN_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == PLAN_STEPS and not (two_ranks / f"checkpoint-{PLAN_STEPS + 1}").exists()
    steps = list(range(1, PLAN_STEPS + 1))
    assert [x["step"] for x in _rank_lams(two_ranks, 0)] == steps == [x["step"] for x in _rank_lams(two_ranks, 1)]
    split = ft.batch_split(load_config(PROFILE), 3, 2)  # tiny-finetune: 4 pairs per source per update, 3 sources
    assert (split.per_device, split.grad_accum) == (2, 1)
    fed = json.loads((two_ranks / ft.THROUGHPUT_FILE).read_text())  # rank 0's share: 2 pairs of each of 3 sources
    assert fed["pairs"] == PLAN_STEPS * 2 * 3 and fed["world_size"] == 2


def test_both_ranks_use_the_same_lambda(two_ranks):
    lam0 = torch.tensor([x["lam"] for x in _rank_lams(two_ranks, 0)])
    lam1 = torch.tensor([x["lam"] for x in _rank_lams(two_ranks, 1)])
    assert torch.equal(lam0, lam1)
    assert torch.allclose(lam0.sum(1), torch.ones(PLAN_STEPS), atol=1e-6)
    logged = [json.loads(x) for x in (two_ranks / ft.LOG_FILE).read_text().splitlines()]
    table = torch.tensor(
        [[r[f"lam/{s}"] for s in ("helpful", "harmless", "oasst1")] for r in logged], dtype=torch.float64
    )
    assert torch.allclose(table, lam0.double(), atol=1e-6)


def test_checkpoint_resumes_to_the_same_run(two_ranks, tmp_path):
    out = tmp_path / "more"
    shutil.copytree(two_ranks, out)
    for step in range(2, PLAN_STEPS + 1):
        shutil.rmtree(out / f"checkpoint-{step}")
    shutil.rmtree(out / ft.MODEL_DIR)
    for rank in (0, 1):  # keep step 1 only, as a run killed after checkpoint-1 would have
        path = out / ft.RANK_LOG.format(rank=rank)
        path.write_text(path.read_text().splitlines()[0] + "\n")
    _launch(out, "--resume")
    assert _rank_lams(out, 0)[-1] == _rank_lams(two_ranks, 0)[-1]
    assert _rank_lams(out, 1)[-1]["lam"] == _rank_lams(two_ranks, 1)[-1]["lam"]
    resumed = load_file(str(out / ft.MODEL_DIR / "model.safetensors"))
    whole = load_file(str(two_ranks / ft.MODEL_DIR / "model.safetensors"))
    assert resumed.keys() == whole.keys()
    for key in whole:
        assert torch.allclose(resumed[key], whole[key], atol=1e-6), key
