"""Tests of morelib.data.sources / morelib.data.formats: real files (lossless HH, Table 4 counts), hub-format fixtures,
bad input."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from morelib.core.errors import DataError
from morelib.data import formats, sources
from morelib.data.sources import DropLog, Pair, load_preferences

FIXTURES = Path(__file__).parent / "fixtures"
DATA = Path(os.environ.get("MORE_DATA_DIR") or Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
needs_data = pytest.mark.skipif(
    not (DATA / "hh-rlhf").is_dir(), reason=f"real data folder {DATA} absent (set MORE_DATA_DIR to run these)"
)


def _jsonl(path: Path) -> list[dict]:
    """Records of a (gzipped) JSON-lines file, read independently of morelib."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture
def hub(monkeypatch):
    """Replace the hub with the fixture files; returns the list of (repo, split, kwargs) calls."""
    files = {
        "Anthropic/hh-rlhf": "hub_hh.jsonl",
        "OpenAssistant/oasst1": "hub_oasst1.jsonl",
        "openai/webgpt_comparisons": "hub_webgpt.jsonl",
        "openai/summarize_from_feedback": "hub_summarize.jsonl",
    }
    calls = []

    def fake(repo, split, **kwargs):
        calls.append((repo, split, kwargs))
        return _jsonl(FIXTURES / files[repo])

    monkeypatch.setattr(sources, "load_hub", fake)
    monkeypatch.delenv("MORE_DATA_DIR", raising=False)
    return calls


# ---------------------------------------------------------------- real files


@needs_data
@pytest.mark.parametrize(
    "source,subset,expected,equal",
    [
        ("hh-harmless", "harmless-base", 2312, 0),
        ("hh-helpful", "helpful-base", 2352, 2),
        ("hh-helpful-online", "helpful-online", 1135, 2),
        ("hh-helpful-rejection-sampled", "helpful-rejection-sampled", 2717, 32),
    ],
)
def test_hh_real_files_lossless(source, subset, expected, equal):
    raw = _jsonl(DATA / "hh-rlhf" / subset / "test.jsonl.gz")
    log = DropLog()
    pairs = load_preferences(source, "test", data_dir=DATA, report=log)
    assert len(pairs) == expected
    assert log.dropped.get(source, {}) == ({"chosen == rejected": equal} if equal else {})
    kept = [r for r in raw if r["chosen"] != r["rejected"]]
    assert len(kept) == len(pairs)
    for row, pair in zip(kept, pairs):
        assert pair.prompt + pair.chosen == row["chosen"]
        assert pair.prompt + pair.rejected == row["rejected"]
        assert pair.prompt.endswith("\n\nAssistant:") and pair.group == pair.prompt and pair.source == source


@needs_data
def test_oasst_tree_walk_matches_derived_pairs_file():
    tree_pairs = load_preferences("oasst1", "test", data_dir=DATA)
    derived = [formats.oasst_pairs_row(r, "x", "oasst1") for r in _jsonl(DATA / "oasst" / "en_100_tree_pairs.jsonl.gz")]
    assert len(tree_pairs) == 732
    assert set(tree_pairs) == set(derived)
    tree_ids = {r["message_tree_id"] for r in _jsonl(DATA / "oasst" / "en_100_tree.jsonl.gz")}
    assert {p.group for p in tree_pairs} <= tree_ids


@needs_data
def test_summarize_real_files():
    pairs = load_preferences("summarize", "test", data_dir=DATA)
    raw = [r for f in sorted((DATA / "summarize-from-feedback" / "comparisons").glob("*.json.gz")) for r in _jsonl(f)]
    assert len(pairs) == len(raw) == 2208
    for row, pair in zip(raw, pairs):
        texts = [s["text"] for s in row["summaries"]]
        assert (pair.chosen, pair.rejected) == (texts[row["choice"]], texts[1 - row["choice"]])
        assert pair.group == row["info"]["id"] and row["info"]["title"] in pair.prompt
    with pytest.raises(DataError, match="no local 'train' split for 'summarize'"):
        load_preferences("summarize", "train", data_dir=DATA)


@needs_data
def test_ultrafeedback_drops_ties_counted():
    log = DropLog()
    train = load_preferences("ultrafeedback", "train", data_dir=DATA, report=log)
    test = load_preferences("ultrafeedback", "test", data_dir=DATA, report=log)
    assert (len(train), len(test)) == (886, 175)
    assert log.dropped["ultrafeedback"] == {"tied scores": 111 + 25, "chosen == rejected": 3}
    assert log.summary("ultrafeedback") == "1061 loaded, 139 dropped (chosen == rejected: 3, tied scores: 136)"


@needs_data
def test_webgpt_is_missing_locally():
    with pytest.raises(DataError, match="no local data for webgpt"):
        load_preferences("webgpt", "test", data_dir=DATA)


@needs_data
def test_limit_is_seeded_and_data_root_from_env(monkeypatch):
    monkeypatch.setenv("MORE_DATA_DIR", str(DATA))
    a = load_preferences("hh-harmless", "test", limit=50, seed=3)
    assert a == load_preferences("hh-harmless", "test", limit=50, seed=3)
    assert len(a) == 50 and a != load_preferences("hh-harmless", "test", limit=50, seed=4)


