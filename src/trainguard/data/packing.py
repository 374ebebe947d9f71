"""Packing: a micro-batch's examples laid end to end in rows of up to `max_length` tokens instead of one padded row
each. Each example keeps its own positions (0, 1, ...); from position ids that restart, transformers builds a
block-diagonal causal mask (any attention implementation), so no example sees another and each one's loss is what
it is alone. The examples of a micro-batch are the same as without packing; only fewer, fuller rows carry them,
so the step's loss, the cursor and `epochs` mean what they mean unpacked."""

import torch

from trainguard.data.batches import TokenBatch, TokenizedExample, collate


def plan_rows(lengths: list[int], max_length: int) -> list[list[int]]:
    """Rows of example indices, first-fit decreasing: each example, longest first (ties: earlier first), goes
    into the first row with room for it, else opens a row. A row holds at most `max_length` tokens unless one
    example alone is longer. Deterministic, so a batch is rebuilt identically from the same examples."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


def example_targets(example: TokenizedExample) -> list[bool]:
    """Which of the example's tokens are completion targets; its first token never is (it is predicted from
    nothing of its own: packed, from the previous example's last token)."""
    n = len(example.ids)
    marks = list(example.targets) if example.targets is not None else [i >= example.prompt_len for i in range(n)]
    return [False, *marks[1:]] if marks else marks


def pack(examples: list[TokenizedExample], pad_id: int, max_length: int) -> TokenBatch:
    """The examples packed into as few rows as `plan_rows` finds, right-padded to the fullest row, with
    `position_ids` restarting at each example (padding counts from 0 as a segment of its own, so it changes no
    real position). When every row would hold one example, the plain `collate` of them in the plan's order (no
    position ids, so no mask to build)."""
    rows = plan_rows([len(e.ids) for e in examples], max_length)
    if len(rows) == len(examples):
        return collate([examples[row[0]] for row in rows], pad_id)
    width = max(sum(len(examples[i].ids) for i in row) for row in rows)
    ids, positions, real, completion = [], [], [], []
    for row in rows:
        r_ids, r_pos, r_real, r_comp = [], [], [], []
        for i in row:
            example = examples[i]
            r_ids += example.ids
            r_pos += range(len(example.ids))
            r_real += [True] * len(example.ids)
            r_comp += example_targets(example)
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        positions.append(r_pos + list(range(pad)))
        real.append(r_real + [False] * pad)
        completion.append(r_comp + [False] * pad)
    return TokenBatch(
        input_ids=torch.tensor(ids, dtype=torch.long),
        token_mask=torch.tensor(real, dtype=torch.bool),
        completion_mask=torch.tensor(completion, dtype=torch.bool),
        position_ids=torch.tensor(positions, dtype=torch.long),
    )


def example_spans(examples: list[TokenizedExample], max_length: int) -> list[tuple[int, int, int]]:
    """Where `pack` puts each example, in the examples' order: (row, start, length). For reading per-example
    values (losses, logits) back out of a packed batch."""
    spans: dict[int, tuple[int, int, int]] = {}
    for r, row in enumerate(plan_rows([len(e.ids) for e in examples], max_length)):
        at = 0
        for i in row:
            spans[i] = (r, at, len(examples[i].ids))
            at += len(examples[i].ids)
    return [spans[i] for i in range(len(examples))]
