"""Tests of morelib.core.hardware: dtype choice (AMX/CUDA), explicit overrides, threads, tcmalloc lookup."""

from __future__ import annotations

import pytest
import torch

from morelib.core import hardware as H
from morelib.core.errors import ConfigError


def test_auto_dtype_follows_amx(monkeypatch):
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
