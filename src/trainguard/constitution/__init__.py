"""Constitutional AI: principles that judge text (by rules, or by a model with rules as fallback), critique and
revision of a model's responses, and preference pairs for training on the principles."""

from trainguard.constitution.comparison import parse_comparison
from trainguard.constitution.defaults import DEFAULT_PRINCIPLES, setup_default_framework
from trainguard.constitution.framework import ConstitutionalFramework
from trainguard.constitution.judge import ModelJudge, parse_verdict
from trainguard.constitution.preferences import PreferencePairs, decide_preference, generate_preference_pairs
from trainguard.constitution.principle import ConstitutionalPrinciple
from trainguard.constitution.revision import (
    build_critique,
    critique_revision_pipeline,
    revise_responses,
    revision_pairs,
)
from trainguard.constitution.rules import (
    AUTONOMY_PATTERNS,
    FAIRNESS_PATTERNS,
    HARM_PATTERNS,
    TRUTHFULNESS_PATTERNS,
    check_autonomy,
    check_fairness,
    check_harm,
    check_truthfulness,
)

__all__ = [
    "AUTONOMY_PATTERNS",
    "DEFAULT_PRINCIPLES",
    "FAIRNESS_PATTERNS",
    "HARM_PATTERNS",
    "TRUTHFULNESS_PATTERNS",
    "ConstitutionalFramework",
    "ConstitutionalPrinciple",
    "ModelJudge",
    "PreferencePairs",
    "build_critique",
    "check_autonomy",
    "check_fairness",
    "check_harm",
    "check_truthfulness",
    "critique_revision_pipeline",
    "decide_preference",
    "generate_preference_pairs",
    "parse_comparison",
    "parse_verdict",
    "revise_responses",
    "revision_pairs",
    "setup_default_framework",
]
