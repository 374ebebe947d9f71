"""Playing text environments outside training: the random-valid-action baseline, the scripted expert's
demonstrations (and the SFT records they make), and a model's episodes for evaluation.

A model plays through the RL stage's own batched loop (`data.episodes.play`), so evaluation, demonstrations and
RL all see one rendering of the transcript: the observations with each action and its EOS between them."""

import random
import statistics
from collections.abc import Sequence
from typing import Any

from trainguard.tasks.envs.base import episode_record, make, run_episode

DEFAULT_EOS = "<eos>"  # the EOS of the byte tokenizer every preset uses; pass a model's own for other tokenizers


def random_baseline(env_name: str, n: int, seed: int = 0, **params: Any) -> dict[str, Any]:
    """Success rate, mean return and mean rounds of a uniformly random valid action each round, over env seeds
    `seed .. seed+n-1`, with the Jeffreys ci80 of the success rate (eval.stats.summarise over success as 0/1).

    The floor that a trained policy must clear: an env whose random baseline is high measures little."""
    from trainguard.eval.stats import summarise

    episodes = []
    for s in range(seed, seed + n):
        env = make(env_name, s, **params)
        rng = random.Random(f"random-valid:{env_name}:{s}")  # one stream per episode: any subset replays alike
        episodes.append(run_episode(env, lambda _transcript, env=env, rng=rng: rng.choice(env.valid_actions())))
    stats = summarise([float(e["success"]) for e in episodes])
    return {
        "env": env_name,
        "n": n,
        "success_rate": stats["mean"],
        "successes": int(stats["sum"]),
        "ci80": stats["ci80"],
        "return_mean": statistics.fmean(e["return"] for e in episodes) if episodes else 0.0,
        "rounds_mean": statistics.fmean(len(e["turns"]) for e in episodes) if episodes else 0.0,
    }


def expert_episodes(env_name: str, seeds: Sequence[int], **params: Any) -> list[dict[str, Any]]:
    """Episode records {env, seed, turns, return, success} of the env's scripted expert, one per seed."""
    records = []
    for s in seeds:
        env = make(env_name, s, **params)
        records.append(run_episode(env, lambda _transcript, env=env: env.expert_action()))
    return records


def transcript_prompts(record: dict[str, Any], eos: str = DEFAULT_EOS) -> list[str]:
    """The text the policy reads before each of the record's actions, as `data.episodes.play` builds it: the
    first observation, then per earlier turn its action, the EOS that ended it and the next observation."""
    prompts, text = [], ""
    for turn in record["turns"]:
        text += turn["observation"]
        prompts.append(text)
        text += turn["action"] + eos
    return prompts


def sft_records(record: dict[str, Any], eos: str = DEFAULT_EOS) -> list[dict[str, Any]]:
    """One SFT record per turn {id, task, prompt, completion}: the transcript so far and the action taken.

    The completion carries no EOS (training adds the tokenizer's); `eos` is its text inside the prompt, which
    the tokenizer reads back as the EOS token, so SFT rows tokenize like the RL stage's transcripts."""
    name, seed = record["env"], record["seed"]
    prompts = transcript_prompts(record, eos)
    return [
        {"id": f"{name}-{seed}-{k}", "task": name, "prompt": prompt, "completion": turn["action"]}
        for k, (prompt, turn) in enumerate(zip(prompts, record["turns"], strict=True))
    ]


def play_model(
    model: Any,
    tokenizer: Any,
    env_name: str,
    seeds: Sequence[int],
    max_rounds: int | None = 10,
    temperature: float | None = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
    sample_seed: int = 0,
    **params: Any,
) -> list[dict[str, Any]]:
    """Episode records of `model` playing `env_name` on each seed (Affine: 10 rounds at temperature 0.7;
    temperature None is greedy). `max_rounds` overrides the env's own limit (None keeps it). Episodes advance
    together, one generation per round, `batch_size` episodes at a time; sampling is seeded by `sample_seed`."""
    import torch

    from trainguard.data.episodes import play
    from trainguard.tasks.envs.workers import EnvPool, EnvSpec

    if max_rounds is not None:
        params = {**params, "max_rounds": max_rounds}
    was_training = model.training
    model.eval()
    records: list[dict[str, Any]] = []
    envs = EnvPool()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(sample_seed)
            for first in range(0, len(seeds), batch_size):
                specs = [EnvSpec.of(env_name, s, **params) for s in seeds[first : first + batch_size]]
                for t in play(model, tokenizer, envs, specs, max_new_tokens, temperature, top_p):
                    records.append(episode_record(env_name, t.seed, t.turns, t.ret, t.success))
    finally:
        model.train(was_training)
    return records
