"""Data files: bad rows are counted by reason and line, never crashed on nor silently dropped."""

import json

import pytest

from trainguard.data.records import read_jsonl
from trainguard.errors import DataError


def test_bad_rows_are_counted_with_their_first_line(tmp_path):
    f = tmp_path / "d.jsonl"
    rows = [
        json.dumps({"prompt": "a", "completion": "b"}),
        "{not json",
        json.dumps({"prompt": "a"}),
        json.dumps([1, 2]),
        "",
        json.dumps({"prompt": "c", "completion": 3}),
        json.dumps({"prompt": "c", "completion": "d", "extra": 1}),
        "{also bad",
    ]
    f.write_text("\n".join(rows) + "\n")
    records, report = read_jsonl(f)
    assert records == [{"prompt": "a", "completion": "b"}, {"prompt": "c", "completion": "d"}]
    assert report.rows == 7 and report.usable == 2
    assert report.bad == {
        "malformed JSON": 2,
        "missing 'completion'": 1,
        "not a JSON object": 1,
        "'completion' not a string": 1,
    }
    assert report.first_bad_line["malformed JSON"] == 2
    assert "2 of 7 rows usable; skipped 2 malformed JSON (first at line 2)" in report.summary()


def test_empty_file_stops_with_a_clear_error(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text("\n\n")
    with pytest.raises(DataError, match=r"no usable records: .*has no rows"):
        read_jsonl(f)


def test_file_of_only_bad_rows_stops(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text("{x\n[]\n")
    with pytest.raises(DataError, match=r"0 of 2 rows usable; skipped 1 malformed JSON"):
        read_jsonl(f)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")
