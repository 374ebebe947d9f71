"""Fault injection does what it says, once per covered step, even when a rollback replays the step."""

import math

import torch
from torch import nn

from trainguard.data.batches import TokenizedExample, collate
from trainguard.guard.faults import CONTAMINATION, FaultInjector, FaultSpec, split_examples
from trainguard.models.tokenizer import byte_tokenizer

TOK = byte_tokenizer()


def injector(*specs: FaultSpec) -> FaultInjector:
    return FaultInjector(list(specs), 259, lambda t: TOK.encode(t, add_special_tokens=False), 256, seed=0)


def batch():
    return collate(
        [TokenizedExample([257, 97, 98, 10, 98, 97, 258], 4), TokenizedExample([257, 99, 10, 99, 258], 3)], 256
    )


def test_nan_loss_fires_in_its_window_once():
    f = injector(FaultSpec(kind="nan_loss", at_step=5, duration=2))
    one = torch.tensor(1.0)
    assert f.loss(one, 4).item() == 1.0
    assert math.isnan(f.loss(one, 5).item()) and math.isnan(f.loss(one, 6).item())
    assert f.loss(one, 5).item() == 1.0  # replayed after a rollback: already happened
    assert f.loss(one, 7).item() == 1.0


def test_lr_spike_and_grad_faults():
    f = injector(
        FaultSpec(kind="lr_spike", at_step=3, magnitude=100),
        FaultSpec(kind="grad_spike", at_step=3, magnitude=10),
        FaultSpec(kind="inf_grad", at_step=4),
    )
    assert f.lr_factor(3) == 100 and f.lr_factor(3) == 1.0 and f.lr_factor(4) == 1.0  # once per step
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    f.grads([p], 3)
    assert p.grad.tolist() == [10.0, 10.0, 10.0]
    f.grads([p], 4)
    assert math.isinf(p.grad[0].item())


def test_corrupt_batch_modes_keep_the_prompt():
    b = batch()
    random_rows = injector(FaultSpec(kind="corrupt_batch", at_step=1, magnitude=0.5)).batch(b, 1)
    assert not torch.equal(random_rows.input_ids[0], b.input_ids[0]) and torch.equal(
        random_rows.input_ids[1], b.input_ids[1]
    )
    repeated = injector(FaultSpec(kind="corrupt_batch", at_step=1, magnitude=1.0, mode="repeat_ngram")).batch(b, 1)
    assert repeated.input_ids.shape[1] == 4 + 80 and repeated.input_ids[0, :4].tolist() == [257, 97, 98, 10]
    shuffled = injector(FaultSpec(kind="corrupt_batch", at_step=1, magnitude=1.0, mode="shuffle_labels")).batch(b, 1)
    assert sorted(map(tuple, (e.ids[e.prompt_len :] for e in split_examples(shuffled)))) == [(98, 97, 258), (99, 258)]


def test_contaminate_writes_the_strings_into_completions():
    out = injector(FaultSpec(kind="contaminate", at_step=2, magnitude=1.0)).batch(batch(), 2)
    texts = TOK.batch_decode(out.input_ids, skip_special_tokens=True)
    assert all(CONTAMINATION in t for t in texts)


def test_dead_units_zero_gate_rows():
    from trainguard.config import ModelSection
    from trainguard.models.loading import build_model

    model = build_model(ModelSection(preset="tiny"), TOK, 32, seed=0)
    injector(FaultSpec(kind="dead_units", at_step=1, magnitude=0.5)).model(model, 1)
    mlp = model.model.layers[0].mlp
    for rows in (mlp.gate_proj.weight, mlp.up_proj.weight):
        assert rows[:176].abs().sum() == 0 and rows[176:].abs().sum() > 0
    # dead for good: the zeroed rows get no gradient
    model(input_ids=torch.randint(0, 256, (2, 8))).logits.sum().backward()
    assert mlp.gate_proj.weight.grad[:176].abs().sum() == 0 and mlp.up_proj.weight.grad[:176].abs().sum() == 0


def test_dead_units_stay_dead_under_adam_momentum():
    from trainguard.config import ModelSection
    from trainguard.models.loading import build_model

    model = build_model(ModelSection(preset="tiny"), TOK, 32, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 256, (2, 8), generator=torch.Generator().manual_seed(0))
    for _ in range(3):  # build up momentum first
        model(input_ids=ids).logits.sum().backward()
        opt.step()
        opt.zero_grad()
    injector(FaultSpec(kind="dead_units", at_step=1, magnitude=0.5)).model(model, 1, opt)
    for _ in range(3):
        model(input_ids=ids).logits.sum().backward()
        opt.step()
        opt.zero_grad()
    gate = model.model.layers[0].mlp.gate_proj.weight
    assert gate[:176].abs().sum() == 0 and gate[176:].abs().sum() > 0


def test_fired_faults_survive_a_checkpoint():
    f = injector(FaultSpec(kind="nan_loss", at_step=1))
    f.loss(torch.tensor(1.0), 1)
    g = injector(FaultSpec(kind="nan_loss", at_step=1))
    g.load_state_dict(f.state_dict())
    assert g.loss(torch.tensor(1.0), 1).item() == 1.0


def test_fault_bench_onsets_stay_inside_a_shorter_run():
    from trainguard.fault_bench import onsets

    assert onsets(160) == [75, 103, 131]  # the recorded bench's
    assert onsets(30) == [14, 19, 25] and all(2 <= o <= 30 for o in onsets(30))
