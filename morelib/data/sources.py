"""Preference data: named sources (paper §5.1, Table 4) loaded from the HF hub or a local copy, as `Pair` rows.

Sources: `hh-helpful`, `hh-harmless` (plus the extra HH subsets `hh-helpful-online`, `hh-helpful-rejection-sampled`),
`oasst1`, `webgpt`, `summarize`, `ultrafeedback` (a labelled stand-in, GPT-4 ratings), or a path to a local
.jsonl/.jsonl.gz/.parquet file with prompt/chosen/rejected. Local copies use the hub's file layout
(e.g. <root>/hh-rlhf/harmless-base/test.jsonl.gz) and the formats of /work/shared/data (see its README).
Checked against /work/shared/data: harmless-base test gives 2,312 pairs and helpful-base 2,352 (Table 4), both
lossless. Record formats live in `morelib.data.formats`.

Drop policy (every drop is counted in a `DropLog` and logged, never silent): rows with chosen == rejected,
tied scores/ranks (WebGPT, UltraFeedback, OASST), HH rows with no shared Assistant turn, rows with an empty prompt,
and OASST prompts in another language. Everything else that is wrong raises `DataError` naming file:line:
missing field, wrong field type, malformed JSON, non-UTF-8 text, truncated gzip; so do an unknown source, a missing
split and a source that yields no pairs. A source with no files under the data root (or a hub split that cannot be
loaded) raises `MissingDataError`, the one error a study reports as a missing source and carries on from.
"""

from __future__ import annotations

import functools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from morelib.core.config import LOADERS, LOCAL_SUFFIXES, data_root
from morelib.core.errors import DataError, MissingDataError, offline_hint
from morelib.data import formats
from morelib.data.formats import Pair
from morelib.data.groups import carve_groups

__all__ = ["Pair", "DropLog", "SOURCES", "SPLITS", "load_preferences", "HUB_TEST_SEED"]

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
HUB_TEST_SEED = 0  # fixed, so carved hub test sets (WebGPT, Summarize) are the same for every run seed
WEBGPT_TEST_PAIRS = 901  # Table 4's WebGPT test size; the hub ships only a train split
SUMMARIZE_TEST_PAIRS = 2000  # Table 4's "2,000*" Summarize test sample of the validation split


@dataclass(frozen=True)
class SourceInfo:
    """Where a named source lives on the hub and in a local copy, and how its records convert."""

    hub_repo: str
    hub_kwargs: dict[str, Any]
    hub_splits: dict[str, str]
    local: dict[str, tuple[str, ...]]
    convert: Callable[..., Any]
    label: str


def _hh(subset: str, label: str) -> SourceInfo:
    """Anthropic HH-RLHF subset `subset` (helpful-base, harmless-base, ...)."""
    local = {s: (f"hh-rlhf/{subset}/{s}.jsonl.gz", f"hh-rlhf/{subset}/{s}.jsonl") for s in SPLITS}
    return SourceInfo(
        "Anthropic/hh-rlhf", {"data_dir": subset}, {"train": "train", "test": "test"}, local, formats.hh_pair, label
    )


_SUMMARIZE_FILES = ("summarize-from-feedback/comparisons/*.json.gz", "summarize-from-feedback/comparisons/*.json")
SOURCES: dict[str, SourceInfo] = {
    "hh-helpful": _hh("helpful-base", "Anthropic Helpful"),
    "hh-harmless": _hh("harmless-base", "Anthropic Harmless"),
    "hh-helpful-online": _hh("helpful-online", "Anthropic Helpful (online)"),
    "hh-helpful-rejection-sampled": _hh("helpful-rejection-sampled", "Anthropic Helpful (rejection-sampled)"),
    "oasst1": SourceInfo(
        "OpenAssistant/oasst1",
        {},
        {"train": "train", "test": "validation"},
        {
            "train": ("oasst1/data/train-*.parquet",),
            "test": (
                "oasst1/data/validation-*.parquet",
                "oasst/en_100_tree.jsonl.gz",
                "oasst/en_100_tree_pairs.jsonl.gz",
            ),
        },
        formats.oasst_record_pairs,
        "OpenAssistant Oasst1",
    ),
    "webgpt": SourceInfo(
        "openai/webgpt_comparisons",
        {},
        {"train": "train", "test": "train"},
        {"train": ("webgpt_comparisons/*.jsonl.gz", "webgpt_comparisons/*.jsonl", "webgpt_comparisons/*.parquet")},
        formats.webgpt_pair,
        "OpenAI Webgpt",
    ),
    "summarize": SourceInfo(
        "openai/summarize_from_feedback",
        {"name": "comparisons"},
        {"train": "train", "test": "validation"},
        {"train": _SUMMARIZE_FILES, "test": _SUMMARIZE_FILES},
        formats.summarize_pair,
        "OpenAI Summarize",
    ),
    "ultrafeedback": SourceInfo(
        "trl-lib/ultrafeedback_binarized",
        {},
        {"train": "train", "test": "test"},
        {
            "train": (
                "ultrafeedback_binarized/data/train-*.parquet",
                "ultrafeedback-binarized-sample/train_clean.jsonl.gz",
            ),
            "test": (
                "ultrafeedback_binarized/data/test-*.parquet",
                "ultrafeedback-binarized-sample/eval_clean.jsonl.gz",
            ),
        },
        formats.ultrafeedback_pair,
        "UltraFeedback (GPT-4 ratings; stand-in, not WebGPT)",
    ),
}
# Summarize records carry their original split; the hub's validation = the original valid1 + valid2.
_SUMMARIZE_RECORD_SPLITS = {"train": ("train",), "test": ("valid1", "valid2", "validation", "test")}
if tuple(SOURCES) != LOADERS:  # config.LOADERS names these sources for validation, in this order
    raise DataError(f"config.LOADERS {LOADERS} must list the sources of morelib.data.sources: {tuple(SOURCES)}")


