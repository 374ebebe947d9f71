"""Rollouts: the live policy samples a group of responses per task prompt, and the task's verifier scores them.

Each engine step draws `prompts_per_step` prompts (a seeded permutation of the prompt pool, like the record
source) and `group_size` samples of each. Sampling runs under a generator seeded by (seed, step): a resumed
run draws exactly the samples the first run would have. A reward function that raises or returns a non-finite
value scores that sample 0 and is counted; a response that never emits EOS is truncated and counted."""

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.batches import special_prefix
from trainguard.data.sources import SOURCES, Source, SourceConfig, SourceContext, generating
from trainguard.eval.accuracy import generate_ids
from trainguard.tasks import build_task


class RolloutSourceConfig(SourceConfig):
    name: Literal["rollouts"] = "rollouts"
    task: str = Field(description="Registered task whose prompts are sampled and whose verifier scores them.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's own parameters.")
    n_prompts: int = Field(2000, gt=0, description="Size of the prompt pool: instance ids start .. start+n-1.")
    start: int = Field(0, ge=0, description="First instance id of the pool.")
    prompts_per_step: int = Field(4, gt=0, description="Prompts per engine step (each sampled group_size times).")
    group_size: int = Field(8, ge=1, description="Samples per prompt (GRPO's G).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(32, gt=0, description="Longest response; longer ones are truncated and counted.")


@dataclass
class RolloutBatch:
    """Prompt + response token rows, right-padded: `response_mask` marks the sampled tokens."""

    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    response_mask: torch.Tensor  # (B, L), 1 on response tokens
    rewards: torch.Tensor  # (B,)
    group_size: int
    stats: dict[str, float] = field(default_factory=dict)  # per-step numbers the objective logs

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> "RolloutBatch":
        moved = (t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask, self.rewards))
        return RolloutBatch(*moved, group_size=self.group_size, stats=self.stats)


def safe_reward(task: Any, instance: Any, response: str) -> tuple[float, bool]:
    """The verifier's score, or (0, failed) when it raises or is not a finite number."""
    try:
        value = float(task.score(instance, response).value)
    except Exception:
        return 0.0, True
    return (value, False) if math.isfinite(value) else (0.0, True)


@SOURCES.register("rollouts")
class RolloutSource(Source):
    Config = RolloutSourceConfig

    def __init__(self, config: RolloutSourceConfig, tokenizer: Any, seed: int) -> None:
        self.config, self.tokenizer, self.seed = config, tokenizer, seed
        self.task = build_task(config.task, config.params)
        self.prefix = special_prefix(tokenizer)
        self.cursor = 0  # prompts drawn so far
        self.steps = 0  # batches served: seeds each step's sampling

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "RolloutSource":
        assert isinstance(config, RolloutSourceConfig)
        return cls(config, ctx.tokenizer, ctx.seed)

    def prompt_ids(self, count: int) -> list[int]:
        n = self.config.n_prompts
        ids = []
        for i in range(self.cursor, self.cursor + count):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + i // n)
            ids.append(self.config.start + int(torch.randperm(n, generator=gen)[i % n]))
        self.cursor += count
        return ids

    def next_batch(self, policy: nn.Module | None = None) -> RolloutBatch:
        assert policy is not None, "rollouts need the live policy"
        cfg, tok = self.config, self.tokenizer
        instances = [self.task.instance(i) for i in self.prompt_ids(cfg.prompts_per_step)]
        prompts = [self.prefix + tok.encode(inst.prompt, add_special_tokens=False) for inst in instances]
        prompts = [p for p in prompts for _ in range(cfg.group_size)]
        with generating(policy) as model, torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + self.steps)
            responses = generate_ids(model, tok, prompts, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
        self.steps += 1
        eos = tok.eos_token_id
        rewards, failed, truncated = [], 0, 0
        for k, ids in enumerate(responses):
            truncated += eos not in ids
            text = tok.decode(ids[: ids.index(eos)] if eos in ids else ids, skip_special_tokens=True)
            value, bad = safe_reward(self.task, instances[k // cfg.group_size], text)
            rewards.append(value)
            failed += bad
        batch = pack(prompts, responses, tok.pad_token_id, torch.tensor(rewards), cfg.group_size)
        lengths = [len(r) for r in responses]
        batch.stats = {
            "rollout/reward_failures": float(failed),
            "rollout/truncated_ratio": truncated / len(responses),
            "rollout/response_length_mean": sum(lengths) / len(lengths),
            "rollout/response_length_max": float(max(lengths)),
        }
        return batch

    @property
    def epoch(self) -> float:
        return self.cursor / self.config.n_prompts

    def skip_past(self, position: dict[str, Any]) -> int:
        skipped = int(position["cursor"]) - self.cursor
        self.cursor, self.steps = int(position["cursor"]), int(position["steps"])
        return skipped

    def state_dict(self) -> dict[str, int]:
        return {"cursor": self.cursor, "steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.cursor, self.steps = int(state["cursor"]), int(state["steps"])


def pack(
    prompts: list[list[int]], responses: list[list[int]], pad: int, rewards: torch.Tensor, group: int
) -> RolloutBatch:
    """Prompt + response rows, right-padded, with the response tokens marked."""
    rows = [p + r for p, r in zip(prompts, responses, strict=True)]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    response_mask = torch.zeros_like(input_ids)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        input_ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        attention[i, : len(p) + len(r)] = 1
        response_mask[i, len(p) : len(p) + len(r)] = 1
    return RolloutBatch(input_ids, attention, response_mask, rewards, group)
