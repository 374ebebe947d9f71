"""`guess`: find a hidden integer in [1, n] from higher/lower feedback, the smallest multi-turn environment.

Short, plain observations so a tiny byte-level model can learn them; the expert is binary search, so it always
solves within ceil(log2(n + 1)) rounds. Optional shaping pays 0.1 for each wrong guess that is still consistent
with the feedback so far; the config refuses a round limit at which shaping alone could reach the solve reward.
"""

import re

from pydantic import Field, model_validator

from trainguard.tasks.envs.base import ENVS, Env, EnvConfig, StepResult, parse_action

SHAPING_BONUS = 0.1  # per consistent wrong guess; must stay below the 1.0 of solving, summed over an episode


class GuessConfig(EnvConfig):
    n: int = Field(8, ge=2, description="the hidden number is drawn uniformly from 1..n")
    max_rounds: int = Field(4, gt=0, description="guesses allowed; 4 lets binary search solve n=8 every time")

    @model_validator(mode="after")
    def _shaping_below_solving(self) -> "GuessConfig":
        if self.shaping and self.max_rounds * SHAPING_BONUS >= 1.0:
            limit = int(1.0 / SHAPING_BONUS) - 1
            raise ValueError(f"max_rounds must be at most {limit} with shaping, or shaped guessing outpays solving")
        return self


@ENVS.register("guess")
class Guess(Env):
    name = "guess"
    Config = GuessConfig
    config: GuessConfig

    def __init__(self, config: GuessConfig, seed: int) -> None:
        super().__init__(config, seed)
        self.reset()  # so step() works on a fresh env too

    def reset(self) -> str:
        rng = self._new_episode()
        self.secret = rng.randint(1, self.config.n)
        self.low, self.high = 1, self.config.n  # the interval still consistent with all feedback
        return f"Guess the number between 1 and {self.config.n}.\n"

    def step(self, action_text: str) -> StepResult:
        self._require_open()
        action = parse_action(action_text)
        if action is None or not re.fullmatch(r"[0-9]{1,9}", action) or not 1 <= int(action) <= self.config.n:
            return self._end_round(
                f"invalid action: answer with a number between 1 and {self.config.n}\n", 0.0, False, invalid=True
            )
        guess = int(action)
        if guess == self.secret:
            return self._end_round("correct\n", 1.0, True)
        consistent = self.low <= guess <= self.high
        reward = SHAPING_BONUS if self.config.shaping and consistent else 0.0
        if guess < self.secret:
            self.low = max(self.low, guess + 1)
            return self._end_round("higher\n", reward, False)
        self.high = min(self.high, guess - 1)
        return self._end_round("lower\n", reward, False)

    def expert_action(self) -> str:
        return str((self.low + self.high) // 2)

    def valid_actions(self) -> list[str]:
        return [str(k) for k in range(1, self.config.n + 1)]
