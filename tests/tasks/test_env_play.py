"""Playing environments outside training: the random-valid-action baseline replays exactly, the expert's episodes
become SFT rows that tokenize like the RL stage's transcripts, a model's batched episodes replay through
`run_episode`, the Affine spellings and data layout translate, and SFT on demonstrations beats random play."""

import json
import random
import time

import pytest

from trainguard.data.batches import special_prefix, tokenize_record
from trainguard.data.config import DataSection
from trainguard.data.episodes import EpisodeSourceConfig
from trainguard.errors import ConfigError
from trainguard.eval.intervals import jeffreys_interval
from trainguard.tasks.aliases import AffineData, canonical, from_affine_layout, is_affine_layout, is_env
from trainguard.tasks.envs import make, run_episode
from trainguard.tasks.envs.play import expert_episodes, play_model, random_baseline, sft_records, transcript_prompts


@pytest.fixture(scope="module")
def tiny():
    from trainguard.config import ModelSection, TokenizerSection
    from trainguard.models.loading import build_model, load_tokenizer

    tok = load_tokenizer(ModelSection(preset="tiny"), TokenizerSection(max_length=64))
    return build_model(ModelSection(preset="tiny"), tok, 64, seed=0).eval(), tok


def test_random_baseline_of_textcraft_over_200_seeds_is_the_replayed_count():
    got = random_baseline("textcraft", 200)
    successes, returns, rounds = 0, 0.0, 0
    for s in range(200):  # the same draw by hand: one stream per seed, a uniform choice among the valid actions
        env, rng = make("textcraft", s), random.Random(f"random-valid:textcraft:{s}")
        record = run_episode(env, lambda _t, env=env, rng=rng: rng.choice(env.valid_actions()))
        successes, returns, rounds = (
            successes + record["success"],
            returns + record["return"],
            rounds + len(record["turns"]),
        )
    assert (got["successes"], got["success_rate"]) == (successes, successes / 200) == (32, 0.16)
    assert got["return_mean"] == pytest.approx(returns / 200) and got["rounds_mean"] == pytest.approx(rounds / 200)
    assert got["ci80"] == pytest.approx(list(jeffreys_interval(32, 200, 0.8)))
    halves = random_baseline("textcraft", 100)["successes"] + random_baseline("textcraft", 100, seed=100)["successes"]
    assert halves == 32  # per-seed streams: any split of the seeds adds up to the whole
    assert random_baseline("textcraft", 200) == got


def test_expert_demonstrations_become_one_sft_record_per_action():
    records = expert_episodes("textcraft", range(6))
    assert all(r["success"] and r["return"] == 1.0 for r in records)
    first = records[0]
    assert [t["action"] for t in first["turns"]] == [
        "get 2 copper ore",
        "get 3 flint",
        "craft 4 copper pane using 3 flint, 2 copper ore",
    ]
    for record in records:
        rows = sft_records(record)
        assert [r["completion"] for r in rows] == [t["action"] for t in record["turns"]]
        assert [r["id"] for r in rows] == [f"textcraft-{record['seed']}-{k}" for k in range(len(rows))]
        env = make("textcraft", record["seed"])
        assert rows[0]["prompt"] == env.reset()
        for row, turn in zip(rows, record["turns"], strict=True):
            assert row["completion"] == env.expert_action()  # the expert's action in that very state
            env.step(turn["action"])
    assert (
        sft_records(first)[1]["prompt"] == first["turns"][0]["observation"] + "get 2 copper ore<eos>Got 2 copper ore\n"
    )


def test_sft_rows_tokenize_like_the_rl_transcript(tiny):
    """prefix + obs0 + a0 + EOS + obs1 + ...: the token stream data.episodes.play builds for the same actions."""
    _, tok = tiny
    record = expert_episodes("webshop", [3])[0]
    prefix, eos = special_prefix(tok), tok.eos_token_id
    expected = list(prefix)
    for row, turn in zip(sft_records(record), record["turns"], strict=True):
        expected += tok.encode(turn["observation"], add_special_tokens=False)
        example, cut = tokenize_record(tok, row, 10_000, prefix)
        assert example is not None and not cut
        assert example.ids[: example.prompt_len] == expected
        action = [*tok.encode(turn["action"], add_special_tokens=False), eos]
        assert example.ids[example.prompt_len :] == action
        expected += action
    assert (
        transcript_prompts(record, "|")[1]
        == record["turns"][0]["observation"] + record["turns"][0]["action"] + "|" + record["turns"][1]["observation"]
    )


def test_a_models_batched_episodes_replay_exactly_through_run_episode(tiny):
    model, tok = tiny
    seeds = [5, 6, 7]
    records = play_model(model, tok, "guess", seeds, max_rounds=3, temperature=1.0, max_new_tokens=3, n=4)
    assert [r["seed"] for r in records] == seeds and all(1 <= len(r["turns"]) <= 3 for r in records)
    for record in records:
        replies = iter(t["action"] for t in record["turns"])
        replay = run_episode(make("guess", record["seed"], n=4, max_rounds=3), lambda _t, r=replies: next(r))
        assert replay == record
    again = play_model(model, tok, "guess", seeds, max_rounds=3, temperature=1.0, max_new_tokens=3, n=4)
    assert again == records  # sampling is seeded
    greedy = play_model(model, tok, "guess", seeds, 3, None, max_new_tokens=3, batch_size=2, n=4)
    assert greedy == play_model(model, tok, "guess", seeds, 3, None, max_new_tokens=3, batch_size=3, n=4)


