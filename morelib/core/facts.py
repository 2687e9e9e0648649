"""Facts a process learns about its machine while it runs, for the run manifest (core/runs.py writes manifest.json).

Torch-free on purpose: `python -m morelib.core.runs` (run_all.sh) starts without torch, yet the manifest must carry
what `core.hardware` measured in the same process (the bf16-vs-fp32 probe and the dtype it chose, project issue 29).
"""

from __future__ import annotations

import copy
from typing import Any

_FACTS: dict[str, dict[str, Any]] = {}


def note(section: str, key: str, value: Any) -> None:
    """Record `value` under `section`/`key` (a later note of the same key replaces it)."""
    _FACTS.setdefault(section, {})[key] = value


def snapshot() -> dict[str, dict[str, Any]]:
    """A deep copy of every fact noted in this process, {section: {key: value}}."""
    return copy.deepcopy(_FACTS)


def clear() -> None:
    """Forget every fact (tests)."""
    _FACTS.clear()
