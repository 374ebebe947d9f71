"""RewardModel: the documented attributes and head, one float per row from the last real token, padding-proof."""

import pytest
import torch
from reward_helpers import tiny_lm
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from trainguard.reward import RewardModel
from trainguard.reward.data import encode_pair_texts


def test_attributes_and_head_are_the_documented_ones(base):
    rm = RewardModel(base, hidden_size=128)
    assert rm.base_model is base and rm.hidden_size == 128
    layers = list(rm.reward_head)
    assert isinstance(rm.reward_head, nn.Sequential) and len(layers) == 4
    assert (layers[0].in_features, layers[0].out_features, layers[3].out_features) == (128, 256, 1)
    assert isinstance(layers[1], nn.ReLU) and isinstance(layers[2], nn.Dropout) and layers[2].p == 0.1


def test_a_wrong_hidden_size_is_refused_naming_both(base):
    with pytest.raises(ValueError, match=r"hidden_size=768.*128"):
        RewardModel(base)


def test_one_float32_reward_per_row_from_the_last_real_token_left_or_right_padded(base, tok):
    rm = RewardModel(base, hidden_size=128).eval()
    prompts, responses = ["reverse: abc\n", "sort: banana\n"], ["cba", "aaabnn and more text"]
    ids, mask, _ = encode_pair_texts(tok, prompts, responses, 64)
    right = rm(ids, mask)
    assert right.dtype == torch.float32 and right.shape == (2,)
    lengths = mask.sum(-1)
    left_ids, left_mask = torch.full_like(ids, tok.pad_token_id), torch.zeros_like(mask)
    for row, n in enumerate(lengths.tolist()):
        left_ids[row, ids.shape[1] - n :] = ids[row, :n]
        left_mask[row, ids.shape[1] - n :] = 1
    torch.testing.assert_close(rm(left_ids, left_mask), right, atol=1e-4, rtol=1e-4)
    alone = torch.stack([rm(ids[i : i + 1, :n], mask[i : i + 1, :n])[0] for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(alone, right, atol=1e-4, rtol=1e-4)  # padding changes nothing


def test_get_rewards_scores_text_pairs_in_eval_mode(base, tok):
    rm = RewardModel(base, hidden_size=128)
    rm.train()
    rewards = rm.get_rewards(["p", "p"], ["good", "bad"], tok, device="cpu")
    assert rewards.shape == (2,) and rm.training  # handed back in the mode it was in
    torch.testing.assert_close(rewards, rm.get_rewards(["p", "p"], ["good", "bad"], tok))  # no dropout at eval


def test_freezing_the_base_leaves_only_the_head_trainable(base):
    rm = RewardModel(base, hidden_size=128, freeze_base=True)
    trainable = {n for n, p in rm.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("reward_head.") for n in trainable)


def test_hidden_size_768_and_a_gpt2_base_work(tok):
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=768, n_layer=1, n_head=12, n_positions=64))
    rm = RewardModel(gpt2)
    assert rm.hidden_size == 768
    ids, mask, _ = encode_pair_texts(tok, ["a", "bb"], ["c", "dd"], 32)
    assert rm(ids, mask).shape == (2,)


def test_presets_work_as_bases(tok):
    rm = RewardModel(tiny_lm(tok, "small"), hidden_size=320)
    ids, mask, _ = encode_pair_texts(tok, ["q"], ["a"], 16)
    assert torch.isfinite(rm(ids, mask)).all()
