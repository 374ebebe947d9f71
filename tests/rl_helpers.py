"""An RL stage (GRPO or PPO) on the tiny model: reversal prompts, verifier rewards, a few steps."""

from pathlib import Path
from typing import Any

from helpers import tiny_config, write_config


def rl_stage(objective: dict[str, Any], steps: int = 4, **source: Any) -> dict[str, Any]:
    return {
        "name": "rl",
        "objective": objective,
        "source": {
            "name": "rollouts",
            "task": "reverse",
            "params": {"min_len": 3, "max_len": 4},
            "prompts_per_step": 2,
            "group_size": 4,
            "max_new_tokens": 6,
            "eval_prompts": 8,
            **source,
        },
        "max_steps": steps,
        "batch_size": 8,
        "optimizer": {"lr": 1e-3},
        "eval_every": 2,
        "save_every": 2,
        "save_total_limit": None,
    }


def rl_config(
    tmp_path: Path, objective: dict[str, Any], steps: int = 4, source: dict[str, Any] | None = None, **sections: Any
) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp_path / "runs", **sections)
    cfg["stages"] = [rl_stage(objective, steps, **(source or {}))] if "stages" not in sections else cfg["stages"]
    return write_config(tmp_path / "rl.yaml", cfg)
