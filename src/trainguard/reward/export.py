"""A reward model as a folder: the causal LM and its tokenizer as Hugging Face files, the head in
`heads/reward/` (what the `reward` stage exports to `final/`, and what the RL stages load by path)."""

from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer

from trainguard.errors import ExportError
from trainguard.models.heads import load_heads
from trainguard.models.loading import export_model
from trainguard.reward.model import HEAD_KEY, RewardModel, hidden_width


def save_reward_model(reward_model: RewardModel, tokenizer: Any, folder: str | Path) -> None:
    export_model(reward_model.base_model, tokenizer, Path(folder), heads={HEAD_KEY: reward_model.reward_head})


def load_reward_model(folder: str | Path, device: Any = None, head: str = HEAD_KEY) -> tuple[RewardModel, Any]:
    """(RewardModel in eval mode, tokenizer) from an exported folder; the head and the model must agree."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ExportError(f"{folder} is not a model folder (no config.json)")
    heads = load_heads(folder)
    if head not in heads:
        found = ", ".join(sorted(heads)) or "none"
        raise ExportError(f"{folder} has no reward head heads/{head}/ (heads found: {found}): is it a reward model?")
    base = AutoModelForCausalLM.from_pretrained(folder)
    width, wanted = hidden_width(base), heads[head].hidden_size
    if width != wanted:
        raise ExportError(f"{folder}: the reward head takes hidden size {wanted}, the model's hidden size is {width}")
    model = RewardModel(base, hidden_size=wanted)
    model.reward_head = heads[head]
    if device is not None:
        model.to(device)
    return model.eval(), AutoTokenizer.from_pretrained(folder)
