"""Preference pairs from sampled responses: the model compares, the framework's rules overrule or break ties."""

from itertools import combinations
from typing import Any

import torch
from torch import nn

from trainguard.constitution.comparison import Choice, parse_comparison
from trainguard.constitution.framework import ConstitutionalFramework
from trainguard.constitution.generation import check_device, generate

COMPARE_TEMPLATE = (
    "Principles:\n{principles}\nPrompt: {prompt}\nResponse A: {a}\nResponse B: {b}\n"
    "Which response better follows the principles? Answer A or B.\nAnswer:"
)


class PreferencePairs(list[dict[str, Any]]):
    """The preference records, plus `stats`: how many pairs were kept and why the others were not."""

    def __init__(self, records: list[dict[str, Any]], stats: dict[str, int]) -> None:
        super().__init__(records)
        self.stats = stats


def principles_text(framework: ConstitutionalFramework) -> str:
    return "\n".join(f"- {p.name}: {p.description}" for p in framework.get_active_principles())


def decide_preference(
    choice: Choice | None, evaluation_a: dict[str, Any], evaluation_b: dict[str, Any]
) -> tuple[Choice | None, str]:
    """Who wins a comparison, and why.

    The framework decides whenever the two weighted scores differ (lower is better): a model's taste does
    not outweigh a flagged violation. Otherwise the model's parsed choice decides; with no choice and a tie
    there is no winner.
    """
    score_a, score_b = evaluation_a["weighted_score"], evaluation_b["weighted_score"]
    if score_a == score_b:
        return (choice, f"model said {choice}") if choice else (None, "tie: no model choice and equal scores")
    winner: Choice = "A" if score_a < score_b else "B"
    loser_eval = evaluation_b if winner == "A" else evaluation_a
    loser_score, winner_score = max(score_a, score_b), min(score_a, score_b)
    flagged = ", ".join(loser_eval["flagged_principles"])
    reason = f"framework: {'B' if winner == 'A' else 'A'} flagged {flagged} ({loser_score:g} vs {winner_score:g})"
    if choice is not None and choice != winner:
        reason += f"; overrules model, which said {choice}"
    return winner, reason


def _sample(
    model: nn.Module, tokenizer: Any, prompts: list[str], k: int, temperature: float, max_new_tokens: int
) -> list[list[str]]:
    flat = generate(model, tokenizer, [p for p in prompts for _ in range(k)], max_new_tokens, temperature)
    return [flat[i * k : (i + 1) * k] for i in range(len(prompts))]


def generate_preference_pairs(
    prompts: list[str],
    model: nn.Module,
    tokenizer: Any,
    framework: ConstitutionalFramework,
    device: torch.device | str | None,
    responses_per_prompt: int = 2,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    judge_max_new_tokens: int = 16,
) -> PreferencePairs:
    """`{prompt, response_chosen, response_rejected, comparison_reasoning}` for every decidable pair of
    distinct sampled responses to each prompt. `model` must already be on `device`.

    `stats`: "pairs" kept, "unparsed_model_answers" (comparisons the model answered with neither A nor B),
    "ties_skipped" (no model choice and equal framework scores), "identical_skipped" (the same text twice).
    """
    if responses_per_prompt < 2:
        raise ValueError(f"responses_per_prompt must be >= 2 to form pairs, got {responses_per_prompt}")
    check_device(model, device)
    sampled = _sample(model, tokenizer, prompts, responses_per_prompt, temperature, max_new_tokens)
    stats = {"pairs": 0, "unparsed_model_answers": 0, "ties_skipped": 0, "identical_skipped": 0}
    pairs: list[tuple[str, str, str]] = []
    for prompt, responses in zip(prompts, sampled, strict=True):
        for a, b in combinations(responses, 2):
            if a.strip() == b.strip():
                stats["identical_skipped"] += 1
            else:
                pairs.append((prompt, a, b))
    listing = principles_text(framework)
    questions = [COMPARE_TEMPLATE.format(principles=listing, prompt=p, a=a, b=b) for p, a, b in pairs]
    answers = generate(model, tokenizer, questions, judge_max_new_tokens)
    evaluations: dict[str, dict[str, Any]] = {}
    records = []
    for (prompt, a, b), answer in zip(pairs, answers, strict=True):
        choice = parse_comparison(answer)
        stats["unparsed_model_answers"] += choice is None
        for text in (a, b):
            if text not in evaluations:
                evaluations[text] = framework.evaluate_text(text)
        winner, reasoning = decide_preference(choice, evaluations[a], evaluations[b])
        if winner is None:
            stats["ties_skipped"] += 1
            continue
        chosen, rejected = (a, b) if winner == "A" else (b, a)
        records.append(
            {
                "prompt": prompt,
                "response_chosen": chosen,
                "response_rejected": rejected,
                "comparison_reasoning": reasoning,
            }
        )
    stats["pairs"] = len(records)
    return PreferencePairs(records, stats)
