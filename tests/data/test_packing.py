"""Packing: a micro-batch's examples in fewer, fuller rows, each example with its own positions and attention, so
each example's loss is what it is alone (within 1e-5 on the tiny preset), the examples per batch are those
unpacked, and the cursor resumes exactly."""

import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import gpt2_folder
from trainguard.data.batches import TokenBatch, TokenizedExample, collate
from trainguard.data.packing import example_spans, pack, plan_rows
from trainguard.data.records import RecordSet
from trainguard.data.sources import RecordSource, RecordSourceConfig, SourceContext, tokenize_all
from trainguard.models.config import ModelSection
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective
from trainguard.tasks import build_task

TOK = byte_tokenizer()
A = TokenizedExample([1, 2, 3], 1)
B = TokenizedExample([4, 5], 1)
C = TokenizedExample([6, 7, 8, 9], 2)


def test_rows_are_filled_first_fit_longest_first():
    # longest first: 6 (#4) opens row 0, 5 (#0) row 1, 4 (#2) row 2; 3 (#1) fits row 1 (room 3), 2 (#3) row 0
    assert plan_rows([5, 3, 4, 2, 6], 8) == [[4, 3], [0, 1], [2]]
    assert plan_rows([9, 1], 8) == [[0], [1]]  # longer than a row: a row of its own


def test_pack_lays_examples_end_to_end_with_restarting_positions():
    batch = pack([A, B, C], pad_id=0, max_length=6)  # rows: [C, B], [A]
    assert batch.input_ids.tolist() == [[6, 7, 8, 9, 4, 5], [1, 2, 3, 0, 0, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 1, 2]]  # padding: its own segment
    assert batch.token_mask.tolist() == [[True] * 6, [True] * 3 + [False] * 3]
    assert batch.completion_mask.tolist() == [
        [False, False, True, True, False, True],
        [False, True, True] + [False] * 3,
    ]
    assert batch.n_tokens == 9
    assert example_spans([A, B, C], 6) == [(1, 0, 3), (0, 4, 2), (0, 0, 4)]  # (row, start, length) of A, B, C


def test_an_example_start_is_never_a_target_even_when_its_targets_say_so():
    chat = TokenizedExample([1, 2, 3], 0, targets=[True, True, False])  # cut from the left mid-answer
    batch = pack([chat, B], pad_id=0, max_length=8)
    assert batch.completion_mask.tolist() == [[False, True, False, False, True]]
    objective = SFTObjective(SFTConfig(loss_on="all"), None)  # type: ignore[arg-type]
    assert objective.weight(batch) == 3  # 2 + 1 tokens predicted from their own example, not 4


def test_nothing_to_pack_gives_the_plain_batch():
    batch = pack([A, B, C], pad_id=0, max_length=4)  # 4 | 3 | 2: no two fit together
    assert batch.position_ids is None and batch.input_ids.tolist() == [[6, 7, 8, 9], [1, 2, 3, 0], [4, 5, 0, 0]]
    assert example_spans([A, B, C], 4) == [(1, 0, 3), (2, 0, 2), (0, 0, 4)]


def reverse_examples(n: int, max_length: int = 64) -> list[TokenizedExample]:
    task = build_task("reverse", {"min_len": 1, "max_len": 20})
    return tokenize_all([task.record(i) for i in range(n)], TOK, max_length).examples


def gpt2(folder: Path) -> nn.Module:
    return build_model(ModelSection(preset=None, path=str(gpt2_folder(folder, n_embd=32))), TOK, 64, seed=0)


def model_for(name: str, tmp: Path) -> nn.Module:
    if name == "gpt2-folder":
        return gpt2(tmp / "gpt2").eval()
    model = build_model(ModelSection(preset="tiny"), TOK, 64, seed=0).eval()
    model.set_attn_implementation(name.split("-")[1])
    return model


def example_losses(logits: torch.Tensor, batch: TokenBatch, spans: list[tuple[int, int, int]]) -> list[float]:
    """Each example's mean completion CE, read from its span of the rows: logits (R, W, V)."""
    out = []
    for r, s, n in spans:
        targets = batch.input_ids[r, s + 1 : s + n].masked_fill(~batch.completion_mask[r, s + 1 : s + n], -100)
        out.append(F.cross_entropy(logits[r, s : s + n - 1], targets, ignore_index=-100).item())
    return out


@pytest.mark.parametrize("name", ["llama-sdpa", "llama-eager", "gpt2-folder"])
def test_each_examples_loss_is_the_same_packed_and_unpacked(name, tmp_path):
    model = model_for(name, tmp_path)
    exs = reverse_examples(24)
    plain, packed = collate(exs, TOK.pad_token_id), pack(exs, TOK.pad_token_id, 64)
    assert packed.input_ids.numel() < 0.8 * plain.input_ids.numel()  # the point: fewer padded positions
    plain_logits = model(input_ids=plain.input_ids).logits
    packed_logits = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
    alone = example_losses(plain_logits, plain, [(i, 0, len(e.ids)) for i, e in enumerate(exs)])
    together = example_losses(packed_logits, packed, example_spans(exs, 64))
    assert together == pytest.approx(alone, abs=1e-5)
    leaky = model(input_ids=packed.input_ids).logits  # one causal mask over the whole row: examples see earlier ones
    seeing = example_losses(leaky, packed, example_spans(exs, 64))
    assert max(abs(a - b) for a, b in zip(seeing, alone, strict=True)) > 1e-2
    assert min(alone) != pytest.approx(max(alone), abs=1e-3)  # losses differ by example: a mix-up would show


