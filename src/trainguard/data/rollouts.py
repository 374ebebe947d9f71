"""Rollouts: the live policy samples a group of responses per task prompt; reward functions score them.

Each engine step draws `prompts_per_step` prompts (a seeded permutation of the prompt pool, like the record
source) and `group_size` samples of each. Sampling runs under a generator seeded by (seed, step): a resumed
run draws exactly the samples the first run would have. A reward function that raises or returns a non-finite
value scores that sample 0 and is counted; a response that never emits EOS is truncated and counted. The
guard's knobs reach the sampling: `temperature_scale` multiplies the temperature and `diversity` charges each
sample for the share of its group that said the same."""

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field, SerializeAsAny, field_validator
from torch import nn

from trainguard.data.batches import special_prefix
from trainguard.data.sources import SOURCES, Source, SourceConfig, SourceContext, generating
from trainguard.errors import ConfigError
from trainguard.eval.accuracy import HELDOUT_START, generate_ids, generate_text, heldout_instances
from trainguard.rl.masks import unsupported
from trainguard.rl.rewards import (
    REWARD_FNS,
    RewardContext,
    RewardFnConfig,
    Rollout,
    Scorer,
    ShapingSection,
    VerifierConfig,
)
from trainguard.rl.sampler import sample_groups
from trainguard.rl.vllm_sampler import VLLMSampler, VLLMSection, require_vllm
from trainguard.tasks import Instance, Task, build_task


