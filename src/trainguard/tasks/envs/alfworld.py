"""`alfworld`: ALFWorld-lite, generated households with ALFWorld's six task types, action set and phrasing.

Worlds are drawn per seed (alfworld_world.py) instead of read from ALFWorld's downloaded game files. Reward 1 on
solving; optional shaping pays 0.2 the first time each subgoal of the task is reached (at most 3 per task, so an
unsolved episode earns at most 0.6, below the 1.0 of solving). A reply must hold exactly one action.
"""

import re

from pydantic import Field, model_validator

from trainguard.tasks.envs.alfworld_world import (
    DEVICES,
    MILESTONES,
    TASK_TYPES,
    TaskType,
    World,
    generate_world,
)
from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action

SHAPING_BONUS = 0.2  # per subgoal, paid once each; MAX_UNSOLVED_RETURN must stay below the 1.0 of solving
MAX_UNSOLVED_RETURN = SHAPING_BONUS * max(MILESTONES.values())
INVALID_OBSERVATION = "Nothing happens (invalid action: reply with one of the valid actions)."
_PUT = re.compile(r"put (\S+ \d+) (?:in|on) (\S+ \d+)")  # "put x 1 in y 1" and "... on ..." mean "... in/on ..."


class AlfworldConfig(EnvConfig):
    max_rounds: int = Field(
        20, gt=0, description="actions per episode; the expert needs at most 11, ALFWorld allows 50 in bigger rooms"
    )
    min_receptacles: int = Field(6, ge=3, le=20, description="fewest receptacles in a room (ALFWorld rooms have 10-40)")
    max_receptacles: int = Field(8, ge=3, le=20, description="most receptacles in a room")
    min_objects: int = Field(4, ge=2, le=40, description="fewest takeable objects, the goal's targets included")
    max_objects: int = Field(8, ge=2, le=40, description="most takeable objects")
    task_types: list[TaskType] = Field(
        default_factory=lambda: list(TASK_TYPES), min_length=1, description="ALFWorld task types to draw from uniformly"
    )
    list_actions: bool | None = Field(
        None,
        description="append the valid actions to every observation (AgentGym's ALFWorld lists the admissible "
        "commands); None: on when max_receptacles <= 8, where the list stays short",
    )

    @model_validator(mode="after")
    def _ranges(self) -> "AlfworldConfig":
        if self.min_receptacles > self.max_receptacles or self.min_objects > self.max_objects:
            raise ValueError("min_receptacles/min_objects must not exceed max_receptacles/max_objects")
        return self

    @property
    def shows_actions(self) -> bool:
        return self.max_receptacles <= 8 if self.list_actions is None else self.list_actions


def parse_single_action(text: str) -> str | None:
    """`parse_action`'s one action, lower-cased with spaces collapsed and ALFWorld's put phrasing unified."""
    action = parse_action(text)
    if action is None:
        return None
    action = " ".join(action.lower().split()).rstrip(".").strip()
    return _PUT.sub(r"put \1 in/on \2", action) if action else None


@ENVS.register("alfworld")
class Alfworld(Env):
    name = "alfworld"
    Config = AlfworldConfig
    config: AlfworldConfig
    world: World

    def __init__(self, config: AlfworldConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.reset()  # so step() works on a fresh env too

    def reset(self) -> str:
        rng = self._new_episode()
        task_type = rng.choice(self.config.task_types)
        n_receptacles = rng.randint(self.config.min_receptacles, self.config.max_receptacles)
        n_objects = rng.randint(self.config.min_objects, self.config.max_objects)
        self.world = generate_world(rng, task_type, n_receptacles, n_objects)
        self.paid: set[str] = set()  # subgoals already rewarded by shaping
        return self._observe(self.world.intro())

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        effects = self.world.actions()
        action = parse_single_action(action_text)
        if action not in effects:
            return self._end_round(self._observe(INVALID_OBSERVATION), 0.0, False, invalid=True)
        observation = effects[action]()
        success = self.world.solved()
        reward = 1.0 if success else 0.0
        if self.config.shaping:
            new = self.world.milestones() - self.paid
            self.paid |= new
            reward += SHAPING_BONUS * len(new)
        result = self._end_round(self._observe(observation), reward, success)
        if result.info["truncated"]:
            result.reward = 0.0  # a subgoal reached on the last round leads nowhere: truncation pays nothing
        return result

    def valid_actions(self) -> list[str]:
        return list(self.world.actions())

    def expert_action(self) -> str:
        """Plan from the true world state: fetch a target, treat it at the device, bring it to the goal."""
        w = self.world
        if w.holding is not None and not w.holds_target():
            return self._reach(w.location or next(iter(w.receptacles)), f"put {w.holding} in/on {{}}")
        if w.holding is None:
            placed = w.receptacles[self._dest()].contents if w.dest else []  # ready ones there stay put
            name = next(n for n in self._targets_by_distance() if not (w.ready(n) and n in placed))
            return self._reach(self._where(name), f"take {name} from {{}}")
        if w.task_type == "look_at_obj_in_light":
            lamp_recep, _ = w.lamp_at()
            return self._reach(lamp_recep, "use desklamp 1")
        if not w.ready(w.holding):
            device = next(r for r in w.receptacles.values() if DEVICES.get(r.kind, ("", ""))[1] == w.state_needed)
            verb = DEVICES[device.kind][0]
            return self._reach(device.name, f"{verb} {w.holding} with {device.name}", needs_open=False)
        return self._reach(self._dest(), f"put {w.holding} in/on {{}}")

    # ---- expert helpers ----
    def _reach(self, recep: str, action: str, needs_open: bool = True) -> str:
        """Go to `recep`, open it when the action needs its inside, then do `action` ("{}" stands for recep)."""
        here = self.world.receptacles[recep]
        if self.world.location != recep:
            return f"go to {recep}"
        if needs_open and not here.accessible:
            return f"open {recep}"
        return action.format(recep)

    def _dest(self) -> str:
        """The goal's receptacle the expert fills: the one with the most ready targets, the first on a tie."""
        w = self.world
        candidates = [r for r in w.receptacles.values() if r.kind == w.dest]
        return max(candidates, key=lambda r: sum(map(w.ready, r.contents))).name

    def _where(self, name: str) -> str:
        return next(r.name for r in self.world.receptacles.values() if name in r.contents)

    def _targets_by_distance(self) -> list[str]:
        """Target objects, those already treated first, then those here, then in listing order."""
        w = self.world
        names = [n for n, item in w.items.items() if item.kind == w.target]
        return sorted(names, key=lambda n: (not w.ready(n), self._where(n) != w.location))

    def _observe(self, text: str) -> str:
        if not self.config.shows_actions:
            return text + "\n"
        return f"{text}\nActions: {', '.join(self.world.actions())}\n"
