"""Tests of morelib.core.hardware: dtype choice (CUDA, the bf16-vs-fp32 probe and its cache, AMX without a probe),
explicit overrides, the forced-bf16 warning, the manifest record, threads, tcmalloc lookup."""

from __future__ import annotations

import json
import time
import warnings

import pytest
import torch

from morelib.backbone import model as M
from morelib.core import facts, runs
from morelib.core import hardware as H
from morelib.core.errors import ConfigError


def _probe(bf16: float, fp32: float) -> H.DtypeProbe:
    """A stub probe result: `bf16` and `fp32` texts/s of a backbone named 'stub'."""
    return H.DtypeProbe(
        key="k" * 16,
        backbone="stub",
        bf16_texts_per_s=bf16,
        fp32_texts_per_s=fp32,
        texts=4,
        tokens=128,
        rounds=2,
        threads=1,
        seconds=3.0,
        measured="2026-12-05T02:00:00",
        cpu="stub cpu",
        torch=torch.__version__,
    )


def _never() -> H.DtypeProbe:
    raise AssertionError("the probe must not run here")


@pytest.fixture
def bf16_cpu(monkeypatch, tmp_path):
    """A CPU that lists avx512_bf16 (no AMX), a fresh probe cache, no facts and no earlier warning."""
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setenv("MORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(H, "_WARNED", set())
    facts.clear()
    yield
    facts.clear()


def test_auto_dtype_follows_the_probe_both_ways(bf16_cpu):
    cpu = torch.device("cpu")
    assert H.resolve_dtype("auto", cpu, probe=lambda: _probe(bf16=11.0, fp32=5.5)) == torch.bfloat16
    assert facts.snapshot()["dtype_probe"]["stub"]["chosen"] == "bf16"
    assert H.resolve_dtype("auto", cpu, probe=lambda: _probe(bf16=1.1, fp32=5.5)) == torch.float32
    assert facts.snapshot()["dtype_probe"]["stub"]["chosen"] == "fp32"
    # the threshold: 1.2x is enough, 1.19x is not
    assert H.resolve_dtype("auto", cpu, probe=lambda: _probe(bf16=6.0, fp32=5.0)) == torch.bfloat16
    assert H.resolve_dtype("auto", cpu, probe=lambda: _probe(bf16=5.95, fp32=5.0)) == torch.float32


def test_no_probe_without_bf16_instructions_fp32_or_cuda(bf16_cpu, monkeypatch):
    assert H.resolve_dtype("fp32", torch.device("cpu"), probe=_never) == torch.float32
    assert H.resolve_dtype("auto", torch.device("cuda"), probe=_never) == torch.bfloat16
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert H.resolve_dtype("auto", torch.device("cpu"), probe=_never) == torch.float32
    assert facts.snapshot()["cpu"]["bf16_instructions"] == []


def test_probe_is_measured_once_and_cached_per_machine(bf16_cpu, monkeypatch):
    calls = []

    def forward(dtype):
        calls.append(dtype)
        time.sleep(0.002 if dtype == torch.bfloat16 else 0.006)

    first = H.dtype_probe("stub-net", forward)
    assert len(calls) == 2 + 2 * H.PROBE_ROUNDS and not first.cached  # one warm-up per dtype, then alternating rounds
    assert first.bf16_fast and first.texts == H.PROBE_BATCH and first.tokens == H.PROBE_TOKENS
    assert json.loads(H.probe_path("stub-net").read_text())["speedup"] == round(first.speedup, 3)
    again = H.dtype_probe("stub-net", forward)
    assert again.cached and len(calls) == 6 and again.record() == {**first.record(), "cached": True}
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset({"avx512_bf16", "amx_bf16"}))  # another machine: another key
    assert H.probe_key("stub-net") != first.key
    assert not H.dtype_probe("stub-net", forward).cached and len(calls) == 12


def test_broken_probe_cache_is_measured_again_with_a_warning(bf16_cpu):
    path = H.probe_path("stub-net")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        probe = H.dtype_probe("stub-net", lambda dtype: None if dtype == torch.bfloat16 else time.sleep(0.001))
    assert not probe.cached and H.dtype_probe("stub-net", lambda dtype: None).cached


def test_forced_bf16_on_a_slow_cpu_runs_and_warns_once(bf16_cpu):
    slow = lambda: _probe(bf16=1.0, fp32=5.0)  # noqa: E731
    with pytest.warns(UserWarning, match=r"1 texts/s against 5 in fp32 \(0.20x; 5.0x slower\)"):
        assert H.resolve_dtype("bf16", torch.device("cpu"), probe=slow) == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert H.resolve_dtype("bf16", torch.device("cpu"), probe=slow) == torch.bfloat16
        assert H.resolve_dtype("bf16", torch.device("cpu"), probe=lambda: _probe(bf16=11.0, fp32=5.5))


def test_manifest_records_the_probe_and_its_choice(bf16_cpu):
    H.resolve_dtype("auto", torch.device("cpu"), probe=lambda: _probe(bf16=11.0, fp32=5.5))
    record = runs.machine()["dtype_probe"]["stub"]
    assert record["requested"] == "auto" and record["chosen"] == "bf16" and record["speedup"] == 2.0
    assert record["bf16_texts_per_s"] == 11.0 and record["fp32_texts_per_s"] == 5.5 and record["seconds"] == 3.0
    assert runs.machine()["cpu"]["bf16_instructions"] == ["avx512_bf16"]


def test_load_reward_model_probes_its_own_forward(bf16_cpu):
    model, _ = M.load_reward_model("tiny-random", dtype="auto", device="cpu")
    probe = json.loads(H.probe_path("tiny-random").read_text())
    assert probe["texts"] == H.PROBE_BATCH and probe["tokens"] == H.PROBE_TOKENS and probe["fp32_texts_per_s"] > 0
    assert model.dtype == (torch.bfloat16 if probe["speedup"] >= H.BF16_MIN_SPEEDUP else torch.float32)
    assert facts.snapshot()["dtype_probe"]["tiny-random"]["chosen"] == H.dtype_name(model.dtype)


def test_fp32_is_bit_reproducible_and_never_probes(bf16_cpu):
    a, _ = M.load_reward_model("tiny-random", dtype="fp32", device="cpu")
    b, _ = M.load_reward_model("tiny-random", dtype="fp32", device="cpu")
    assert a.dtype == torch.float32 and not H.probe_path("tiny-random").exists()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_auto_dtype_without_a_probe_follows_amx(monkeypatch):
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert H.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert H.resolve_dtype("auto", torch.device("cpu")) == torch.float32


def test_auto_dtype_is_bf16_on_cuda(monkeypatch):
    monkeypatch.setattr(H, "cpu_flags", lambda: frozenset())
    assert H.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


def test_explicit_dtype_overrides():
    assert H.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert H.resolve_dtype("fp32", torch.device("cuda")) == torch.float32
    assert H.dtype_name(torch.bfloat16) == "bf16"


def test_bad_dtype_named():
    with pytest.raises(ConfigError, match="fp16"):
        H.resolve_dtype("fp16")


def test_set_threads_roundtrip():
    before = torch.get_num_threads()
    try:
        assert H.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_tcmalloc_path_is_a_file_or_none():
    path = H.tcmalloc_path()
    assert path is None or ("tcmalloc" in path and __import__("os").path.exists(path))
    assert isinstance(H.tcmalloc_active(), bool)