@dataclass
class DropLog:
    """Rows loaded and dropped per source, by reason — what a manifest records as 'N loaded, M dropped (reason)'."""

    loaded: Counter = field(default_factory=Counter)
    dropped: dict[str, Counter] = field(default_factory=dict)

    def drop(self, source: str, reason: str, n: int = 1) -> None:
        """Count `n` rows of `source` dropped for `reason`."""
        self.dropped.setdefault(source, Counter())[reason] += n

    def keep(self, source: str, n: int = 1) -> None:
        """Count `n` rows of `source` loaded."""
        self.loaded[source] += n

    def summary(self, source: str) -> str:
        """'N loaded, M dropped (reason: k, ...)' for one source."""
        reasons = self.dropped.get(source, Counter())
        detail = ", ".join(f"{r}: {k}" for r, k in sorted(reasons.items()))
        return f"{self.loaded[source]} loaded, {sum(reasons.values())} dropped" + (f" ({detail})" if detail else "")

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain {source: {"loaded": N, "dropped": {reason: k}}} for JSON manifests."""
        names = sorted(set(self.loaded) | set(self.dropped))
        return {s: {"loaded": self.loaded[s], "dropped": dict(self.dropped.get(s, {}))} for s in names}


def _check_source(source: str, split: str) -> None:
    """DataError for an unknown source name or split."""
    if source not in SOURCES and not str(source).endswith(LOCAL_SUFFIXES):
        raise DataError(
            f"unknown preference source '{source}'; valid: {', '.join(SOURCES)}, "
            f"or a path ending in {', '.join(LOCAL_SUFFIXES)}"
        )
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' for '{source}'; valid: {', '.join(SPLITS)}")


def local_files(source: str, split: str, root: Path) -> list[Path]:
    """Files of `source`/`split` under `root`: every match of the first pattern that matches any file."""
    patterns = SOURCES[source].local.get(split, ())
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found
    have = [s for s in SPLITS if any(any(root.glob(p)) for p in SOURCES[source].local.get(s, ()))]
    if have:
        raise MissingDataError(f"no local '{split}' split for '{source}' under {root}; available: {', '.join(have)}")
    looked = [p for s in SPLITS for p in SOURCES[source].local.get(s, ())]
    raise MissingDataError(f"no local data for {source} under {root} (looked for: {', '.join(dict.fromkeys(looked))})")


def local_splits(source: str, root: Path) -> list[str]:
    """Splits of a named source present under `root` (Summarize: by its records' `split` fields)."""
    have = []
    for split in SPLITS:
        try:
            next(iter(_local_records(source, split, root)))
        except (MissingDataError, StopIteration):  # a file that is there but unreadable still raises
            continue
        have.append(split)
    return have


def _file_records(source: str, path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) of one local file; OASST flat message tables (hub parquet) are regrouped into trees."""
    if source != "oasst1" or path.suffix != ".parquet":
        yield from formats.read_records(path)
        return
    trees = formats.oasst_flat_to_trees(record for _, record in formats.read_records(path))
    for number, tree in enumerate(trees, start=1):
        yield f"{path}:tree {number}", tree


def _local_records(source: str, split: str, root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file:line, record) of every local file of `source`/`split`, filtered by record split for Summarize."""
    seen = set()
    for path in local_files(source, split, root):
        for where, record in _file_records(source, path):
            seen.add(record.get("split"))
            if source == "summarize" and record.get("split", "train") not in _SUMMARIZE_RECORD_SPLITS[split]:
                continue
            yield where, record
    if source == "summarize" and not seen & set(_SUMMARIZE_RECORD_SPLITS[split]):
        raise MissingDataError(
            f"no local '{split}' split for 'summarize' under {root}; its records' splits: "
            f"{', '.join(sorted(str(s) for s in seen))}"
        )


def source_label(source: str) -> str:
    """The `Pair.source` / DropLog key of a source: its name, or a local file's name."""
    return source if source in SOURCES else Path(source).name


def _convert(
    records: Iterable[tuple[str, dict[str, Any]]], source: str, report: DropLog, lang: str | None = "en"
) -> list[Pair]:
    """Run the source's converter over records, counting and logging every dropped row."""
    convert = SOURCES[source].convert if source in SOURCES else formats.table_pair
    if source == "oasst1":
        convert = functools.partial(formats.oasst_record_pairs, lang=lang)
    label = source_label(source)
    pairs = []
    for where, record in records:
        out = convert(record, where, label)
        for item in out if isinstance(out, Iterator) else (out,):
            if isinstance(item, str):
                report.drop(label, item)
            elif not item.prompt.strip():
                report.drop(label, "empty prompt")
            else:
                pairs.append(item)
    report.keep(label, len(pairs))
    if report.dropped.get(label):
        log.info("%s: %s", label, report.summary(label))
    return pairs


def load_hub(repo: str, split: str, **kwargs: Any) -> Iterable[dict[str, Any]]:
    """Rows of a hub dataset split via `datasets.load_dataset` (tests replace this function)."""
    import datasets  # heavy; only the hub path needs it

    try:
        return datasets.load_dataset(repo, split=split, **kwargs)
    except Exception as err:  # datasets raises many unrelated types for offline/missing repos
        raise MissingDataError(
            f"cannot load hub dataset {repo} {kwargs or ''} split '{split}': {err}{offline_hint()}"
        ) from err


def _hub_records(source: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) of a named source's hub split; OASST flat rows are regrouped into trees."""
    info = SOURCES[source]
    rows = load_hub(info.hub_repo, info.hub_splits[split], **info.hub_kwargs)
    where = f"{info.hub_repo}[{info.hub_splits[split]}]"
    if source == "oasst1":
        rows = formats.oasst_flat_to_trees(rows)
    for number, row in enumerate(rows, start=1):
        yield f"{where} row {number}", dict(row)


def _hub_pairs(source: str, split: str, report: DropLog, lang: str | None) -> list[Pair]:
    """A named source's hub split as pairs, with the Table 4 test carves for WebGPT and Summarize."""
    pairs = _convert(_hub_records(source, split), source, report, lang)
    if source == "webgpt":
        test, train, lost = carve_groups(pairs, WEBGPT_TEST_PAIRS, HUB_TEST_SEED)
        report.drop(source, "group cut by the test carve", lost)
        return test if split == "test" else train
    if source == "summarize" and split == "test" and len(pairs) > SUMMARIZE_TEST_PAIRS:
        return sample(pairs, SUMMARIZE_TEST_PAIRS, HUB_TEST_SEED)
    return pairs


def sample(pairs: list[Pair], n: int, seed: int) -> list[Pair]:
    """`n` pairs drawn without replacement by `seed`, in their original order (all of them if fewer)."""
    if n >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def load_preferences(
    source: str,
    split: str,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    report: DropLog | None = None,
    lang: str | None = "en",
) -> list[Pair]:
    """Pairs of one source and split ("train"|"test") from `config.data_root(data_dir)`: "hub" = the hub.

    `limit` keeps a seeded sample of that many pairs; drops are added to `report` (see the module docstring);
    `lang` selects OASST prompts by language (None: all). A local file path is read whole, whatever `split`.
    """
    _check_source(source, split)
    report = DropLog() if report is None else report
    if source not in SOURCES:
        path = Path(source)
        if not path.exists():
            raise DataError(f"preference file not found: {path}")
        pairs = _convert(formats.read_records(path), source, report)
    else:
        root = data_root(data_dir)
        if root is not None and not root.is_dir():
            raise DataError(f"data directory not found: {root}")
        pairs = (
            _convert(_local_records(source, split, root), source, report, lang)
            if root
            else _hub_pairs(source, split, report, lang)
        )
    if not pairs:
        raise DataError(f"source '{source}' split '{split}' yielded no pairs ({report.summary(source_label(source))})")
    return pairs if limit is None else sample(pairs, limit, seed)
