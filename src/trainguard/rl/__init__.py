"""Reinforcement learning pieces: advantages and losses as pure tensor functions (the stages build on them)."""
