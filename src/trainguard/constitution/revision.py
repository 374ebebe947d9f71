"""Critique and revision: the framework names what a response violates, the model rewrites it, and a rewrite
is kept only if the framework does not judge it worse."""

from typing import Any

import torch
from torch import nn

from trainguard.constitution.framework import ConstitutionalFramework
from trainguard.constitution.generation import check_device, generate
from trainguard.constitution.preferences import principles_text

NO_VIOLATION = "No principle flagged; the response is kept as is."

REVISION_TEMPLATE = (
    "Prompt: {prompt}\nResponse: {response}\nCritique: {critique}\n"
    "Rewrite the response so that it follows these principles:\n{principles}\nRevised response:"
)


def build_critique(evaluation: dict[str, Any]) -> str:
    """One line per flagged principle with its reasons and matched text, or NO_VIOLATION."""
    if not evaluation["any_flagged"]:
        return NO_VIOLATION
    parts = []
    for name in evaluation["flagged_principles"]:
        result = evaluation["principle_results"][name]
        detail = "; ".join(result.get("reasons") or ["flagged"])
        matches = ", ".join(repr(m) for m in result.get("matches") or [])
        parts.append(f"{name}: {detail}" + (f" ({matches})" if matches else ""))
    return "Violates " + " | ".join(parts)


def _revise_round(
    states: list[dict[str, Any]],
    scores: list[dict[str, Any]],
    model: nn.Module,
    tokenizer: Any,
    framework: ConstitutionalFramework,
    max_new_tokens: int,
) -> None:
    """One critique-and-revise round over every response, the rewrites generated as one batch."""
    flagged = []
    for i, state in enumerate(states):
        critique = build_critique(scores[i])
        state["critiques"].append(critique)
        state["num_revisions"] += 1
        if scores[i]["any_flagged"]:
            flagged.append((i, critique))
    listing = principles_text(framework)
    requests = [
        REVISION_TEMPLATE.format(
            prompt=states[i]["prompt"], response=states[i]["response"], critique=c, principles=listing
        )
        for i, c in flagged
    ]
    for (i, _), revision in zip(flagged, generate(model, tokenizer, requests, max_new_tokens), strict=True):
        if not revision.strip():
            continue  # an empty rewrite scores clean but answers nothing
        evaluation = framework.evaluate_text(revision)
        if evaluation["weighted_score"] <= scores[i]["weighted_score"]:
            states[i]["response"], scores[i] = revision, evaluation


def revise_responses(
    prompts: list[str],
    responses: list[str],
    model: nn.Module,
    tokenizer: Any,
    framework: ConstitutionalFramework,
    num_revisions: int = 1,
    max_new_tokens: int = 64,
) -> list[dict[str, Any]]:
    """Critique and revise given responses: `{prompt, response, original_response, critiques, num_revisions}`.

    Every round adds a critique, a clean response's included (its critique says nothing was flagged and it
    stays as is). A non-empty rewrite replaces the response when its weighted score is not worse, so the
    final response never scores worse than the original.
    """
    if num_revisions < 0:
        raise ValueError(f"num_revisions must be >= 0, got {num_revisions}")
    states = [
        {"prompt": p, "response": r, "original_response": r, "critiques": [], "num_revisions": 0}
        for p, r in zip(prompts, responses, strict=True)
    ]
    scores = framework.batch_evaluate(responses)
    for _ in range(num_revisions):
        _revise_round(states, scores, model, tokenizer, framework, max_new_tokens)
    return states


def critique_revision_pipeline(
    prompts: list[str],
    model: nn.Module,
    tokenizer: Any,
    framework: ConstitutionalFramework,
    device: torch.device | str | None,
    num_revisions: int = 1,
    max_new_tokens: int = 64,
) -> list[dict[str, Any]]:
    """The model answers each prompt (greedy), then `revise_responses` critiques and revises the answers.
    `model` must already be on `device`."""
    check_device(model, device)
    responses = generate(model, tokenizer, prompts, max_new_tokens)
    return revise_responses(prompts, responses, model, tokenizer, framework, num_revisions, max_new_tokens)


def revision_pairs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference records from revisions that changed the response: the revision chosen over the original."""
    pairs = []
    for result in results:
        if result["response"] == result["original_response"]:
            continue
        violations = dict.fromkeys(c.removeprefix("Violates ") for c in result["critiques"] if c != NO_VIOLATION)
        pairs.append(
            {
                "prompt": result["prompt"],
                "response_chosen": result["response"],
                "response_rejected": result["original_response"],
                "comparison_reasoning": "revised to satisfy: " + " | ".join(violations),
            }
        )
    return pairs
