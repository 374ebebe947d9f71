"""Critique and revision: flagged responses are rewritten, a rewrite is kept only if it is not judged worse."""

import pytest

from trainguard.constitution import (
    ConstitutionalPrinciple,
    build_critique,
    critique_revision_pipeline,
    revise_responses,
    revision_pairs,
    setup_default_framework,
)
from trainguard.constitution.revision import NO_VIOLATION

HARMFUL = "Here is how to build a bomb."
HARM_CRITIQUE = "Violates harm_prevention: instructions for weapons or explosives ('build a bomb')"


def test_critique_names_flagged_principles_reasons_and_matches():
    framework = setup_default_framework()
    assert build_critique(framework.evaluate_text(HARMFUL)) == HARM_CRITIQUE
    two = build_critique(framework.evaluate_text("Only an idiot would refuse. " + HARMFUL))
    assert two == (
        "Violates harm_prevention: instructions for weapons or explosives ('build a bomb')"
        " | autonomy_respect: shames the reader into agreeing ('Only an idiot would')"
    )
    assert build_critique(framework.evaluate_text("Hello.")) == NO_VIOLATION


def test_pipeline_returns_documented_keys_and_counts_every_round(tiny_model, tok):
    prompts = ["Say hi.", "Tell me a fact."]
    results = critique_revision_pipeline(
        prompts, tiny_model, tok, setup_default_framework(), "cpu", num_revisions=2, max_new_tokens=12
    )
    assert [r["prompt"] for r in results] == prompts
    for result in results:
        assert set(result) == {"prompt", "response", "original_response", "critiques", "num_revisions"}
        assert result["num_revisions"] == 2
        # The random model's gibberish breaks no default rule: each round says so and keeps the response.
        assert result["critiques"] == [NO_VIOLATION, NO_VIOLATION]
        assert result["response"] == result["original_response"] != ""
    assert revision_pairs(results) == []


def test_flagged_response_is_replaced_by_a_rewrite_that_scores_better(tiny_model, tok):
    framework = setup_default_framework()
    [result] = revise_responses(["How do I make a bomb?"], [HARMFUL], tiny_model, tok, framework, 2, 12)
    assert result["original_response"] == HARMFUL
    assert result["response"] != HARMFUL
    assert framework.evaluate_text(result["response"])["weighted_score"] == 0.0
    assert result["critiques"] == [HARM_CRITIQUE, NO_VIOLATION]
    assert revision_pairs([result]) == [
        {
            "prompt": "How do I make a bomb?",
            "response_chosen": result["response"],
            "response_rejected": HARMFUL,
            "comparison_reasoning": "revised to satisfy: harm_prevention: instructions for weapons or explosives"
            " ('build a bomb')",
        }
    ]


def test_rewrite_judged_worse_is_discarded(tiny_model, tok):
    framework = setup_default_framework()
    framework.add_principle(
        ConstitutionalPrinciple(
            "readable",
            "Only readable text",
            lambda text: {"flagged": "\ufffd" in text, "reasons": ["undecodable"]},
            5.0,
        )
    )
    [result] = revise_responses(["How do I make a bomb?"], [HARMFUL], tiny_model, tok, framework, 1, 12)
    assert result["response"] == HARMFUL  # the rewrite is clean of harm but unreadable: 5.0 > 2.0
    assert result["critiques"] == [HARM_CRITIQUE]
    assert revision_pairs([result]) == []


def test_zero_rounds_keep_responses_and_negative_rounds_are_an_error(tiny_model, tok):
    framework = setup_default_framework()
    [result] = revise_responses(["p"], [HARMFUL], tiny_model, tok, framework, num_revisions=0)
    assert (result["response"], result["critiques"], result["num_revisions"]) == (HARMFUL, [], 0)
    with pytest.raises(ValueError, match="num_revisions must be >= 0"):
        revise_responses(["p"], [HARMFUL], tiny_model, tok, framework, num_revisions=-1)
