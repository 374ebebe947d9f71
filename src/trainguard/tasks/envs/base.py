"""The text-environment interface: multi-turn episodes of plain-text observations and actions.

Episodes are deterministic per seed so that collected data and evaluations replay exactly; the action format
follows AgentGym ("Thought: ...\\nAction: ...") but a bare action is accepted too.
"""

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field

from trainguard.registry import Registry
from trainguard.section import Section


@dataclass
class StepResult:
    observation: str
    reward: float
    done: bool
    info: dict[str, Any] = field(default_factory=dict)  # {"success", "invalid", "truncated"} at least


class EnvConfig(Section):
    """Parameters of an environment; each env declares its own subclass with its own defaults."""

    max_rounds: int = Field(..., gt=0, description="actions allowed per episode; after that it ends truncated")
    shaping: bool = Field(False, description="add the env's own small shaped per-step rewards to the outcome reward")


class Env(ABC):
    """One episode at a time: reset() gives the first observation, step() answers each action text."""

    name: ClassVar[str]
    Config: ClassVar[type[EnvConfig]]

    def __init__(self, config: EnvConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.rounds = 0
        self.done = False

    def _new_episode(self) -> random.Random:
        """Clear the round count; the returned generator draws this seed's episode (call it from reset())."""
        self.rounds, self.done = 0, False
        # str seeds are hashed with SHA-512 by `random`: stable across machines, independent of the global RNG.
        return random.Random(f"{self.name}:{self.seed}")

    @abstractmethod
    def reset(self) -> str:
        """Start the episode of this seed again; returns the goal, what is seen and the valid actions."""

    @abstractmethod
    def step(self, action_text: str) -> StepResult:
        """Answer one reply; bad text gives an "invalid action" observation with reward 0 and still counts."""

    def expert_action(self) -> str:
        """The optimal next action text for the current state, for demonstrations."""
        raise NotImplementedError(f"environment '{self.name}' has no expert")

    def valid_actions(self) -> list[str]:
        """The actions that are valid in the current state (what a random-valid-action baseline draws from)."""
        raise NotImplementedError(f"environment '{self.name}' does not list its valid actions")

    def _require_open(self) -> None:
        """Refuse a step after the episode ended (a caller's bug, unlike bad action text); call it first in step()."""
        if self.done:
            raise RuntimeError(f"environment '{self.name}': step() after the episode ended; call reset()")

    def _end_round(self, observation: str, reward: float, success: bool, invalid: bool = False) -> StepResult:
        """Count the round and truncate after max_rounds; subclasses call this at the end of step()."""
        self._require_open()
        self.rounds += 1
        truncated = not success and self.rounds >= self.config.max_rounds
        self.done = success or truncated
        info = {"success": success, "invalid": invalid, "truncated": truncated}
        return StepResult(observation, reward, self.done, info)


ENVS: Registry[type[Env]] = Registry("environment")


def make(name: str, seed: int, **params: Any) -> Env:
    """Build a registered env; unknown names and bad params are refused with the allowed ones named."""
    cls = ENVS.get(name)
    return cls(cls.Config.model_validate(params), seed)


def parse_action(text: str) -> str | None:
    """The one action of a reply: the rest of a last line that starts with "Action:" (a "Thought: ..." may come
    before it), or a reply of one bare line; None for an empty reply or several actions (two "Action:" lines, text
    after the action, a bare reply of several lines), so nothing is half-executed."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    marked = [i for i, line in enumerate(lines) if line.lower().startswith("action:")]
    if len(marked) > 1 or (marked and marked[0] != len(lines) - 1):
        return None
    if marked:
        action = lines[-1][len("action:") :].strip()
    elif len(lines) == 1 and not lines[0].lower().startswith("thought:"):
        action = lines[0]
    else:
        return None
    return action or None


def episode_record(
    env_name: str, seed: int, turns: Iterable[tuple[str, str, float]], ret: float, success: bool
) -> dict[str, Any]:
    """A JSON-ready row: each turn is the observation shown, the action replied and the reward it got."""
    rows = [{"observation": o, "action": a, "reward": float(r)} for o, a, r in turns]
    return {"env": env_name, "seed": seed, "turns": rows, "return": float(ret), "success": bool(success)}


def run_episode(env: Env, act: Callable[[str], str]) -> dict[str, Any]:
    """Play one episode; `act` maps the transcript so far (observations with the replies between) to a reply."""
    observation = env.reset()
    transcript = observation
    turns: list[tuple[str, str, float]] = []
    ret, success, done = 0.0, False, False
    while not done:
        action = act(transcript)
        result = env.step(action)
        turns.append((observation, action, result.reward))
        ret += result.reward
        success, done = bool(result.info.get("success")), result.done
        observation = result.observation
        transcript += action.rstrip("\n") + "\n" + observation
    return episode_record(env.name, env.seed, turns, ret, success)
