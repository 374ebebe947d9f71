"""Packed scoring of rollouts: each group's prompt once, responses end to end, logits only where a response token
is predicted. It must give the padded forward's log-probabilities, entropies and gradients, on Llama-style
(rotary) and GPT-2-style (learned positions) models, with several packed rows and with multi-turn masks."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from trainguard.data.rollouts import pack, pack_rows
from trainguard.engine.companions import Companion, FrozenCopy
from trainguard.models.presets import preset_config
from trainguard.rl import packed
from trainguard.rl.forward import policy_forward
from trainguard.rl.masks import additive, unsupported
from trainguard.rl.packed import pack_shared_prefix, packed_policy_forward


def llama() -> torch.nn.Module:
    torch.manual_seed(0)
    return LlamaForCausalLM(preset_config("tiny", 260, 128, 1, 2, 0))


def gpt2() -> torch.nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=260,
            n_positions=128,
            n_embd=64,
            n_layer=2,
            n_head=4,
            bos_token_id=1,
            eos_token_id=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )


def groups(n_groups: int = 3, group: int = 4, seed: int = 1):
    """A GRPO-shaped batch: prompts of different lengths, each sampled `group` times with responses of 1-6."""
    gen = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(n_groups):
        prompt = torch.randint(3, 250, (int(torch.randint(4, 9, (1,), generator=gen)),), generator=gen).tolist()
        for _ in range(group):
            length = int(torch.randint(1, 7, (1,), generator=gen))
            prompts.append(prompt)
            responses.append(torch.randint(3, 250, (length,), generator=gen).tolist())
    return pack(prompts, responses, 0, torch.zeros(len(prompts)), group)


def scored(batch) -> torch.Tensor:
    """Where a response token is predicted (the first token of a row predicts nothing)."""
    mask = batch.response_mask.bool().clone()
    mask[:, 0] = False
    return mask


def grads(model, logp, mask) -> list[torch.Tensor]:
    return torch.autograd.grad(logp[mask].sum(), [p for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("build", [llama, gpt2])
def test_packed_scores_equal_the_padded_forward(build):
    model, batch = build(), groups()
    mask = scored(batch)
    padded_logp, padded_entropy, _ = policy_forward(model, batch)
    packed_logp, packed_entropy, _ = packed_policy_forward(model, batch)
    assert torch.allclose(packed_logp[mask], padded_logp[mask], atol=1e-5)
    assert torch.allclose(packed_entropy[mask], padded_entropy[mask], atol=1e-5)
    assert (packed_logp[~mask] == 0).all()  # nothing is scored outside the responses
    for a, b in zip(grads(model, padded_logp, mask), grads(model, packed_logp, mask), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_each_prompt_is_packed_once_and_rows_split_by_whole_groups(monkeypatch):
    """One row when the budget allows (no prompt repeated, no padding); several rows under a small budget, with
    the same log-probabilities and gradients."""
    batch = groups(n_groups=6, group=4)
    prompt_part = ~batch.response_mask.bool() & batch.attention_mask.bool()
    prompt_tokens = int(prompt_part[::4].sum())  # one row of each group of 4
    response_tokens = int(batch.response_mask.sum())
    one = pack_shared_prefix(batch, budget=10_000)
    assert one.input_ids.shape == (1, prompt_tokens + response_tokens)  # no prompt repeated, no padding
    split = pack_shared_prefix(batch, budget=40)
    assert split.input_ids.shape[0] > 1
    model = llama()
    mask = scored(batch)
    reference = policy_forward(model, batch)[0]
    expected = grads(model, reference, mask)
    for budget in (40, 10_000):
        monkeypatch.setattr(packed, "BUDGET", budget)
        out = packed_policy_forward(model, batch)[0]
        assert torch.allclose(out[mask], reference[mask], atol=1e-5)
        assert all(
            torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(expected, grads(model, out, mask), strict=True)
        )


def test_a_group_of_long_answers_is_split_and_equal_prompts_of_two_groups_share_one_copy():
    """A group larger than the budget gets parts with their own prompt copy; two groups with the same prompt
    are merged; the scores are the padded forward's either way."""
    prompt = [7, 8, 9, 10]
    responses = [[11 + i] * 9 for i in range(4)] + [[40 + i] * 2 for i in range(4)]
    batch = pack([prompt] * 8, responses, 0, torch.zeros(8), 4)
    layout = pack_shared_prefix(batch, budget=24)
    assert all(int((row != 0).sum()) <= 24 for row in layout.input_ids)  # no row outgrows the budget
    assert int((layout.input_ids == 7).sum()) == 3  # 4+9+9, 4+9+9, 4+2+2+2+2: a prompt copy per part, not 8
    model = llama()
    mask = scored(batch)
    assert torch.allclose(
        packed_policy_forward(model, batch)[0][mask], policy_forward(model, batch)[0][mask], atol=1e-5
    )


