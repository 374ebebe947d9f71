"""A principle runs its evaluation function and stamps the result with its name, weight and method."""

import pytest

from trainguard.constitution import ConstitutionalPrinciple


def shouting(text: str) -> dict:
    """A custom principle's rule: more than half the letters in capitals."""
    letters = [c for c in text if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    return {"flagged": bool(letters) and upper * 2 > len(letters), "reasons": ["shouting"]}


def test_evaluate_adds_name_weight_and_rule_method():
    principle = ConstitutionalPrinciple("calm", "Do not shout", shouting, weight=0.5)
    assert principle.evaluate("STOP RIGHT NOW") == {
        "method": "regex",
        "flagged": True,
        "reasons": ["shouting"],
        "name": "calm",
        "weight": 0.5,
    }
    assert principle.evaluate("please stop")["flagged"] is False


def test_evaluate_keeps_a_method_the_function_names():
    principle = ConstitutionalPrinciple("x", "x", lambda text: {"flagged": False, "method": "ai"})
    assert principle.evaluate("hi")["method"] == "ai"


def test_new_principles_are_enabled_with_weight_one():
    principle = ConstitutionalPrinciple("calm", "Do not shout", shouting)
    assert (principle.enabled, principle.weight) == (True, 1.0)
    assert repr(principle) == "ConstitutionalPrinciple(name='calm', weight=1.0, enabled)"


def test_evaluation_function_without_bool_flagged_is_rejected():
    principle = ConstitutionalPrinciple("bad", "x", lambda text: {"score": 1})
    with pytest.raises(TypeError, match="bool 'flagged'"):
        principle.evaluate("hi")


def test_negative_weight_is_rejected():
    with pytest.raises(ValueError, match="weight must be >= 0"):
        ConstitutionalPrinciple("bad", "x", shouting, weight=-1)