def test_affine_spellings_name_our_tasks_and_environments():
    assert [canonical(n) for n in ("affine:sat", "Affine:ABD", "affine:ded", "agentgym:webshop", "sort")] == [
        "sat",
        "abd",
        "ded",
        "webshop",
        "sort",
    ]
    assert is_env("agentgym:textcraft") and is_env("alfworld") and not is_env("affine:sat")
    with pytest.raises(ConfigError, match=r"unknown Affine task 'affine:sort'; allowed: affine:sat, affine:abd"):
        canonical("affine:sort")
    data = DataSection.model_validate({"sources": [{"task": "affine:ded", "n": 2}]})
    assert data.sources[0].task == "ded"  # type: ignore[union-attr]  (a run config's task source reads it too)
    with pytest.raises(
        ConfigError, match=r"unknown AgentGym environment 'agentgym:chess'; allowed: .*agentgym:webshop"
    ):
        canonical("agentgym:chess")


def test_the_affine_data_layout_becomes_task_sources_and_episode_sources():
    layout = {
        "affine": {"num_samples": 500},
        "agentgym": {"num_episodes": 200, "max_episode_length": 12, "environments": ["agentgym:webshop", "textcraft"]},
    }
    assert is_affine_layout(layout) and not is_affine_layout({"sources": []})
    got = from_affine_layout(layout)
    assert got.data == {"sources": [{"task": "sat", "n": 500}, {"task": "abd", "n": 500}, {"task": "ded", "n": 500}]}
    assert got.episodes == [
        {"name": "episodes", "env": "webshop", "params": {"max_rounds": 12}, "n_seeds": 200},
        {"name": "episodes", "env": "textcraft", "params": {"max_rounds": 12}, "n_seeds": 200},
    ]
    assert "data collect --tasks webshop,textcraft" in got.notes[0]
    assert [s.task for s in DataSection.model_validate(got.data).sources] == ["sat", "abd", "ded"]  # type: ignore[union-attr]
    assert [EpisodeSourceConfig.model_validate(e).env for e in got.episodes] == ["webshop", "textcraft"]
    assert from_affine_layout({"agentgym": {"num_episodes": 3, "environments": ["guess"]}}).episodes[0]["params"] == {
        "max_rounds": 10
    }
    assert from_affine_layout({}) == AffineData()
    with pytest.raises(ConfigError, match="num_samples must be a whole number >= 1"):
        from_affine_layout({"affine": {"num_samples": 0}})
    with pytest.raises(ConfigError, match=r"unknown key.*epochs"):
        from_affine_layout({"agentgym": {"num_episodes": 3, "environments": ["guess"], "epochs": 2}})


@pytest.mark.slow
def test_sft_on_expert_demonstrations_beats_the_random_valid_action_baseline(tmp_path):
    """textcraft with one crafting step and no distractors: 100 SFT steps of the tiny preset on 300 expert
    episodes; greedy play over 60 held-out seeds against a random valid action each round (10 rounds each)."""
    from helpers import tiny_config, write_config
    from trainguard import api
    from trainguard.eval.runner import load_policy

    t0 = time.perf_counter()
    params = {"max_depth": 1, "distractors": 0}
    rows = [row for record in expert_episodes("textcraft", range(300), **params) for row in sft_records(record)]
    demos = tmp_path / "demos.jsonl"
    demos.write_text("".join(json.dumps(row) + "\n" for row in rows))
    stage = {"name": "sft", "objective": "sft", "max_steps": 100, "batch_size": 16, "optimizer": {"lr": 3e-3}}
    stage |= {"schedule": {"warmup_steps": 10}, "eval_every": 1000, "save_every": 1000}
    data = {"sources": [{"path": str(demos)}], "eval_fraction": 0.0}
    cfg = tiny_config(tmp_path / "runs", tokenizer={"max_length": 256}, data=data, stages=[stage])
    run = api.run(write_config(tmp_path / "sft.yaml", cfg), overwrite=True)
    model, tok = load_policy(run.path / "final")
    seeds = range(1_000_000_000, 1_000_000_060)
    played = play_model(model, tok, "textcraft", seeds, max_rounds=10, temperature=None, **params)
    trained = sum(r["success"] for r in played) / len(played)
    floor = random_baseline("textcraft", 60, seed=seeds[0], max_rounds=10, **params)
    took = time.perf_counter() - t0
    print(f"trained {trained:.3f} vs random {floor['success_rate']:.3f} {floor['ci80']} ({took:.0f} s)")
    assert floor["success_rate"] < 0.45  # random valid play solves some: a get of each input, then the craft
    assert trained > floor["ci80"][1] + 0.2  # measured: 1.00 against 0.30
