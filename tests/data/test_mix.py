"""The mix source (task groups by weight, hard-example oversampling) and per-task losses through the step."""

import json
import math
from dataclasses import replace

import pytest
import torch
from accelerate import Accelerator
from pydantic import ValidationError
from torch import nn

from trainguard.config import StageSection
from trainguard.data.batches import TokenBatch, TokenizedExample, collate
from trainguard.data.config import DataSection
from trainguard.data.mix import HardSection, MixSource, MixSourceConfig, boltzmann_pick, is_hard_slot, uniform
from trainguard.data.records import load_records
from trainguard.data.sources import RecordSource, SourceContext
from trainguard.engine.step import StepTensors
from trainguard.errors import ConfigError, DataError
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import LossOutput
from trainguard.objectives.sft import SFTConfig, SFTObjective, row_cross_entropy, sums_by_task


def group(first: int, n: int) -> RecordSource:
    """n examples whose first token is their id (first .. first+n-1), so a batch row says which it is."""
    return RecordSource([TokenizedExample([first + k, 1, 2], 1) for k in range(n)], batch_size=1, seed=5, pad_id=0)


def mix(weights: dict[str, float], hard: HardSection | None = None, batch_size: int = 8, seed: int = 0) -> MixSource:
    groups = {"reverse": group(0, 10), "sort": group(100, 10)}
    return MixSource({k: groups[k] for k in weights}, weights, batch_size, seed, pad_id=0, hard=hard)


def rows(batch: TokenBatch) -> list[int]:
    return batch.input_ids[:, 0].tolist()


def observed(batch: TokenBatch, losses: dict[int, float]) -> LossOutput:
    """What the SFT objective would report for `batch` if row with first token k had mean loss losses[k]."""
    return LossOutput({}, extras={"row_loss": torch.tensor([losses.get(r, 0.1) for r in rows(batch)])})


# -- the stream -----------------------------------------------------------------------------------------------
def test_weights_set_each_groups_share_of_samples():
    src = mix({"reverse": 7, "sort": 3}, batch_size=100)  # normalised: 0.7 / 0.3
    tasks = [t for _ in range(20) for t in src.next_batch().tasks]
    # 2,000 independent draws with p = 0.7: sd = sqrt(2000 * 0.7 * 0.3) = 20.5; a 4-sd band is +-82.
    assert abs(tasks.count("reverse") - 1400) <= 82
    assert len(tasks) == 2000 and set(tasks) == {"reverse", "sort"}


def test_rows_are_labelled_with_their_group_and_index():
    batch = mix({"reverse": 1, "sort": 1}).next_batch()
    for task, index, first in zip(batch.tasks, batch.example_ids, rows(batch), strict=True):
        assert first == (0 if task == "reverse" else 100) + index


def test_each_group_serves_every_record_once_per_epoch():
    src = mix({"reverse": 1, "sort": 1}, batch_size=10)
    seen: dict[str, list[int]] = {"reverse": [], "sort": []}
    while min(src.counts.values()) < 10:
        batch = src.next_batch()
        for task, index in zip(batch.tasks, batch.example_ids, strict=True):
            seen[task].append(index)
    assert sorted(seen["reverse"][:10]) == list(range(10)) == sorted(seen["sort"][:10])


def test_the_draw_depends_on_seed_and_cursor_alone():
    a, b, c = mix({"reverse": 1, "sort": 1}), mix({"reverse": 1, "sort": 1}), mix({"reverse": 1, "sort": 1}, seed=1)
    first = [rows(a.next_batch()) for _ in range(5)]
    assert first == [rows(b.next_batch()) for _ in range(5)]
    assert first != [rows(c.next_batch()) for _ in range(5)]
    assert uniform(0, 0, 7) == uniform(0, 0, 7) != uniform(0, 0, 8)


def test_skip_past_moves_to_the_position_at_the_alert():
    a, b = mix({"reverse": 1, "sort": 2}), mix({"reverse": 1, "sort": 2})
    for _ in range(3):
        a.next_batch()
    assert b.skip_past(a.state_dict()) == 24  # samples skipped
    assert rows(a.next_batch()) == rows(b.next_batch())