class SampledSourceConfig(SourceConfig):
    """What every source that samples from the live policy shares: the pool's start, the group, sampling and
    reward shaping (each source adds its pool size, its step size and its lengths)."""

    params: dict[str, Any] = Field(default_factory=dict, description="The task's (or environment's) own parameters.")
    start: int = Field(0, ge=0, description="First id (instance or environment seed) of the pool.")
    group_size: int = Field(8, ge=1, description="Samples per prompt (GRPO's G).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    shaping: ShapingSection = Field(default_factory=ShapingSection, description="Reward shaping terms.")


class RolloutSourceConfig(SampledSourceConfig):
    name: Literal["rollouts"] = "rollouts"
    task: str = Field(description="Registered task whose prompts are sampled and whose verifier scores them.")
    n_prompts: int = Field(2000, gt=0, description="Size of the prompt pool: instance ids start .. start+n-1.")
    prompts_per_step: int = Field(4, gt=0, description="Prompts per engine step (each sampled group_size times).")
    max_new_tokens: int = Field(32, gt=0, description="Longest response; longer ones are truncated and counted.")
    rewards: list[SerializeAsAny[RewardFnConfig]] = Field(
        default_factory=lambda: [VerifierConfig()],
        description="Reward functions summed with their weights: {name: verifier | reward_model | length, weight}.",
    )
    eval_prompts: int = Field(200, ge=0, description="Held-out prompts answered greedily at each eval (0: none).")
    sampler: Literal["generate", "grouped", "vllm"] = Field(
        "generate",
        description="generate: HF `generate` over every sample; grouped: each prompt prefilled once per group and "
        "finished samples dropped from the batch (less work; greedy picks the same tokens, sampling other draws); "
        "vllm: a colocated vLLM engine fed the policy's weights before each step (the vllm extra, a CUDA GPU).",
    )
    vllm: VLLMSection = Field(default_factory=VLLMSection, description="The vLLM engine (sampler: vllm).")

    @field_validator("rewards", mode="before")
    @classmethod
    def _reward_fns(cls, value: Any) -> Any:
        return [REWARD_FNS.config_of(v) for v in value] if isinstance(value, list) else value


@dataclass
class RolloutBatch:
    """Prompt + response token rows, right-padded: `response_mask` marks the sampled tokens."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, L), 1 on response tokens
    rewards: torch.Tensor  # (B,)
    group_size: int
    stats: dict[str, float] = field(default_factory=dict)  # per-step numbers the objective logs
    seed: int = 0  # of the step's sampling; an objective's minibatch shuffle draws from it too
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-row tensors an objective adds (old log-probs)
    texts: list[str] = field(default_factory=list)  # each row's response as text (what constraints measure)
    prompts: list[str] = field(default_factory=list)  # each row's prompt as text (what a cost model reads)

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> "RolloutBatch":
        moved = (t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask, self.rewards))
        extras = {k: v.to(device) for k, v in self.extras.items()}
        return RolloutBatch(
            *moved, self.group_size, self.stats, self.seed, extras, texts=self.texts, prompts=self.prompts
        )

    def select(self, rows: torch.Tensor) -> "RolloutBatch":
        """A minibatch of rows (groups are not kept together: advantages are computed before)."""
        picked = (t[rows] for t in (self.input_ids, self.attention_mask, self.response_mask, self.rewards))
        extras = {k: v[rows] for k, v in self.extras.items()}
        texts = [self.texts[i] for i in rows.tolist()] if self.texts else []
        prompts = [self.prompts[i] for i in rows.tolist()] if self.prompts else []
        return RolloutBatch(*picked, 1, self.stats, self.seed, extras, texts=texts, prompts=prompts)


@dataclass
class HeldOut:
    """Held-out prompts that an RL objective's `evaluate` answers greedily and scores with the verifier."""

    task: Task
    instances: list[Instance]
    max_new_tokens: int
    batch_size: int = 64

    def scores(self, model: nn.Module, tokenizer: Any) -> list[tuple[float, bool]]:
        """(verifier score, solved) per held-out prompt, answered greedily."""
        out = []
        for start in range(0, len(self.instances), self.batch_size):
            chunk = self.instances[start : start + self.batch_size]
            texts = generate_text(model, tokenizer, [i.prompt for i in chunk], self.max_new_tokens)
            values = [float(s.value) for s in self.task.score_many(chunk, texts)]
            out += [(v, v >= 1.0) for v in values]
        return out


class PoolSource(Source):
    """A source that draws items (prompt ids, environment seeds) from a pool `start .. start+size-1`: item i
    is perm_e[i mod size] with e = i // size and perm_e seeded by (seed, e), as the record stream is. Its
    state is the cursor and the steps served (which seed each step's sampling)."""

    seed: int
    cursor: int = 0
    steps: int = 0

    shardable = True  # every rank draws the step's items and keeps its share (whole groups: no gather)

    def draw(self, count: int, size: int, start: int) -> list[int]:
        """This rank's share of the next `count` items; the cursor moves past all of them."""
        out = []
        for i in range(self.cursor, self.cursor + count):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i // size)
            out.append(start + int(torch.randperm(size, generator=gen)[i % size]))
        self.cursor += count
        return [out[k] for k in self.rows(count)]

    def step_seed(self) -> int:
        """The seed of this step's sampling (each rank its own); moves on to the next step."""
        self.steps += 1
        return (self.seed * 1_000_003 + self.steps - 1) * self.world + self.rank

    def skip_past(self, position: dict[str, Any]) -> int:
        skipped = int(position["cursor"]) - self.cursor
        self.load_state_dict(position)
        return skipped

    def state_dict(self) -> dict[str, int]:
        return {"cursor": self.cursor, "steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cursor, self.steps = int(state["cursor"]), int(state["steps"])


@SOURCES.register("rollouts")
class RolloutSource(PoolSource):
    Config = RolloutSourceConfig

    def __init__(self, config: RolloutSourceConfig, ctx: SourceContext) -> None:
        self.config, self.tokenizer, self.seed, self.knobs = config, ctx.tokenizer, ctx.seed, ctx.knobs
        self.task = build_task(config.task, config.params)
        reward_ctx = RewardContext(self.task, ctx.tokenizer, ctx.max_length, ctx.companions)
        self.scorer = Scorer(config.rewards, config.shaping, reward_ctx)
        self.prefix = special_prefix(ctx.tokenizer)
        self.seen_prompts = {r["prompt"] for r in ctx.records.train if "prompt" in r}
        self.max_length, self.vllm_engine = ctx.max_length, None
        if config.sampler == "vllm":
            require_vllm()  # before the first step, not after a stage's set-up

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "RolloutSource":
        assert isinstance(config, RolloutSourceConfig)
        return cls(config, ctx)

    def eval_data(self) -> list[HeldOut]:
        """Held-out instances (ids from HELDOUT_START, none of whose prompts the run trained on)."""
        cfg = self.config
        if cfg.eval_prompts == 0:
            return []
        assert cfg.start + cfg.n_prompts <= HELDOUT_START, "the prompt pool overlaps the held-out ids"
        instances = heldout_instances(self.task, cfg.eval_prompts, self.seen_prompts)
        return [HeldOut(self.task, instances, cfg.max_new_tokens)]

    def next_batch(self, policy: nn.Module | None = None) -> RolloutBatch:
        assert policy is not None, "rollouts need the live policy"
        cfg, tok = self.config, self.tokenizer
        instances = [self.task.instance(i) for i in self.draw(cfg.prompts_per_step, cfg.n_prompts, cfg.start)]
        encoded = [self.prefix + tok.encode(inst.prompt, add_special_tokens=False) for inst in instances]
        prompts = [p for p in encoded for _ in range(cfg.group_size)]
        seed, t0 = self.step_seed(), time.perf_counter()
        temperature = cfg.temperature * self.knobs["temperature_scale"]
        with generating(policy) as model, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            responses = self.sample(model, encoded, temperature, seed)
        t1, eos = time.perf_counter(), tok.eos_token_id
        rollouts = [
            Rollout(instances[k // cfg.group_size], decode_response(tok, ids), len(ids), eos in ids)
            for k, ids in enumerate(responses)
        ]
        rewards, stats = self.scorer(rollouts, cfg.group_size, self.knobs["diversity"])
        batch = pack(prompts, responses, tok.pad_token_id, torch.tensor(rewards), cfg.group_size)
        batch.seed, batch.stats, batch.texts = seed, stats | response_stats(rollouts), [r.text for r in rollouts]
        batch.prompts = [r.instance.prompt for r in rollouts]
        batch.stats |= {"time/generate_s": t1 - t0, "time/score_s": time.perf_counter() - t1}
        batch.stats["rollout/temperature"] = temperature
        return batch

    def sample(self, model: nn.Module, encoded: list[list[int]], temperature: float, seed: int) -> list[list[int]]:
        """`group_size` responses to each prompt (prompt by prompt), by the configured sampler."""
        cfg, tok = self.config, self.tokenizer
        if cfg.sampler == "vllm":
            if self.vllm_engine is None:
                self.vllm_engine = VLLMSampler(model, cfg.vllm, self.max_length, self.seed)
            self.vllm_engine.push(model)
            args = (cfg.group_size, cfg.max_new_tokens, tok.eos_token_id, temperature, cfg.top_p, seed)
            return self.vllm_engine.sample(encoded, *args)
        if cfg.sampler == "grouped":
            if reason := unsupported(model):
                raise ConfigError(f"source.sampler: grouped cannot sample this model: {reason}; use 'generate'")
            eos, pad = tok.eos_token_id, tok.pad_token_id
            return sample_groups(model, encoded, cfg.group_size, cfg.max_new_tokens, eos, pad, temperature, cfg.top_p)
        rows = [p for p in encoded for _ in range(cfg.group_size)]
        return generate_ids(model, tok, rows, cfg.max_new_tokens, temperature, cfg.top_p)

    def split(self) -> tuple[str, int]:
        return "source.prompts_per_step", self.config.prompts_per_step

    @property
    def epoch(self) -> float:
        return self.cursor / self.config.n_prompts


def decode_response(tokenizer: Any, ids: list[int]) -> str:
    eos = tokenizer.eos_token_id
    return tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids, skip_special_tokens=True)


def response_stats(rollouts: list[Rollout]) -> dict[str, float]:
    lengths = [r.n_tokens for r in rollouts]
    return {
        "rollout/truncated_ratio": sum(not r.finished for r in rollouts) / len(rollouts),
        "rollout/response_length_mean": sum(lengths) / len(lengths),
        "rollout/response_length_max": float(max(lengths)),
    }


def pack(
    prompts: list[list[int]], responses: list[list[int]], pad: int, rewards: torch.Tensor, group: int
) -> RolloutBatch:
    """Prompt + response rows, right-padded, with the response tokens marked."""
    rows = [p + r for p, r in zip(prompts, responses, strict=True)]
    masks = [[0] * len(p) + [1] * len(r) for p, r in zip(prompts, responses, strict=True)]
    return pack_rows(rows, masks, pad, rewards, group)


def pack_rows(
    rows: list[list[int]], masks: list[list[int]], pad: int, rewards: torch.Tensor, group: int
) -> RolloutBatch:
    """Token rows right-padded into a batch; `masks` mark each row's response (action) tokens."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    response_mask = torch.zeros_like(input_ids)
    for i, (row, mask) in enumerate(zip(rows, masks, strict=True)):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention[i, : len(row)] = 1
        response_mask[i, : len(row)] = torch.tensor(mask)
    return RolloutBatch(input_ids, attention, response_mask, rewards, group)
