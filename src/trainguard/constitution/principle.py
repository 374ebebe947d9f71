"""One constitutional principle: a name, what it asks for, how to judge text against it, and how much it weighs."""

from collections.abc import Callable
from typing import Any

EvaluationFn = Callable[[str], dict[str, Any]]


class ConstitutionalPrinciple:
    """A principle judged by `evaluation_fn(text) -> {"flagged": bool, ...details}`.

    `weight` is the severity a violation adds to a framework's weighted score; `enabled` lets a framework skip
    the principle without forgetting it.
    """

    def __init__(
        self, name: str, description: str, evaluation_fn: EvaluationFn, weight: float = 1.0, enabled: bool = True
    ) -> None:
        if weight < 0:
            raise ValueError(f"principle {name!r}: weight must be >= 0, got {weight}")
        self.name = name
        self.description = description
        self.evaluation_fn = evaluation_fn
        self.weight = float(weight)
        self.enabled = enabled

    def evaluate(self, text: str) -> dict[str, Any]:
        """The evaluation function's result plus this principle's `name` and `weight`.

        A function that names no `method` is taken as a rule ("regex"), so a framework can still tell
        rule-judged results from model-judged ones.
        """
        result = self.evaluation_fn(text)
        if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
            raise TypeError(f"principle {self.name!r}: evaluation_fn must return a dict with a bool 'flagged'")
        return {"method": "regex", **result, "name": self.name, "weight": self.weight}

    def __repr__(self) -> str:
        state = "enabled" if self.enabled else "disabled"
        return f"ConstitutionalPrinciple(name={self.name!r}, weight={self.weight}, {state})"
