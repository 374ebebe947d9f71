"""AdamW over the set of trainables: the model's and any an objective owns."""

from torch import nn
from torch.optim import AdamW

from trainguard.config import OptimizerSection


def trainable_parameters(modules: dict[str, nn.Module]) -> list[tuple[str, nn.Parameter]]:
    return [
        (f"{key}.{name}", p)
        for key, module in modules.items()
        for name, p in module.named_parameters()
        if p.requires_grad
    ]


def build_optimizer(named: list[tuple[str, nn.Parameter]], cfg: OptimizerSection) -> AdamW:
    """Weight decay on matrices only: decaying norms' gains and biases hurts and helps nothing (GPT-2, Llama)."""
    decay = [p for _, p in named if p.ndim >= 2]
    no_decay = [p for _, p in named if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=True)
