"""SFT loss: completion-only targets, hand-computed values, and exact gradient accumulation."""

import math

import torch
from torch import nn

from trainguard.data.batches import TokenizedExample, collate
from trainguard.objectives import ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective, token_cross_entropy_sum


class Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class UniformModel(nn.Module):
    """Predicts the same logits everywhere: loss per target is -log softmax(logits)[target]."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(vocab))

    def forward(self, input_ids: torch.Tensor) -> Out:
        return Out(self.logits.expand(*input_ids.shape, -1))


def test_completion_only_counts_completion_targets():
    batch = collate([TokenizedExample([1, 2, 3, 0], 2)], pad_id=0)
    batch.token_mask[0, 3] = True  # pretend the last 0 is a real (EOS-like) token
    ctx = ObjectiveContext(UniformModel(4), tokenizer=None)
    completion = SFTObjective(SFTConfig(loss_on="completion"), ctx)
    everything = SFTObjective(SFTConfig(loss_on="all"), ctx)
    # targets are positions 1..3; completion positions are 2 and 3
    assert completion.weight(batch) == 2 and everything.weight(batch) == 3
    loss = completion.loss(UniformModel(4), batch).total
    assert math.isclose(loss.item(), 2 * math.log(4), rel_tol=1e-6)


def test_cross_entropy_sum_matches_hand_value():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [9.0, 9.0]]])  # (1, 3, 2)
    ids = torch.tensor([[0, 0, 1]])
    mask = torch.tensor([[False, True, True]])
    # target at position 1 is 0 under logits[0]: -log(e^2/(e^2+1)); at 2 is 1 under logits[1]: log 2
    expected = -math.log(math.exp(2) / (math.exp(2) + 1)) + math.log(2)
    assert math.isclose(token_cross_entropy_sum(logits, ids, mask).item(), expected, rel_tol=1e-6)


def test_accumulated_micro_batches_give_the_big_batch_gradient():
    torch.manual_seed(0)
    model = nn.Sequential()  # a real tiny LM: embedding + linear head
    emb, head = nn.Embedding(10, 8), nn.Linear(8, 10)

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = emb, head

        def forward(self, input_ids):
            return Out(self.head(self.emb(input_ids)))

    model = LM()
    obj = SFTObjective(SFTConfig(), ObjectiveContext(model, tokenizer=None))
    exs = [TokenizedExample([1, 2, 3, 4, 5], 2), TokenizedExample([6, 7], 1), TokenizedExample([8, 9, 1], 1)]
    big = collate(exs, pad_id=0)
    (obj.loss(model, big).total / obj.weight(big)).backward()
    want = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    micro = [collate(exs[:1], 0), collate(exs[1:], 0)]  # unequal token counts: a mean of means would be wrong
    units = sum(obj.weight(m) for m in micro)
    for m in micro:
        (obj.loss(model, m).total / units).backward()
    for g, w in zip((p.grad for p in model.parameters()), want, strict=True):
        torch.testing.assert_close(g, w)
