"""Preference rows: the dataset's batches, bad rows counted, long texts cut from the left of the prompt."""

import pytest
import torch
from torch.utils.data import DataLoader

from trainguard.reward import PreferenceDataset

ROWS = [
    {"prompt": "reverse: abc\n", "response_chosen": "cba", "response_rejected": "cab"},
    {"prompt": "reverse: xyz\n", "response_chosen": "zyx", "response_rejected": "xyz", "preference_score": 0.9},
]


def test_items_batch_with_the_default_collate(tok):
    ds = PreferenceDataset(ROWS[:1] * 3, tok, max_length=32)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    keys = {"chosen_input_ids", "chosen_attention_mask", "rejected_input_ids", "rejected_attention_mask"}
    assert set(batch) == keys and batch["chosen_input_ids"].shape == (3, 32)
    text = tok.decode(batch["chosen_input_ids"][0][batch["chosen_attention_mask"][0].bool()])
    assert text == "<bos>reverse: abc\n cba<eos>"  # prompt + ' ' + response, in the tokenizer's own prefix and EOS


def test_bad_rows_are_counted_and_skipped(tok):
    bad = [
        {"prompt": "p", "response_chosen": "a"},
        {"prompt": "p", "response_chosen": " ", "response_rejected": "b"},
        {"prompt": "p", "response_chosen": "same", "response_rejected": "same"},
        "not a row",
    ]
    ds = PreferenceDataset(ROWS + bad, tok, max_length=32)
    assert len(ds) == 2 and ds.report.rows == 6 and ds.report.usable == 2
    assert ds.report.skipped == {
        "missing or non-text 'response_rejected'": 1,
        "an empty response": 1,
        "chosen == rejected": 1,
        "not an object": 1,
    }
    assert "2 of 6 preference rows usable" in ds.report.summary()


def test_no_usable_row_and_empty_data_raise_value_errors_that_say_so(tok):
    with pytest.raises(ValueError, match="training data is empty"):
        PreferenceDataset([], tok)
    with pytest.raises(ValueError, match=r"no usable preference pairs.*chosen == rejected"):
        PreferenceDataset([{"prompt": "p", "response_chosen": "x", "response_rejected": "x"}], tok)


def test_long_texts_lose_the_start_of_the_prompt_not_the_response(tok):
    row = {"prompt": "x" * 100 + "END", "response_chosen": "keep me whole", "response_rejected": "and me"}
    ds = PreferenceDataset([row], tok, max_length=24)
    ids = ds[0]["chosen_input_ids"][ds[0]["chosen_attention_mask"].bool()]
    assert len(ids) == 24 and tok.decode(ids).endswith("END keep me whole<eos>") and ids[0] == tok.bos_token_id
    assert ds.report.truncated == 2


def test_preference_scores_travel_when_every_row_has_one(tok):
    scored = [dict(r, preference_score=0.5) for r in ROWS]
    assert float(PreferenceDataset(scored, tok)[0]["preference_score"]) == 0.5
    assert "preference_score" not in PreferenceDataset(ROWS, tok)[0]
    assert torch.equal(PreferenceDataset(ROWS, tok)[1]["rejected_attention_mask"][:5], torch.ones(5, dtype=torch.long))