def test_a_batch_without_response_tokens_scores_nothing():
    batch = pack_rows([[1, 5, 6], [1, 7]], [[0, 0, 0], [0, 0]], 0, torch.zeros(2), 1)
    logp, entropy, _ = packed_policy_forward(llama(), batch)
    assert not logp.any() and not entropy.any()


def test_the_mask_takes_the_dtype_attention_computes_in():
    model = llama().to(torch.bfloat16)
    allowed = torch.ones(1, 1, 2, 2, dtype=torch.bool)
    assert additive(allowed, model).dtype == torch.bfloat16
    reference = Companion(FrozenCopy(model), "copy", "")  # a reference companion is not a module
    assert additive(allowed, reference).dtype == torch.bfloat16
    assert additive(allowed, llama()).dtype == torch.float32


def test_models_that_cannot_read_the_mask_are_named():
    model = llama()
    assert unsupported(model) is None
    model.config._attn_implementation = "flash_attention_2"
    assert "flash_attention_2" in unsupported(model)
    sliding = MistralForCausalLM(
        MistralConfig(
            vocab_size=260,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            sliding_window=8,
        )
    )
    assert "sliding" in unsupported(sliding)


def test_a_multi_turn_row_scores_only_its_actions():
    """Action, observation, action: the observation is context, not scored; rows share no prompt."""
    rows = [[1, 5, 6, 7, 20, 21, 2, 8, 9, 22, 2], [1, 5, 6, 30, 2, 11, 31, 32, 2]]
    masks = [[0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0, 1, 1, 1]]
    batch = pack_rows(rows, masks, 0, torch.zeros(2), 1)
    model = llama()
    mask = batch.response_mask.bool()
    padded = policy_forward(model, batch)[0]
    packed = packed_policy_forward(model, batch)[0]
    assert torch.allclose(packed[mask], padded[mask], atol=1e-5)
    assert (packed[~mask] == 0).all()


def test_rows_without_a_gradient_are_scored_but_cost_no_backward():
    """GRPO groups without reward spread: their entropy is still measured, their tokens reach no gradient, and
    the gradient of the rows that count equals the padded forward's."""
    model, batch = llama(), groups()
    keep = torch.tensor([True] * 4 + [False] * 4 + [True] * 4)
    mask = scored(batch)
    logp, entropy, _ = packed_policy_forward(model, batch, keep)
    padded_logp, padded_entropy, _ = policy_forward(model, batch)
    assert torch.allclose(entropy[mask], padded_entropy[mask], atol=1e-5)
    assert torch.allclose(logp[mask], padded_logp[mask], atol=1e-5)
    counted = mask & keep[:, None]
    for a, b in zip(grads(model, padded_logp, counted), grads(model, logp, counted), strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    logp, _, _ = packed_policy_forward(model, batch, keep)
    dropped = torch.autograd.grad(logp[mask & ~keep[:, None]].sum(), list(model.parameters()), allow_unused=True)
    assert all(g is None or not g.any() for g in dropped)
