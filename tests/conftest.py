"""Shared fixtures: offline, one torch thread, and a tiny run file that trains in seconds."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import tiny_config, write_config

torch.set_num_threads(1)


@pytest.fixture
def make_config(tmp_path: Path):
    def make(name: str = "run.yaml", **sections: Any) -> Path:
        return write_config(tmp_path / name, tiny_config(tmp_path / "runs", **sections))

    return make


@pytest.fixture(scope="session")
def model_folder(tmp_path_factory) -> Path:
    """The tiny preset, untrained, exported as trainguard exports every stage (for commands that load a model)."""
    from trainguard.models.config import ModelSection
    from trainguard.models.loading import build_model, export_model
    from trainguard.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    out = tmp_path_factory.mktemp("model") / "tiny"
    export_model(build_model(ModelSection(preset="tiny"), tok, 128, seed=0), tok, out)
    return out
