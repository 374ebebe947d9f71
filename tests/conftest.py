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