# ---------------------------------------------------------------- hub record formats (fixtures)


def test_hub_hh(hub):
    log = DropLog()
    pairs = load_preferences("hh-harmless", "test", data_dir="hub", report=log)
    assert hub == [("Anthropic/hh-rlhf", "test", {"data_dir": "harmless-base"})]
    assert len(pairs) == 3 and log.dropped["hh-harmless"] == {"chosen == rejected": 1}
    assert (
        pairs[1].prompt == "\n\nHuman: Hi\n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.\n\nAssistant:"
    )
    assert (pairs[1].chosen, pairs[1].rejected) == (" Why did the chicken cross the road?", " No.")
    # divergence inside the response: the prompt still ends at the Assistant marker
    assert (pairs[2].chosen, pairs[2].rejected) == (" One, two.", " One, two, three.")


def test_hub_oasst_flat_rows_match_tree_export(hub):
    log = DropLog()
    flat = load_preferences("oasst1", "test", data_dir="hub", report=log)
    assert hub[0][:2] == ("OpenAssistant/oasst1", "validation")
    first = "\n\nHuman: How do I boil an egg?\n\nAssistant:"
    second = first + " Put it in boiling water for 8 minutes.\n\nHuman: And for a soft yolk?\n\nAssistant:"
    assert sorted(flat, key=lambda p: len(p.prompt)) == [
        Pair(first, " Put it in boiling water for 8 minutes.", " Use a microwave.", "oasst1", "p1"),
        Pair(second, " About six minutes.", " Ten minutes.", "oasst1", "p1"),
    ]
    assert log.dropped["oasst1"] == {"other language": 1}
    every = load_preferences("oasst1", "test", data_dir="hub", lang=None)
    assert len(every) == 3 and {p.group for p in every} == {"p1", "q1"}
    records = formats.read_records(FIXTURES / "oasst_tree.jsonl")  # the same messages as an export tree
    walked = [p for w, r in records for p in formats.oasst_record_pairs(r, w, "oasst1") if isinstance(p, Pair)]
    assert set(walked) == set(flat)
    every_lang = [
        p
        for w, r in formats.read_records(FIXTURES / "oasst_tree.jsonl")
        for p in formats.oasst_tree_pairs(r, w, "oasst1", lang=None)
    ]
    assert len(every_lang) == 3


def test_local_oasst_hub_parquet_layout(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "oasst1" / "data"
    folder.mkdir(parents=True)
    rows = _jsonl(FIXTURES / "hub_oasst1.jsonl")
    keep = ["message_id", "parent_id", "text", "role", "lang", "deleted", "rank", "synthetic", "message_tree_id"]
    pq.write_table(
        pa.Table.from_pylist([{k: r[k] for k in keep} for r in rows]), folder / "validation-00000-of-00001.parquet"
    )
    pairs = load_preferences("oasst1", "test", data_dir=tmp_path)
    assert len(pairs) == 2 and {p.chosen for p in pairs} == {
        " Put it in boiling water for 8 minutes.",
        " About six minutes.",
    }
    with pytest.raises(DataError, match="no local 'train' split for 'oasst1'.*available: test"):
        load_preferences("oasst1", "train", data_dir=tmp_path)


def test_hub_webgpt_ties_dropped_and_test_carved(hub, monkeypatch):
    monkeypatch.setattr(sources, "WEBGPT_TEST_PAIRS", 1)
    log = DropLog()
    test = load_preferences("webgpt", "test", data_dir="hub", report=log)
    train = load_preferences("webgpt", "train", data_dir="hub", report=DropLog())
    assert {c[1] for c in hub} == {"train"}
    assert len(test) == 1 and log.dropped["webgpt"]["tied scores"] == 1
    lost = log.dropped["webgpt"].get("group cut by the test carve", 0)
    assert len(test) + len(train) + lost == 3
    assert not {p.group for p in test} & {p.group for p in train}
    paris = [p for p in test + train if "France" in p.prompt]
    assert paris == [
        Pair(
            "\n\nHuman: What is the capital of France?\n\nAssistant:",
            " Paris.",
            " Lyon.",
            "webgpt",
            "What is the capital of France?",
        )
    ]


def test_hub_summarize(hub, monkeypatch):
    monkeypatch.setattr(sources, "SUMMARIZE_TEST_PAIRS", 2)
    log = DropLog()
    train = load_preferences("summarize", "train", data_dir="hub", report=log)
    assert hub[0] == ("openai/summarize_from_feedback", "train", {"name": "comparisons"})
    assert len(train) == 3 and log.dropped["summarize"] == {"chosen == rejected": 1}
    assert train[0] == Pair(
        "SUBREDDIT: r/relationships\nTITLE: Roommate eats my food\nPOST: My roommate keeps eating my "
        "food and I do not know how to bring it up.\n\nTL;DR:",
        " Roommate eats my food, how to talk about it?",
        " I have a roommate.",
        "summarize",
        "t3_abc",
    )
    assert train[1].chosen == " Roommate keeps eating my food; want advice on raising it."
    assert (
        train[2].prompt == "TITLE: Storm hits coast\nARTICLE: A storm hit the coast on Monday, closing roads.\n\nTL;DR:"
    )
    test = load_preferences("summarize", "test", data_dir="hub")
    assert hub[-1][1] == "validation" and len(test) == 2


def test_hub_unreachable_is_a_data_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("MORE_DATA_DIR", raising=False)

    def offline(repo, split, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(DataError, match="cannot load hub dataset Anthropic/hh-rlhf"):
        load_preferences("hh-helpful", "test", data_dir="hub")


# ---------------------------------------------------------------- generic files and bad input


def _write(path: Path, lines: list[str], gz: bool = False) -> Path:
    body = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(body) if gz else body)
    return path


ROW = json.dumps({"prompt": "Q?", "chosen": "good", "rejected": "bad"})


@pytest.mark.parametrize("name,gz", [("p.jsonl", False), ("p.jsonl.gz", True)])
def test_generic_jsonl(tmp_path, name, gz):
    path = _write(tmp_path / name, [ROW, json.dumps({"prompt": "Q?", "chosen": "x", "rejected": "x"})], gz)
    log = DropLog()
    assert load_preferences(str(path), "test", report=log) == [Pair("Q?", "good", "bad", name, "Q?")]
    assert log.summary(name) == "1 loaded, 1 dropped (chosen == rejected: 1)"


def test_generic_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"prompt": ["Q1", "Q2"], "chosen": ["a", "b"], "rejected": ["c", "d"]}), tmp_path / "p.parquet"
    )
    pairs = load_preferences(str(tmp_path / "p.parquet"), "train")
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [("Q1", "a", "c"), ("Q2", "b", "d")]


