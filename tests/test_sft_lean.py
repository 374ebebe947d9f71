"""The lean SFT step: the LM head runs only from the batch's earliest target onward, and the loss, the per-task
losses, the row losses, the gradients and the format surrogate equal what full logits give (within 1e-6), on the
tiny Llama preset, the preset under LoRA and a GPT-2 loaded from a local folder."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import gpt2_folder
from trainguard.config import LoraSection
from trainguard.constraints.library import build_constraint
from trainguard.data.batches import TokenBatch, TokenizedExample, collate, first_target
from trainguard.models.config import ModelSection
from trainguard.models.loading import add_lora, build_model
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective, keeps_logits, logits_start

TOK = byte_tokenizer()
WORDS = ["abc", "hello", "zq", "packing", "lean", "x"]


def examples() -> list[TokenizedExample]:
    """Prompts of different lengths, so rows' completions start at different positions (earliest: "x", at 13)."""
    out = []
    for w in WORDS:
        prompt = [TOK.bos_token_id, *TOK.encode(f"reverse: {w}\n", add_special_tokens=False)]
        out.append(
            TokenizedExample([*prompt, *TOK.encode(w[::-1], add_special_tokens=False), TOK.eos_token_id], len(prompt))
        )
    return out


class FullLogits(nn.Module):
    """The model behind a forward that takes `input_ids` only: the objective computes every position's logits,
    as it did before the LM head was cut. The reference."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor) -> object:
        return self.inner(input_ids=input_ids)


def tiny() -> nn.Module:
    return build_model(ModelSection(preset="tiny"), TOK, 64, seed=0).eval()


def gpt2(folder: Path) -> nn.Module:
    return build_model(ModelSection(preset=None, path=str(gpt2_folder(folder, n_embd=32))), TOK, 64, seed=0).eval()


MODELS = {
    "llama": lambda tmp: tiny(),
    "llama+lora": lambda tmp: add_lora(tiny(), LoraSection(r=4, dropout=0.0)),
    "gpt2-folder": lambda tmp: gpt2(tmp / "gpt2"),
}


def lm_head(model: nn.Module) -> nn.Module:
    return (model.get_base_model() if hasattr(model, "get_base_model") else model).lm_head


def grads(model: nn.Module) -> list[torch.Tensor]:
    out = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return out


def test_the_earliest_target_is_the_shortest_prompts_end():
    batch = collate(examples(), TOK.pad_token_id)
    assert [e.prompt_len for e in examples()] == [14, 16, 13, 18, 15, 12]  # <bos> + "reverse: " + word + "\n"
    assert first_target(batch.completion_mask) == 12 and logits_start(batch, "completion") == 11
    assert logits_start(batch, "all") == 0  # every token from position 1 is a target
    assert batch.to(torch.device("cpu")).target_start == 12  # read from the host mask as the batch moves


def test_a_device_batch_uses_the_host_start_without_reading_its_mask():
    ids = torch.zeros(2, 20, dtype=torch.long, device="meta")  # a meta tensor has no values to read: any read fails
    mask = torch.zeros(2, 20, dtype=torch.bool, device="meta")
    batch = TokenBatch(ids, mask, mask, target_start=7)
    assert logits_start(batch, "completion") == 6
    assert batch.to(torch.device("meta")).target_start == 7  # carried, not recomputed


def test_wrappers_that_pass_keywords_on_are_seen_through():
    model = tiny()
    assert keeps_logits(model) and keeps_logits(add_lora(tiny(), LoraSection(r=4)))
    assert not keeps_logits(FullLogits(model))  # a hand-written forward without logits_to_keep: full logits


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("loss_on", ["completion", "all"])
def test_lean_loss_task_sums_and_gradients_equal_the_full_logits_ones(name, loss_on, tmp_path):
    model = MODELS[name](tmp_path)
    objective = SFTObjective(SFTConfig(loss_on=loss_on), ObjectiveContext(model, TOK))
    batch = replace(collate(examples(), TOK.pad_token_id), tasks=("a", "b", "a", "b", "a", "c"))
    width = batch.input_ids.shape[1]
    seen: list[int] = []
    hook = lm_head(model).register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    lean = objective.loss(model, batch)
    hook.remove()
    start = 11 if loss_on == "completion" else 0
    assert seen == [width - start] and lean.extras["logits_start"] == start
    assert lean.extras["logits"].shape[:2] == (6, width - start)
    lean.total.backward()
    lean_grads = grads(model)
    full = objective.loss(FullLogits(model), batch)
    full.total.backward()
    full_grads = grads(model)
    units = objective.weight(batch)
    per_row = [len(e.ids) - e.prompt_len if loss_on == "completion" else len(e.ids) - 1 for e in examples()]
    assert units == sum(per_row) == (28 if loss_on == "completion" else 110)
    assert lean.total.item() / units == pytest.approx(full.total.item() / units, abs=1e-6)
    assert lean.extras["row_loss"].tolist() == pytest.approx(full.extras["row_loss"].tolist(), abs=1e-6)
    assert set(lean.extras["ratios"]) == {"loss/by_task/a", "loss/by_task/b", "loss/by_task/c"}
    for key, (num, den) in lean.extras["ratios"].items():
        ref_num, ref_den = full.extras["ratios"][key]
        assert float(den) == float(ref_den) and float(num / den) == pytest.approx(float(ref_num / ref_den), abs=1e-6)
    assert len(lean_grads) == len(full_grads) > 0
    for g, ref in zip(lean_grads, full_grads, strict=True):
        torch.testing.assert_close(g / units, ref / units, rtol=0, atol=1e-6)


def test_a_batch_without_targets_keeps_one_position_and_costs_nothing():
    model = tiny()
    objective = SFTObjective(SFTConfig(), ObjectiveContext(model, TOK))
    batch = collate([TokenizedExample(e.ids, len(e.ids)) for e in examples()], TOK.pad_token_id)  # all prompt
    out = objective.loss(model, batch)
    width = batch.input_ids.shape[1]
    assert out.extras["logits_start"] == width - 1 and out.extras["logits"].shape[1] == 1 and out.total.item() == 0


def test_the_format_surrogate_reads_the_offset_logits_as_it_read_the_full_ones():
    """The constraints plug-in's bad_mass on the kept logits with `input_ids[:, s:]` and the mask from s equals
    bad_mass on full logits: no completion byte lies before s, so no structure prefix is lost."""
    model = tiny()
    objective = SFTObjective(SFTConfig(), ObjectiveContext(model, TOK))
    batch = collate(examples(), TOK.pad_token_id)
    lean = objective.loss(model, batch)
    full = objective.loss(FullLogits(model), batch)
    measure = build_constraint({"name": "format", "kind": "regex", "pattern": "[a-z]{1,8}"})
    mask = batch.completion_mask & (batch.input_ids < 256)
    s = lean.extras["logits_start"]
    cut = measure.bad_mass(lean.extras["logits"], batch.input_ids[:, s:], mask[:, s:])
    whole = measure.bad_mass(full.extras["logits"], batch.input_ids, mask)
    assert whole.item() > 0.1 and cut.item() == pytest.approx(whole.item(), abs=1e-6)
