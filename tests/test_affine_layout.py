"""A run file in the Affine guide's layout is read as it stands."""

import pytest

from helpers import tiny_config
from trainguard.config import parse_config
from trainguard.errors import ConfigError

LAYOUT = {
    "affine": {"num_samples": 50},
    "agentgym": {"num_episodes": 300, "max_episode_length": 8, "environments": ["agentgym:textcraft"]},
}


def rl_stage() -> dict:
    return {"name": "rl", "objective": "grpo", "source": {"name": "episodes"}, "max_steps": 2}


def test_the_affine_data_layout_becomes_task_sources_and_fills_the_episode_stage(tmp_path):
    cfg = tiny_config(tmp_path / "runs") | {"data": LAYOUT}
    cfg["stages"].append(rl_stage())
    run = parse_config(cfg)
    assert [(s.task, s.n) for s in run.data.sources] == [("sat", 50), ("abd", 50), ("ded", 50)]
    source = run.stages[1].source
    assert (source.env, source.n_seeds, source.params) == ("textcraft", 300, {"max_rounds": 8})


def test_an_episode_stage_must_name_one_of_several_environments(tmp_path):
    layout = {**LAYOUT, "agentgym": {**LAYOUT["agentgym"], "environments": ["textcraft", "agentgym:webshop"]}}
    cfg = tiny_config(tmp_path / "runs") | {"data": layout}
    cfg["stages"].append(rl_stage())
    with pytest.raises(ConfigError, match=r"stages.1.source.env: name one of .*textcraft, webshop"):
        parse_config(cfg)
    cfg["stages"][1]["source"]["env"] = "agentgym:webshop"
    assert parse_config(cfg).stages[1].source.env == "webshop"


def test_a_layout_without_affine_tasks_says_what_the_data_section_needs(tmp_path):
    cfg = tiny_config(tmp_path / "runs") | {"data": {"agentgym": LAYOUT["agentgym"]}}
    with pytest.raises(ConfigError, match="names no affine tasks"):
        parse_config(cfg)
