"""`babyai`: the 40 BabyAI levels of AgentGym, played through minigrid with a compact text layer.

Departures from AgentGym's layer: objects are numbered only when several share a name, the observation says what is
in front of the agent, and minigrid's own bot (BabyAIBot) is the expert, one primitive action per round. The reward
is minigrid's 1 − 0.9·steps/max_steps on success (steps are primitive moves, so a "go to" that compiles to 5 moves
costs 5); a failed mission (e.g. picking up the wrong object) ends the episode with 0.
"""

import contextlib
import io
from typing import Any

from pydantic import Field, field_validator

from trainguard.errors import ConfigError
from trainguard.tasks.envs.babyai_world import DONE, PRIMITIVE_TEXT, action_table, describe
from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action

# AgentGym's level list (agentenv-babyai, levels 1..40); GoToObjS6 is registered as -v1 in minigrid >= 2.
LEVELS = (
    "GoToRedBallGrey", "GoToRedBall", "GoToRedBallNoDists", "GoToObjS6", "GoToLocalS8N7", "GoToObjMazeS7",
    "GoToImpUnlock", "GoToSeqS5R2", "GoToRedBlueBall", "GoToDoor", "GoToObjDoor", "Open", "OpenRedDoor",
    "OpenDoorLoc", "OpenRedBlueDoorsDebug", "OpenDoorsOrderN4Debug", "Pickup", "UnblockPickup", "PickupLoc",
    "PickupDistDebug", "PickupAbove", "PutNextLocalS6N4", "PutNextS7N4Carrying", "Unlock", "UnlockLocalDist",
    "KeyInBox", "UnlockPickupDist", "BlockedUnlockPickup", "UnlockToUnlock", "ActionObjDoor", "FindObjS7",
    "KeyCorridorS6R3", "OneRoomS20", "MoveTwoAcrossS8N9", "SynthS5R2", "SynthLoc", "SynthSeq", "MiniBossLevel",
    "BossLevel", "BossLevelNoUnlock",
)  # fmt: skip
GOAL_BONUS = 1.0  # shaping: paid on top of the success reward when the mission is accomplished
BOT_SEARCH_LIMIT = 500  # searches in one replan; solvable plans use a few dozen
INVALID = "invalid action: reply with one of the listed actions\n"


def gym_id(level: str) -> str:
    """The registered minigrid id of a level name from LEVELS."""
    return f"BabyAI-{level}-v1" if level == "GoToObjS6" else f"BabyAI-{level}-v0"


def success_reward(steps: int, max_steps: int) -> float:
    """BabyAI's reward for accomplishing the mission after `steps` primitive moves of the allowed `max_steps`."""
    return 1.0 - 0.9 * steps / max_steps


class BabyAIConfig(EnvConfig):
    level: str = Field("GoToRedBallGrey", description="one of AgentGym's 40 BabyAI levels, e.g. GoToLocalS8N7")
    room_size: int | None = Field(
        None, ge=4, description="room side in cells (walls included); None keeps the level's own (8 for most)"
    )
    num_dists: int | None = Field(None, ge=0, description="distractor objects; None keeps the level's own")
    macro_actions: bool = Field(
        False,
        description="also offer AgentGym's 'go to X', 'pick up X', 'open X door' (compiled to primitives); off by"
        " default because at GoTo levels a random pick among them already succeeds 91% of the time (24% without)",
    )
    list_actions: bool = Field(True, description="end each observation with the valid actions, as AgentGym does")
    max_rounds: int = Field(
        40, gt=0, description="replies per episode; the expert needs 5.9 on average at the default level, 16 at most"
    )

    @field_validator("level")
    @classmethod
    def _known_level(cls, level: str) -> str:
        if level not in LEVELS:
            raise ValueError(f"unknown BabyAI level {level!r}; allowed: {', '.join(LEVELS)}")
        return level


