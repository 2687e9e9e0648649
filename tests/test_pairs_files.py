"""Tests of morelib.data.pairs_files: small files of every layout (JSON array, JSONL, parquet) read into Pairs;
malformed rows fail with one error naming file, row and field."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from morelib.core.errors import DataError
from morelib.data import pairs_files
from morelib.data.formats import Pair

TRL = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "A colour is a thing that is seen."}]
CHAT = [
    {
        "prompt": [{"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello!"}],
        "rejected": [{"role": "assistant", "content": "Go away."}],
    }
]
JUDGE = [
    {"input": "Add 2+2.", "output_1": "5, after careful thought.", "output_2": "4", "label": 2},
    {"input": "Say hi.", "output_1": "hi", "output_2": "Greetings, dear friend!", "label": 1},
]
HH = [
    {
        "chosen": "\n\nHuman: Is water wet?\n\nAssistant: Yes.",
        "rejected": "\n\nHuman: Is water wet?\n\nAssistant: No idea, honestly, who knows.",
    }
]


def write(path, rows, kind):
    """Write `rows` as a JSON array, JSON lines or parquet file at `path`."""
    if kind == "array":
        path.write_text(json.dumps(rows))
    elif kind == "lines":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


@pytest.mark.parametrize(("name", "kind"), [("a.json", "array"), ("a.jsonl", "lines"), ("a.parquet", "parquet")])
def test_trl_rows_in_every_container(tmp_path, name, kind):
    pairs = pairs_files.read_pairs(write(tmp_path / name, TRL, kind))
    prompt = "\n\nHuman: Name a colour.\n\nAssistant:"
    assert pairs == [Pair(prompt, " Blue.", " A colour is a thing that is seen.", "a", "Name a colour.")]


def test_json_file_of_json_lines(tmp_path):
    assert len(pairs_files.read_pairs(write(tmp_path / "lines.json", JUDGE, "lines"))) == 2


def test_judge_layout_label_names_the_better_output(tmp_path):
    pairs = pairs_files.read_pairs(write(tmp_path / "llmbar.jsonl", JUDGE, "lines"))
    expected = [(" 4", " 5, after careful thought."), (" hi", " Greetings, dear friend!")]
    assert [(p.chosen, p.rejected) for p in pairs] == expected
    assert pairs[0].prompt == "\n\nHuman: Add 2+2.\n\nAssistant:" and {p.source for p in pairs} == {"llmbar"}


def test_hh_transcripts_and_conversations(tmp_path):
    (hh,) = pairs_files.read_pairs(write(tmp_path / "hh.jsonl", HH, "lines"))
    assert (hh.prompt, hh.chosen) == ("\n\nHuman: Is water wet?\n\nAssistant:", " Yes.")
    (chat,) = pairs_files.read_pairs(write(tmp_path / "chat.json", CHAT, "array"))
    assert (chat.prompt, chat.chosen, chat.rejected) == ("\n\nHuman: Hi\n\nAssistant:", " Hello!", " Go away.")


def test_transcript_prompt_kept_verbatim(tmp_path):
    row = {"prompt": "\n\nHuman: Hi\n\nAssistant:", "chosen": " Hello", "rejected": " Bye"}
    (pair,) = pairs_files.read_pairs(write(tmp_path / "t.jsonl", [row], "lines"))
    assert (pair.prompt, pair.chosen) == (row["prompt"], row["chosen"])


def test_each_file_one_source_repeated_stems_numbered(tmp_path):
    (tmp_path / "x").mkdir()
    files = [write(tmp_path / "a.jsonl", TRL, "lines"), write(tmp_path / "x" / "a.json", JUDGE, "array")]
    out = pairs_files.read_all(files)
    assert {s: len(p) for s, p in out.items()} == {"a": 1, "a_2": 2} and out["a_2"][0].source == "a_2"


@pytest.mark.parametrize("kind", ["array", "lines", "parquet"])
def test_malformed_row_names_file_row_and_field(tmp_path, kind):
    rows = [dict(JUDGE[0]), {k: v for k, v in JUDGE[1].items() if k != "output_2"}]
    if kind == "parquet":
        rows[1]["output_2"] = None
    path = write(tmp_path / {"array": "bad.json", "lines": "bad.jsonl", "parquet": "bad.parquet"}[kind], rows, kind)
    with pytest.raises(DataError, match=r"bad\.\w+: row 2.*missing field 'output_2'"):
        pairs_files.read_pairs(path)


def test_unknown_layout_bad_label_and_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"row 1: fields \['answer', 'question'\] match no pairs layout"):
        pairs_files.read_pairs(write(tmp_path / "q.jsonl", [{"question": "q", "answer": "a"}], "lines"))
    with pytest.raises(DataError, match=r"row 1: field 'label' must be 1 or 2"):
        pairs_files.read_pairs(write(tmp_path / "l.jsonl", [{**JUDGE[0], "label": 0}], "lines"))
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="no usable pairs"):
        pairs_files.read_pairs(tmp_path / "e.jsonl")
    with pytest.raises(DataError, match="not found"):
        pairs_files.read_pairs(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unknown pairs-file type"):
        pairs_files.read_pairs(write(tmp_path / "a.csv", TRL, "lines"))
