"""Inf gradients are counted as Inf, not as the NaN that clipping by an infinite norm would make of them."""

import json

from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.track.store import read_table


def test_an_inf_gradient_is_counted_as_inf(tmp_path):
    cfg = tiny_config(tmp_path / "runs", faults=[{"kind": "inf_grad", "at_step": 6}])
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    alerts = [a for a in read_table(tmp_path / "runs" / "t" / "metrics.db", "alerts") if a["kind"] == "nonfinite"]
    assert len(alerts) == 1 and alerts[0]["step"] == 6
    assert json.loads(alerts[0]["data"]) == {"nan_count": 0, "inf_count": 1}