@ENVS.register("babyai")
class BabyAI(Env):
    name = "babyai"
    Config = BabyAIConfig
    config: BabyAIConfig

    def __init__(self, config: BabyAIConfig, seed: int) -> None:
        super().__init__(config, seed)
        try:
            import gymnasium
            import minigrid  # noqa: F401  (registers the BabyAI-* ids)
            from minigrid.utils.baby_ai_bot import BabyAIBot
        except ImportError as error:
            raise ConfigError(
                f"environment 'babyai' needs minigrid: pip install 'trainguard[babyai]' ({error})"
            ) from None

        class BoundedBot(BabyAIBot):
            """minigrid's bot, stopped when one replan runs more searches than any solvable plan needs: on some
            seeds (UnlockToUnlock) its replan loop never ends."""

            searches = 0

            def replan(self, action_taken: int | None = None) -> int:
                self.searches = 0
                return super().replan(action_taken)

            def _breadth_first_search(self, *args: Any, **kwargs: Any) -> Any:
                self.searches += 1
                if self.searches > BOT_SEARCH_LIMIT:
                    raise RuntimeError("BabyAIBot is stuck replanning")
                return super()._breadth_first_search(*args, **kwargs)

        self._bot_class = BoundedBot
        sizes = {k: v for k, v in (("room_size", config.room_size), ("num_dists", config.num_dists)) if v is not None}
        try:
            self.world: Any = gymnasium.make(gym_id(config.level), **sizes).unwrapped
        except TypeError:
            raise ConfigError(f"BabyAI level {config.level} does not take {', '.join(sizes)}; drop them") from None
        self.reset()

    def reset(self) -> str:
        rng = self._new_episode()
        with contextlib.redirect_stdout(io.StringIO()):  # minigrid prints each rejected level sample
            self.world.reset(seed=rng.randrange(2**31))
        self._bot: Any = None
        self._suggested: int | None = None
        try:
            self._bot = self._bot_class(self.world)
            self._suggested = self._bot.replan()
        except Exception:  # the bot cannot parse every mission (KeyInBox asserts): no expert for this episode
            self._bot = None
        self._seen, self._table = action_table(self.world, self.config.macro_actions)
        return f"Goal: {self.world.mission}.\n" + self._describe()

    def _describe(self) -> str:
        return describe(self.world, self._seen, list(self._table) if self.config.list_actions else None)

    def _tell_bot(self, action: int) -> None:
        """Keep the bot's map and plan in step with every primitive taken, whoever chose it."""
        if self._bot is None:
            return
        try:
            self._suggested = self._bot.replan(action)
        except Exception:  # the third-party bot asserts or gives up (DisappearedBoxError) once it is off its plan
            self._bot, self._suggested = None, None

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        action = parse_action(action_text)
        key = " ".join(action.lower().rstrip(".").split()) if action is not None else None
        if key not in self._table:
            return self._end_round(INVALID, 0.0, False, invalid=True)
        reward, terminated, truncated = 0.0, False, False
        for primitive in self._table[key]:
            _, reward, terminated, truncated, _ = self.world.step(primitive)
            if terminated or truncated:
                break
            self._tell_bot(primitive)
        success = terminated and reward > 0
        failed = terminated and not success
        if success:
            reward = success_reward(self.world.step_count, self.world.max_steps)
            reward += GOAL_BONUS if self.config.shaping else 0.0
            return self._end_round("Goal reached.\n", reward, True)
        if failed or truncated:  # the mission ended without success before max_rounds
            result = self._end_round("Mission failed.\n" if failed else "Out of moves.\n", 0.0, False)
            self.done = result.done = True
            result.info["truncated"] = truncated
            return result
        self._seen, self._table = action_table(self.world, self.config.macro_actions)
        return self._end_round(self._describe(), 0.0, False)

    def expert_action(self) -> str:
        """The bot's next primitive as text; the first valid action if the bot has given up or says "done"."""
        if self._suggested is None or self._suggested == DONE:
            return next(iter(self._table))
        return PRIMITIVE_TEXT[int(self._suggested)]

    def valid_actions(self) -> list[str]:
        return list(self._table)
