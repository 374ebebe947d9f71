"""The policy's forward over rollout rows with less work than one padded row per sample: rows that share a
prompt (a GRPO group) carry it once, responses are laid end to end without padding, and the LM head runs only
at the positions that predict a response token.

Each packed row holds whole groups: a prompt, then each of its responses. A 4D mask lets a prompt token see
its own prompt causally and a response token its prompt and its own earlier tokens; position ids restart per
sample, so every token sees exactly what it saw in its own padded row, and the log-probabilities equal
`policy_forward`'s to float rounding. The work drops from B·(P+R_max) tokens to U·P + ΣR (U distinct prompts),
and attention stays cheap because a packed row holds at most `budget` tokens (whole groups; a larger group gets
a row of its own)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainguard.data.rollouts import RolloutBatch
from trainguard.models.config import BDH_MODEL_TYPE
from trainguard.rl.losses import entropy_from_logits
from trainguard.rl.masks import additive, unsupported

BUDGET = 256  # tokens per packed row: attention's N² stays small beside the layers' N·d² (measured best on CPU)


@dataclass
class Packed:
    """Packed rows and where each response token's log-probability comes from and goes to."""

    input_ids: torch.Tensor  # (C, N)
    position_ids: torch.Tensor  # (C, N)
    mask: torch.Tensor  # (C, 1, N, N) bool: query i may read key j
    keep: torch.Tensor  # (K',) the columns whose logits are needed in some row (logits_to_keep)
    source: torch.Tensor  # (K,) index into the (C·K') kept logits of the one that predicts each target
    targets: torch.Tensor  # (K,) the response tokens
    rows: torch.Tensor  # (K,) their place in the batch's (B, L) layout
    cols: torch.Tensor  # (K,)


@dataclass
class _Row:
    """One packed row under construction: tokens, positions, segment of each token and its prompt's segment."""

    ids: list[int]
    pos: list[int]
    seg: list[int]
    parent: list[int]  # a response token's prompt segment; -1 on prompt tokens

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, ids: list[int], positions: range, seg: int, parent: int) -> None:
        self.ids += ids
        self.pos += positions
        self.seg += [seg] * len(ids)
        self.parent += [parent] * len(ids)


def pack_shared_prefix(batch: RolloutBatch, budget: int = BUDGET) -> Packed:
    """Group the batch's rows by their prompt (the tokens before the first response token) and pack them."""
    ids, lengths = batch.input_ids.tolist(), batch.attention_mask.sum(1).tolist()
    resp = batch.response_mask.bool()
    starts = torch.where(resp.any(1), resp.int().argmax(1), batch.attention_mask.sum(1)).tolist()
    groups: dict[tuple[int, ...], list[int]] = {}
    for r in range(len(ids)):
        groups.setdefault(tuple(ids[r][: starts[r]]), []).append(r)
    units = [
        (prompt, part) for prompt, members in groups.items() for part in _fit(prompt, members, starts, lengths, budget)
    ]
    sizes = [len(prompt) + sum(lengths[r] - starts[r] for r in part) for prompt, part in units]
    target = -(-sum(sizes) // max(-(-sum(sizes) // budget), 1))  # rows as even as whole units allow
    packed: list[_Row] = []
    where: dict[tuple[int, int], tuple[int, int]] = {}  # (batch row, col) -> (packed row, packed col)
    for n_seg, (prompt, members) in enumerate(units):
        if not packed or len(packed[-1]) + sizes[n_seg] > target:
            packed.append(_Row([], [], [], []))
        row, c, p_seg = packed[-1], len(packed) - 1, 2 * n_seg * len(ids)
        for r in members:  # every member reads the one copy of the prompt
            where |= {(r, col): (c, len(row) + col) for col in range(len(prompt))}
        row.add(list(prompt), range(len(prompt)), p_seg, -1)
        for r in members:
            where |= {(r, col): (c, len(row) + col - starts[r]) for col in range(starts[r], lengths[r])}
            row.add(ids[r][starts[r] : lengths[r]], range(starts[r], lengths[r]), p_seg + 1 + r, p_seg)
    return _assemble(packed, where, batch, starts, lengths)


def _fit(
    prompt: tuple[int, ...], members: list[int], starts: list[int], lengths: list[int], budget: int
) -> list[list[int]]:
    """A group's samples in parts that fit the budget with their own copy of the prompt (one sample at least):
    a group of long answers never becomes one row whose attention costs more than its padded rows'."""
    parts: list[list[int]] = [[]]
    size = len(prompt)
    for r in members:
        if parts[-1] and size + lengths[r] - starts[r] > budget:
            parts.append([])
            size = len(prompt)
        parts[-1].append(r)
        size += lengths[r] - starts[r]
    return parts


def _assemble(
    packed: list[_Row],
    where: dict[tuple[int, int], tuple[int, int]],
    batch: RolloutBatch,
    starts: list[int],
    lengths: list[int],
) -> Packed:
    width = max(len(r) for r in packed)
    ids = torch.zeros(len(packed), width, dtype=torch.long)
    pos = torch.zeros_like(ids)
    seg = torch.full_like(ids, -2)  # padding: a segment of its own, parent of none
    parent = torch.full_like(ids, -1)
    for c, row in enumerate(packed):
        n = len(row)
        ids[c, :n], pos[c, :n] = torch.tensor(row.ids), torch.tensor(row.pos)
        seg[c, :n], parent[c, :n] = torch.tensor(row.seg), torch.tensor(row.parent)
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same = (seg[:, :, None] == seg[:, None, :]) & causal
    mask = same | (parent[:, :, None] == seg[:, None, :])
    mask |= torch.eye(width, dtype=torch.bool)  # padding reads itself: no row of the mask is empty
    rows, cols, src = [], [], []
    resp = batch.response_mask.tolist()
    for r in range(batch.input_ids.shape[0]):
        for col in range(max(starts[r], 1), lengths[r]):
            if resp[r][col]:
                rows.append(r), cols.append(col), src.append(where[r, col - 1])
    at = torch.tensor(src, dtype=torch.long).reshape(-1, 2)
    keep = at[:, 1].unique()  # one column set for every row: the form of logits_to_keep all versions take
    column = torch.full((width,), -1, dtype=torch.long)
    column[keep] = torch.arange(len(keep))
    source = at[:, 0] * len(keep) + column[at[:, 1]]
    rows_t, cols_t = torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)
    return Packed(ids, pos, mask[:, None], keep, source, batch.input_ids[rows_t, cols_t], rows_t, cols_t)


