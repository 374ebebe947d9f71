"""Evaluation: held-out task accuracy by generation, and loss on held-out records."""
