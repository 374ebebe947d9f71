"""Sample checks: mode collapse from real outputs, and the opt-in check inside a tiny run."""

import math

from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.guard.generation import distinct_n, mode_collapse
from trainguard.track.store import read_metrics


def test_collapsed_outputs_raise_mode_collapse_with_the_top_modes():
    outputs = ["yes"] * 31 + ["no"]
    metrics, (alert,) = mode_collapse(outputs, step=9, min_unique=0.1)
    assert metrics["gen/unique_ratio"] == 2 / 32 and alert.kind == "mode_collapse"
    assert alert.data["top_modes"] == [["yes", 31], ["no", 1]]


def test_diverse_outputs_pass_and_distinct_n_counts_bigrams():
    assert mode_collapse([f"w{i}" for i in range(10)], 1, 0.1)[1] == []
    assert distinct_n(["abab"], 2) == 2 / 3


def test_sample_checks_run_every_n_steps_in_a_real_run(tmp_path):
    cfg = tiny_config(
        tmp_path / "runs",
        eval={"task": "reverse", "n": 8, "max_new_tokens": 6},
        guard={"generation": {"every": 4, "n_prompts": 8, "max_new_tokens": 6}},
    )
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "g.yaml", cfg))])
    assert result.exit_code == 0, result.output
    rows = [(s, k, v) for s, _, k, v, _ in read_metrics(tmp_path / "runs" / "t" / "metrics.db") if k.startswith("gen/")]
    assert sorted({s for s, _, _ in rows}) == [4, 8, 12]
    unique = [v for _, k, v in rows if k == "gen/unique_ratio"]
    drift = [v for _, k, v in rows if k == "gen/context_drift"]
    assert all(0 < u <= 1 for u in unique) and all(0 <= d <= 1 and math.isfinite(d) for d in drift)