def test_changed_data_refuses_to_resume():
    state = mix({"reverse": 1, "sort": 1}).state_dict()
    other = MixSource({"reverse": group(0, 10), "sort": group(100, 9)}, {"reverse": 1, "sort": 1}, 8, 0, 0)
    with pytest.raises(DataError, match="changed since the checkpoint"):
        other.load_state_dict(state)


# -- hard examples ------------------------------------------------------------------------------------------
def test_hard_slots_are_evenly_spaced():
    slots = [i for i in range(100) if is_hard_slot(i, 0.25)]
    assert slots[:3] == [3, 7, 11] and len(slots) == 25


def test_boltzmann_pick_follows_exp_loss_over_temperature():
    # losses 0 and ln 3 at temperature 1: probabilities 1/4 and 3/4, so u < 0.25 picks the first.
    assert [boltzmann_pick([0.0, math.log(3)], 1.0, u) for u in (0.0, 0.24, 0.26, 0.99)] == [0, 0, 1, 1]
    # temperature 2: exp(ln 3 / 2) = sqrt 3, so the first has 1 / (1 + sqrt 3) = 0.366
    assert [boltzmann_pick([0.0, math.log(3)], 2.0, u) for u in (0.36, 0.37)] == [0, 1]


def test_hard_draws_favour_the_high_loss_examples():
    src = mix({"reverse": 1}, HardSection(fraction=0.25, temperature=1.0, pool=4), batch_size=8)
    losses = {3: 5.0, 6: 4.0}  # the rest 0.1
    served = []
    for _ in range(200):
        batch = src.next_batch()
        served += rows(batch)
        src.observe(batch, observed(batch, losses))
    # 1,600 samples: 400 hard slots (the first batch's 2 come before any loss is seen, so they are fresh) and
    # ~1,200 fresh draws, ~120 per example. The pool keeps 3, 6 and, of the ties at 0.1, the lowest indices 0, 1;
    # a hard draw takes 3 with p = e^5 / (e^5 + e^4 + 2e^0.1) = 0.72, 6 with 0.27, 0 or 1 with 0.005 each.
    assert sorted(src.pool["reverse"]) == [0, 1, 3, 6]
    assert src.pool["reverse"][3] == 5.0 and src.pool["reverse"][6] == 4.0
    assert served.count(3) > 120 + 0.6 * 398 and served.count(6) > 120 + 0.2 * 398
    assert all(served.count(k) < 160 for k in (2, 4, 5, 7, 8, 9))  # fresh draws only


def test_state_dict_round_trip_resumes_hard_draws_exactly():
    hard = HardSection(fraction=0.5, temperature=0.5, pool=3)
    a, b = mix({"reverse": 2, "sort": 1}, hard), mix({"reverse": 2, "sort": 1}, hard)
    losses = {k: float(k % 7) for k in range(200)}
    for _ in range(4):
        batch = a.next_batch()
        a.observe(batch, observed(batch, losses))
    state = json.loads(json.dumps(a.state_dict()))  # the checkpoint keeps it as plain JSON
    assert state["pool"]["reverse"] and all(len(p) <= 3 for p in state["pool"].values())
    b.load_state_dict(state)
    for _ in range(5):
        x, y = a.next_batch(), b.next_batch()
        assert (x.tasks, x.example_ids) == (y.tasks, y.example_ids)
        a.observe(x, observed(x, losses)), b.observe(y, observed(y, losses))


def test_nonfinite_losses_never_enter_the_pool():
    src = mix({"reverse": 1}, HardSection())
    batch = src.next_batch()
    src.observe(batch, LossOutput({}, extras={"row_loss": torch.full((8,), math.nan)}))
    src.absorb()
    assert src.pool["reverse"] == {}


