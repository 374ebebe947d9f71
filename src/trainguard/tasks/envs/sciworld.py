"""`sciworld`: ScienceWorld's 30 science tasks (the `scienceworld` package, a Scala simulator run on Java).

The simulator's parser judges replies: one it cannot match ("No known action matches that input."), text that is not
UTF-8, longer than MAX_ACTION_CHARS or several lines is an invalid round. Its enumeration of action-object
combinations is `valid_actions()` (what a random baseline draws from) but is a subset of what it accepts: the gold
paths use forms such as "open door to kitchen" that it never lists. Scores 0..100 become rewards in [0, 1]: each
round pays the rise of the (non-negative) score over 100, so an episode's return is its final score / 100. The world
is deterministic per variation; the simulator's gold path (the expert) is not, so the first one drawn is kept.
"""

import random
import shutil
from typing import Any

from pydantic import Field, field_validator

from trainguard.errors import ConfigError
from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action

TASKS = (
    "boil", "change-the-state-of-matter-of", "chemistry-mix", "chemistry-mix-paint-secondary-color",
    "chemistry-mix-paint-tertiary-color", "find-animal", "find-living-thing", "find-non-living-thing", "find-plant",
    "freeze", "grow-fruit", "grow-plant", "identify-life-stages-1", "identify-life-stages-2",
    "inclined-plane-determine-angle", "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces", "lifespan-longest-lived", "lifespan-longest-lived-then-shortest-lived",
    "lifespan-shortest-lived", "measure-melting-point-known-substance", "measure-melting-point-unknown-substance",
    "melt", "mendelian-genetics-known-plant", "mendelian-genetics-unknown-plant", "power-component",
    "power-component-renewable-vs-nonrenewable-energy", "test-conductivity",
    "test-conductivity-of-unknown-substances", "use-thermometer",
)  # fmt: skip
PROGRESS_BONUS = 0.15  # shaping: each round that raises the score
GOAL_BONUS = 1.0  # shaping: completing the task
MAX_ACTION_CHARS = 300  # far above any action ScienceWorld knows; longer text is refused before the simulator
UNKNOWN = "No known action matches that input."
INVALID = "invalid action: not an action this world knows (try 'look around')\n"

_simulator: dict[str, Any] = {}  # one JVM per process, shared: {"env": ScienceWorldEnv, "owner": the Env loaded in it}


def rescaled_reward(score: int, last_score: int) -> float:
    """The rise of the score, clipped at 0 from below (a failed task scores -100), as a fraction of 100."""
    return (max(score, 0) - max(last_score, 0)) / 100


class SciWorldConfig(EnvConfig):
    task: str = Field("find-living-thing", description="one of ScienceWorld's 30 task names (its gold path: 10)")
    simplifications: str = Field(
        "easy", description="ScienceWorld simplifications, comma separated; 'easy' (AgentGym's choice) opens doors"
    )
    list_actions: bool = Field(
        False, description="end each observation with the listed valid actions (100-450 of them: long)"
    )
    max_rounds: int = Field(40, gt=0, description="replies per episode; the default task's gold path needs 10")

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        if task not in TASKS:
            raise ValueError(f"unknown ScienceWorld task {task!r}; allowed: {', '.join(TASKS)}")
        return task


def _start_simulator() -> Any:
    """The process's ScienceWorld simulator, started on first use (a JVM: about 1.5 s)."""
    if shutil.which("java") is None:
        raise ConfigError(
            "environment 'sciworld' needs Java (a JRE 11 or newer) on PATH, e.g. apt-get install default-jre-headless"
        )
    if "env" not in _simulator:
        try:
            from scienceworld import ScienceWorldEnv
        except ImportError as error:
            raise ConfigError(
                f"environment 'sciworld' needs scienceworld: pip install 'trainguard[sciworld]' ({error})"
            ) from None
        _simulator["env"] = ScienceWorldEnv("", envStepLimit=10_000)  # our max_rounds is the limit
    return _simulator["env"]


@ENVS.register("sciworld")
class SciWorld(Env):
    name = "sciworld"
    Config = SciWorldConfig
    config: SciWorldConfig

    def __init__(self, config: SciWorldConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.sim = _start_simulator()
        self.reset()

    def reset(self) -> str:
        rng: random.Random = self._new_episode()
        self.history: list[str] = []  # accepted actions, replayed if another episode used the simulator meanwhile
        self.score = 0
        train = _train_variations(self.sim, self.config.task)
        self.variation = train[rng.randrange(len(train))]
        self._load()
        # The simulator draws a new gold path at each load (the world itself is the same): keep the first one, so
        # the expert repeats itself within a process.
        key = f"gold:{self.config.task}:{self.variation}:{self.config.simplifications}"
        self.gold = _simulator.setdefault(key, list(self.sim.get_gold_action_sequence()))
        observation = self.sim.look()
        return f"{self.sim.taskdescription().strip()}\n{observation.strip()}\n" + self._action_list()

    def _load(self) -> None:
        """Load this episode's variation into the shared simulator and replay its accepted actions."""
        self.sim.load(self.config.task, self.variation, self.config.simplifications, generateGoldPath=True)
        self.sim.reset()
        for action in self.history:
            self.sim.step(action)
        _simulator["owner"] = self

    def _action_list(self) -> str:
        return f"Actions: {', '.join(self.valid_actions())}.\n" if self.config.list_actions else ""

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        action = parse_action(action_text)
        if action is None or len(action) > MAX_ACTION_CHARS or not _is_utf8(action):
            return self._end_round(INVALID, 0.0, False, invalid=True)
        if _simulator.get("owner") is not self:
            self._load()
        observation, _, completed, info = self.sim.step(action)
        if observation.strip() == UNKNOWN:
            return self._end_round(INVALID, 0.0, False, invalid=True)
        self.history.append(action)
        score, last = int(info["score"]), self.score
        self.score = score
        reward = rescaled_reward(score, last)
        success = score >= 100
        if self.config.shaping:
            reward += (PROGRESS_BONUS if score > last else 0.0) + (GOAL_BONUS if success else 0.0)
        result = self._end_round(observation.strip() + "\n" + self._action_list(), reward, success)
        if completed and not result.done:  # the task failed (score below 0): the world says it is over
            self.done = result.done = True
        return result

    def expert_action(self) -> str:
        """The next action of the simulator's gold path while the episode has followed it; 'look around' after."""
        if self.history == self.gold[: len(self.history)] and len(self.history) < len(self.gold):
            return self.gold[len(self.history)]
        return "look around"

    def valid_actions(self) -> list[str]:
        if _simulator.get("owner") is not self:
            self._load()
        return sorted(self.sim.get_valid_action_object_combinations())


def _train_variations(sim: Any, task: str) -> list[int]:
    """The task's training variations (seeds draw from these; dev and test stay held out), asked once per task."""
    key = f"train:{task}"
    if key not in _simulator:
        sim.load(task, 0, "")
        _simulator[key] = list(sim.get_variations_train())
        _simulator["owner"] = None
    return _simulator[key]


def _is_utf8(text: str) -> bool:
    """False for text holding lone surrogates (undecodable bytes), which the simulator's socket cannot carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
