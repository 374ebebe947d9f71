"""The byte tokenizer and a random tiny Llama: what the reward tests build on."""

import pytest
from reward_helpers import tiny_lm

from trainguard.models.tokenizer import byte_tokenizer


@pytest.fixture(scope="module")
def tok():
    return byte_tokenizer()


@pytest.fixture
def base(tok):
    return tiny_lm(tok)