# -- config and records -------------------------------------------------------------------------------------
def context(tmp_path, sources: list[dict], eval_fraction: float = 0.1) -> SourceContext:
    records = load_records(DataSection(sources=sources, eval_fraction=eval_fraction), seed=0)
    return SourceContext(records, byte_tokenizer(), max_length=32, batch_size=4, seed=0)


def test_weights_on_groups_the_records_lack_name_the_allowed_ones(tmp_path):
    ctx = context(tmp_path, [{"task": "reverse", "n": 20}, {"task": "sort", "n": 20}])
    with pytest.raises(ConfigError, match=r"group 'sat'; allowed \(the groups of its records\): reverse, sort"):
        MixSource.build(MixSourceConfig(weights={"reverse": 1, "sat": 1}), ctx)


def test_a_group_with_no_training_records_is_refused(tmp_path):
    ctx = context(tmp_path, [{"task": "reverse", "n": 20}, {"task": "sort", "n": 1}], eval_fraction=0.5)
    sort_train = [r for r in ctx.records.train if r["task"] == "sort"]
    ctx.records.eval += sort_train
    ctx.records.train = [r for r in ctx.records.train if r["task"] != "sort"]
    with pytest.raises(DataError, match="group 'sort' a weight but none of its records is left for training"):
        MixSource.build(MixSourceConfig(weights={"reverse": 1, "sort": 1}), ctx)


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"name": "mix", "weights": {"reverse": 0}}, "weights.reverse"),
        ({"name": "mix", "weights": {}}, "weights"),
        ({"name": "mix", "weights": {"reverse": 1}, "hard": {"fraction": 1.0}}, "hard.fraction"),
        ({"name": "mix", "weights": {"reverse": 1}, "hard": {"temperature": 0}}, "hard.temperature"),
        ({"name": "mix", "weights": {"reverse": 1}, "hard": {"fractions": 0.2}}, "fractions"),
    ],
)
def test_bad_mix_configs_name_the_field(source, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        StageSection.model_validate({"name": "s", "objective": "sft", "max_steps": 1, "source": source})


def test_records_group_by_task_then_by_file(tmp_path):
    path = tmp_path / "cot.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(6)))
    ctx = context(tmp_path, [{"task": "reverse", "n": 10}, {"path": str(path)}], eval_fraction=0.0)
    src = MixSource.build(MixSourceConfig(weights={"reverse": 1, "cot": 1}), ctx)
    assert {k: len(g.examples) for k, g in src.groups.items()} == {"reverse": 10, "cot": 6}
    assert src.notes()[0] == ("info", "mix: reverse 0.50, cot 0.50", {"weights": {"reverse": 0.5, "cot": 0.5}})


def test_groups_left_out_of_the_weights_are_noted(tmp_path):
    ctx = context(tmp_path, [{"task": "reverse", "n": 10}, {"task": "sort", "n": 10}], eval_fraction=0.5)
    src = MixSource.build(MixSourceConfig(weights={"sort": 1}), ctx)
    assert src.notes()[1][:2] == (
        "warning",
        "records of reverse are not in source.weights: this stage does not train on them",
    )
    assert {t for b in src.eval_data() for t in b.tasks} == {"sort"}


# -- per-task losses ----------------------------------------------------------------------------------------
def test_row_and_task_sums_match_a_hand_computation():
    # V = 2; each position predicts token 1 with p = 3/4 (logits 0, ln 3), so a target 1 costs ln(4/3), a 0 ln 4.
    logits = torch.tensor([0.0, math.log(3)]).expand(3, 4, 2)
    ids = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 0], [0, 1, 0, 0]])
    mask = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 0], [0, 1, 1, 0]], dtype=torch.bool)  # targets: 3, 1, 2
    sums, counts = row_cross_entropy(logits, ids, mask)
    a, b = math.log(4 / 3), math.log(4)
    assert sums.tolist() == pytest.approx([2 * a + b, a, a + b]) and counts.tolist() == [3, 1, 2]
    by_task = sums_by_task(sums, counts, ("x", "y", "x"))
    assert list(by_task) == ["x", "y"]
    assert [float(v) for v in by_task["x"]] == pytest.approx([3 * a + 2 * b, 5, 2])
    assert [float(v) for v in by_task["y"]] == pytest.approx([a, 1, 1])


