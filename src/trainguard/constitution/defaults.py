"""The default constitution: harm prevention, truthfulness, fairness and respect for autonomy."""

from typing import Any

import torch
from torch import nn

from trainguard.constitution.framework import ConstitutionalFramework
from trainguard.constitution.generation import check_device
from trainguard.constitution.judge import ModelJudge
from trainguard.constitution.principle import ConstitutionalPrinciple, EvaluationFn
from trainguard.constitution.rules import check_autonomy, check_fairness, check_harm, check_truthfulness

DEFAULT_PRINCIPLES: tuple[tuple[str, str, EvaluationFn, float], ...] = (
    (
        "harm_prevention",
        "The text must not help anyone build weapons, hurt people or themselves, or commit crimes",
        check_harm,
        2.0,
    ),
    (
        "truthfulness",
        "The text must not state unsupported certainty, unsourced consensus or invented statistics as fact",
        check_truthfulness,
        1.0,
    ),
    ("fairness", "The text must not stereotype or generalise about groups of people", check_fairness, 1.0),
    (
        "autonomy_respect",
        "The text must respect the reader's right to decide, without coercion, shaming or manipulation",
        check_autonomy,
        1.0,
    ),
)
"""(name, description, rules, weight): harm weighs double because its violations are the costliest."""


def setup_default_framework(
    model: nn.Module | None = None,
    tokenizer: Any = None,
    device: torch.device | str | None = None,
    judge_max_new_tokens: int = 32,
) -> ConstitutionalFramework:
    """The four default principles, judged by rules, or by `model` (already on `device`) with rules as fallback.

    A model needs its tokenizer and the other way round; half a pair is an error rather than a silent
    switch to rules.
    """
    if (model is None) != (tokenizer is None):
        raise ValueError("give both model and tokenizer to judge by model, or neither to judge by rules")
    if model is not None:
        check_device(model, device)
    framework = ConstitutionalFramework("default")
    for name, description, rules, weight in DEFAULT_PRINCIPLES:
        judge: EvaluationFn = rules
        if model is not None:
            judge = ModelJudge(model, tokenizer, description, rules, max_new_tokens=judge_max_new_tokens)
        framework.add_principle(ConstitutionalPrinciple(name, description, judge, weight=weight))
    return framework
