"""Episodes: the live policy plays a multi-turn text environment; the return is the reward.

Each engine step plays `episodes_per_step` environment seeds `group_size` times each (a GRPO group is one
seed). All episodes advance together, one batched generation per round: the policy reads the transcript so
far (observations and its own actions) and writes the next action up to EOS. The training row is the whole
transcript with only the action tokens marked as the response. Seeds and sampling are drawn from (seed,
step), so a resumed run plays the same episodes."""

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from trainguard.data.batches import special_prefix
from trainguard.data.rollouts import PoolSource, RolloutBatch, SampledSourceConfig, decode_response, pack_rows
from trainguard.data.sources import SOURCES, SourceConfig, SourceContext, generating
from trainguard.eval.accuracy import HELDOUT_START, generate_ids
from trainguard.rl.rewards import Rollout, group_duplicates, shaped
from trainguard.tasks import Instance
from trainguard.tasks.envs.workers import EnvPool, EnvSpec, EnvWorkersSection


class EpisodeSourceConfig(SampledSourceConfig):
    name: Literal["episodes"] = "episodes"
    env: str = Field(description="Registered text environment.")
    n_seeds: int = Field(10_000, gt=0, description="Pool of environment seeds: start .. start+n-1.")
    episodes_per_step: int = Field(4, gt=0, description="Seeds per engine step (each played group_size times).")
    group_size: int = Field(4, ge=1, description="Episodes per seed (GRPO's G).")
    max_new_tokens: int = Field(16, gt=0, description="Longest action per turn; longer ones are cut and counted.")
    eval_episodes: int = Field(100, ge=0, description="Held-out seeds played greedily at each eval (0: none).")
    workers: EnvWorkersSection = Field(
        default_factory=EnvWorkersSection, description="Processes (or Ray actors) that step the episodes."
    )

    @field_validator("env", mode="before")
    @classmethod
    def _canonical(cls, value: Any) -> Any:
        """The Affine guide's spelling (`agentgym:webshop`) names the same environment."""
        from trainguard.tasks.aliases import canonical

        return canonical(value) if isinstance(value, str) else value


@dataclass
class Transcript:
    seed: int
    ids: list[int]
    mask: list[int]  # 1 on action tokens
    observation: str  # the latest one
    turns: list[tuple[str, str, float]] = field(default_factory=list)  # (observation, action, reward) per round
    ret: float = 0.0
    done: bool = False
    success: bool = False
    cut: int = 0  # actions that hit max_new_tokens without EOS
    action_tokens: int = 0

    @property
    def last_action(self) -> str:
        return self.turns[-1][1] if self.turns else ""


def play(
    policy: nn.Module,
    tokenizer: Any,
    envs: EnvPool,
    specs: list[EnvSpec],
    max_new_tokens: int,
    temperature: float | None,
    top_p: float,
) -> list[Transcript]:
    """Every episode to its end: the policy's actions generated in one batch per round, then every live episode
    stepped at once on the pool's workers."""
    prefix, eos = special_prefix(tokenizer), tokenizer.eos_token_id
    runs = []
    for spec, first in zip(specs, envs.open(specs), strict=True):
        ids = prefix + tokenizer.encode(first, add_special_tokens=False)
        runs.append(Transcript(spec.seed, ids, [0] * len(ids), first))
    while active := [i for i, t in enumerate(runs) if not t.done]:
        actions = generate_ids(policy, tokenizer, [runs[i].ids for i in active], max_new_tokens, temperature, top_p)
        texts = {i: decode_response(tokenizer, action) for i, action in zip(active, actions, strict=True)}
        results = envs.step(texts)
        for i, action in zip(active, actions, strict=True):
            t, result = runs[i], results[i]
            t.turns.append((t.observation, texts[i], result.reward))
            t.ids, t.mask = t.ids + action, t.mask + [1] * len(action)
            t.ret, t.action_tokens = t.ret + result.reward, t.action_tokens + len(action)
            t.observation = result.observation
            t.cut += eos not in action
            t.success = t.success or bool(result.info.get("success"))
            t.done = result.done
            if not t.done:
                obs = tokenizer.encode(result.observation, add_special_tokens=False)
                t.ids, t.mask = t.ids + obs, t.mask + [0] * len(obs)
    return runs


