"""Checkpoints: atomic, hashed, pruned; incomplete, corrupt and disk-full writes never count."""

import resource
import signal

import pytest
import torch

from trainguard.engine.checkpoint import Checkpointer, verify
from trainguard.engine.state import capture_rng, restore_rng
from trainguard.errors import CheckpointError


def save(ck: Checkpointer, step: int, size: int = 100):
    return ck.save(
        step,
        tensors={"model": {"w": torch.full((size,), float(step))}},
        objects={"optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}},
        jsons={"state": {"step": step}},
        meta={"stage": "s", "stage_index": 0},
    )


def test_round_trip_and_manifest_hashes(tmp_path):
    ck = Checkpointer(tmp_path)
    c = save(ck, 5)
    assert c.path.name == "step-000005" and verify(c.path) == []
    assert c.tensors("model")["w"].tolist() == [5.0] * 100
    assert c.object("optimizer")["param_groups"][0]["lr"] == 0.1
    assert set(c.manifest["files"]) == {"model.safetensors", "optimizer.pt", "state.json"}


def test_latest_skips_incomplete_and_corrupt_checkpoints(tmp_path):
    ck = Checkpointer(tmp_path)
    save(ck, 1), save(ck, 2), save(ck, 3)
    (tmp_path / "step-000003" / "manifest.json").unlink()  # killed before the manifest
    blob = tmp_path / "step-000002" / "model.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit
    blob.write_bytes(bytes(data))
    warnings: list[str] = []
    latest = ck.latest(warn=warnings.append)
    assert latest is not None and latest.step == 1
    assert (
        "step-000003: no manifest" in warnings[0] and "step-000002: model.safetensors: sha256 mismatch" in warnings[1]
    )


def test_leftover_temporary_folders_are_removed(tmp_path):
    ck = Checkpointer(tmp_path)
    (tmp_path / ".tmp-step-000009-123").mkdir()
    assert ck.remove_partial() == [".tmp-step-000009-123"]
    assert ck.latest() is None


def test_prune_keeps_the_newest(tmp_path):
    ck = Checkpointer(tmp_path, keep=2)
    for s in (1, 2, 3, 4):
        save(ck, s)
    assert [p.name for p in ck.candidates()] == ["step-000004", "step-000003"]


def test_disk_full_during_a_write_leaves_the_previous_checkpoint_intact(tmp_path):
    ck = Checkpointer(tmp_path)
    save(ck, 1)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-limit writes fail with EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(CheckpointError, match=r"could not write checkpoint step-000002: .*step-000001 is intact"):
            save(ck, 2, size=100_000)  # 400 KB: the kernel refuses it like a full disk
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]
    assert verify(tmp_path / "step-000001") == []


def test_rng_bundle_restores_every_generator():
    import random

    import numpy as np

    state = capture_rng()
    draws = (random.random(), float(np.random.rand()), torch.rand(1).item())
    restore_rng(state)
    assert (random.random(), float(np.random.rand()), torch.rand(1).item()) == draws


def test_rng_bundle_loads_with_weights_only(tmp_path):
    torch.save(capture_rng(), tmp_path / "rng.pt")
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True))
