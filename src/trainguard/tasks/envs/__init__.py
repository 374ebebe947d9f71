"""Multi-turn text environments for agent training; importing this package registers the built-in ones."""

from trainguard.tasks.envs import (  # noqa: F401  (importing registers each)
    alfworld,
    babyai,
    guess,
    sciworld,
    textcraft,
    webshop,
)
from trainguard.tasks.envs.base import (
    ENVS,
    Env,
    EnvConfig,
    StepResult,
    episode_record,
    make,
    parse_action,
    run_episode,
)

__all__ = ["ENVS", "Env", "EnvConfig", "StepResult", "episode_record", "make", "parse_action", "run_episode"]