@dataclass
class HeldOutEpisodes:
    """Held-out seeds that an RL objective's `evaluate` plays greedily: (return, success) per episode."""

    config: EpisodeSourceConfig
    envs: EnvPool

    def scores(self, model: nn.Module, tokenizer: Any) -> list[tuple[float, bool]]:
        cfg = self.config
        specs = [EnvSpec.of(cfg.env, HELDOUT_START + i, **cfg.params) for i in range(cfg.eval_episodes)]
        runs = play(model, tokenizer, self.envs, specs, cfg.max_new_tokens, None, 1.0)
        return [(t.ret, t.success) for t in runs]


@SOURCES.register("episodes")
class EpisodeSource(PoolSource):
    Config = EpisodeSourceConfig

    def __init__(self, config: EpisodeSourceConfig, ctx: SourceContext) -> None:
        self.config, self.tokenizer, self.seed, self.knobs = config, ctx.tokenizer, ctx.seed, ctx.knobs
        EnvSpec.of(config.env, 0, **config.params)  # a bad key fails before the first step
        self.envs = EnvPool(config.workers)  # workers start with the first batch, held for the stage

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "EpisodeSource":
        assert isinstance(config, EpisodeSourceConfig)
        return cls(config, ctx)

    def eval_data(self) -> list[HeldOutEpisodes]:
        return [HeldOutEpisodes(self.config, self.envs)] if self.config.eval_episodes else []

    def next_batch(self, policy: nn.Module | None = None) -> RolloutBatch:
        assert policy is not None, "episodes need the live policy"
        cfg, tok = self.config, self.tokenizer
        seeds = [s for s in self.draw(cfg.episodes_per_step, cfg.n_seeds, cfg.start) for _ in range(cfg.group_size)]
        specs = [EnvSpec.of(cfg.env, s, **cfg.params) for s in seeds]
        seed, t0, env_s = self.step_seed(), time.perf_counter(), self.envs.busy_s
        temperature = cfg.temperature * self.knobs["temperature_scale"]
        with generating(policy) as model, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            runs = play(model, tok, self.envs, specs, cfg.max_new_tokens, temperature, cfg.top_p)
        t1 = time.perf_counter()
        rewards = []
        for t in runs:
            rollout = Rollout(Instance(t.seed, "", ""), t.last_action, t.action_tokens, t.cut == 0)
            rewards.append(shaped(t.ret, rollout, t.success, cfg.shaping, len(t.turns)))
        if (diversity := self.knobs["diversity"]) > 0:
            texts = [tok.decode(t.ids) for t in runs]
            dup = group_duplicates(texts, cfg.group_size)  # repeating a failed episode costs; a solved one does not
            rewards = [r - diversity * d * (not t.success) for r, d, t in zip(rewards, dup, runs, strict=True)]
        batch = pack_transcripts(runs, tok.pad_token_id, torch.tensor(rewards), cfg.group_size)
        n = len(runs)
        batch.seed, batch.texts = seed, [t.last_action for t in runs]
        batch.stats = {
            "rollout/success_rate": sum(t.success for t in runs) / n,
            "rollout/return_mean": sum(t.ret for t in runs) / n,
            "rollout/turns_mean": sum(len(t.turns) for t in runs) / n,
            "rollout/truncated_ratio": sum(t.cut > 0 for t in runs) / n,
            "rollout/response_length_mean": sum(t.action_tokens for t in runs) / n,
            "rollout/response_length_max": float(max(t.action_tokens for t in runs)),
            "rollout/temperature": temperature,
            "time/generate_s": t1 - t0,  # the env's steps run inside the rounds: their time is here too
            "time/env_s": self.envs.busy_s - env_s,  # of which waiting on the environments (their workers)
            "time/score_s": time.perf_counter() - t1,
        }
        return batch

    def split(self) -> tuple[str, int]:
        return "source.episodes_per_step", self.config.episodes_per_step

    @property
    def epoch(self) -> float:
        return self.cursor / self.config.n_seeds


def pack_transcripts(runs: list[Transcript], pad: int, rewards: torch.Tensor, group: int) -> RolloutBatch:
    return pack_rows([t.ids for t in runs], [t.mask for t in runs], pad, rewards, group)
