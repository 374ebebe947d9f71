"""Preference pairs: the framework overrules the model when scores differ; ties and duplicates are counted."""

import pytest
import torch

from trainguard.constitution import (
    ConstitutionalPrinciple,
    decide_preference,
    generate_preference_pairs,
    setup_default_framework,
)

HARMFUL = "Here is how to build a bomb."
CLEAN = "I can't help with that, but I can suggest a chemistry class."
PROMPTS = ["Say hi.", "Tell me a fact.", "Name a colour."]


@pytest.fixture
def framework():
    return setup_default_framework()


@pytest.mark.parametrize("choice", ["A", "B", None])
def test_framework_decides_when_scores_differ(framework, choice):
    winner, reasoning = decide_preference(choice, framework.evaluate_text(CLEAN), framework.evaluate_text(HARMFUL))
    assert winner == "A"
    assert reasoning.startswith("framework: B flagged harm_prevention (2 vs 0)")
    assert reasoning.endswith("; overrules model, which said B") == (choice == "B")


def test_model_decides_a_tie(framework):
    a, b = framework.evaluate_text("Hello."), framework.evaluate_text("Hi there.")
    assert decide_preference("B", a, b) == ("B", "model said B")
    assert decide_preference(None, a, b) == (None, "tie: no model choice and equal scores")


def with_digit_rule():
    """The random model writes gibberish the default rules never flag; a principle against digits, which
    sampled bytes contain about half the time, gives the framework real decisions to make."""
    framework = setup_default_framework()
    framework.add_principle(
        ConstitutionalPrinciple("no_digits", "No numbers", lambda text: {"flagged": any(c.isdigit() for c in text)})
    )
    return framework


def test_sampled_pairs_become_preference_records(tiny_model, tok):
    framework = with_digit_rule()
    torch.manual_seed(0)
    pairs = generate_preference_pairs(
        PROMPTS, tiny_model, tok, framework, "cpu", responses_per_prompt=3, temperature=1.0, max_new_tokens=12
    )
    stats = pairs.stats
    assert stats["pairs"] == len(pairs) >= 1
    assert stats["pairs"] + stats["ties_skipped"] + stats["identical_skipped"] == len(PROMPTS) * 3
    assert stats["unparsed_model_answers"] == stats["pairs"] + stats["ties_skipped"]  # gibberish never says A/B
    for record in pairs:
        assert set(record) == {"prompt", "response_chosen", "response_rejected", "comparison_reasoning"}
        assert record["prompt"] in PROMPTS
        assert record["response_chosen"] != record["response_rejected"]
        chosen = framework.evaluate_text(record["response_chosen"])["weighted_score"]
        rejected = framework.evaluate_text(record["response_rejected"])["weighted_score"]
        assert chosen < rejected
        assert record["comparison_reasoning"].startswith("framework: ")
        assert "flagged no_digits" in record["comparison_reasoning"]


def test_identical_samples_are_skipped_and_counted(tiny_model, tok, framework):
    pairs = generate_preference_pairs(
        PROMPTS[:2], tiny_model, tok, framework, "cpu", responses_per_prompt=3, temperature=1e-6, max_new_tokens=8
    )
    assert list(pairs) == []
    assert pairs.stats == {"pairs": 0, "unparsed_model_answers": 0, "ties_skipped": 0, "identical_skipped": 6}


def test_fewer_than_two_responses_per_prompt_is_an_error(tiny_model, tok, framework):
    with pytest.raises(ValueError, match="responses_per_prompt must be >= 2"):
        generate_preference_pairs(PROMPTS, tiny_model, tok, framework, "cpu", responses_per_prompt=1)