@pytest.mark.parametrize(
    "lines,match",
    [
        ([ROW, '{"prompt": "Q", "chosen": '], r"p\.jsonl:2: malformed JSON"),
        ([json.dumps({"prompt": "Q", "chosen": "a"})], r"p\.jsonl:1: missing field 'rejected'"),
        (
            [json.dumps({"prompt": "Q", "chosen": 3, "rejected": "b"})],
            r"p\.jsonl:1: field 'chosen' must be str, got int",
        ),
        (["[1, 2]"], r"p\.jsonl:1: expected a JSON object"),
        ([], "yielded no pairs"),
        ([json.dumps({"prompt": " ", "chosen": "a", "rejected": "b"})], r"yielded no pairs .*empty prompt: 1"),
    ],
)
def test_bad_rows(tmp_path, lines, match):
    path = _write(tmp_path / "p.jsonl", lines)
    with pytest.raises(DataError, match=match):
        load_preferences(str(path), "test")


def test_non_utf8_names_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(ROW.encode() + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(DataError, match=r"p\.jsonl:2: text is not valid UTF-8"):
        load_preferences(str(path), "test")


def test_truncated_gzip(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    path.write_bytes(gzip.compress((ROW + "\n").encode() * 200)[:-30])
    with pytest.raises(DataError, match="truncated or corrupt gzip"):
        load_preferences(str(path), "test")


def test_unknown_source_split_and_folder(tmp_path):
    with pytest.raises(DataError, match="unknown preference source 'hh-helpfull'; valid: hh-helpful, hh-harmless"):
        load_preferences("hh-helpfull", "test")
    with pytest.raises(DataError, match="unknown split 'dev'.*valid: train, test"):
        load_preferences("hh-helpful", "dev")
    with pytest.raises(DataError, match="data directory not found"):
        load_preferences("hh-helpful", "test", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="preference file not found"):
        load_preferences(str(tmp_path / "missing.jsonl"), "test")


def test_missing_local_split_names_available(tmp_path):
    folder = tmp_path / "hh-rlhf" / "harmless-base"
    folder.mkdir(parents=True)
    _write(
        folder / "test.jsonl",
        [json.dumps({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"})],
    )
    assert len(load_preferences("hh-harmless", "test", data_dir=tmp_path)) == 1
    with pytest.raises(DataError, match="no local 'train' split for 'hh-harmless'.*available: test"):
        load_preferences("hh-harmless", "train", data_dir=tmp_path)
    with pytest.raises(DataError, match="no local data for hh-helpful"):
        load_preferences("hh-helpful", "test", data_dir=tmp_path)


def test_hh_without_shared_assistant_turn_is_counted(tmp_path):
    folder = tmp_path / "hh-rlhf" / "harmless-base"
    folder.mkdir(parents=True)
    rows = [
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: z\n\nAssistant: b"},
        {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"},
    ]
    _write(folder / "test.jsonl", [json.dumps(r) for r in rows])
    log = DropLog()
    assert len(load_preferences("hh-harmless", "test", data_dir=tmp_path, report=log)) == 1
    assert log.to_dict() == {"hh-harmless": {"loaded": 1, "dropped": {"no shared Assistant turn": 1}}}
