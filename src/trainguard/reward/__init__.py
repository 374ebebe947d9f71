"""Reward models: a Bradley-Terry scalar head on a causal LM, trained on preference pairs, and the
Constitutional AI tools that make such pairs (re-exported from `trainguard.constitution`)."""

from trainguard.constitution import (
    ConstitutionalFramework,
    ConstitutionalPrinciple,
    critique_revision_pipeline,
    generate_preference_pairs,
    revision_pairs,
    setup_default_framework,
)
from trainguard.reward.data import PreferenceDataset
from trainguard.reward.export import load_reward_model, save_reward_model
from trainguard.reward.loss import compute_reward_loss
from trainguard.reward.model import RewardHead, RewardModel
from trainguard.reward.train import RewardModelTrainer, evaluate_reward_model, train_reward_model

__all__ = [
    "ConstitutionalFramework",
    "ConstitutionalPrinciple",
    "PreferenceDataset",
    "RewardHead",
    "RewardModel",
    "RewardModelTrainer",
    "compute_reward_loss",
    "critique_revision_pipeline",
    "evaluate_reward_model",
    "generate_preference_pairs",
    "load_reward_model",
    "revision_pairs",
    "save_reward_model",
    "setup_default_framework",
    "train_reward_model",
]
