"""A random Llama of a preset, with the byte tokenizer's vocabulary: the reward tests' base models, offline."""

import torch
from transformers import LlamaForCausalLM

from trainguard.models.presets import preset_config


def tiny_lm(tok, preset: str = "tiny", seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = preset_config(preset, len(tok), 256, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    return LlamaForCausalLM(config)
