"""An RL stage (GRPO or PPO) on the tiny model: reversal prompts, verifier rewards, a few steps."""

import json
import shutil
from pathlib import Path
from typing import Any

from helpers import tiny_config, write_config
from trainguard import api


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
    tmp_path: Path,
    objective: dict[str, Any],
    steps: int = 4,
    source: dict[str, Any] | None = None,
    stage: dict[str, Any] | None = None,
    **sections: Any,
) -> Path:
    """A run file of one RL stage; `source` and `stage` add keys to the stage's source and to the stage."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp_path / "runs", **sections)
    if "stages" not in sections:
        cfg["stages"] = [rl_stage(objective, steps, **(source or {})) | (stage or {})]
    return write_config(tmp_path / "rl.yaml", cfg)


LOWERCASE = {"name": "format", "kind": "regex", "pattern": "[a-z]{1,8}"}
FORMAT = {"name": "fmt", "target": 0.05, "dual_lr": 0.5, "measure": LOWERCASE}


def format_constraint(**over: Any) -> dict[str, Any]:
    """A stage's `plugins:` with one format constraint (1-8 lowercase letters, violation <= 0.05)."""
    return {"plugins": [{"name": "constraints", "constraints": [FORMAT | over]}]}


def resumed_after_crash(run: Any, where: Path, checkpoint: str = "step-000004") -> Any:
    """A copy of a finished run as a crash after `checkpoint`'s predecessor left it (that checkpoint and
    final/ gone, status still running), resumed."""
    crashed = where / "crashed"
    shutil.copytree(run.path, crashed)
    manifest = json.loads((crashed / "manifest.json").read_text())
    (crashed / "manifest.json").write_text(json.dumps(manifest | {"status": "running"}))
    for later in (f"checkpoints/{checkpoint}", "final"):
        shutil.rmtree(crashed / later)
    return api.resume(crashed)
