"""The repo's offline tiny Llama with the byte tokenizer: random weights, so its text is gibberish, which is
exactly what exercises the fallbacks (unparsable answers) of every model-judged path."""

import pytest
import torch
from transformers import LlamaForCausalLM

from trainguard.models.presets import preset_config
from trainguard.models.tokenizer import byte_tokenizer


@pytest.fixture(scope="session")
def tok():
    return byte_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tok):
    torch.manual_seed(0)
    config = preset_config(
        "tiny", vocab_size=len(tok), max_positions=512, bos=tok.bos_token_id, eos=tok.eos_token_id, pad=tok.pad_token_id
    )
    return LlamaForCausalLM(config).eval()
