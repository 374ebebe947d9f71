"""A multi-turn environment through the RL stage: the policy plays whole episodes (observations between its
actions), only action tokens carry loss, the environment's return is the reward, and resume is exact."""

import pytest
import torch

from helpers import comparable, tiny_config, write_config
from trainguard import api
from trainguard.data.episodes import play
from trainguard.tasks.envs import make
from trainguard.tasks.envs.workers import EnvPool, EnvSpec
from trainguard.track.store import read_metrics


def test_play_marks_only_the_policys_actions_and_replays_the_observations():
    from trainguard.config import ModelSection, TokenizerSection
    from trainguard.models.loading import build_model, load_tokenizer

    tok = load_tokenizer(ModelSection(preset="tiny"), TokenizerSection(max_length=64))
    model = build_model(ModelSection(preset="tiny"), tok, 64, seed=0).eval()
    torch.manual_seed(0)
    specs = [EnvSpec.of("guess", s, n=4, max_rounds=3) for s in range(4)]
    runs = play(model, tok, EnvPool(), specs, 3, 1.0, 1.0)
    for t in runs:
        assert 1 <= len(t.turns) <= 3 and t.done
        ids, mask = torch.tensor(t.ids), torch.tensor(t.mask).bool()
        assert int(mask.sum()) == t.action_tokens
        replay = make("guess", t.seed, n=4, max_rounds=3)
        shown = tok.decode(ids[~mask], skip_special_tokens=True)
        assert shown.startswith(replay.reset())  # the observations, in order, between the actions
        assert ("correct" in shown) is False  # the last observation is not appended once the episode is done


def episode_stage(objective):
    return {
        "name": "rl",
        "objective": objective,
        "source": {
            "name": "episodes",
            "env": "guess",
            "params": {"n": 4, "max_rounds": 3},
            "episodes_per_step": 2,
            "group_size": 3,
            "max_new_tokens": 3,
            "eval_episodes": 6,
        },
        "max_steps": 3,
        "batch_size": 6,
        "optimizer": {"lr": 1e-3},
        "eval_every": 3,
        "save_every": 3,
    }


def test_an_environment_episode_runs_through_grpo_and_ppo(tmp_path):
    for objective in ({"name": "grpo"}, {"name": "ppo", "ppo_epochs": 2}):
        cfg = tiny_config(tmp_path / objective["name"], stages=[episode_stage(objective)])
        run = api.run(write_config(tmp_path / f"{objective['name']}.yaml", cfg), overwrite=True)
        rows = {k: v for _, _, k, v, _ in read_metrics(run.path / "metrics.db")}
        assert rows["rollout/turns_mean"] > 1.0  # a random policy rarely guesses right at once: several turns
        assert 0.0 <= rows["eval/accuracy"] <= 1.0 and rows["eval/n"] == 6
        assert "loss/task" in rows


def test_worker_processes_train_the_same_run_as_this_process(tmp_path):
    """Where the episodes are stepped changes nothing: two env workers log every number but the clock."""
    logged = []
    for processes in (0, 2):
        stage = episode_stage({"name": "grpo"})
        stage["source"]["workers"] = {"processes": processes}
        cfg = tiny_config(tmp_path / str(processes), stages=[stage])
        logged.append(comparable(api.run(write_config(tmp_path / f"{processes}.yaml", cfg), overwrite=True).path))
    assert len(logged[0]) > 30 and logged[0] == logged[1]


@pytest.mark.slow
def test_grpo_plays_the_agentgym_environments_end_to_end(tmp_path):
    """AgentGym-style environments through a GRPO stage (sciworld, seconds per episode, is left to its own tests)."""
    small = {
        "textcraft": {"max_depth": 1, "distractors": 0, "max_rounds": 3},
        "alfworld": {"max_rounds": 3},
        "webshop": {"max_rounds": 3},
        "babyai": {"max_rounds": 3},
    }
    for env, params in small.items():
        stage = episode_stage({"name": "grpo"})
        stage["source"] |= {"env": env, "params": params, "max_new_tokens": 12, "eval_episodes": 4}
        stage["max_steps"] = 2
        cfg = tiny_config(tmp_path / env, stages=[stage])
        cfg["tokenizer"]["max_length"] = 1024
        run = api.run(write_config(tmp_path / f"{env}.yaml", cfg), overwrite=True)
        rows = {k: v for _, _, k, v, _ in read_metrics(run.path / "metrics.db")}
        assert rows["rollout/turns_mean"] >= 1.0 and rows["eval/n"] == 4, env
        assert "loss/task" in rows, env
