"""A set of principles judged together: one verdict per text, a severity score, and running statistics."""

from typing import Any

from trainguard.constitution.principle import ConstitutionalPrinciple

MODEL_METHODS = ("ai", "regex-fallback")  # results that came from asking a model (parsed or not)


class ConstitutionalFramework:
    """Principles by name, in the order they were added (which is the order results are reported in)."""

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.principles: dict[str, ConstitutionalPrinciple] = {}
        self.evaluation_history: list[dict[str, Any]] = []
        self.model_answers = 0
        self.model_fallbacks = 0

    def add_principle(self, principle: ConstitutionalPrinciple) -> None:
        """Add a principle; names are unique because results and statistics are keyed by them."""
        if principle.name in self.principles:
            raise ValueError(f"principle {principle.name!r} is already in framework {self.name!r}")
        self.principles[principle.name] = principle

    def _get(self, name: str) -> ConstitutionalPrinciple:
        if name not in self.principles:
            raise KeyError(f"no principle {name!r} in framework {self.name!r}; known: {sorted(self.principles)}")
        return self.principles[name]

    def remove_principle(self, name: str) -> None:
        self._get(name)
        del self.principles[name]

    def enable_principle(self, name: str) -> None:
        self._get(name).enabled = True

    def disable_principle(self, name: str) -> None:
        self._get(name).enabled = False

    def get_active_principles(self) -> list[ConstitutionalPrinciple]:
        return [p for p in self.principles.values() if p.enabled]

    def evaluate_text(self, text: str, track_history: bool = False) -> dict[str, Any]:
        """Judge `text` by every active principle.

        `weighted_score` is the sum of the weights of the flagged principles: a severity, 0.0 when clean.
        Model answers and rule fallbacks are counted on every call, tracked or not, because a judge that
        cannot answer is a problem whether or not history is kept.
        """
        results = {p.name: p.evaluate(text) for p in self.get_active_principles()}
        flagged = [name for name, result in results.items() if result["flagged"]]
        methods = {"ai" if r["method"] == "ai" else "regex" for r in results.values()}
        self.model_answers += sum(r["method"] in MODEL_METHODS for r in results.values())
        self.model_fallbacks += sum(r["method"] == "regex-fallback" for r in results.values())
        evaluation = {
            "principle_results": results,
            "any_flagged": bool(flagged),
            "flagged_principles": flagged,
            "weighted_score": float(sum(results[name]["weight"] for name in flagged)),
            "num_principles_evaluated": len(results),
            "text_length": len(text),
            "evaluation_method": methods.pop() if len(methods) == 1 else ("mixed" if methods else "regex"),
        }
        if track_history:
            self.evaluation_history.append({"text": text, "evaluation": evaluation})
        return evaluation

    def batch_evaluate(self, texts: list[str], track_history: bool = False) -> list[dict[str, Any]]:
        return [self.evaluate_text(text, track_history=track_history) for text in texts]

    def get_statistics(self) -> dict[str, Any]:
        """Flag counts and rates over the tracked evaluations; model answer counts over all evaluations."""
        evaluations = [entry["evaluation"] for entry in self.evaluation_history]
        total = len(evaluations)
        counts = dict.fromkeys(self.principles, 0)
        for evaluation in evaluations:
            for name in evaluation["flagged_principles"]:
                counts[name] = counts.get(name, 0) + 1
        flagged = sum(e["any_flagged"] for e in evaluations)
        return {
            "total_evaluations": total,
            "total_flagged": flagged,
            "flag_rate": flagged / total if total else 0.0,
            "principle_flag_counts": counts,
            "mean_weighted_score": sum(e["weighted_score"] for e in evaluations) / total if total else 0.0,
            "model_answers": self.model_answers,
            "model_fallbacks": self.model_fallbacks,
        }

    def clear_history(self) -> None:
        """Forget tracked evaluations and reset the model answer counts."""
        self.evaluation_history = []
        self.model_answers = 0
        self.model_fallbacks = 0

    def __repr__(self) -> str:
        active = len(self.get_active_principles())
        return f"ConstitutionalFramework(name={self.name!r}, principles={active}/{len(self.principles)} enabled)"
