"""MFU: PaLM's FLOP count per token for a model, the device peak table, and perf/mfu in a run."""

import pytest
import torch

from helpers import tiny_config
from trainguard import api
from trainguard.engine.flops import flops_per_token, matmul_params, peak_flops, table_peak
from trainguard.models.config import ModelSection
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer


def test_the_count_is_six_per_multiplying_weight_plus_attention():
    model = build_model(ModelSection(preset="tiny"), byte_tokenizer(), 64, 0)
    total = sum(p.numel() for p in model.parameters())
    assert matmul_params(model) == total - 259 * 128  # the untied input embedding is a lookup
    # tiny: 4 layers x 128 hidden; at a 20-token context attention adds 12 * 4 * 128 * 20
    assert flops_per_token(model.config, 1000, 20.0) == 6000 + 12 * 4 * 128 * 20


def test_the_peak_is_the_override_or_none_on_a_cpu():
    assert peak_flops(torch.device("cpu"), torch.float32) is None
    assert peak_flops(torch.device("cpu"), torch.float32, override_tflops=2.5) == 2.5e12


def test_a_run_logs_mfu_when_the_peak_is_known(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    cfg["run"]["peak_tflops"] = 0.01  # a pretend device: 10 GFLOP/s
    result = api.run(cfg)
    rows = api.metrics(result, ["perf/mfu", "perf/tokens_per_s"])
    mfu = [r["value"] for r in rows if r["key"] == "perf/mfu"]
    speed = [r["value"] for r in rows if r["key"] == "perf/tokens_per_s"]
    assert len(mfu) == len(speed) == 12
    model = build_model(ModelSection(preset="tiny"), byte_tokenizer(), 32, 0)
    low, high = 6 * matmul_params(model), 6 * matmul_params(model) + 12 * 4 * 128 * 32  # context between 0 and 32
    for m, s in zip(mfu, speed, strict=True):
        assert s * low / 1e10 <= m <= s * high / 1e10
    plain = api.run(tiny_config(tmp_path / "cpu"))
    assert api.metrics(plain, "perf/mfu") == []  # a CPU has no known peak


def test_a_gpu_name_finds_its_row_and_the_longer_name_wins():
    assert table_peak("NVIDIA H200", torch.bfloat16) == pytest.approx(989.4e12)
    assert table_peak("NVIDIA A100-SXM4-80GB", torch.float32) == pytest.approx(19.5e12)
    assert table_peak("NVIDIA L40S", torch.bfloat16) == pytest.approx(362.1e12)  # not the L4's 121
    assert table_peak("NVIDIA L4", torch.bfloat16) == pytest.approx(121e12)
    assert table_peak("Tesla T4", torch.float16) is None and table_peak("NVIDIA H100", torch.int8) is None