def packing_refused(model: nn.Module) -> str | None:
    """Why a model cannot be scored packed (None: it can)."""
    if getattr(model.config, "model_type", None) == BDH_MODEL_TYPE:
        return "its spiking plugin reads each layer's record in the (batch, length) layout"
    return unsupported(model)


def packed_policy_forward(
    model: nn.Module, batch: RolloutBatch, grad_rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """`policy_forward`'s (B, L) log-probabilities and entropies at the response tokens (0 elsewhere), from
    packed rows. `grad_rows` (B,) bool: only these rows need a gradient (the rest carry no loss, as a GRPO group
    without reward spread); the others are scored without a graph, for their entropy, and cost no backward."""
    shape = batch.input_ids.shape
    logp = torch.zeros(shape, device=batch.input_ids.device)
    entropy = torch.zeros(shape, device=batch.input_ids.device)
    everything = torch.ones(shape[0], dtype=torch.bool, device=batch.input_ids.device)
    if grad_rows is None or not grad_rows.any():
        grad_rows = everything
    for rows, grad in ((grad_rows, True), (~grad_rows, False)):
        if not rows.any():
            continue
        picked = rows.nonzero().squeeze(1)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            part_logp, part_entropy, (r, c) = _score(model, batch.select(picked))
        at = (picked[r], c)  # placed outside no_grad: the graph of the rows scored with it survives
        logp, entropy = logp.index_put(at, part_logp), entropy.index_put(at, part_entropy)
    return logp, entropy, None


def _score(model: nn.Module, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """Each response token's log-probability and entropy, and its (row, col) in the batch's layout."""
    device = batch.input_ids.device
    p = pack_shared_prefix(batch.to(torch.device("cpu")), BUDGET)
    if p.targets.numel() == 0:  # no response token to score
        empty = torch.zeros(0, device=device)
        return empty, empty, (p.rows.to(device), p.cols.to(device))
    out = model(
        input_ids=p.input_ids.to(device),
        attention_mask=additive(p.mask.to(device), model),
        position_ids=p.position_ids.to(device),
        logits_to_keep=p.keep.to(device),
        use_cache=False,
    )
    if out.logits.shape[-2] != len(p.keep):
        raise RuntimeError(
            "objective.packed: the model returned logits at every position: it ignores `logits_to_keep` "
            "(transformers >= 4.49 takes it); set packed: false"
        )
    logits = out.logits.reshape(-1, out.logits.shape[-1])[p.source.to(device)].float()  # (K, V): one per target
    logp = F.log_softmax(logits, -1).gather(-1, p.targets.to(device)[:, None]).squeeze(-1)
    entropy = entropy_from_logits(logits.detach()[None])[0]
    return logp, entropy, (p.rows.to(device), p.cols.to(device))
