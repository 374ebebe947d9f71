"""Forgetting: after each stage the earlier stages' tasks are re-scored; a real drop raises an alert."""

import json

import pytest

from helpers import tiny_config
from trainguard import api

WORDS = {"min_len": 2, "max_len": 3}  # short words: learnt in a few hundred steps


@pytest.mark.slow
def test_a_stage_that_overwrites_an_earlier_skill_raises_a_forgetting_alert(tmp_path):
    cfg = tiny_config(
        tmp_path / "runs",
        eval={"n": 40, "max_new_tokens": 8, "forgetting": 0.2},
        data={"sources": [{"task": "reverse", "n": 2000, "params": WORDS}]},
    )
    first = cfg["stages"][0] | {"max_steps": 500, "batch_size": 32, "eval_every": 500, "save_every": 500}
    second = first | {
        "name": "sort",
        "max_steps": 150,
        "optimizer": {"lr": 5e-3},
        "source": {"name": "records", "data": {"sources": [{"task": "sort", "n": 2000, "params": WORDS}]}},
    }
    cfg["stages"] = [first, second]
    result = api.run(cfg)
    record = json.loads((result.path / "eval/forgetting.json").read_text())
    learnt, after = record["after"]["sft"]["reverse"], record["after"]["sort"]["reverse"]
    assert learnt > 0.3  # the first stage taught it
    assert set(record["after"]["sort"]) == {"reverse", "sort"}
    alerts = [a for a in api.alerts(result) if a["kind"] == "forgetting"]
    assert learnt - after > 0.2, (learnt, after)  # a stage on sort alone at a high LR erases reversal
    (alert,) = alerts
    assert alert["data"]["task"] == "reverse" and alert["stage"] == "sort"
    assert alert["value"] == pytest.approx(learnt - after)
