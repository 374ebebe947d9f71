"""The data stream: a seeded order that the cursor alone reproduces."""

import pytest
import torch

from trainguard.data.batches import TokenizedExample, collate
from trainguard.data.sources import RecordSource
from trainguard.errors import DataError


def examples(n: int) -> list[TokenizedExample]:
    return [TokenizedExample([i, i, i], 1) for i in range(n)]


def firsts(batch) -> list[int]:
    return batch.input_ids[:, 0].tolist()


def test_every_record_is_seen_once_per_epoch():
    src = RecordSource(examples(10), batch_size=5, seed=3, pad_id=99)
    seen = firsts(src.next_batch()) + firsts(src.next_batch())
    assert sorted(seen) == list(range(10))
    assert src.epoch == 1.0
    assert firsts(src.next_batch()) + firsts(src.next_batch()) != seen  # reshuffled next epoch


def test_cursor_alone_restores_the_stream():
    a = RecordSource(examples(7), batch_size=3, seed=1, pad_id=0)
    for _ in range(4):
        a.next_batch()
    b = RecordSource(examples(7), batch_size=3, seed=1, pad_id=0)
    b.load_state_dict(a.state_dict())
    assert [firsts(a.next_batch()) for _ in range(5)] == [firsts(b.next_batch()) for _ in range(5)]


def test_skip_past_moves_to_the_position_at_the_alert():
    a = RecordSource(examples(9), batch_size=2, seed=0, pad_id=0)
    b = RecordSource(examples(9), batch_size=2, seed=0, pad_id=0)
    a.next_batch(), a.next_batch()
    assert b.skip_past(a.state_dict()) == 4  # samples skipped
    assert firsts(a.next_batch()) == firsts(b.next_batch())


def test_changed_data_refuses_to_resume():
    a = RecordSource(examples(5), batch_size=2, seed=0, pad_id=0)
    with pytest.raises(DataError, match="data changed"):
        RecordSource(examples(6), batch_size=2, seed=0, pad_id=0).load_state_dict(a.state_dict())


def test_collate_pads_right_and_masks_the_completion():
    batch = collate([TokenizedExample([1, 2, 3, 4], 2), TokenizedExample([5, 6], 1)], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4], [5, 6, 0, 0]]
    assert batch.completion_mask.tolist() == [[False, False, True, True], [False, True, False, False]]
    assert batch.token_mask.sum().item() == 6 and batch.input_ids.dtype == torch.long