@pytest.mark.parametrize("loss_on", ["completion", "all"])
def test_the_sft_objective_gives_the_same_loss_and_gradients_packed(loss_on):
    model = model_for("llama-sdpa", Path())
    objective = SFTObjective(SFTConfig(loss_on=loss_on), ObjectiveContext(model, TOK))
    exs = reverse_examples(16)
    results = []
    for batch in (collate(exs, TOK.pad_token_id), pack(exs, TOK.pad_token_id, 64)):
        out = objective.loss(model, batch)
        out.total.backward()
        results.append((objective.weight(batch), out.total.item(), [p.grad.clone() for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
    (units, plain, plain_grads), (packed_units, packed, packed_grads) = results
    assert units == packed_units
    assert packed / units == pytest.approx(plain / units, abs=1e-5)
    for g, ref in zip(packed_grads, plain_grads, strict=True):
        torch.testing.assert_close(g / units, ref / units, rtol=0, atol=1e-5)


def split_rows(batch: TokenBatch) -> list[tuple[int, ...]]:
    """The examples in a batch (each row's real tokens, cut where positions restart), sorted."""
    out = []
    for r in range(batch.input_ids.shape[0]):
        n = int(batch.token_mask[r].sum())
        ids = batch.input_ids[r, :n].tolist()
        pos = batch.position_ids[r, :n].tolist() if batch.position_ids is not None else list(range(n))
        starts = [i for i, p in enumerate(pos) if p == 0] + [n]
        out += [tuple(ids[a:b]) for a, b in itertools.pairwise(starts)]
    return sorted(out)


def test_a_packing_source_serves_the_examples_and_cursor_of_an_unpacked_one():
    exs = reverse_examples(40)
    plain = RecordSource(exs, batch_size=8, seed=3, pad_id=TOK.pad_token_id)
    packed = RecordSource(exs, batch_size=8, seed=3, pad_id=TOK.pad_token_id, pack_to=64)
    for _ in range(7):  # across an epoch boundary (40 examples, 8 a batch)
        a, b = plain.next_batch(), packed.next_batch()
        assert b.position_ids is not None and b.input_ids.shape[0] < 8
        assert split_rows(a) == split_rows(b) and a.n_tokens == b.n_tokens
        assert packed.state_dict() == plain.state_dict()
    assert packed.epoch == plain.epoch == 56 / 40


def test_a_packing_source_resumes_and_skips_exactly():
    exs = reverse_examples(40)
    first = RecordSource(exs, batch_size=8, seed=1, pad_id=TOK.pad_token_id, pack_to=64)
    for _ in range(3):
        first.next_batch()
    resumed = RecordSource(exs, batch_size=8, seed=1, pad_id=TOK.pad_token_id, pack_to=64)
    resumed.load_state_dict(first.state_dict())
    for _ in range(4):
        a, b = first.next_batch(), resumed.next_batch()
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.position_ids, b.position_ids)
    behind = RecordSource(exs, batch_size=8, seed=1, pad_id=TOK.pad_token_id, pack_to=64)
    assert behind.skip_past(first.state_dict()) == 56
    assert torch.equal(behind.next_batch().input_ids, first.next_batch().input_ids)


def test_the_switch_is_off_by_default_and_packs_to_the_tokenizers_max_length():
    task = build_task("reverse", {"min_len": 1, "max_len": 20})
    records = RecordSet([task.record(i) for i in range(20)], [task.record(100 + i) for i in range(6)])
    ctx = SourceContext(records, TOK, max_length=48, batch_size=4, seed=0)
    assert RecordSource.build(RecordSourceConfig(), ctx).pack_to is None
    source = RecordSource.build(RecordSourceConfig.model_validate({"packing": True}), ctx)
    assert source.pack_to == 48 and source.next_batch().position_ids is not None
    assert all(b.position_ids is None for b in source.eval_data())  # held-out batches: one example a row


@pytest.mark.slow
def test_a_packed_run_trains_on_the_same_losses_as_an_unpacked_one(tmp_path):
    from helpers import tiny_config, write_config
    from trainguard import api

    losses = {}
    for packing in (False, True):
        cfg = tiny_config(
            tmp_path / f"runs-{packing}",
            tokenizer={"max_length": 64},
            data={"sources": [{"task": "reverse", "n": 400, "params": {"min_len": 1, "max_len": 12}}]},
        )
        cfg["stages"][0] |= {"source": {"name": "records", "packing": packing}, "max_steps": 8, "eval_every": 4}
        run = api.run(write_config(tmp_path / f"run-{packing}.yaml", cfg), overwrite=True)
        rows = api.metrics(run, ["loss/train", "loss/eval", "perf/tokens_per_s"])
        losses[packing] = {(r["step"], r["key"]): r["value"] for r in rows if not r["key"].startswith("perf/")}
    assert len(losses[True]) == 8 + 2 and losses[True].keys() == losses[False].keys()
    for key, value in losses[False].items():
        assert losses[True][key] == pytest.approx(value, abs=1e-5), key  # measured: 5e-7 after 8 steps
