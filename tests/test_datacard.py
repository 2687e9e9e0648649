"""Tests of morelib.data.datacard and paper.table4: Table 4 matching, counts per split, truncation share and length
quantiles by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from morelib.core.errors import DataError
from morelib.data import paper
from morelib.data.datacard import length_stats, source_rows
from morelib.data.sources import Pair
from morelib.data.splits import SplitReport

TABLE4 = pd.DataFrame(
    {"dataset": ["Anthropic Helpful", "OpenAssistant Oasst1"], "train_pairs": [43774, 18165], "test_pairs": [2352, 957]}
)


def _pair(prompt_words: int, chosen_words: int, rejected_words: int) -> Pair:
    return Pair(" ".join(["p"] * prompt_words), " c" * chosen_words, " r" * rejected_words, "s", "g")


def test_length_stats_by_hand():
    pairs = [_pair(2, 1, 3), _pair(4, 4, 1), _pair(1, 1, 1)]  # lengths (3, 5), (8, 5), (2, 2)
    stats = length_stats(pairs, str.split, max_length=4)
    assert stats["truncated_share"] == pytest.approx(2 / 3)
    assert stats["len_p50"] == 4.0 and stats["len_max"] == 8.0  # median of 3, 5, 8, 5, 2, 2
    with pytest.raises(DataError, match="at least one pair"):
        length_stats([], str.split, 4)


def _table4(folder, frame=TABLE4):
    """Write a Table 4 CSV into `folder` and read it back through the one reader, `paper.table4`."""
    frame.to_csv(folder / paper.FILES["table4"], index=False)
    return paper.table4()


def test_paper_table4_matches_sources_by_the_datasets_last_word(tmp_path, monkeypatch):
    monkeypatch.setenv("MORE_PAPER_DIR", str(tmp_path))
    table = _table4(tmp_path)
    assert table.loc["helpful", "train_pairs"] == 43774 and table.loc["oasst1", "test_pairs"] == 957
    assert "ultrafeedback" not in table.index
    with pytest.raises(DataError, match=r"missing columns \['test_pairs'\]"):
        _table4(tmp_path, TABLE4.drop(columns="test_pairs"))
    monkeypatch.setenv("MORE_PAPER_DIR", str(tmp_path / "none"))
    with pytest.raises(DataError, match="paper table .* not found"):
        paper.table4()


def test_data_card_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("MORE_PAPER_DIR", str(tmp_path))
    table4 = _table4(tmp_path)
    splits = {
        "helpful": {"train": [_pair(1, 1, 2)] * 3, "calib": [], "test": [_pair(5, 1, 1)]},
        "ultrafeedback": {"train": [_pair(1, 1, 1)], "calib": [], "test": [_pair(1, 1, 1)]},
    }
    report = SplitReport(
        available={"train": 9, "calib": 0, "test": 1},
        drops={"hh-helpful": {"loaded": 4, "dropped": {"chosen == rejected": 2}}},
    )
    card = source_rows(
        splits, {"helpful": "Anthropic Helpful"}, table4, str.split, max_length=4, reports={"helpful": report}
    )
    helpful = card.set_index("source").loc["helpful"]
    assert (helpful["train"], helpful["calib"], helpful["test"]) == (3, 0, 1)
    assert (helpful["paper_train"], helpful["paper_test"]) == (43774, 2352)
    assert helpful["available"] == "9/0/1"
    assert helpful["truncated_share"] == pytest.approx(1 / 4) and helpful["drops"] == "hh-helpful: chosen == rejected 2"
    assert math.isnan(card.set_index("source").loc["ultrafeedback", "paper_train"])
    assert source_rows(splits)["paper_train"].equals(card["paper_train"])  # default: paper.table4() of MORE_PAPER_DIR