class FixedLogits(nn.Module):
    """A model whose next-token logits depend on the current token only: a (V, V) table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, input_ids: torch.Tensor) -> object:
        return type("Out", (), {"logits": self.table[input_ids]})()


def sft() -> tuple[SFTObjective, FixedLogits]:
    model = FixedLogits(torch.tensor([[0.0, math.log(3)], [math.log(3), 0.0]]))  # next is the other token, p 3/4
    return SFTObjective(SFTConfig(), None), model  # type: ignore[arg-type]


def test_sft_reports_task_sums_row_losses_and_the_same_total():
    objective, model = sft()
    batch = collate([TokenizedExample([0, 1, 0], 1), TokenizedExample([0, 0], 1)], pad_id=0)
    plain = objective.loss(model, batch)
    labelled = objective.loss(model, replace(batch, tasks=("x", "y")))
    a, b = math.log(4 / 3), math.log(4)  # predicted right (the other token), wrong (the same)
    assert float(plain.total.detach()) == pytest.approx(float(labelled.total.detach())) == pytest.approx(2 * a + b)
    assert labelled.extras["row_loss"].tolist() == pytest.approx([a, b])
    ratios = {k: [float(v) for v in pair] for k, pair in labelled.extras["ratios"].items()}
    assert ratios == {"loss/by_task/x": pytest.approx([2 * a, 2]), "loss/by_task/y": pytest.approx([b, 1])}
    assert {k: float(v) for k, v in labelled.metrics.items()} == {"data/share/x": 0.5, "data/share/y": 0.5}
    assert "ratios" not in plain.extras and "row_loss" not in plain.extras


def test_step_divides_task_sums_by_task_tokens_not_by_micro_batches():
    """grad_accum 2: x is in both micro-batches, y in the first only; a mean over micro-batches would halve y."""
    acc = StepTensors(torch.device("cpu"))
    x1, y1, x2 = (
        (torch.tensor(6.0), torch.tensor(3.0)),
        (torch.tensor(2.0), torch.tensor(2.0)),
        (torch.tensor(4.0), torch.tensor(1.0)),
    )
    for ratios in ({"loss/by_task/x": x1, "loss/by_task/y": y1}, {"loss/by_task/x": x2}):
        total = sum(num for num, _ in ratios.values())  # 6 target tokens in the update
        acc.add_micro(total / 6, LossOutput({"task": total}, extras={"ratios": ratios}), 6)
    acc.add_grads([torch.ones(4)], torch.tensor(1.0), None)
    metrics, norms, extra = acc.sync([torch.tensor(7.0)])
    assert metrics["loss/by_task/x"] == pytest.approx(10 / 4) and metrics["loss/by_task/y"] == pytest.approx(1.0)
    assert metrics["loss/train"] == pytest.approx(12 / 6) and norms == [2.0] and extra == [7.0]


def test_eval_reports_each_tasks_loss_and_perplexity():
    objective, model = sft()
    batches = [
        replace(collate([TokenizedExample([0, 1, 0], 1)], 0), tasks=("x",)),
        replace(collate([TokenizedExample([0, 0], 1)], 0), tasks=("y",)),
    ]
    metrics = objective.evaluate(model, batches, Accelerator(cpu=True))
    a, b = math.log(4 / 3), math.log(4)
    assert metrics["loss/eval"] == pytest.approx((2 * a + b) / 3)
    assert metrics["loss/eval/by_task/x"] == pytest.approx(a) and metrics["loss/eval/by_task/y"] == pytest.approx(b)
    ppl = metrics["loss/eval_ppl/by_task/x"], metrics["loss/eval_ppl/by_task/y"]
    assert ppl == (pytest.approx(4 / 3), pytest.approx(4))
